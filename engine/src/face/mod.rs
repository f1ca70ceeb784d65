//! The face pipeline: decode → detect → pick a face → align → quality →
//! embed (→ liveness).
//!
//! [`FacePipeline::process`] does it all for one image and times each
//! stage; [`FacePipeline::analyze`] stops before the embedding so callers
//! with many images (evaluation, enrollment batches) can embed aligned
//! crops in batches with [`Embedder::embed`].

pub mod align;
pub mod detect;
pub mod liveness;
pub mod quality;

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::embed::{Model, ModelManifest, RunOptions, Task, l2_normalize, preprocess};
use crate::error::{Error, Result};
use crate::imaging::{DecodeLimits, RgbImage, decode_rgb};

pub use align::{ALIGNED_SIZE, ARCFACE_112, align_arcface, similarity_transform};
pub use detect::{Detection, Detector, DetectorConfig};
pub use liveness::Liveness;
pub use quality::{Quality, QualityThresholds};

/// Which face to use when an image holds several.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FacePolicy {
    /// The largest box (a portrait's subject; a selfie's holder).
    #[default]
    Largest,
    /// The box whose centre is nearest the image centre.
    MostCentral,
    /// The highest detector score.
    BestScore,
}

impl FacePolicy {
    /// Index of the chosen face.
    pub fn pick(self, faces: &[Detection], (w, h): (u32, u32)) -> Option<usize> {
        let key = |f: &Detection| -> f32 {
            match self {
                FacePolicy::Largest => f.area(),
                FacePolicy::BestScore => f.score,
                FacePolicy::MostCentral => {
                    let cx = (f.bbox[0] + f.bbox[2]) / 2.0 - w as f32 / 2.0;
                    let cy = (f.bbox[1] + f.bbox[3]) / 2.0 - h as f32 / 2.0;
                    -(cx * cx + cy * cy)
                }
            }
        };
        (0..faces.len()).max_by(|&a, &b| key(&faces[a]).total_cmp(&key(&faces[b])))
    }
}

/// A face embedder: aligned 112×112 crops → L2-normalised embeddings.
#[derive(Debug)]
pub struct Embedder {
    model: Model,
    manifest: ModelManifest,
}

impl Embedder {
    /// Loads a `face-embed` (or `finger-embed`) model.
    pub fn load(manifest: &ModelManifest, options: &RunOptions) -> Result<Self> {
        if !matches!(manifest.task, Task::FaceEmbed | Task::FingerEmbed) {
            return Err(Error::model(
                &manifest.id,
                format!("is a {} model, not an embedder", manifest.task.as_str()),
            ));
        }
        Ok(Embedder {
            model: Model::load(manifest, options)?,
            manifest: manifest.clone(),
        })
    }

    /// The embedder's manifest.
    pub fn manifest(&self) -> &ModelManifest {
        &self.manifest
    }

    /// The underlying model (batching statistics).
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Embedding dimension.
    pub fn dim(&self) -> usize {
        self.manifest.output.size
    }

    /// Embeds aligned crops. Models with a dynamic batch axis get one
    /// request (merged further with concurrent callers); fixed-batch models
    /// get one request per crop, spread over the session pool.
    pub fn embed(&self, crops: &[&RgbImage]) -> Result<Vec<Vec<f32>>> {
        if crops.is_empty() {
            return Ok(Vec::new());
        }
        let want = (
            self.manifest.input.shape[3] as u32,
            self.manifest.input.shape[2] as u32,
        );
        if let Some(c) = crops.iter().find(|c| c.dimensions() != want) {
            return Err(Error::invalid(
                "crop",
                format!(
                    "{} takes {}×{} crops, got {:?}",
                    self.manifest.id,
                    want.0,
                    want.1,
                    c.dimensions()
                ),
            ));
        }
        let mut rows = Vec::with_capacity(crops.len());
        if self.model.batch_dynamic() {
            let input = preprocess::tensor_from_rgb(crops, &self.manifest.input)?;
            let output = self.model.run(input)?.swap_remove(0);
            rows.extend(
                output
                    .outer_iter()
                    .map(|r| r.iter().copied().collect::<Vec<f32>>()),
            );
        } else {
            use rayon::prelude::*;
            let each: Vec<Result<Vec<f32>>> = crops
                .par_iter()
                .map(|crop| {
                    let input = preprocess::tensor_from_rgb(&[crop], &self.manifest.input)?;
                    Ok(self
                        .model
                        .run(input)?
                        .swap_remove(0)
                        .iter()
                        .copied()
                        .collect())
                })
                .collect();
            for row in each {
                rows.push(row?);
            }
        }
        for row in &mut rows {
            if row.len() != self.dim() {
                return Err(Error::model(
                    &self.manifest.id,
                    format!(
                        "output has {} values, manifest says {}",
                        row.len(),
                        self.dim()
                    ),
                ));
            }
            l2_normalize(row)?;
        }
        Ok(rows)
    }
}

/// Pipeline settings.
#[derive(Debug, Clone, PartialEq)]
pub struct FaceConfig {
    /// Detector settings.
    pub detector: DetectorConfig,
    /// Which face to take from a multi-face image.
    pub policy: FacePolicy,
    /// Quality gates (applied by [`FacePipeline::process`] when `enforce_quality`).
    pub quality: QualityThresholds,
    /// Reject samples that fail a quality gate.
    pub enforce_quality: bool,
    /// Decoder limits.
    pub limits: DecodeLimits,
}

impl Default for FaceConfig {
    /// Largest face, default detector settings and quality gates, enforced.
    fn default() -> Self {
        FaceConfig {
            detector: DetectorConfig::default(),
            policy: FacePolicy::default(),
            quality: QualityThresholds::default(),
            enforce_quality: true,
            limits: DecodeLimits::default(),
        }
    }
}

/// Time spent in each stage of one image.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct StageTimes {
    /// Decoding the bytes.
    pub decode: Duration,
    /// Running and decoding the detector.
    pub detect: Duration,
    /// Warping to the template and measuring quality.
    pub align: Duration,
    /// Running the embedder.
    pub embed: Duration,
    /// Running the liveness ensemble (zero when not asked).
    pub liveness: Duration,
}

/// A detected, aligned face before embedding.
#[derive(Debug, Clone)]
pub struct AlignedFace {
    /// The chosen face.
    pub face: Detection,
    /// How many faces the detector reported.
    pub faces_found: usize,
    /// The 112×112 crop.
    pub crop: RgbImage,
    /// Quality measures.
    pub quality: Quality,
}

/// The result of [`FacePipeline::process`].
#[derive(Debug, Clone)]
pub struct FaceTemplate {
    /// L2-normalised embedding.
    pub embedding: Vec<f32>,
    /// Detection, crop and quality.
    pub aligned: AlignedFace,
    /// Probability of a live face, when liveness was asked for.
    pub liveness: Option<f32>,
    /// Stage timings.
    pub times: StageTimes,
}

/// Detector + embedder (+ optional liveness) with their settings.
#[derive(Debug)]
pub struct FacePipeline {
    detector: Detector,
    embedder: Embedder,
    liveness: Option<Liveness>,
    config: FaceConfig,
}

impl FacePipeline {
    /// Assembles a pipeline from loaded parts.
    pub fn new(
        detector: Detector,
        embedder: Embedder,
        liveness: Option<Liveness>,
        config: FaceConfig,
    ) -> Self {
        FacePipeline {
            detector,
            embedder,
            liveness,
            config,
        }
    }

    /// The detector.
    pub fn detector(&self) -> &Detector {
        &self.detector
    }

    /// The embedder.
    pub fn embedder(&self) -> &Embedder {
        &self.embedder
    }

    /// Whether a liveness ensemble is loaded.
    pub fn has_liveness(&self) -> bool {
        self.liveness.is_some()
    }

    /// Settings in force.
    pub fn config(&self) -> &FaceConfig {
        &self.config
    }

    /// Detects, picks and aligns the face of a decoded image.
    pub fn analyze(&self, image: &RgbImage, times: &mut StageTimes) -> Result<AlignedFace> {
        let t = Instant::now();
        let faces = self.detector.detect(image)?;
        times.detect += t.elapsed();
        let t = Instant::now();
        let chosen = self
            .config
            .policy
            .pick(&faces, image.dimensions())
            .ok_or_else(|| Error::NoFace {
                detector: self.detector.manifest().id.clone(),
                threshold: self.detector.config().score_threshold,
            })?;
        let face = faces[chosen].clone();
        let crop = align_arcface(image, &face.landmarks)?;
        let quality = quality::measure(&face, &crop);
        times.align += t.elapsed();
        Ok(AlignedFace {
            face,
            faces_found: faces.len(),
            crop,
            quality,
        })
    }

    /// Runs the whole pipeline on image bytes.
    pub fn process(&self, bytes: &[u8], with_liveness: bool) -> Result<FaceTemplate> {
        let mut times = StageTimes::default();
        let t = Instant::now();
        let image = decode_rgb(bytes, &self.config.limits)?;
        times.decode = t.elapsed();
        self.process_image(&image, with_liveness, times)
    }

    /// Runs the pipeline on a decoded image (`times` carries the decode time).
    pub fn process_image(
        &self,
        image: &RgbImage,
        with_liveness: bool,
        mut times: StageTimes,
    ) -> Result<FaceTemplate> {
        let aligned = self.analyze(image, &mut times)?;
        if self.config.enforce_quality {
            self.config.quality.check(&aligned.quality)?;
        }
        let t = Instant::now();
        let embedding = self.embedder.embed(&[&aligned.crop])?.swap_remove(0);
        times.embed = t.elapsed();
        let liveness = match (&self.liveness, with_liveness) {
            (Some(l), true) => {
                let t = Instant::now();
                let score = l.score(image, &aligned.face)?;
                times.liveness = t.elapsed();
                Some(score)
            }
            (None, true) => return Err(Error::invalid("liveness", "no liveness model is loaded")),
            _ => None,
        };
        Ok(FaceTemplate {
            embedding,
            aligned,
            liveness,
            times,
        })
    }
}

#[cfg(test)]
mod tests;
