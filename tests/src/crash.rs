//! What the gallery crash test's child enrolls, shared with the parent
//! that checks it: two collections and, per subject number, a face and two
//! fingerprints whose vectors follow from the number alone.

use biomatch_engine::gallery::{CollectionSpec, Enrollment, Modality, Position, TemplateInput};
use biomatch_engine::vector::{Dtype, Metric};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

/// Face dimension.
pub const FACE_DIM: usize = 32;
/// Fingerprint dimension.
pub const FINGER_DIM: usize = 16;

/// The two collections.
pub fn collections() -> [CollectionSpec; 2] {
    [
        CollectionSpec {
            name: "face".into(),
            modality: Modality::Face,
            model_id: "crash-face".into(),
            model_version: "1".into(),
            dim: FACE_DIM,
            metric: Metric::Cosine,
            dtype: Dtype::I8,
        },
        CollectionSpec {
            name: "finger".into(),
            modality: Modality::Finger,
            model_id: "crash-finger".into(),
            model_version: "1".into(),
            dim: FINGER_DIM,
            metric: Metric::Cosine,
            dtype: Dtype::F32,
        },
    ]
}

/// A seeded Gaussian vector.
pub fn vector(seed: u64, dim: usize) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..dim).map(|_| StandardNormal.sample(&mut rng)).collect()
}

/// Subject `n`: a 12-digit id, a face and two fingers.
pub fn person(n: u64) -> Enrollment {
    Enrollment {
        subject: format!("{n:012}"),
        templates: vec![
            TemplateInput {
                collection: "face".into(),
                position: Position::Face,
                quality: Some(0.8),
                vector: vector(3 * n, FACE_DIM),
                record: None,
            },
            TemplateInput {
                collection: "finger".into(),
                position: Position::RightThumb,
                quality: None,
                vector: vector(3 * n + 1, FINGER_DIM),
                record: None,
            },
            TemplateInput {
                collection: "finger".into(),
                position: Position::RightIndex,
                quality: None,
                vector: vector(3 * n + 2, FINGER_DIM),
                record: None,
            },
        ],
    }
}
