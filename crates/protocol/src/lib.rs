//! tributary's wire types. No I/O happens here.
//!
//! The core messages (`INITIAL_STATE_RECEIVE`, `FIELDS_REQUEST`/`FIELDS_RECEIVE`,
//! `ITEMS_REQUEST`/`ITEMS_RECEIVE`) follow the Marija Socket API exactly. Everything
//! else (`request-id`, `ERROR`, `REQUEST_COMPLETED`, `CANCEL_REQUEST`, `PING`/`PONG`,
//! `SHUTDOWN_NOTICE`) is optional for clients; see `docs/protocol.md`.
//!
//! - [`inbound`]: what clients send, decoded leniently (unknown fields are ignored);
//! - [`outbound`]: what the server sends, one typed [`ServerMessage`] encoded
//!   once into a [`Frame`] that any number of connections can share;
//! - [`events`]: the server's messages decoded again, for clients and tests;
//! - [`elstat`]: Elstat's streaming API (`/api/streaming`), its own framing;
//! - [`services`]: the socket for services (`/ws/services`), in Damon's framing.

pub mod elstat;
pub mod events;
pub mod inbound;
pub mod outbound;
pub mod request_id;
pub mod services;

pub use inbound::{
    decode, CancelRequest, ClientMessage, DecodeError, ExpandRequest, FieldsRequest, ItemsRequest,
    Ping, RequestId, Since, UpdateRequest, DEFAULT_EXPAND_SIZE, DEFAULT_SIZE,
};
pub use outbound::{
    encode_results, DatasourceInfo, DatasourceOutcome, Echo, ErrorCode, ErrorReport, Frame,
    LinkInfo, LinkRewrite, LinkedField, LiveModeInfo, ServerMessage,
};
pub use tributary_datasource::{
    Connection, ExpandMode, Expansion, Field, FieldValue, Item, Position, Vertex,
};

/// Close code for a frame that is not a JSON object (binary, array, scalar).
pub const CLOSE_INVALID_PAYLOAD: u16 = 4200;
/// Close code for a frame over the size limit, a client over the message-rate
/// limit, or a client that does not read its results.
pub const CLOSE_TOO_MUCH: u16 = 4420;

/// A decoding error in the protocol's terms: JSON's names for types (a
/// list, an object, a whole number) instead of the server's own type names,
/// and without the position (the message names the field).
///
/// ```
/// #[derive(serde::Deserialize, Debug)]
/// struct SearchReply { total: u64 }
/// let error = serde_json::from_str::<SearchReply>(r#"{"total": "x"}"#).unwrap_err();
/// let plain = tributary_protocol::plain_error(&error);
/// assert_eq!(plain, "invalid type: string \"x\", expected a whole number of 0 or more");
/// let error = serde_json::from_str::<SearchReply>("true").unwrap_err();
/// assert!(!tributary_protocol::plain_error(&error).contains("SearchReply"));
/// ```
pub fn plain_error(error: &serde_json::Error) -> String {
    let text = error.to_string();
    let text = match text.rfind(" at line ") {
        Some(at) => &text[..at],
        None => &text,
    };
    let mut plain = String::with_capacity(text.len());
    let mut rest = text;
    // `struct Name` and `enum Name` (with what follows the name) are the
    // server's own types: an object, or one of the allowed values.
    while let Some(at) = rest.find("struct ").or_else(|| rest.find("enum ")) {
        let (before, after) = rest.split_at(at);
        plain.push_str(before);
        let is_struct = after.starts_with("struct ");
        let name_start = if is_struct { 7 } else { 5 };
        let name_len = after[name_start..]
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(after.len() - name_start);
        let tail = &after[name_start + name_len..];
        if is_struct {
            plain.push_str("an object");
            // "struct X with 2 elements" says nothing more to a client.
            rest = match tail.strip_prefix(" with ") {
                Some(more) => more.find(" elements").map_or(tail, |end| &more[end + 9..]),
                None => tail,
            };
        } else {
            plain.push_str("one of the allowed values");
            rest = tail;
        }
    }
    plain.push_str(rest);
    const WORDS: [(&str, &str); 15] = [
        ("a sequence", "a list"),
        ("sequence", "list"),
        ("a map", "an object"),
        ("invalid type: map", "invalid type: object"),
        ("a boolean", "true or false"),
        ("u64", "a whole number of 0 or more"),
        ("u32", "a whole number of 0 or more"),
        ("u16", "a whole number of 0 or more"),
        ("u8", "a whole number of 0 or more"),
        ("usize", "a whole number of 0 or more"),
        ("i64", "a whole number"),
        ("i32", "a whole number"),
        ("isize", "a whole number"),
        ("f64", "a number"),
        ("f32", "a number"),
    ];
    for (word, said) in WORDS {
        plain = replace_word(&plain, word, said);
    }
    plain
}

/// `text` with every whole-word `word` replaced by `with`.
fn replace_word(text: &str, word: &str, with: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(word) {
        let before_ok = rest[..at]
            .chars()
            .next_back()
            .is_none_or(|c| !c.is_alphanumeric());
        let end = at + word.len();
        let after_ok = rest[end..]
            .chars()
            .next()
            .is_none_or(|c| !c.is_alphanumeric());
        out.push_str(&rest[..at]);
        out.push_str(if before_ok && after_ok { with } else { word });
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}
