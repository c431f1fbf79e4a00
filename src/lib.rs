//! tributary: one query, fanned out over a websocket to many datasources at
//! once, each source's results streamed back as they arrive.
//!
//! - [`protocol`]: the wire types (Marija's Socket API and its extensions);
//! - [`session`]: the per-connection actor;
//! - [`federation`]: fan-out to datasources and merging of their answers;
//! - [`datasources`]: the [`datasources::Datasource`] trait, the adapter registry and the adapters;
//! - [`config`]: settings from file, environment and flags;
//! - [`auth`]: API tokens and allowed origins, checked before the upgrade;
//! - [`metrics`]: the Prometheus metrics at `/metrics`;
//! - [`tcp`]: each TCP connection's slot, held until its socket is really closed;
//! - [`frame_guard`]: inbound frame sizes checked at the frame header;
//! - [`http`]: routes and the server's lifecycle.

pub mod auth;
pub mod config;
pub mod datagen;
pub mod datasources;
pub mod federation;
pub mod frame_guard;
pub mod http;
pub mod metrics;
pub mod protocol;
pub mod session;
pub mod tcp;

#[doc = include_str!("../docs/plugins.md")]
#[cfg(doctest)]
pub struct PluginGuide;
