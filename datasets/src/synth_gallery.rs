//! Seeded synthetic galleries with planted duplicates, for N:N
//! de-duplication (`biomatch datasets synth`, `biomatch dedup`).
//!
//! # How the vectors resemble face embeddings
//!
//! Isotropic random unit vectors in 512 dimensions have impostor cosines
//! with a standard deviation of 1/√512 ≈ 0.044, much narrower than real
//! face embeddings (about 0.07–0.10 for MobileFaceNet-class models on LFW:
//! a trained embedding uses its dimensions unevenly). So:
//!
//! * an identity is `c = A z / ‖A z‖`, `z` standard Gaussian, `A` diagonal
//!   with `A_kk² = 1 / (1 + k / k₀)`: a decaying spectrum whose effective
//!   dimension `(Σ A²)² / Σ A⁴` is 0.4 · d (k₀ found by bisection), giving
//!   impostor cosines with sd ≈ 1/√(0.4 d) — 0.070 at d = 512;
//! * a capture of that identity is `c + ρ · n`, normalised, with `n` the
//!   direction of `A g` made orthogonal to `c` and
//!   `ρ` log-normal (median 0.65, log-sd 0.25) per capture: genuine cosines
//!   `≈ 1 / √((1 + ρ₁²)(1 + ρ₂²))`, median about 0.70 with a tail towards
//!   0.5 for poor captures — the shape of same-person scores of a good
//!   face model on controlled photos.
//!
//! [`SynthReport`] gives the measured means and deviations of both
//! distributions for every generated gallery.
//!
//! # What is written
//!
//! A biomatch data directory (catalog + indexes) with one collection `face`
//! (model `synthetic-face`, cosine): subjects `syn-0000001…` with one
//! capture each, and for a `duplicates` fraction of them a second subject
//! `dup-0000001…` enrolled with another capture of the same identity,
//! enrollments in a seeded random order; `truth.jsonl` lists the planted
//! pairs `{"a": "syn-…", "b": "dup-…"}`.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result, bail};
use biomatch_engine::gallery::{
    CollectionSpec, Enrollment, Gallery, GalleryOptions, Modality, Position, TemplateInput,
};
use biomatch_engine::index::{Dtype, Metric};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, LogNormal, StandardNormal};
use rayon::prelude::*;
use serde::Serialize;

/// Collection name in synthetic galleries.
pub const COLLECTION: &str = "face";
/// Model id of synthetic galleries' collection.
pub const MODEL_ID: &str = "synthetic-face";
/// Effective dimension as a fraction of the dimension.
const EFFECTIVE_FRACTION: f64 = 0.4;
/// Median and log-sd of the per-capture noise ρ.
const NOISE_MEDIAN: f64 = 0.65;
const NOISE_LOG_SD: f64 = 0.25;
/// Enrollments per catalog transaction.
const BATCH: usize = 4096;

/// What to generate.
#[derive(Clone, Debug, PartialEq)]
pub struct SynthSpec {
    /// Distinct people.
    pub subjects: usize,
    /// Dimension.
    pub dim: usize,
    /// Fraction of people enrolled a second time under another id.
    pub duplicates: f64,
    /// Index storage type.
    pub dtype: Dtype,
    /// Seed.
    pub seed: u64,
}

/// Statistics of a generated gallery.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SynthReport {
    /// Subjects enrolled (people plus duplicates).
    pub enrolled: usize,
    /// Planted duplicate pairs.
    pub planted: usize,
    /// Dimension.
    pub dim: usize,
    /// Effective dimension of the identity spectrum.
    pub effective_dim: f64,
    /// Mean and sd of the cosine of planted pairs.
    pub genuine_mean: f64,
    /// (sd)
    pub genuine_sd: f64,
    /// Mean and sd of the cosine of 100 000 random pairs of different people.
    pub impostor_mean: f64,
    /// (sd)
    pub impostor_sd: f64,
    /// Seconds spent generating and enrolling.
    pub seconds: f64,
}

/// The diagonal of `A` for dimension `dim`.
fn spectrum(dim: usize) -> (Vec<f32>, f64) {
    let eff = |k0: f64| {
        let w: Vec<f64> = (0..dim).map(|k| 1.0 / (1.0 + k as f64 / k0)).collect();
        let s: f64 = w.iter().sum();
        let s2: f64 = w.iter().map(|x| x * x).sum();
        (w, s * s / s2)
    };
    let target = EFFECTIVE_FRACTION * dim as f64;
    let (mut lo, mut hi) = (1e-3f64, 1e9f64);
    for _ in 0..200 {
        let mid = (lo * hi).sqrt();
        if eff(mid).1 < target {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let (w, d) = eff(hi);
    (w.iter().map(|&x| x.sqrt() as f32).collect(), d)
}

fn normalise(v: &mut [f32]) {
    let n = v.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt();
    let inv = (1.0 / n) as f32;
    v.iter_mut().for_each(|x| *x *= inv);
}

/// A shaped Gaussian direction `A g / ‖A g‖`.
fn direction(rng: &mut ChaCha8Rng, a: &[f32]) -> Vec<f32> {
    let mut v: Vec<f32> = a
        .iter()
        .map(|&w| {
            let g: f32 = StandardNormal.sample(&mut *rng);
            w * g
        })
        .collect();
    normalise(&mut v);
    v
}

/// Identity `i`'s centre and its capture number `capture`, from their own
/// random streams (so any subset can be generated in any order).
fn capture(seed: u64, a: &[f32], i: usize, capture: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(2 * i as u64);
    let centre = direction(&mut rng, a);
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ capture.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    rng.set_stream(2 * i as u64 + 1);
    // The capture's deviation is orthogonal to the centre, so that its
    // cosine to the centre is exactly 1 / √(1 + ρ²).
    let mut noise = direction(&mut rng, a);
    let along: f32 = noise.iter().zip(&centre).map(|(n, c)| n * c).sum();
    noise
        .iter_mut()
        .zip(&centre)
        .for_each(|(n, c)| *n -= along * c);
    normalise(&mut noise);
    let rho = LogNormal::new(NOISE_MEDIAN.ln(), NOISE_LOG_SD)
        .expect("valid log-normal")
        .sample(&mut rng) as f32;
    let mut v: Vec<f32> = centre
        .iter()
        .zip(&noise)
        .map(|(c, n)| c + rho * n)
        .collect();
    normalise(&mut v);
    v
}

fn mean_sd(xs: &[f64]) -> (f64, f64) {
    let n = xs.len().max(1) as f64;
    let m = xs.iter().sum::<f64>() / n;
    let v = xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (m, v.sqrt())
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| f64::from(x) * f64::from(y))
        .sum()
}

/// The synthetic face model on its own: captures of numbered identities,
/// for evaluations that need vectors rather than a gallery.
#[derive(Debug, Clone)]
pub struct SynthFaces {
    a: Vec<f32>,
    seed: u64,
}

impl SynthFaces {
    /// The model for vectors of `dim` dimensions (as `write_gallery` makes them).
    pub fn new(dim: usize, seed: u64) -> SynthFaces {
        SynthFaces {
            a: spectrum(dim).0,
            seed,
        }
    }

    /// Capture number `capture` (1, 2, …) of identity `identity`: a unit vector.
    pub fn capture(&self, identity: usize, capture: u64) -> Vec<f32> {
        self::capture(self.seed, &self.a, identity, capture)
    }
}

/// Writes a synthetic gallery into `out` (which must not hold a catalog
/// yet) and `out/truth.jsonl`; `progress(done, total)` is called after
/// every enrollment batch.
pub fn write_gallery(
    out: &Path,
    spec: &SynthSpec,
    progress: &dyn Fn(usize, usize),
) -> Result<SynthReport> {
    let started = std::time::Instant::now();
    if spec.subjects < 2 {
        bail!("--subjects must be at least 2");
    }
    if !(0.0..=1.0).contains(&spec.duplicates) {
        bail!(
            "--duplicates must be a fraction in [0, 1], got {}",
            spec.duplicates
        );
    }
    if out.join("catalog.sqlite").exists() {
        bail!(
            "{} already holds a gallery; give an empty or new directory",
            out.display()
        );
    }
    let (a, effective_dim) = spectrum(spec.dim);
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed ^ 0xD0_D0);
    // Which people are enrolled twice, and the order of all enrollments.
    let planted = (spec.duplicates * spec.subjects as f64).round() as usize;
    let mut people: Vec<usize> = (0..spec.subjects).collect();
    for i in 0..planted {
        let j = rng.random_range(i..spec.subjects);
        people.swap(i, j);
    }
    let mut twins: Vec<usize> = people[..planted].to_vec();
    twins.sort_unstable();
    // (identity, capture, subject id)
    let mut order: Vec<(usize, u64, String)> = (0..spec.subjects)
        .map(|i| (i, 1, format!("syn-{:07}", i + 1)))
        .chain(
            twins
                .iter()
                .enumerate()
                .map(|(k, &i)| (i, 2, format!("dup-{:07}", k + 1))),
        )
        .collect();
    for i in (1..order.len()).rev() {
        let j = rng.random_range(0..=i);
        order.swap(i, j);
    }

    let gallery = Gallery::open(out, GalleryOptions::default())
        .with_context(|| format!("opening {}", out.display()))?;
    gallery.ensure_collection(&CollectionSpec {
        name: COLLECTION.into(),
        modality: Modality::Face,
        model_id: MODEL_ID.into(),
        model_version: "1".into(),
        dim: spec.dim,
        metric: Metric::Cosine,
        dtype: spec.dtype,
    })?;
    let total = order.len();
    for (b, batch) in order.chunks(BATCH).enumerate() {
        let enrollments: Vec<Enrollment> = batch
            .par_iter()
            .map(|(i, c, subject)| Enrollment {
                subject: subject.clone(),
                templates: vec![TemplateInput {
                    collection: COLLECTION.into(),
                    position: Position::Face,
                    quality: None,
                    vector: capture(spec.seed, &a, *i, *c),
                    record: None,
                }],
            })
            .collect();
        gallery.enroll_batch(&enrollments, "synth")?;
        progress((b * BATCH + batch.len()).min(total), total);
    }
    gallery.sync()?;

    let mut truth = std::io::BufWriter::new(
        std::fs::File::create(out.join("truth.jsonl")).context("creating truth.jsonl")?,
    );
    for (k, &i) in twins.iter().enumerate() {
        writeln!(
            truth,
            "{}",
            serde_json::json!({"a": format!("syn-{:07}", i + 1), "b": format!("dup-{:07}", k + 1)})
        )?;
    }
    truth.flush()?;
    truth.get_ref().sync_all()?;

    let genuine: Vec<f64> = twins
        .par_iter()
        .map(|&i| dot(&capture(spec.seed, &a, i, 1), &capture(spec.seed, &a, i, 2)))
        .collect();
    let impostor: Vec<f64> = (0..100_000u64)
        .into_par_iter()
        .map(|k| {
            let mut r = ChaCha8Rng::seed_from_u64(spec.seed ^ 0x1_4405);
            r.set_stream(k);
            let i = r.random_range(0..spec.subjects);
            let j = (i + r.random_range(1..spec.subjects)) % spec.subjects;
            dot(&capture(spec.seed, &a, i, 1), &capture(spec.seed, &a, j, 1))
        })
        .collect();
    let (genuine_mean, genuine_sd) = mean_sd(&genuine);
    let (impostor_mean, impostor_sd) = mean_sd(&impostor);
    Ok(SynthReport {
        enrolled: total,
        planted,
        dim: spec.dim,
        effective_dim,
        genuine_mean,
        genuine_sd,
        impostor_mean,
        impostor_sd,
        seconds: started.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn galleries_are_seeded_with_the_documented_score_shapes() {
        let dir = tempfile::tempdir().unwrap();
        let spec = SynthSpec {
            subjects: 3000,
            dim: 512,
            duplicates: 0.05,
            dtype: Dtype::I8,
            seed: 7,
        };
        let report = write_gallery(&dir.path().join("g"), &spec, &|_, _| {}).unwrap();
        assert_eq!((report.enrolled, report.planted), (3150, 150));
        assert!((report.effective_dim - 204.8).abs() < 0.5, "{report:?}");
        assert!((report.impostor_sd - 0.07).abs() < 0.01, "{report:?}");
        assert!(report.impostor_mean.abs() < 0.01, "{report:?}");
        assert!((report.genuine_mean - 0.69).abs() < 0.05, "{report:?}");
        assert!(
            report.genuine_sd > 0.03 && report.genuine_sd < 0.12,
            "{report:?}"
        );
        let truth = std::fs::read_to_string(dir.path().join("g/truth.jsonl")).unwrap();
        assert_eq!(truth.lines().count(), 150);
        // Same seed, same gallery: the planted pairs and the vectors agree.
        write_gallery(&dir.path().join("h"), &spec, &|_, _| {}).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("h/truth.jsonl")).unwrap(),
            truth
        );
        let g = Gallery::open(&dir.path().join("g"), GalleryOptions::default()).unwrap();
        let h = Gallery::open(&dir.path().join("h"), GalleryOptions::default()).unwrap();
        for s in ["syn-0000001", "dup-0000001"] {
            assert_eq!(
                g.get(s).unwrap().unwrap().templates[0].vector,
                h.get(s).unwrap().unwrap().templates[0].vector
            );
        }
        // A gallery is never written over.
        assert!(write_gallery(&dir.path().join("g"), &spec, &|_, _| {}).is_err());
    }
}
