//! `biomatch bench gallery`: the durable gallery on this machine.
//!
//! 1. durable enrollments one at a time (each one fsynced catalog
//!    transaction plus the index update) into a fresh gallery;
//! 2. a gallery of `n` subjects (one face template each, seeded unit
//!    vectors) built with batched enrollments, kept under `bench-data/`
//!    and reused by later runs;
//! 3. its open time, warm (indexes valid, every checksum verified) and
//!    cold (index files deleted, so rebuilt from the catalog);
//! 4. identification (top 10) latency, idle and while a writer enrolls
//!    one subject at a time.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use biomatch_datasets::synth;
use biomatch_engine::gallery::{
    CollectionSpec, Enrollment, Gallery, GalleryOptions, Modality, Position, Probe, Search,
    TemplateInput,
};
use biomatch_engine::index::{Dtype, Metric};
use biomatch_engine::vector;
use serde::Serialize;

use super::{cpu_model, dir_bytes, parse_dtype, percentile};

/// Arguments of `biomatch bench gallery`.
#[derive(Clone, Debug, clap::Args)]
pub struct GalleryArgs {
    /// Subjects in the gallery (one face template each).
    #[arg(long, default_value_t = 1_000_000)]
    pub n: usize,
    /// Template dimension.
    #[arg(long, default_value_t = 512)]
    pub dim: usize,
    /// Index storage type: f32, f16 or i8.
    #[arg(long, default_value = "i8", value_parser = parse_dtype)]
    pub dtype: Dtype,
    /// Subjects per batched enrollment.
    #[arg(long, default_value_t = 256)]
    pub batch: usize,
    /// Single enrollments to time.
    #[arg(long, default_value_t = 300)]
    pub single: usize,
    /// Identifications to time, idle and under writes each.
    #[arg(long, default_value_t = 200)]
    pub queries: usize,
    /// Search threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Seed of the vectors.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Where to keep the gallery (default: bench-data/gallery-…).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Everything one run measured.
#[derive(Debug, Serialize)]
pub struct GalleryReport {
    /// Subjects in the gallery.
    pub n: usize,
    /// Template dimension.
    pub dim: usize,
    /// Index storage type.
    pub dtype: Dtype,
    /// Search threads.
    pub threads: usize,
    /// SIMD backend.
    pub backend: &'static str,
    /// CPU model.
    pub cpu: String,
    /// Single durable enrollments timed.
    pub single_enrollments: usize,
    /// Single durable enrollments per second.
    pub single_enroll_per_s: f64,
    /// Median latency of one durable enrollment, ms.
    pub single_enroll_ms_p50: f64,
    /// 99th percentile, ms.
    pub single_enroll_ms_p99: f64,
    /// Subjects per batched enrollment.
    pub batch: usize,
    /// Seconds to build the gallery (`null` when reused).
    pub build_s: Option<f64>,
    /// Batched durable enrollments per second while building (`null` when reused).
    pub batch_enroll_per_s: Option<f64>,
    /// Seconds to open with valid indexes (checksums verified).
    pub open_warm_s: f64,
    /// Seconds to open with the index files deleted (rebuilt from the catalog).
    pub open_cold_s: f64,
    /// Templates re-indexed per second by the cold open.
    pub cold_rebuild_rows_per_s: f64,
    /// Bytes of the catalog (database and WAL).
    pub catalog_bytes: u64,
    /// Bytes of the index files.
    pub index_bytes: u64,
    /// Identify latency with no writer, median, ms.
    pub identify_ms_p50_idle: f64,
    /// Identify latency with no writer, 99th percentile, ms.
    pub identify_ms_p99_idle: f64,
    /// Identify latency while a writer enrolls, median, ms.
    pub identify_ms_p50_writing: f64,
    /// Identify latency while a writer enrolls, 99th percentile, ms.
    pub identify_ms_p99_writing: f64,
    /// Single enrollments per second the writer achieved meanwhile.
    pub writer_enroll_per_s: f64,
}

fn spec(args: &GalleryArgs) -> CollectionSpec {
    CollectionSpec {
        name: "face".into(),
        modality: Modality::Face,
        model_id: "bench-random".into(),
        model_version: "1".into(),
        dim: args.dim,
        metric: Metric::Cosine,
        dtype: args.dtype,
    }
}

fn enrollment(subject: String, vector: Vec<f32>) -> Enrollment {
    Enrollment {
        subject,
        templates: vec![TemplateInput {
            collection: "face".into(),
            position: Position::Face,
            quality: None,
            vector,
            record: None,
        }],
    }
}

/// Runs the benchmark.
pub fn run(args: &GalleryArgs) -> Result<GalleryReport> {
    let kernels = vector::init().context("choosing the SIMD backend")?;
    ensure!(
        args.n > 0 && args.batch > 0 && args.single > 0 && args.queries > 0,
        "--n, --batch, --single and --queries must be positive"
    );
    let (pool, threads) = super::search_pool(args.threads)?;
    let dir = args.data_dir.clone().unwrap_or_else(|| {
        PathBuf::from(format!(
            "bench-data/gallery-n{}-d{}-{}-s{}",
            args.n, args.dim, args.dtype, args.seed
        ))
    });
    pool.install(|| {
        let (single_times, single_rate) =
            time_single(args, dir.parent().unwrap_or(Path::new(".")))?;
        let (build_s, batch_rate) = build(args, &dir)?;

        let t = Instant::now();
        drop(Gallery::open(&dir, GalleryOptions::default())?);
        let open_warm_s = t.elapsed().as_secs_f64();
        let index_bytes = dir_bytes(&dir.join("indexes"));
        let catalog_bytes = dir_bytes(&dir) - index_bytes;
        std::fs::remove_dir_all(dir.join("indexes"))
            .context("deleting the indexes for the cold open")?;
        let t = Instant::now();
        let gallery = Gallery::open(&dir, GalleryOptions::default())?;
        let open_cold_s = t.elapsed().as_secs_f64();
        let rebuilt: usize = gallery
            .open_report()
            .collections
            .iter()
            .map(|c| c.caught_up)
            .sum();

        let probes = synth::random_unit(args.queries, args.dim, args.seed ^ 0x0051_EE71);
        let idle = time_identify(&gallery, &probes, args.dim)?;
        let (writing, writer_rate) = identify_while_writing(&gallery, &probes, args)?;
        gallery.sync()?;

        Ok(GalleryReport {
            n: args.n,
            dim: args.dim,
            dtype: args.dtype,
            threads,
            backend: kernels.backend().name(),
            cpu: cpu_model(),
            single_enrollments: single_times.len(),
            single_enroll_per_s: single_rate,
            single_enroll_ms_p50: percentile(&single_times, 0.5) * 1e3,
            single_enroll_ms_p99: percentile(&single_times, 0.99) * 1e3,
            batch: args.batch,
            build_s,
            batch_enroll_per_s: batch_rate,
            open_warm_s,
            open_cold_s,
            cold_rebuild_rows_per_s: rebuilt as f64 / open_cold_s,
            catalog_bytes,
            index_bytes,
            identify_ms_p50_idle: percentile(&idle, 0.5) * 1e3,
            identify_ms_p99_idle: percentile(&idle, 0.99) * 1e3,
            identify_ms_p50_writing: percentile(&writing, 0.5) * 1e3,
            identify_ms_p99_writing: percentile(&writing, 0.99) * 1e3,
            writer_enroll_per_s: writer_rate,
        })
    })
}

/// Durable single enrollments into a fresh gallery next to `parent`:
/// sorted seconds per enrollment, and enrollments per second.
fn time_single(args: &GalleryArgs, parent: &Path) -> Result<(Vec<f64>, f64)> {
    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    let tmp = tempfile::tempdir_in(parent).context("creating a scratch gallery")?;
    let gallery = Gallery::open(tmp.path(), GalleryOptions::default())?;
    gallery.ensure_collection(&spec(args))?;
    let vectors = synth::random_unit(args.single, args.dim, args.seed ^ 0x5116);
    let mut times = Vec::with_capacity(args.single);
    let start = Instant::now();
    for (i, v) in vectors.chunks(args.dim).enumerate() {
        let t = Instant::now();
        gallery.enroll(&enrollment(format!("single-{i}"), v.to_vec()), "bench")?;
        times.push(t.elapsed().as_secs_f64());
    }
    let rate = args.single as f64 / start.elapsed().as_secs_f64();
    times.sort_by(f64::total_cmp);
    Ok((times, rate))
}

/// Builds the main gallery unless a complete one is already there; returns
/// (seconds, enrollments per second) of the build.
fn build(args: &GalleryArgs, dir: &Path) -> Result<(Option<f64>, Option<f64>)> {
    let last = format!("{:012}", args.n - 1);
    if dir.join("catalog.sqlite").exists() {
        let gallery = Gallery::open(dir, GalleryOptions::default())?;
        if gallery.get(&last)?.is_some() {
            return Ok((None, None));
        }
        drop(gallery);
        tracing::info!(dir = %dir.display(), "gallery incomplete; rebuilding");
        std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    let gallery = Gallery::open(dir, GalleryOptions::default())?;
    gallery.ensure_collection(&spec(args))?;
    let start = Instant::now();
    let piece = 65_536;
    for lo in (0..args.n).step_by(piece) {
        let rows = piece.min(args.n - lo);
        let vectors = synth::random_unit_rows(lo, rows, args.dim, args.seed);
        let people: Vec<Enrollment> = vectors
            .chunks(args.dim)
            .enumerate()
            .map(|(i, v)| enrollment(format!("{:012}", lo + i), v.to_vec()))
            .collect();
        for batch in people.chunks(args.batch) {
            gallery.enroll_batch(batch, "bench")?;
        }
    }
    gallery.sync()?;
    let seconds = start.elapsed().as_secs_f64();
    Ok((Some(seconds), Some(args.n as f64 / seconds)))
}

/// Sorted seconds per identification of each probe.
fn time_identify(gallery: &Gallery, probes: &[f32], dim: usize) -> Result<Vec<f64>> {
    let mut times = Vec::with_capacity(probes.len() / dim);
    for v in probes.chunks(dim) {
        let probe = Probe {
            collection: "face".into(),
            vector: v.to_vec(),
        };
        let t = Instant::now();
        let hits = gallery.identify(&probe, Search::TopK(10))?;
        times.push(t.elapsed().as_secs_f64());
        std::hint::black_box(hits);
    }
    times.sort_by(f64::total_cmp);
    Ok(times)
}

/// Identification latency while another thread enrolls subjects one by
/// one; also returns the writer's enrollments per second.
fn identify_while_writing(
    gallery: &Gallery,
    probes: &[f32],
    args: &GalleryArgs,
) -> Result<(Vec<f64>, f64)> {
    let stop = AtomicBool::new(false);
    let written = AtomicU64::new(0);
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    std::thread::scope(|scope| {
        let writer = scope.spawn(|| -> Result<()> {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let v = synth::random_unit(1, args.dim, args.seed ^ (run as u64) ^ i);
                gallery.enroll(&enrollment(format!("w{run}-{i}"), v), "bench")?;
                written.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
            Ok(())
        });
        let start = Instant::now();
        let times = time_identify(gallery, probes, args.dim);
        let elapsed = start.elapsed().as_secs_f64();
        stop.store(true, Ordering::Relaxed);
        writer.join().expect("writer thread")?;
        Ok((times?, written.load(Ordering::Relaxed) as f64 / elapsed))
    })
}

/// Prints a report as a table.
pub fn print_table(r: &GalleryReport) {
    println!("gallery: n = {}, dim = {}, dtype = {}", r.n, r.dim, r.dtype);
    println!(
        "machine: {} ({} threads, kernels: {})",
        r.cpu, r.threads, r.backend
    );
    println!();
    println!(
        "durable enrollments, one per transaction  {:8.1} /s   p50 {:6.2} ms   p99 {:6.2} ms",
        r.single_enroll_per_s, r.single_enroll_ms_p50, r.single_enroll_ms_p99
    );
    match (r.build_s, r.batch_enroll_per_s) {
        (Some(s), Some(rate)) => println!(
            "durable enrollments, {} per transaction  {rate:8.1} /s   (built in {s:.1} s)",
            r.batch
        ),
        _ => println!("durable enrollments, batched             (gallery reused, not measured)"),
    }
    println!(
        "open, indexes valid                       {:8.2} s    catalog {:.2} GB, indexes {:.2} GB",
        r.open_warm_s,
        r.catalog_bytes as f64 / 1e9,
        r.index_bytes as f64 / 1e9
    );
    println!(
        "open, indexes rebuilt from the catalog    {:8.2} s    ({:.0} templates/s)",
        r.open_cold_s, r.cold_rebuild_rows_per_s
    );
    println!(
        "identify top-10, idle                     p50 {:7.2} ms   p99 {:7.2} ms",
        r.identify_ms_p50_idle, r.identify_ms_p99_idle
    );
    println!(
        "identify top-10, writer enrolling         p50 {:7.2} ms   p99 {:7.2} ms   writer {:.1} /s",
        r.identify_ms_p50_writing, r.identify_ms_p99_writing, r.writer_enroll_per_s
    );
}
