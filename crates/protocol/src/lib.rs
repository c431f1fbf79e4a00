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
