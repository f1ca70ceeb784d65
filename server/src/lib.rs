//! # biomatch-server
//!
//! The `biomatch` binary's library: configuration ([`config`]), the HTTP
//! server ([`http`]) and its `/v1` API ([`api`]), the command line
//! ([`cli`]), N:N de-duplication and synthetic galleries ([`dedup`](mod@dedup)),
//! the fingerprint tools ([`finger`]), model installation
//! ([`models`]), evaluations ([`eval`]) and benchmarks
//! ([`bench`](mod@bench)).
//! CPU-heavy work runs on rayon pools, never on the async workers.

#![deny(missing_docs)]

pub mod api;
pub mod bench;
pub mod cli;
pub mod config;
pub mod dedup;
pub mod eval;
pub mod finger;
pub mod http;
pub mod models;
