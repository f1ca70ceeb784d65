//! `biomatch eval`: accuracy on public datasets through the real pipelines.
//!
//! * [`lfw`]: faces, the LFW View-2 pairs protocol.
//! * [`fvc`]: fingerprints, the FVC protocol on minutiae records.

pub mod fvc;
pub mod lfw;

pub use lfw::{LfwArgs, LfwReport, print_lfw, run_lfw};
