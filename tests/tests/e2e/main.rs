//! End-to-end tests: the real `biomatch` binary over real HTTP and its
//! command line, plus cross-crate measurements (recall of compact indexes).

mod api;
mod bench_cli;
mod corruption;
mod crash;
mod dedup;
mod eval;
mod finger_api;
mod finger_cli;
mod models;
mod recall;
mod server;
