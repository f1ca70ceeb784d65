//! `biomatch bench embed`: the face pipeline stage by stage.
//!
//! 1. **Batch 1**: one image at a time through decode → detect → align →
//!    embed, every stage timed (median and p95), images per second.
//! 2. **Runtime overhead**: the embedder alone on the aligned crops,
//!    through the runtime (preprocess, queue, run, normalise) and through a
//!    bare ORT session (`RawSession`, `run` only), alternating crop by crop;
//!    the overhead is the ratio of the two medians, measured in the same run.
//! 3. **Dynamic batching**: `concurrency` client threads each embedding one
//!    crop per request; throughput with batching (`max_batch`, `max_wait`)
//!    and without (`max_batch` 1), and the mean batch the workers formed.
//! 4. **Pipeline throughput**: `concurrency` clients running the whole
//!    pipeline on image bytes.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use biomatch_engine::embed::runtime::RawSession;
use biomatch_engine::embed::{RunOptions, preprocess};
use biomatch_engine::face::{DetectorConfig, Embedder, FaceConfig, QualityThresholds, StageTimes};
use biomatch_engine::imaging::RgbImage;
use serde::Serialize;

use super::{median, percentile};
use crate::models::{FaceModels, ModelArgs, load_face_pipeline, manifest};

/// `biomatch bench embed` arguments.
#[derive(Debug, clap::Args)]
pub struct EmbedArgs {
    /// LFW folder; its first `images` JPEGs (sorted by path) are the inputs.
    #[arg(long, default_value = "../shared/datasets/lfw")]
    pub data: PathBuf,
    /// Images to use.
    #[arg(long, default_value_t = 200)]
    pub images: usize,
    /// Client threads for the concurrent runs.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Largest merged batch.
    #[arg(long, default_value_t = 32)]
    pub max_batch: usize,
    /// Longest wait for a batch to fill, in milliseconds.
    #[arg(long, default_value_t = 2.0)]
    pub max_wait_ms: f64,
    /// ORT intra-op threads per session (default: all cores).
    #[arg(long)]
    pub intra_threads: Option<usize>,
    /// Models and runtime.
    #[command(flatten)]
    pub model: ModelArgs,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Median and p95 of one stage, milliseconds.
#[derive(Debug, Serialize)]
pub struct Stage {
    /// Median.
    pub p50_ms: f64,
    /// 95th percentile.
    pub p95_ms: f64,
}

/// A throughput measurement.
#[derive(Debug, Serialize)]
pub struct Throughput {
    /// Images (or crops) per second.
    pub per_second: f64,
    /// Mean samples per session run.
    pub mean_batch: f64,
}

/// What `bench embed` reports.
#[derive(Debug, Serialize)]
pub struct EmbedReport {
    /// Detector id.
    pub detector: String,
    /// Embedder id.
    pub embedder: String,
    /// Whether the embedder's batch axis is dynamic (batching possible).
    pub embedder_batch_dynamic: bool,
    /// Images used.
    pub images: usize,
    /// Cores of this machine.
    pub cores: usize,
    /// ORT intra-op threads per session.
    pub intra_threads: usize,
    /// Per-stage latency at batch 1.
    pub decode: Stage,
    /// Detector.
    pub detect: Stage,
    /// Alignment and quality.
    pub align: Stage,
    /// Embedder inside the pipeline (preprocess, queue, run, normalise),
    /// right after the detector.
    pub embed: Stage,
    /// The embedder alone through the runtime, crops back to back.
    pub embed_alone: Stage,
    /// The same crops through a bare ORT session (`run` only), alternating with `embed_alone`.
    pub embed_raw_ort: Stage,
    /// `embed_alone.p50 / embed_raw_ort.p50`: the runtime's overhead.
    pub embed_overhead_ratio: f64,
    /// Whole pipeline, one image at a time.
    pub batch1_images_per_second: f64,
    /// Embedding crops from concurrent clients, batching on.
    pub embed_batched: Throughput,
    /// Same, `max_batch` 1.
    pub embed_unbatched: Throughput,
    /// Whole pipeline from concurrent clients.
    pub pipeline_concurrent: Throughput,
}

fn stage(mut ms: Vec<f64>) -> Stage {
    let p50 = median(&mut ms);
    Stage {
        p50_ms: p50,
        p95_ms: percentile(&ms, 0.95),
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Runs the benchmark.
pub fn run(args: &EmbedArgs) -> Result<EmbedReport> {
    args.model.init_runtime()?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let intra = args.intra_threads.unwrap_or(cores);
    let files = image_files(&args.data, args.images)?;
    let bytes: Vec<Vec<u8>> = files
        .iter()
        .map(std::fs::read)
        .collect::<std::io::Result<_>>()?;
    let models = FaceModels {
        detector: args.model.detector.clone(),
        embedder: args.model.embedder.clone(),
        liveness: vec![],
    };
    let config = FaceConfig {
        detector: DetectorConfig::default(),
        quality: QualityThresholds::none(),
        ..FaceConfig::default()
    };
    let options = RunOptions {
        sessions: 1,
        intra_threads: intra,
        max_batch: 1,
        max_wait: Duration::ZERO,
        spin: false,
    };
    let pipeline = load_face_pipeline(&args.model.models, &models, &options, config.clone())?;

    // 1. Batch 1, stage by stage.
    let mut times = Vec::new();
    let mut crops = Vec::new();
    let started = Instant::now();
    for b in &bytes {
        match pipeline.process(b, false) {
            Ok(t) => {
                times.push(t.times);
                crops.push(t.aligned.crop);
            }
            Err(biomatch_engine::Error::NoFace { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let batch1 = bytes.len() as f64 / started.elapsed().as_secs_f64();
    if crops.is_empty() {
        bail!("no face found in any of the {} images", bytes.len());
    }
    let pick = |f: fn(&StageTimes) -> Duration| stage(times.iter().map(|t| ms(f(t))).collect());

    // 2. The embedder alone, through the runtime and through a bare ORT
    //    session, alternating crop by crop so both see the same machine
    //    state. (The in-pipeline embed stage above runs right after the
    //    detector has flushed the caches, so it is reported separately.)
    let embed_manifest = manifest(&args.model.models, &args.model.embedder)?;
    let embedder = Embedder::load(&embed_manifest, &options)?;
    let mut raw = RawSession::open(&embed_manifest.path(), &options)?;
    let (mut ours_ms, mut raw_ms) = (Vec::new(), Vec::new());
    for _round in 0..3 {
        for crop in &crops {
            let t = Instant::now();
            embedder.embed(&[crop])?;
            ours_ms.push(ms(t.elapsed()));
            // The bare session gets the tensor ready-made: only `run` is timed.
            let input = preprocess::tensor_from_rgb(&[crop], &embed_manifest.input)?;
            let t = Instant::now();
            raw.run(input.view())?;
            raw_ms.push(ms(t.elapsed()));
        }
    }
    let embed_alone = stage(ours_ms);
    let embed_raw_ort = stage(raw_ms);
    let ratio = embed_alone.p50_ms / embed_raw_ort.p50_ms;
    let embedder_batch_dynamic = embedder.model().batch_dynamic();
    drop(embedder);

    // 3. Concurrent single-crop requests, with and without batching.
    let crops = Arc::new(crops);
    let wait = Duration::from_secs_f64(args.max_wait_ms / 1e3);
    let batched = RunOptions {
        sessions: 1,
        intra_threads: intra,
        max_batch: args.max_batch,
        max_wait: wait,
        spin: false,
    };
    let unbatched = RunOptions {
        max_batch: 1,
        max_wait: Duration::ZERO,
        ..batched.clone()
    };
    let embed_batched = concurrent_embed(&embed_manifest, &batched, &crops, args.concurrency)?;
    let embed_unbatched = concurrent_embed(&embed_manifest, &unbatched, &crops, args.concurrency)?;

    // 4. Whole pipeline from concurrent clients (batching on).
    let pipeline = Arc::new(load_face_pipeline(
        &args.model.models,
        &models,
        &batched,
        config,
    )?);
    let bytes = Arc::new(bytes);
    let per_second = concurrent(args.concurrency, bytes.len(), |i| {
        match pipeline.process(&bytes[i], false) {
            Ok(_) | Err(biomatch_engine::Error::NoFace { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    })?;
    let stats = pipeline.embedder().model().stats();
    let pipeline_concurrent = Throughput {
        per_second,
        mean_batch: mean_batch(stats),
    };

    Ok(EmbedReport {
        detector: args.model.detector.clone(),
        embedder: args.model.embedder.clone(),
        embedder_batch_dynamic,
        images: bytes.len(),
        cores,
        intra_threads: intra,
        decode: pick(|t| t.decode),
        detect: pick(|t| t.detect),
        align: pick(|t| t.align),
        embed: pick(|t| t.embed),
        embed_alone,
        embed_raw_ort,
        embed_overhead_ratio: ratio,
        batch1_images_per_second: batch1,
        embed_batched,
        embed_unbatched,
        pipeline_concurrent,
    })
}

fn mean_batch(stats: &biomatch_engine::embed::runtime::BatchStats) -> f64 {
    let runs = stats.runs.load(Ordering::Relaxed).max(1);
    stats.samples.load(Ordering::Relaxed) as f64 / runs as f64
}

fn concurrent_embed(
    manifest: &biomatch_engine::embed::ModelManifest,
    options: &RunOptions,
    crops: &Arc<Vec<RgbImage>>,
    clients: usize,
) -> Result<Throughput> {
    let embedder = Embedder::load(manifest, options)?;
    // Enough requests for a stable rate: at least 4 passes over the crops.
    let n = crops.len() * 4;
    let per_second = concurrent(clients, n, |i| {
        embedder.embed(&[&crops[i % crops.len()]])?;
        Ok(())
    })?;
    Ok(Throughput {
        per_second,
        mean_batch: mean_batch(embedder.model().stats()),
    })
}

/// Runs `work(0..n)` from `clients` threads; items per second.
fn concurrent(clients: usize, n: usize, work: impl Fn(usize) -> Result<()> + Sync) -> Result<f64> {
    let next = AtomicUsize::new(0);
    let started = Instant::now();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients.max(1))
            .map(|_| {
                s.spawn(|| -> Result<()> {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= n {
                            return Ok(());
                        }
                        work(i)?;
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .try_for_each(|h| h.join().expect("client thread panicked"))
    })?;
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

/// The first `n` JPEGs under `root/images`, sorted by path.
fn image_files(root: &std::path::Path, n: usize) -> Result<Vec<PathBuf>> {
    let images = root.join("images");
    let mut files = Vec::new();
    for dir in
        std::fs::read_dir(&images).with_context(|| format!("reading {}", images.display()))?
    {
        let dir = dir?.path();
        if dir.is_dir() {
            for f in std::fs::read_dir(&dir)? {
                let f = f?.path();
                if f.extension().is_some_and(|e| e == "jpg") {
                    files.push(f);
                }
            }
        }
    }
    files.sort();
    files.truncate(n);
    if files.is_empty() {
        bail!("no JPEG images under {}", images.display());
    }
    Ok(files)
}

/// Prints the report as tables.
pub fn print_table(r: &EmbedReport) {
    println!(
        "face pipeline: {} + {} on {} LFW images, {} cores, {} intra-op threads",
        r.detector, r.embedder, r.images, r.cores, r.intra_threads
    );
    println!("| stage (batch 1) | p50 ms | p95 ms |");
    println!("|---|---|---|");
    for (name, s) in [
        ("decode", &r.decode),
        ("detect", &r.detect),
        ("align + quality", &r.align),
        ("embed (in pipeline, after detect)", &r.embed),
        ("embed alone (runtime)", &r.embed_alone),
        ("embed alone (bare ORT session)", &r.embed_raw_ort),
    ] {
        println!("| {name} | {:.2} | {:.2} |", s.p50_ms, s.p95_ms);
    }
    println!(
        "embed overhead vs bare ORT (p50 ratio): {:.3}",
        r.embed_overhead_ratio
    );
    println!();
    println!("| throughput | per second | mean batch |");
    println!("|---|---|---|");
    println!(
        "| pipeline, batch 1 | {:.1} | 1 |",
        r.batch1_images_per_second
    );
    println!(
        "| embed, concurrent, dynamic batching | {:.1} | {:.2} |",
        r.embed_batched.per_second, r.embed_batched.mean_batch
    );
    println!(
        "| embed, concurrent, no batching | {:.1} | {:.2} |",
        r.embed_unbatched.per_second, r.embed_unbatched.mean_batch
    );
    println!(
        "| pipeline, concurrent | {:.1} | {:.2} |",
        r.pipeline_concurrent.per_second, r.pipeline_concurrent.mean_batch
    );
    if !r.embedder_batch_dynamic {
        println!("(the embedder's batch axis is fixed at 1: requests run one per session call)");
    }
}
