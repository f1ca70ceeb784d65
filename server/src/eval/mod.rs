//! `biomatch eval`: accuracy on public datasets through the real pipelines,
//! one report format for all of them ([`report`]).
//!
//! * [`lfw`]: faces, the LFW View-2 pairs protocol.
//! * [`lfw1n`]: faces, open-set identification on LFW.
//! * [`fvc`]: fingerprints, the FVC protocol on minutiae records.
//! * [`synthetic`]: seeded synthetic face vectors through a flat index.
//!
//! Each prints a table (or `--json`); `--report DIR` also writes
//! `report.json` and charts ([`plot`]); `--calibrate` writes decision
//! thresholds into the model manifest.

pub mod fvc;
pub mod lfw;
pub mod lfw1n;
pub mod plot;
pub mod report;
pub mod synthetic;
