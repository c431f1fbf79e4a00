//! The integration tests, in one binary: each module a suite, all of them
//! against real servers on ephemeral loopback ports (`common` starts them).
//! Run one suite with `cargo test --test it -- <module>::`.

mod common;

mod access;
mod bad_input;
mod channels;
mod cli;
mod cluster;
mod compose;
mod connections;
mod durability;
mod elasticsearch;
mod elasticsearch_real;
mod elstat;
mod expand;
mod idle_memory;
mod live;
mod lucene_reference;
mod plugins;
mod postgres;
mod query_cost;
mod random_frames;
mod random_queries;
mod remote;
mod security;
mod services;
mod slow_clients;
mod socket_api;
mod ui;
mod ui_model;
mod workbench;
mod zombies;
