//! `biomatch eval lfw`: the LFW View-2 protocol (6000 pairs, 10 folds,
//! threshold chosen on 9 folds and tested on the 10th) through the real
//! face pipeline.
//!
//! Every distinct image is decoded, detected and aligned (in parallel),
//! the crops are embedded in batches, and pairs are scored by cosine
//! similarity. An image where the detector finds no face is aligned with
//! the median landmarks of the detected images of the same size (LFW's
//! deep-funneled images put faces at a fixed place) and counted in
//! `no_face`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{Context, Result};
use biomatch_datasets::errors::ScoreSets;
use biomatch_datasets::lfw::Lfw;
use biomatch_datasets::metrics::{KFold, Scored, kfold_accuracy, tar_at_far};
use biomatch_engine::embed::RunOptions;
use biomatch_engine::face::{
    DetectorConfig, FaceConfig, FacePolicy, QualityThresholds, StageTimes, align_arcface,
};
use biomatch_engine::imaging::{DecodeLimits, RgbImage, decode_rgb};
use rayon::prelude::*;
use serde::Serialize;

use super::report::{Report, ReportArgs, Verification, finish};
use crate::models::{FaceModels, ModelArgs, load_face_pipeline};

/// `biomatch eval lfw` arguments.
#[derive(Debug, clap::Args)]
pub struct LfwArgs {
    /// LFW folder (with pairs.txt and images/).
    #[arg(long, default_value = "../shared/datasets/lfw")]
    pub data: PathBuf,
    /// Face to take when an image holds several.
    #[arg(long, value_enum, default_value = "most-central")]
    pub policy: PolicyArg,
    /// Minimum detector score.
    #[arg(long, default_value_t = 0.5)]
    pub score_threshold: f32,
    /// Worker threads (and ONNX sessions); default: all cores.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Models and runtime.
    #[command(flatten)]
    pub model: ModelArgs,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Report folder and calibration.
    #[command(flatten)]
    pub output: ReportArgs,
}

/// Face choice on the command line.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum PolicyArg {
    /// Largest box.
    Largest,
    /// Box nearest the image centre.
    MostCentral,
    /// Highest score.
    BestScore,
}

impl From<PolicyArg> for FacePolicy {
    fn from(p: PolicyArg) -> Self {
        match p {
            PolicyArg::Largest => FacePolicy::Largest,
            PolicyArg::MostCentral => FacePolicy::MostCentral,
            PolicyArg::BestScore => FacePolicy::BestScore,
        }
    }
}

/// What `eval lfw` reports.
#[derive(Debug, Serialize)]
pub struct LfwReport {
    /// Detector id.
    pub detector: String,
    /// Embedder id.
    pub embedder: String,
    /// Pairs evaluated.
    pub pairs: usize,
    /// Protocol pairs left out because an image file is missing from the dataset.
    pub pairs_skipped: usize,
    /// The missing image files.
    pub missing_images: Vec<PathBuf>,
    /// Distinct images.
    pub images: usize,
    /// Mean 10-fold accuracy.
    pub accuracy: f64,
    /// Standard deviation over folds.
    pub accuracy_std: f64,
    /// Per-fold accuracy.
    pub fold_accuracy: Vec<f64>,
    /// Per-fold threshold (cosine), chosen on the other folds.
    pub fold_threshold: Vec<f32>,
    /// TAR at FAR = 1e-3 over all pairs.
    pub tar_at_far_1e3: f64,
    /// Cosine threshold of that operating point.
    pub threshold_at_far_1e3: f32,
    /// Images where the detector found no face (aligned with median landmarks).
    pub no_face: usize,
    /// Images where the detector found more than one face.
    pub multi_face: usize,
    /// Wall-clock seconds.
    pub seconds: f64,
}

/// Face embeddings of a list of images, with detection counts.
pub struct Embedded {
    /// One unit vector per image, in order.
    pub vectors: Vec<Vec<f32>>,
    /// Images where the detector found no face (aligned with median landmarks).
    pub no_face: usize,
    /// Images where the detector found more than one face.
    pub multi_face: usize,
}

/// Decodes, detects, aligns (in parallel) and embeds (in batches) every
/// image with the models `args` names.
pub fn embed_images(args: &LfwArgs, images: &[PathBuf], what: &str) -> Result<Embedded> {
    args.model.init_runtime()?;
    let (pool, threads) = crate::bench::search_pool(args.threads)?;
    let options = RunOptions {
        sessions: threads,
        intra_threads: 1,
        max_batch: 32,
        ..RunOptions::default()
    };
    let config = FaceConfig {
        detector: DetectorConfig {
            score_threshold: args.score_threshold,
            ..DetectorConfig::default()
        },
        policy: args.policy.into(),
        quality: QualityThresholds::none(),
        enforce_quality: false,
        limits: DecodeLimits::default(),
    };
    let models = FaceModels {
        detector: args.model.detector.clone(),
        embedder: args.model.embedder.clone(),
        liveness: vec![],
    };
    let pipeline = load_face_pipeline(&args.model.models, &models, &options, config)?;

    // Detect and align every image.
    let done = AtomicUsize::new(0);
    let total = images.len();
    let analyzed: Vec<Result<(RgbImage, Option<Aligned>)>> = pool.install(|| {
        images
            .par_iter()
            .map(|path| {
                let image = read_image(path)?;
                let mut times = StageTimes::default();
                let aligned = match pipeline.analyze(&image, &mut times) {
                    Ok(a) => Some(Aligned {
                        crop: a.crop,
                        landmarks: a.face.landmarks,
                        faces: a.faces_found,
                    }),
                    Err(biomatch_engine::Error::NoFace { .. }) => None,
                    Err(e) => return Err(e).with_context(|| path.display().to_string()),
                };
                let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                if n.is_multiple_of(1000) || n == total {
                    eprintln!("eval {what}: {n}/{total} images detected and aligned");
                }
                Ok((image, aligned))
            })
            .collect()
    });
    let analyzed: Vec<(RgbImage, Option<Aligned>)> = analyzed.into_iter().collect::<Result<_>>()?;
    let no_face = analyzed.iter().filter(|(_, a)| a.is_none()).count();
    let multi_face = analyzed
        .iter()
        .filter(|(_, a)| a.as_ref().is_some_and(|a| a.faces > 1))
        .count();
    let crops = fallback_crops(analyzed)?;

    // Embed in batches.
    let embeddings: Vec<Vec<f32>> = pool
        .install(|| {
            crops
                .par_chunks(32)
                .map(|chunk| {
                    let refs: Vec<&RgbImage> = chunk.iter().collect();
                    pipeline.embedder().embed(&refs)
                })
                .collect::<biomatch_engine::Result<Vec<_>>>()
        })?
        .into_iter()
        .flatten()
        .collect();
    Ok(Embedded {
        vectors: embeddings,
        no_face,
        multi_face,
    })
}

/// Runs the protocol; also returns the scored pairs.
pub fn run_lfw(args: &LfwArgs) -> Result<(LfwReport, Vec<Scored>)> {
    let started = Instant::now();
    let lfw = Lfw::load(&args.data)?;
    let Embedded {
        vectors: embeddings,
        no_face,
        multi_face,
    } = embed_images(args, &lfw.images, "lfw")?;
    let scored: Vec<Scored> = lfw
        .pairs
        .iter()
        .map(|p| Scored {
            score: embeddings[p.a]
                .iter()
                .zip(&embeddings[p.b])
                .map(|(x, y)| x * y)
                .sum(),
            genuine: p.genuine,
            fold: p.fold,
        })
        .collect();
    let kfold = kfold_accuracy(&scored, lfw.folds);
    let (tar, threshold) = tar_at_far(&scored, 1e-3);
    let report = LfwReport {
        detector: args.model.detector.clone(),
        embedder: args.model.embedder.clone(),
        pairs: scored.len(),
        pairs_skipped: lfw.protocol_pairs - scored.len(),
        missing_images: lfw.missing.clone(),
        images: lfw.images.len(),
        accuracy: kfold.mean,
        accuracy_std: kfold.std,
        fold_accuracy: kfold.fold_accuracy,
        fold_threshold: kfold.fold_threshold,
        tar_at_far_1e3: tar,
        threshold_at_far_1e3: threshold,
        no_face,
        multi_face,
        seconds: started.elapsed().as_secs_f64(),
    };
    Ok((report, scored))
}

/// `biomatch eval lfw`: runs the protocol, prints it, writes the report
/// and calibrates when asked.
pub fn eval_lfw(args: &LfwArgs) -> Result<()> {
    let (report, scored) = run_lfw(args)?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_lfw(&report);
    }
    let sets = ScoreSets::new(
        scored
            .iter()
            .filter(|p| p.genuine)
            .map(|p| p.score)
            .collect(),
        scored
            .iter()
            .filter(|p| !p.genuine)
            .map(|p| p.score)
            .collect(),
    );
    let kfold = KFold {
        fold_accuracy: report.fold_accuracy.clone(),
        fold_threshold: report.fold_threshold.clone(),
        mean: report.accuracy,
        std: report.accuracy_std,
    };
    let verification = Verification::new(&args.model.embedder, &sets, Some(kfold));
    let dataset = format!(
        "LFW View-2 pairs, {} ({} genuine + {} impostor pairs)",
        args.data.display(),
        verification.genuine,
        verification.impostor
    );
    let models = vec![args.model.detector.clone(), args.model.embedder.clone()];
    let mut out = Report {
        protocol: "lfw".into(),
        dataset,
        models,
        verification: vec![verification],
        identification: vec![],
        calibration: None,
        details: serde_json::to_value(&report)?,
        plots: vec![],
    };
    finish(&mut out, &args.output, &args.model, &sets, None)
}

struct Aligned {
    crop: RgbImage,
    landmarks: [[f32; 2]; 5],
    faces: usize,
}

fn read_image(path: &Path) -> Result<RgbImage> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    decode_rgb(&bytes, &DecodeLimits::default()).with_context(|| path.display().to_string())
}

/// Crops for every image: the detector's, or for images without a face an
/// alignment with the median landmarks of detected images of that size.
fn fallback_crops(analyzed: Vec<(RgbImage, Option<Aligned>)>) -> Result<Vec<RgbImage>> {
    use std::collections::HashMap;
    let mut by_size: HashMap<(u32, u32), Vec<[[f32; 2]; 5]>> = HashMap::new();
    for (image, aligned) in &analyzed {
        if let Some(a) = aligned {
            by_size
                .entry(image.dimensions())
                .or_default()
                .push(a.landmarks);
        }
    }
    let median = |all: &[[[f32; 2]; 5]]| {
        let mut out = [[0.0f32; 2]; 5];
        for (p, point) in out.iter_mut().enumerate() {
            for (c, v) in point.iter_mut().enumerate() {
                let mut values: Vec<f32> = all.iter().map(|l| l[p][c]).collect();
                values.sort_by(f32::total_cmp);
                *v = values[values.len() / 2];
            }
        }
        out
    };
    analyzed
        .into_iter()
        .map(|(image, aligned)| match aligned {
            Some(a) => Ok(a.crop),
            None => {
                let all = by_size.get(&image.dimensions()).with_context(|| {
                    format!(
                        "no face found in any {:?} image to borrow landmarks from",
                        image.dimensions()
                    )
                })?;
                Ok(align_arcface(&image, &median(all))?)
            }
        })
        .collect()
}

/// Prints the report as a table.
pub fn print_lfw(r: &LfwReport) {
    println!(
        "LFW View-2 ({} pairs, {} images) — detector {}, embedder {}",
        r.pairs, r.images, r.detector, r.embedder
    );
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| accuracy (10-fold) | {:.2} % ± {:.2} |",
        r.accuracy * 100.0,
        r.accuracy_std * 100.0
    );
    println!(
        "| TAR @ FAR = 1e-3 | {:.2} % (cosine ≥ {:.4}) |",
        r.tar_at_far_1e3 * 100.0,
        r.threshold_at_far_1e3
    );
    println!("| images without a face | {} |", r.no_face);
    if r.pairs_skipped > 0 {
        println!(
            "| pairs skipped (image missing from the dataset) | {} ({:?}) |",
            r.pairs_skipped, r.missing_images
        );
    }
    println!("| images with several faces | {} |", r.multi_face);
    println!("| seconds | {:.1} |", r.seconds);
}
