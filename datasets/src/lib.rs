//! # biomatch-datasets
//!
//! Data for tests, benchmarks and evaluation: seeded synthetic vector sets
//! ([`synth`]) and on-disk benchmark fixtures built from them, synthetic
//! galleries with planted duplicates ([`synth_gallery`]), the LFW
//! protocol ([`lfw`]), FVC fingerprint sets with their protocol and a
//! distractor generator ([`fvc`]), verification metrics ([`metrics`]) and
//! error rates (FVC EER, FNMR at FMR: [`errors`]).

#![deny(missing_docs)]

pub mod errors;
pub mod fvc;
pub mod lfw;
pub mod metrics;
pub mod synth;
pub mod synth_gallery;
