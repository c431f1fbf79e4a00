//! What the server sends: one typed [`ServerMessage`], encoded once into a
//! [`Frame`]. A frame is shared bytes: cloning it for another connection
//! copies nothing.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::Value;
use tributary_datasource::{ErrorKind, Expansion, Field, Item, Position};

use crate::request_id::RequestId;

/// What every answer to one request repeats: its query, color and request id.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Echo {
    pub query: Option<String>,
    pub color: Option<String>,
    pub request_id: Option<RequestId>,
}

/// The machine-readable family of an `ERROR` message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// The frame is not valid JSON.
    InvalidJson,
    /// `type` names no known message.
    UnknownType,
    /// A field is missing or of the wrong type, or a value is out of range.
    InvalidRequest,
    /// The request names a datasource the server does not have (or the token may not use).
    UnknownDatasource,
    /// The query is malformed or over the server's limits, or the datasource rejected it.
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
    /// `SUBSCRIBE` named a channel the server does not have.
    UnknownChannel,
    /// The caller's token may not use the channel's datasource.
    Forbidden,
    /// `SUBSCRIBE` to a channel the connection already receives.
    AlreadySubscribed,
    /// `UNSUBSCRIBE` from a channel the connection does not receive.
    NotSubscribed,
    /// A live query named a datasource that cannot follow new records.
    LiveUnsupported,
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
            ErrorCode::UnknownChannel => "unknown_channel",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::AlreadySubscribed => "already_subscribed",
            ErrorCode::NotSubscribed => "not_subscribed",
            ErrorCode::LiveUnsupported => "live_unsupported",
        }
    }
}

impl From<ErrorKind> for ErrorCode {
    fn from(kind: ErrorKind) -> ErrorCode {
        match kind {
            ErrorKind::BadQuery => ErrorCode::BadQuery,
            ErrorKind::Unavailable | ErrorKind::Canceled => ErrorCode::DatasourceFailed,
            ErrorKind::Unauthorized => ErrorCode::DatasourceUnauthorized,
            ErrorKind::Timeout => ErrorCode::Timeout,
        }
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// The body of an `ERROR` message.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorReport {
    pub echo: Echo,
    pub message: String,
    pub code: ErrorCode,
    /// The datasource the error is about, if it is about one.
    pub datasource: Option<String>,
}

impl ErrorReport {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ErrorReport {
            echo: Echo::default(),
            message: message.into(),
            code,
            datasource: None,
        }
    }

    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = message.into();
        self
    }

    /// The same report, about the request `echo` describes.
    pub fn echoing(mut self, echo: Echo) -> Self {
        self.echo = echo;
        self
    }

    /// The same report, about the datasource `id`.
    pub fn about(mut self, id: &str) -> Self {
        self.datasource = Some(id.to_owned());
        self
    }
}

impl Serialize for ErrorReport {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Body<'a> {
            query: &'a Option<String>,
            color: &'a Option<String>,
            message: &'a str,
            code: ErrorCode,
            #[serde(skip_serializing_if = "Option::is_none")]
            datasource: &'a Option<String>,
        }
        Body {
            query: &self.echo.query,
            color: &self.echo.color,
            message: &self.message,
            code: self.code,
            datasource: &self.datasource,
        }
        .serialize(serializer)
    }
}

/// A datasource as listed in `INITIAL_STATE_RECEIVE`.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct DatasourceInfo {
    pub id: String,
    pub name: String,
    /// The adapter behind it (`fixtures`, `elasticsearch`, ...).
    #[serde(rename = "type")]
    pub kind: String,
}

/// A link between fields of different datasources that hold the same kind
/// of value (`[links.<name>]`), as listed in `INITIAL_STATE_RECEIVE`: a
/// client shows their values as one node, and `EXPAND_REQUEST` follows them.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct LinkInfo {
    pub name: String,
    pub fields: Vec<LinkedField>,
    /// Values are compared lowercased.
    #[serde(default)]
    pub lowercase: bool,
    /// Then rewritten by these regular expressions, in order (stripping an
    /// e-mail's domain, a leading `@`…): values that end alike are one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replace: Vec<LinkRewrite>,
}

/// One rewrite of a link's values: every match of `regex` (Rust's `regex`
/// syntax, which JavaScript reads alike for the usual patterns) replaced
/// with `with` (`$1` names a group).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkRewrite {
    pub regex: String,
    #[serde(default)]
    pub with: String,
}

/// One field of a [`LinkInfo`].
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct LinkedField {
    pub datasource: String,
    pub field: String,
}

/// How one datasource's part of a request ended, as listed in `REQUEST_COMPLETED`.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct DatasourceOutcome {
    pub took_ms: u64,
    pub total: Option<u64>,
    pub error: Option<String>,
}

/// How one datasource of a live query learns of new records, as listed in
/// `LIVE_STARTED`: `{"mode":"push"}` or `{"mode":"poll","interval_ms":5000}`.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct LiveModeInfo {
    pub mode: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_ms: Option<u64>,
    /// Where the datasource's stream of publications stands (its last
    /// publication the query has seen), when it is one: resume from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<String>,
    /// Only for a datasource the request asked to `resume`: whether every
    /// record missed since that position was (or is being) sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovered: Option<bool>,
}

/// Encodes results once as a JSON array, to be shared by every
/// [`ServerMessage::Appended`] that carries them.
pub fn encode_results(results: &[Item]) -> Box<RawValue> {
    // Items are already-encoded JSON with string keys: this cannot fail.
    serde_json::value::to_raw_value(results).unwrap_or_default()
}

/// One encoded server message: the text of a websocket frame, in shared
/// bytes. Encoded once, it can go to any number of connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame(pub(crate) Bytes);

impl Frame {
    /// The frame's JSON text.
    pub fn as_str(&self) -> &str {
        // Frames are only built in this crate, always from serialised JSON.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// The encoded bytes (UTF-8 JSON), shared.
    pub fn bytes(&self) -> &Bytes {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Every message the server sends on `/ws`.
#[derive(Debug, Clone, Copy)]
pub enum ServerMessage<'a> {
    InitialState {
        datasources: &'a [DatasourceInfo],
        /// Sent only when there are any: a seed client sees the seed's shape.
        links: &'a [LinkInfo],
    },
    /// The datasources changed while connected (a remote datasource
    /// joined): the whole list again, in `INITIAL_STATE_RECEIVE`'s shape.
    DatasourcesChanged {
        datasources: &'a [DatasourceInfo],
    },
    Fields {
        echo: &'a Echo,
        server: &'a str,
        index: &'a str,
        fields: &'a [Field],
    },
    /// What one datasource found next to the selected values of an
    /// `EXPAND_REQUEST`.
    Expanded {
        echo: &'a Echo,
        server: &'a str,
        expansion: &'a Expansion,
    },
    /// One batch of one datasource's results.
    Items {
        echo: &'a Echo,
        server: &'a str,
        total: u64,
        /// Offset of the first result of this batch in the whole result list.
        from: u64,
        results: &'a [Item],
    },
    /// New records of a live query: `ITEMS_RECEIVE` with `"append": true`
    /// and the request's sequence number. `results` is the JSON array of
    /// items, encoded once for every subscriber ([`encode_results`]).
    Appended {
        echo: &'a Echo,
        server: &'a str,
        total: u64,
        from: u64,
        seq: u64,
        results: &'a RawValue,
        /// The last publication of the datasource's stream this append
        /// completes, when it is one (the last append of a round).
        position: Option<&'a Position>,
    },
    /// A live query follows its datasources: how each learns of new records.
    LiveStarted {
        request_id: &'a RequestId,
        datasources: &'a BTreeMap<String, LiveModeInfo>,
    },
    Error(&'a ErrorReport),
    RequestCompleted {
        request_id: &'a RequestId,
        outcomes: &'a BTreeMap<String, DatasourceOutcome>,
    },
    RequestCanceled {
        request_id: &'a RequestId,
    },
    Pong {
        t: &'a Option<Value>,
        server_t: u64,
        /// The server's state, Felix's heartbeat ACK: `uptime_ms`,
        /// `connections`, `memory_bytes`, per-datasource `status`.
        stats: &'a Value,
    },
    ShutdownNotice {
        drain_ms: u64,
    },
    /// The channels a `SUBSCRIBE` added.
    Subscribed {
        channels: &'a [String],
        /// For a `SUBSCRIBE` with `since`: per channel, whether every value
        /// missed since then follows.
        recovered: Option<&'a BTreeMap<String, bool>>,
    },
    /// The channels an `UNSUBSCRIBE` removed.
    Unsubscribed {
        channels: &'a [String],
    },
    /// A channel's value: `{"c": channel, "d": [unix ms, value]}` (Elstat's DATA).
    Data {
        channel: &'a str,
        at_ms: u64,
        value: &'a Value,
        /// The value's place in the channel's stream.
        position: Option<&'a Position>,
    },
}

impl ServerMessage<'_> {
    /// The `type` on the wire.
    pub fn type_name(&self) -> &'static str {
        match self {
            ServerMessage::InitialState { .. } => "INITIAL_STATE_RECEIVE",
            ServerMessage::DatasourcesChanged { .. } => "DATASOURCES_CHANGED",
            ServerMessage::Fields { .. } => "FIELDS_RECEIVE",
            ServerMessage::Expanded { .. } => "EXPAND_RECEIVE",
            ServerMessage::Items { .. } | ServerMessage::Appended { .. } => "ITEMS_RECEIVE",
            ServerMessage::LiveStarted { .. } => "LIVE_STARTED",
            ServerMessage::Error(_) => "ERROR",
            ServerMessage::RequestCompleted { .. } => "REQUEST_COMPLETED",
            ServerMessage::RequestCanceled { .. } => "REQUEST_CANCELED",
            ServerMessage::Pong { .. } => "PONG",
            ServerMessage::ShutdownNotice { .. } => "SHUTDOWN_NOTICE",
            ServerMessage::Subscribed { .. } => "SUBSCRIBED",
            ServerMessage::Unsubscribed { .. } => "UNSUBSCRIBED",
            ServerMessage::Data { .. } => "DATA",
        }
    }

    /// Encodes the message, once: `{"type": …, <its body>, "request-id": …}`.
    pub fn encode(&self) -> Frame {
        let kind = self.type_name();
        let text = match *self {
            ServerMessage::Items {
                echo,
                server,
                total,
                from,
                results,
            } => items_receive(kind, echo, server, total, from, results, None),
            ServerMessage::Appended {
                echo,
                server,
                total,
                from,
                seq,
                results,
                position,
            } => {
                let mark = AppendMark { seq, position };
                items_receive(kind, echo, server, total, from, results, Some(mark))
            }
            _ => tagged(kind, &self.body(), self.request_id()),
        };
        Frame(Bytes::from(text))
    }

    /// The `request-id` the message carries, if any.
    fn request_id(&self) -> Option<&RequestId> {
        match *self {
            ServerMessage::Fields { echo, .. }
            | ServerMessage::Expanded { echo, .. }
            | ServerMessage::Items { echo, .. }
            | ServerMessage::Appended { echo, .. } => echo.request_id.as_ref(),
            ServerMessage::Error(report) => report.echo.request_id.as_ref(),
            ServerMessage::LiveStarted { request_id, .. }
            | ServerMessage::RequestCompleted { request_id, .. }
            | ServerMessage::RequestCanceled { request_id } => Some(request_id),
            _ => None,
        }
    }

    /// What follows `type` (every message but `ITEMS_RECEIVE`).
    fn body(&self) -> Body<'_> {
        match *self {
            // Both carry the whole list in the greeting's shape; links only
            // in the greeting, and only when there are any.
            ServerMessage::InitialState { datasources, links } => Body::State {
                state: State { datasources, links },
            },
            ServerMessage::DatasourcesChanged { datasources } => Body::State {
                state: State {
                    datasources,
                    links: &[],
                },
            },
            ServerMessage::Fields {
                server,
                index,
                fields,
                ..
            } => Body::Fields {
                fields: FieldsBody {
                    server,
                    index,
                    fields,
                },
            },
            ServerMessage::Expanded {
                server, expansion, ..
            } => Body::Expanded { server, expansion },
            ServerMessage::LiveStarted { datasources, .. } => Body::LiveStarted { datasources },
            ServerMessage::Error(error) => Body::Error { error },
            ServerMessage::RequestCompleted { outcomes, .. } => Body::Completed {
                datasources: outcomes,
            },
            ServerMessage::RequestCanceled { .. } => Body::Empty {},
            ServerMessage::Pong { t, server_t, stats } => Body::Pong { t, server_t, stats },
            ServerMessage::ShutdownNotice { drain_ms } => Body::Shutdown { drain_ms },
            ServerMessage::Subscribed {
                channels,
                recovered,
            } => Body::Channels {
                channels,
                recovered,
            },
            ServerMessage::Unsubscribed { channels } => Body::Channels {
                channels,
                recovered: None,
            },
            ServerMessage::Data {
                channel,
                at_ms,
                value,
                position,
            } => Body::Data {
                c: channel,
                d: (at_ms, value),
                offset: position.map(|p| p.offset),
                epoch: position.map(|p| p.epoch.as_str()),
            },
            // Encoded by `items_receive`.
            ServerMessage::Items { .. } | ServerMessage::Appended { .. } => Body::Empty {},
        }
    }
}

/// The body of each message after its `type`, in wire order (a variant's
/// fields are the message's, serialised as they are declared).
#[derive(Serialize)]
#[serde(untagged)]
enum Body<'a> {
    State {
        state: State<'a>,
    },
    Fields {
        fields: FieldsBody<'a>,
    },
    Expanded {
        server: &'a str,
        #[serde(flatten)]
        expansion: &'a Expansion,
    },
    LiveStarted {
        datasources: &'a BTreeMap<String, LiveModeInfo>,
    },
    Error {
        error: &'a ErrorReport,
    },
    Completed {
        datasources: &'a BTreeMap<String, DatasourceOutcome>,
    },
    Pong {
        t: &'a Option<Value>,
        server_t: u64,
        stats: &'a Value,
    },
    Shutdown {
        drain_ms: u64,
    },
    Channels {
        channels: &'a [String],
        #[serde(skip_serializing_if = "Option::is_none")]
        recovered: Option<&'a BTreeMap<String, bool>>,
    },
    Data {
        c: &'a str,
        d: (u64, &'a Value),
        #[serde(skip_serializing_if = "Option::is_none")]
        offset: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        epoch: Option<&'a str>,
    },
    Empty {},
}

/// `INITIAL_STATE_RECEIVE`'s and `DATASOURCES_CHANGED`'s `state`.
#[derive(Serialize)]
struct State<'a> {
    datasources: &'a [DatasourceInfo],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    links: &'a [LinkInfo],
}

/// `FIELDS_RECEIVE`'s `fields`.
#[derive(Serialize)]
struct FieldsBody<'a> {
    server: &'a str,
    index: &'a str,
    fields: &'a [Field],
}

/// An `ITEMS_RECEIVE`: a page's batch, or (with `seq`) a live request's
/// append, its results already encoded or not.
/// What marks an `ITEMS_RECEIVE` as a live request's append.
struct AppendMark<'a> {
    seq: u64,
    position: Option<&'a Position>,
}

fn items_receive<R: Serialize + ?Sized>(
    kind: &'static str,
    echo: &Echo,
    server: &str,
    total: u64,
    from: u64,
    results: &R,
    append: Option<AppendMark<'_>>,
) -> String {
    #[derive(Serialize)]
    struct Inner<'a, R: Serialize + ?Sized> {
        server: &'a str,
        query: &'a str,
        color: &'a Option<String>,
        total: u64,
        from: u64,
        results: &'a R,
        #[serde(skip_serializing_if = "Option::is_none")]
        append: Option<bool>,
        #[serde(skip_serializing_if = "Option::is_none")]
        seq: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        offset: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        epoch: Option<&'a str>,
    }
    #[derive(Serialize)]
    struct Body<'a, R: Serialize + ?Sized> {
        items: Inner<'a, R>,
    }
    let position = append.as_ref().and_then(|a| a.position);
    let body = Body {
        items: Inner {
            server,
            query: echo.query.as_deref().unwrap_or_default(),
            color: &echo.color,
            total,
            from,
            results,
            append: append.as_ref().map(|_| true),
            seq: append.as_ref().map(|a| a.seq),
            offset: position.map(|p| p.offset),
            epoch: position.map(|p| p.epoch.as_str()),
        },
    };
    tagged(kind, &body, echo.request_id.as_ref())
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

fn tagged<T: Serialize>(kind: &'static str, body: &T, request_id: Option<&RequestId>) -> String {
    let tagged = Tagged {
        kind,
        body,
        request_id,
    };
    // Every body is plain data with string keys: serialisation cannot fail.
    serde_json::to_string(&tagged).unwrap_or_default()
}
