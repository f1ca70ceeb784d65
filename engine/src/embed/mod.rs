//! Embedding runtime: model manifests, ONNX Runtime sessions with dynamic
//! batching, and pixel-to-tensor preprocessing.
//!
//! The runtime knows nothing about faces or fingers: a model is a manifest
//! (task, input shape, colour order, normalisation) and a file. The face
//! pipeline ([`crate::face`]) and any `finger-embed` model run through the
//! same [`Model`].

pub mod manifest;
pub mod preprocess;
pub mod runtime;

pub use manifest::{Calibration, ColourOrder, ModelManifest, Task};
pub use runtime::{Model, RunOptions};

/// Scales `v` to unit L2 norm in place; fails on zero or non-finite vectors.
pub fn l2_normalize(v: &mut [f32]) -> crate::Result<()> {
    if let Some((index, &value)) = v.iter().enumerate().find(|(_, x)| !x.is_finite()) {
        return Err(crate::Error::NonFinite { index, value });
    }
    let norm = v
        .iter()
        .map(|&x| f64::from(x) * f64::from(x))
        .sum::<f64>()
        .sqrt();
    if norm == 0.0 {
        return Err(crate::Error::ZeroVector {
            metric: "embedding",
        });
    }
    for x in v.iter_mut() {
        *x = (f64::from(*x) / norm) as f32;
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests;
