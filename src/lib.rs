//! tributary: one query, fanned out over a websocket to many datasources at
//! once, each source's results streamed back as they arrive.
//!
//! `docs/architecture.md` is the map. In short:
//!
//! - [`protocol`]: the wire types (the `tributary-protocol` crate);
//! - [`datasources`]: the adapter API (the `tributary-datasource` crate), the
//!   registry and the built-in adapters;
//! - [`connection`]: the transport loop of one websocket;
//! - [`session`]: one connection's protocol state, driven by commands;
//! - [`outbox`]: one connection's outgoing frames, bounded in bytes;
//! - [`request`]: requests validated once, right after decoding;
//! - [`federation`]: fan-out to datasources; [`live`]: channels (datasource
//!   health) and live queries; [`publish`]: records published over HTTP;
//! - [`app`]: the composition root; [`config`]: settings; [`auth`]: tokens and origins;
//! - [`http`]: routes and the server's lifecycle; [`metrics`]: `/metrics`;
//! - [`tcp`], [`frame_guard`]: each TCP connection's slot, and inbound frame sizes.

pub mod app;
pub mod auth;
pub mod config;
pub mod connection;
pub mod cores;
pub mod datasources;
pub mod dialect;
pub mod disconnect;
pub mod expand;
pub mod federation;
pub mod frame_guard;
pub mod http;
pub mod live;
pub mod metrics;
pub mod outbox;
pub mod publish;
pub mod rate;
pub mod request;
pub mod running;
pub mod services;
pub mod session;
pub mod tcp;
#[cfg(test)]
mod testing;
pub mod ui;

pub use tributary_protocol as protocol;
pub use tributary_query as query;

#[doc = include_str!("../docs/plugins.md")]
#[cfg(doctest)]
pub struct PluginGuide;
