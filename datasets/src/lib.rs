//! # biomatch-datasets
//!
//! Data for tests, benchmarks and evaluation: seeded synthetic vector sets
//! ([`synth`]) and on-disk benchmark fixtures built from them, synthetic
//! galleries with planted duplicates ([`synth_gallery`]), the LFW
//! pairs and 1:N protocols ([`lfw`]), FVC fingerprint sets with their protocol and a
//! distractor generator ([`fvc`]), verification metrics ([`metrics`]: k-fold
//! accuracy, TAR at FAR), error rates ([`errors`]: FVC EER, FNMR at FMR,
//! DET curves, histograms, threshold calibration) and open-set
//! identification rates ([`identification`]: CMC, rank-1, FNIR at FPIR).

#![deny(missing_docs)]

pub mod errors;
pub mod fvc;
pub mod identification;
pub mod lfw;
pub mod metrics;
pub mod synth;
pub mod synth_gallery;
