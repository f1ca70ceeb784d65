//! # biomatch-datasets
//!
//! Data for tests, benchmarks and evaluation: seeded synthetic vector sets
//! ([`synth`]) and on-disk benchmark fixtures built from them, the LFW
//! protocol ([`lfw`]) and verification metrics ([`metrics`]).

#![deny(missing_docs)]

pub mod errors;
pub mod fvc;
pub mod lfw;
pub mod metrics;
pub mod synth;
