//! Wire types of the Socket API: what clients send, what the server answers,
//! and how both are encoded. No I/O happens here.
//!
//! The core messages (`INITIAL_STATE_RECEIVE`, `FIELDS_REQUEST`/`FIELDS_RECEIVE`,
//! `ITEMS_REQUEST`/`ITEMS_RECEIVE`) follow the Marija Socket API exactly. Everything
//! else (`request-id`, `ERROR`, `REQUEST_COMPLETED`, `CANCEL_REQUEST`, `PING`/`PONG`,
//! `SHUTDOWN_NOTICE`) is optional for clients; see `docs/protocol.md`.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// Close code for a frame that is not a JSON object (binary, array, scalar).
pub const CLOSE_INVALID_PAYLOAD: u16 = 4200;
/// Close code for a frame over the size limit, a client over the message-rate
/// limit, or a client that does not read its results.
pub const CLOSE_TOO_MUCH: u16 = 4420;

/// A client-chosen id tying answers to a request: a string or an integer,
/// echoed back verbatim as `"request-id"`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RequestId {
    Number(i64),
    Text(String),
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestId::Number(n) => write!(f, "{n}"),
            RequestId::Text(s) => f.write_str(s),
        }
    }
}

/// Default page size when an `ITEMS_REQUEST` has no `size`.
pub const DEFAULT_SIZE: u64 = 50;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldsRequest {
    pub datasources: Vec<String>,
    #[serde(rename = "request-id", default)]
    pub request_id: Option<RequestId>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ItemsRequest {
    pub datasources: Vec<String>,
    pub query: String,
    #[serde(default)]
    pub from: u64,
    #[serde(default = "default_size")]
    pub size: u64,
    #[serde(default)]
    pub color: Option<String>,
    #[serde(rename = "request-id", default)]
    pub request_id: Option<RequestId>,
}

fn default_size() -> u64 {
    DEFAULT_SIZE
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CancelRequest {
    #[serde(rename = "request-id")]
    pub request_id: RequestId,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ping {
    #[serde(default)]
    pub t: Option<Value>,
}

/// A decoded client message.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientMessage {
    Fields(FieldsRequest),
    Items(ItemsRequest),
    Cancel(CancelRequest),
    Ping(Ping),
}

/// Why a frame could not be decoded.
#[derive(Debug, Clone, PartialEq)]
pub enum DecodeError {
    /// Valid JSON that is not an object: the connection is closed with
    /// [`CLOSE_INVALID_PAYLOAD`].
    NotAnObject,
    /// Anything else: answered with an `ERROR`, the connection stays open.
    Invalid(Box<ErrorReport>),
}

/// Decodes one text frame.
pub fn decode(text: &str) -> Result<ClientMessage, DecodeError> {
    let value: Value = serde_json::from_str(text).map_err(|e| {
        DecodeError::Invalid(Box::new(ErrorReport::new(
            ErrorCode::InvalidJson,
            format!("invalid JSON: {e}"),
        )))
    })?;
    let Value::Object(object) = value else {
        return Err(DecodeError::NotAnObject);
    };
    decode_object(object).map_err(|report| DecodeError::Invalid(Box::new(report)))
}

// Errors are rare and short-lived; boxing them here would only add noise.
#[allow(clippy::result_large_err)]
fn decode_object(mut object: Map<String, Value>) -> Result<ClientMessage, ErrorReport> {
    // Context for any error about this frame: the request's query, color and id.
    let mut report_context = ErrorReport::new(ErrorCode::InvalidRequest, String::new());
    report_context.query = object
        .get("query")
        .and_then(Value::as_str)
        .map(str::to_owned);
    report_context.color = object
        .get("color")
        .and_then(Value::as_str)
        .map(str::to_owned);
    report_context.request_id = object
        .get("request-id")
        .and_then(|v| RequestId::deserialize(v).ok());

    let kind = match object.remove("type") {
        Some(Value::String(kind)) => kind,
        Some(_) => {
            return Err(report_context.with_message("field `type` must be a string"));
        }
        None => return Err(report_context.with_message("missing field `type`")),
    };
    let body = Value::Object(object);
    let invalid = |e: serde_path_to_error::Error<serde_json::Error>| {
        report_context
            .clone()
            .with_message(format!("{kind}: {}", describe_invalid(&body, &e)))
    };
    match kind.as_str() {
        "FIELDS_REQUEST" => serde_path_to_error::deserialize(&body)
            .map(ClientMessage::Fields)
            .map_err(invalid),
        "ITEMS_REQUEST" => serde_path_to_error::deserialize(&body)
            .map(ClientMessage::Items)
            .map_err(invalid),
        "CANCEL_REQUEST" => serde_path_to_error::deserialize(&body)
            .map(ClientMessage::Cancel)
            .map_err(invalid),
        "PING" => serde_path_to_error::deserialize(&body)
            .map(ClientMessage::Ping)
            .map_err(invalid),
        other => {
            let mut report = report_context.with_message(format!(
                "unknown message type `{other}`; expected FIELDS_REQUEST, ITEMS_REQUEST, CANCEL_REQUEST or PING"
            ));
            report.code = ErrorCode::UnknownType;
            Err(report)
        }
    }
}

/// Says what is wrong with a field in the protocol's terms (never in the
/// server's own type names): `` `size` must be a whole number of 0 or more
/// (found a string) ``.
fn describe_invalid(body: &Value, error: &serde_path_to_error::Error<serde_json::Error>) -> String {
    let field = match error.path().iter().next() {
        Some(serde_path_to_error::Segment::Map { key }) => key.clone(),
        // Missing and unknown fields are reported at the top level, by name.
        _ => return error.inner().to_string(),
    };
    let expected = match field.as_str() {
        "datasources" => "a list of datasource ids (strings)",
        "query" | "color" => "a string",
        "from" | "size" => "a whole number of 0 or more",
        "request-id" => "a string or an integer",
        _ => return error.inner().to_string(),
    };
    let found = match body.get(&field) {
        Some(Value::Null) => "null",
        Some(Value::Bool(_)) => "true or false",
        Some(Value::Number(n)) if n.is_i64() && n.as_i64() < Some(0) => "a negative number",
        Some(Value::Number(n)) if n.is_f64() => "a fraction",
        Some(Value::Number(_)) => "a number",
        Some(Value::String(_)) => "a string",
        Some(Value::Array(_)) => "a list",
        Some(Value::Object(_)) => "an object",
        None => "nothing",
    };
    // Inside a list, name the element that is wrong.
    let found = match error.path().iter().nth(1) {
        Some(serde_path_to_error::Segment::Seq { index }) => {
            format!("element {index} is not a string")
        }
        _ => format!("found {found}"),
    };
    format!("`{field}` must be {expected} ({found})")
}

/// The machine-readable family of an `ERROR` message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// The frame is not valid JSON.
    InvalidJson,
    /// `type` names no known message.
    UnknownType,
    /// A field is missing, unknown or of the wrong type.
    InvalidRequest,
    /// The request names a datasource the server does not have (or the token may not use).
    UnknownDatasource,
    /// The datasource rejected the query (syntax error, unknown field, ...).
    BadQuery,
    /// The datasource could not be reached or failed.
    DatasourceFailed,
    /// The datasource refused the server's credentials.
    DatasourceUnauthorized,
    /// The datasource did not answer within its timeout.
    Timeout,
    /// The connection already runs as many requests as it may.
    TooManyRequests,
    /// `CANCEL_REQUEST` named no running request.
    UnknownRequest,
}

impl ErrorCode {
    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::UnknownDatasource => "unknown_datasource",
            ErrorCode::BadQuery => "bad_query",
            ErrorCode::DatasourceFailed => "datasource_failed",
            ErrorCode::DatasourceUnauthorized => "datasource_unauthorized",
            ErrorCode::Timeout => "timeout",
            ErrorCode::TooManyRequests => "too_many_requests",
            ErrorCode::UnknownRequest => "unknown_request",
        }
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// The body of an `ERROR` message.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ErrorReport {
    pub query: Option<String>,
    pub color: Option<String>,
    pub message: String,
    pub code: ErrorCode,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub datasource: Option<String>,
    #[serde(skip)]
    pub request_id: Option<RequestId>,
}

impl ErrorReport {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ErrorReport {
            query: None,
            color: None,
            message: message.into(),
            code,
            datasource: None,
            request_id: None,
        }
    }

    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = message.into();
        self
    }
}

// ---------------------------------------------------------------------------
// Server → client

/// A datasource as listed in `INITIAL_STATE_RECEIVE`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DatasourceInfo {
    pub id: String,
    pub name: String,
    /// The adapter behind it (`fixtures`, `elasticsearch`, ...).
    #[serde(rename = "type")]
    pub kind: String,
}

/// One field of a datasource, with a dotted path for nested values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Field {
    pub path: String,
    #[serde(rename = "type")]
    pub kind: String,
}

/// One search result. `fields` is kept pre-encoded so a result can be sent
/// many times without re-serialising it.
#[derive(Debug, Clone, Serialize)]
pub struct Item {
    pub id: String,
    pub fields: Arc<RawValue>,
    pub highlight: Option<Arc<RawValue>>,
}

impl Item {
    /// Builds an item from flattened fields (dotted paths → values).
    pub fn from_fields(id: impl Into<String>, fields: &Map<String, Value>) -> Item {
        Item {
            id: id.into(),
            fields: encode_raw(fields),
            highlight: None,
        }
    }

    /// Sets the highlights: field path → highlighted fragments.
    pub fn with_highlight(mut self, highlight: &BTreeMap<String, Vec<String>>) -> Item {
        if !highlight.is_empty() {
            self.highlight = Some(encode_raw(highlight));
        }
        self
    }
}

fn encode_raw<T: Serialize + ?Sized>(value: &T) -> Arc<RawValue> {
    // Only string-keyed maps of JSON values come here, and those always serialise.
    Arc::from(serde_json::value::to_raw_value(value).expect("JSON maps always serialise"))
}

#[derive(Serialize)]
struct Tagged<'a, T: Serialize> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(flatten)]
    body: &'a T,
    #[serde(rename = "request-id", skip_serializing_if = "Option::is_none")]
    request_id: Option<&'a RequestId>,
}

fn encode_tagged<T: Serialize>(
    kind: &'static str,
    body: &T,
    request_id: Option<&RequestId>,
) -> String {
    let tagged = Tagged {
        kind,
        body,
        request_id,
    };
    // Every type encoded here is plain data with string keys: serialisation cannot fail.
    serde_json::to_string(&tagged).unwrap_or_default()
}

#[derive(Serialize)]
struct InitialState<'a> {
    state: InitialStateBody<'a>,
}
#[derive(Serialize)]
struct InitialStateBody<'a> {
    datasources: &'a [DatasourceInfo],
}

pub fn encode_initial_state(datasources: &[DatasourceInfo]) -> String {
    let body = InitialState {
        state: InitialStateBody { datasources },
    };
    encode_tagged("INITIAL_STATE_RECEIVE", &body, None)
}

#[derive(Serialize)]
struct FieldsReceive<'a> {
    fields: FieldsBody<'a>,
}
#[derive(Serialize)]
struct FieldsBody<'a> {
    server: &'a str,
    index: &'a str,
    fields: &'a [Field],
}

pub fn encode_fields(
    server: &str,
    index: &str,
    fields: &[Field],
    request_id: Option<&RequestId>,
) -> String {
    let body = FieldsReceive {
        fields: FieldsBody {
            server,
            index,
            fields,
        },
    };
    encode_tagged("FIELDS_RECEIVE", &body, request_id)
}

/// What every `ITEMS_RECEIVE` of one request and datasource shares.
#[derive(Debug, Clone)]
pub struct ItemsHeader {
    pub server: String,
    pub query: String,
    pub color: Option<String>,
    pub request_id: Option<RequestId>,
}

#[derive(Serialize)]
struct ItemsReceive<'a> {
    items: ItemsBody<'a>,
}
#[derive(Serialize)]
struct ItemsBody<'a> {
    server: &'a str,
    query: &'a str,
    color: &'a Option<String>,
    total: u64,
    /// Offset of the first result of this batch in the whole result list.
    from: u64,
    results: &'a [Item],
}

/// Encodes one `ITEMS_RECEIVE` batch.
pub fn encode_items(header: &ItemsHeader, total: u64, from: u64, results: &[Item]) -> String {
    let body = ItemsReceive {
        items: ItemsBody {
            server: &header.server,
            query: &header.query,
            color: &header.color,
            total,
            from,
            results,
        },
    };
    encode_tagged("ITEMS_RECEIVE", &body, header.request_id.as_ref())
}

#[derive(Serialize)]
struct ErrorMessage<'a> {
    error: &'a ErrorReport,
}

pub fn encode_error(report: &ErrorReport) -> String {
    encode_tagged(
        "ERROR",
        &ErrorMessage { error: report },
        report.request_id.as_ref(),
    )
}

/// How one datasource's part of a request ended, as listed in `REQUEST_COMPLETED`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DatasourceOutcome {
    pub took_ms: u64,
    pub total: Option<u64>,
    pub error: Option<String>,
}

#[derive(Serialize)]
struct RequestCompleted<'a> {
    datasources: &'a BTreeMap<String, DatasourceOutcome>,
}

pub fn encode_request_completed(
    request_id: &RequestId,
    outcomes: &BTreeMap<String, DatasourceOutcome>,
) -> String {
    encode_tagged(
        "REQUEST_COMPLETED",
        &RequestCompleted {
            datasources: outcomes,
        },
        Some(request_id),
    )
}

#[derive(Serialize)]
struct Empty {}

pub fn encode_request_canceled(request_id: &RequestId) -> String {
    encode_tagged("REQUEST_CANCELED", &Empty {}, Some(request_id))
}

#[derive(Serialize)]
struct Pong<'a> {
    t: &'a Option<Value>,
    server_t: u64,
}

pub fn encode_pong(t: &Option<Value>, server_t: u64) -> String {
    encode_tagged("PONG", &Pong { t, server_t }, None)
}

pub fn encode_shutdown_notice(drain_ms: u64) -> String {
    #[derive(Serialize)]
    struct Notice {
        drain_ms: u64,
    }
    encode_tagged("SHUTDOWN_NOTICE", &Notice { drain_ms }, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_seed_items_request() {
        let msg = decode(
            r##"{"type":"ITEMS_REQUEST","datasources":["twitter"],"query":"wilders","from":0,"size":500,"color":"#de79f2"}"##,
        );
        assert_eq!(
            msg,
            Ok(ClientMessage::Items(ItemsRequest {
                datasources: vec!["twitter".into()],
                query: "wilders".into(),
                from: 0,
                size: 500,
                color: Some("#de79f2".into()),
                request_id: None,
            }))
        );
    }

    #[test]
    fn non_objects_are_invalid_payloads_but_bad_json_is_an_error() {
        assert_eq!(decode("[1,2]"), Err(DecodeError::NotAnObject));
        assert_eq!(decode("42"), Err(DecodeError::NotAnObject));
        match decode("{nope") {
            Err(DecodeError::Invalid(r)) => assert_eq!(r.code, ErrorCode::InvalidJson),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn errors_carry_the_request_context() {
        let Err(DecodeError::Invalid(report)) =
            decode(r##"{"type":"ITEMS_REQUEST","query":"x","color":"#fff","request-id":7}"##)
        else {
            panic!("expected an error");
        };
        assert_eq!(report.query.as_deref(), Some("x"));
        assert_eq!(report.color.as_deref(), Some("#fff"));
        assert_eq!(report.request_id, Some(RequestId::Number(7)));
        assert!(report.message.contains("datasources"), "{}", report.message);
    }

    #[test]
    fn items_receive_has_the_seed_shape() {
        let header = ItemsHeader {
            server: "twitter".into(),
            query: "wilders".into(),
            color: Some("#de79f2".into()),
            request_id: None,
        };
        let mut fields = Map::new();
        fields.insert("user.screen_name".into(), Value::from("x"));
        let text = encode_items(&header, 100, 0, &[Item::from_fields("1", &fields)]);
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["type"], "ITEMS_RECEIVE");
        assert_eq!(v["items"]["total"], 100);
        assert_eq!(v["items"]["color"], "#de79f2");
        assert_eq!(v["items"]["results"][0]["fields"]["user.screen_name"], "x");
        assert_eq!(v["items"]["results"][0]["highlight"], Value::Null);
        assert!(v.get("request-id").is_none());
    }
}
