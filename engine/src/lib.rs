//! # biomatch-engine
//!
//! The matching core of biomatch, as a pure library (no async runtime, no
//! HTTP): SIMD similarity kernels ([`vector`]), crash-safe on-disk formats
//! ([`storage`]), vector indexes ([`index`]), the durable gallery
//! ([`gallery`]), the ONNX model runtime ([`embed`]), image decoding and
//! geometry ([`imaging`]), the face pipeline ([`face`]) and fingerprint
//! minutiae records and matching ([`finger`]), and N:N de-duplication
//! ([`dedup`]).
//!
//! Everything here is synchronous; CPU-parallel work uses the caller's
//! rayon pool (`pool.install(|| ...)`), so a server decides how many threads
//! search gets.

#![deny(missing_docs)]

pub mod dedup;
pub mod embed;
pub mod error;
pub mod face;
pub mod finger;
pub mod gallery;
pub mod imaging;
pub mod index;
mod rng;
pub mod storage;
pub mod vector;

pub use error::{Error, Result};
