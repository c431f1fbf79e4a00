//! What clients send: decoded leniently. Unknown fields are ignored, so a
//! client that sends more than the Socket API (Marija's later clients send
//! `fields` or `advancedQuery`) keeps working; a wrong type or a missing
//! field is answered with an `ERROR` that names it.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use serde_json::{Map, Value};
use tributary_datasource::{ExpandMode, FieldValue, Position};

use crate::outbound::{Echo, ErrorCode, ErrorReport, LinkInfo};

pub use crate::request_id::RequestId;

/// Default page size when an `ITEMS_REQUEST` has no `size`.
pub const DEFAULT_SIZE: u64 = 50;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldsRequest {
    pub datasources: Vec<String>,
    #[serde(
        rename = "request-id",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub request_id: Option<RequestId>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemsRequest {
    pub datasources: Vec<String>,
    pub query: String,
    #[serde(default)]
    pub from: u64,
    #[serde(default = "default_size")]
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub color: Option<String>,
    #[serde(
        rename = "request-id",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub request_id: Option<RequestId>,
    /// Keep following the query: new matching records are appended
    /// (`ITEMS_RECEIVE` with `"append": true`) until `CANCEL_REQUEST`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub live: bool,
    /// A live request taken up again after a reconnect: per datasource, the
    /// last position received (`offset` and `epoch` of its appends or of
    /// `LIVE_STARTED`). Those datasources send what was missed since, not a
    /// page, when they still can.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<BTreeMap<String, Position>>,
}

/// `EXPAND_REQUEST`: the values next to the selected ones, per datasource.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExpandRequest {
    pub datasources: Vec<String>,
    /// The selected values (graph nodes): each a field and a value.
    pub values: Vec<FieldValue>,
    /// The fields whose values become new vertices; default: the fields of
    /// the selected values and every field linked to them.
    #[serde(default)]
    pub fields: Vec<String>,
    /// Most new vertices per field.
    #[serde(default = "default_expand_size")]
    pub size: u64,
    /// Values already in the graph, never returned as new.
    #[serde(default)]
    pub exclude: Vec<FieldValue>,
    #[serde(default)]
    pub mode: ExpandMode,
    /// Instead of new values: the links between the selected values
    /// themselves (records holding two of them), as connections.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub between: bool,
    /// Links of the client's own (a user accepted a suggested one), in
    /// `INITIAL_STATE_RECEIVE`'s shape, followed with the server's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<LinkInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub color: Option<String>,
    #[serde(
        rename = "request-id",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub request_id: Option<RequestId>,
}

/// New vertices per field when an `EXPAND_REQUEST` has no `size`.
pub const DEFAULT_EXPAND_SIZE: u64 = 10;

fn default_expand_size() -> u64 {
    DEFAULT_EXPAND_SIZE
}

/// `UPDATE_REQUEST`: replaces the query (and optionally the datasources and
/// color) of a live request, keeping its subscription.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpdateRequest {
    #[serde(rename = "request-id")]
    pub request_id: RequestId,
    pub query: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datasources: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub color: Option<String>,
}

fn default_size() -> u64 {
    DEFAULT_SIZE
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CancelRequest {
    #[serde(rename = "request-id")]
    pub request_id: RequestId,
}

/// `SUBSCRIBE` / `UNSUBSCRIBE`: channels such as `status:tweets`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Channels {
    pub channels: Vec<String>,
    /// `SUBSCRIBE` only: the values missed since a position are sent first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Since>,
}

/// Where a resubscribing client stands: one position (for every channel
/// named, as when one channel is subscribed again) or one per channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Since {
    One(Position),
    Each(BTreeMap<String, Position>),
}

impl Since {
    /// The position given for `channel`, if any.
    pub fn of(&self, channel: &str) -> Option<&Position> {
        match self {
            Since::One(position) => Some(position),
            Since::Each(positions) => positions.get(channel),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ping {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub t: Option<Value>,
}

/// A client message.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type")]
pub enum ClientMessage {
    #[serde(rename = "FIELDS_REQUEST")]
    Fields(FieldsRequest),
    #[serde(rename = "ITEMS_REQUEST")]
    Items(ItemsRequest),
    #[serde(rename = "CANCEL_REQUEST")]
    Cancel(CancelRequest),
    #[serde(rename = "UPDATE_REQUEST")]
    Update(UpdateRequest),
    #[serde(rename = "EXPAND_REQUEST")]
    Expand(ExpandRequest),
    #[serde(rename = "PING")]
    Ping(Ping),
    #[serde(rename = "SUBSCRIBE")]
    Subscribe(Channels),
    #[serde(rename = "UNSUBSCRIBE")]
    Unsubscribe(Channels),
}

impl ClientMessage {
    /// Encodes the message as a client sends it.
    pub fn encode(&self) -> String {
        // Plain data with string keys: serialisation cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
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
    let report_context = ErrorReport::new(ErrorCode::InvalidRequest, String::new()).echoing(Echo {
        query: object
            .get("query")
            .and_then(Value::as_str)
            .map(str::to_owned),
        color: object
            .get("color")
            .and_then(Value::as_str)
            .map(str::to_owned),
        request_id: object
            .get("request-id")
            .and_then(|v| RequestId::deserialize(v).ok()),
    });

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
    // Unknown fields are ignored (other clients send more than we read), but
    // a missing field next to a near-miss spelling of it is worth naming.
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
        "UPDATE_REQUEST" => serde_path_to_error::deserialize(&body)
            .map(ClientMessage::Update)
            .map_err(invalid),
        "EXPAND_REQUEST" => serde_path_to_error::deserialize(&body)
            .map(ClientMessage::Expand)
            .map_err(invalid),
        "PING" => serde_path_to_error::deserialize(&body)
            .map(ClientMessage::Ping)
            .map_err(invalid),
        "SUBSCRIBE" => serde_path_to_error::deserialize(&body)
            .map(ClientMessage::Subscribe)
            .map_err(invalid),
        "UNSUBSCRIBE" => serde_path_to_error::deserialize(&body)
            .map(ClientMessage::Unsubscribe)
            .map_err(invalid),
        other => {
            let mut report = report_context.with_message(format!(
                "unknown message type `{other}`; expected FIELDS_REQUEST, ITEMS_REQUEST, EXPAND_REQUEST, CANCEL_REQUEST, UPDATE_REQUEST, PING, SUBSCRIBE or UNSUBSCRIBE"
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
        // Missing fields are reported at the top level, by name.
        _ => return with_spelling_hint(body, crate::plain_error(error.inner())),
    };
    let expected = match field.as_str() {
        "datasources" => "a list of datasource ids (strings)",
        "query" | "color" => "a string",
        "from" | "size" => "a whole number of 0 or more",
        "request-id" => "a string or an integer",
        "live" => "true or false",
        "resume" => "an object of datasource ids to {\"offset\": a whole number, \"epoch\": a string}",
        "since" => "{\"offset\": a whole number, \"epoch\": a string}, or an object of channels to such positions",
        "values" | "exclude" => "a list of {\"field\": a string, \"value\": a string}",
        "fields" => "a list of field paths (strings)",
        "mode" => "\"count\" or \"significant\"",
        "channels" => "a list of channel names (strings such as `status:tweets`)",
        "links" => "a list of {\"name\": a string, \"fields\": [{\"datasource\": a string, \"field\": a string}], \"lowercase\": true or false, \"replace\": [{\"regex\": a string, \"with\": a string}]}",
        _ => return crate::plain_error(error.inner()),
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

/// The fields each message may have, to spot a misspelled one.
const KNOWN_FIELDS: &[&str] = &[
    "type",
    "datasources",
    "query",
    "from",
    "size",
    "color",
    "request-id",
    "t",
    "live",
    "channels",
    "resume",
    "since",
    "values",
    "fields",
    "exclude",
    "mode",
    "links",
];

/// `message` about a missing field, with "did you send `sise` for `size`?"
/// when an unknown field of the frame is one or two letters away from it.
fn with_spelling_hint(body: &Value, message: String) -> String {
    let Some(missing) = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next())
    else {
        return message;
    };
    let Value::Object(object) = body else {
        return message;
    };
    let near_miss = object
        .keys()
        .filter(|key| !KNOWN_FIELDS.contains(&key.as_str()))
        .find(|key| edit_distance(key, missing) <= 2);
    match near_miss {
        Some(key) => format!("{message} (did you mean `{missing}` instead of `{key}`?)"),
        None => message,
    }
}

/// Levenshtein distance, for short field names only.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
}
