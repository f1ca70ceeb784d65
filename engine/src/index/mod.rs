//! Vector indexes over memory-mapped segments.
//!
//! [`flat`] is the exact (brute-force) index every other search path is
//! measured against. Row ids are caller-assigned `u64`s, strictly
//! increasing, and stable across restarts.

pub mod flat;
pub(crate) mod topk;

pub use crate::vector::{Dtype, Metric};

/// One search result.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Hit {
    /// Row id.
    pub id: u64,
    /// The row's label (its own id unless appended with another).
    pub label: u64,
    /// Similarity (cosine, inner product: higher is better) or squared
    /// distance (L2: lower is better), computed exactly in `f32` from the
    /// stored original vector.
    pub score: f32,
}
