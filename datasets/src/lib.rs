//! # biomatch-datasets
//!
//! Data for tests, benchmarks and evaluation: seeded synthetic vector sets
//! ([`synth`]) and on-disk benchmark fixtures built from them. Dataset
//! loaders (LFW, FVC) and evaluation metrics join as the face and finger
//! pipelines arrive.

#![deny(missing_docs)]

pub mod synth;
