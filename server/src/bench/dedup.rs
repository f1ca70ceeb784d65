//! `biomatch bench dedup`: N:N de-duplication speed against the machine's
//! int8 peak and against faiss, measured in the same run.
//!
//! On a seeded synthetic gallery (`datasets synth`, kept under
//! `bench-data/`) each round measures, one after the other on the same
//! threads:
//!
//! 1. the int8 multiply-add peak (the widest `vpdpbusd`-class loop the CPU
//!    has; [`probe::int8_mac_peak`]);
//! 2. a full biomatch de-duplication job (i8 scan, exact re-scoring,
//!    checkpoints, report): distinct pairs compared per second, and the
//!    multiply-adds per second that makes (`pairs/s × dim`) as a fraction
//!    of the peak of the same round;
//! 3. faiss `IndexFlatIP` range search of the whole set against itself at
//!    the same threshold (`benches/compare/faiss_selfjoin.py`, faiss-cpu
//!    wheel from `scripts/setup-faiss`), on the same vectors and threads:
//!    distinct pairs answered per second, and the pairs it found.
//!
//! The report gives every round and the medians; the biomatch/faiss ratio
//! is computed within each round.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use biomatch_datasets::synth_gallery::{self, SynthSpec};
use biomatch_engine::dedup::{self, CancelFlag, DedupRequest};
use biomatch_engine::gallery::{Gallery, GalleryOptions};
use biomatch_engine::index::Dtype;
use biomatch_engine::vector::probe;
use serde::Serialize;

use super::{cpu_model, median, search_pool};

/// Arguments of `biomatch bench dedup`.
#[derive(Clone, Debug, clap::Args)]
pub struct DedupBenchArgs {
    /// People in the synthetic gallery (1 % more are enrolled twice).
    #[arg(long, default_value_t = 100_000)]
    pub subjects: usize,
    /// Dimension.
    #[arg(long, default_value_t = 512)]
    pub dim: usize,
    /// Target FMR the job's threshold is estimated for.
    #[arg(long, default_value_t = 1e-5)]
    pub fmr: f64,
    /// Rounds (peak, biomatch, faiss each).
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Skip faiss.
    #[arg(long)]
    pub no_faiss: bool,
    /// Python with faiss-cpu and numpy (default: BIOMATCH_PYTHON, else
    /// .tools/py/bin/python as scripts/setup-faiss makes it).
    #[arg(long)]
    pub python: Option<PathBuf>,
    /// Where to keep the gallery (default: bench-data/dedup-…).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// One round.
#[derive(Clone, Debug, Serialize)]
pub struct DedupRound {
    /// Int8 multiply-adds per second, all threads.
    pub int8_peak_macs: f64,
    /// biomatch: distinct pairs compared per second (scan).
    pub pairs_per_s: f64,
    /// biomatch: multiply-adds per second (`pairs_per_s × dim`).
    pub macs: f64,
    /// `macs / int8_peak_macs`.
    pub fraction_of_int8_peak: f64,
    /// biomatch: seconds of the whole job (plan, scan, report).
    pub job_s: f64,
    /// biomatch: subject pairs reported.
    pub pairs_found: usize,
    /// faiss: distinct pairs answered per second.
    pub faiss_pairs_per_s: Option<f64>,
    /// faiss: pairs at or above the threshold.
    pub faiss_pairs_found: Option<u64>,
    /// `pairs_per_s / faiss_pairs_per_s`.
    pub speedup_vs_faiss: Option<f64>,
}

/// The report.
#[derive(Clone, Debug, Serialize)]
pub struct DedupBenchReport {
    /// CPU model.
    pub cpu: String,
    /// Threads.
    pub threads: usize,
    /// SIMD backend of the kernels.
    pub simd_backend: &'static str,
    /// Int8 probe instruction.
    pub int8_instruction: &'static str,
    /// Templates in the gallery.
    pub templates: usize,
    /// Dimension.
    pub dim: usize,
    /// Threshold used (estimated for `fmr` in the first round).
    pub threshold: f32,
    /// Planted duplicate pairs, and how many the job reported.
    pub planted: usize,
    /// Planted pairs found.
    pub planted_found: usize,
    /// faiss version, if it ran.
    pub faiss_version: Option<String>,
    /// Every round.
    pub rounds: Vec<DedupRound>,
    /// Medians over rounds.
    pub median_pairs_per_s: f64,
    /// (median)
    pub median_fraction_of_int8_peak: f64,
    /// (median)
    pub median_faiss_pairs_per_s: Option<f64>,
    /// (median of the per-round ratios)
    pub median_speedup_vs_faiss: Option<f64>,
}

fn python(args: &DedupBenchArgs) -> PathBuf {
    args.python
        .clone()
        .or_else(|| std::env::var_os("BIOMATCH_PYTHON").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(".tools/py/bin/python"))
}

/// Writes the gallery's stored (normalised) vectors as a float32 `.npy`.
fn export_npy(gallery: &Gallery, path: &Path) -> Result<()> {
    if path.exists() {
        return Ok(());
    }
    let snap = gallery.snapshot();
    let (_, index) = snap.collection(synth_gallery::COLLECTION)?;
    let ids: Vec<u64> = index.ids().collect();
    super::write_npy(path, ids.len(), index.config().dim, |start, count| {
        ids[start..start + count]
            .iter()
            .flat_map(|&id| index.get(id).expect("a live row"))
            .collect()
    })
}

#[derive(serde::Deserialize)]
struct FaissOut {
    faiss_version: String,
    seconds: f64,
    pairs: u64,
    n: u64,
}

fn run_faiss(python: &Path, npy: &Path, threshold: f32, threads: usize) -> Result<FaissOut> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../benches/compare/faiss_selfjoin.py");
    let out = std::process::Command::new(python)
        .arg(&script)
        .arg("--vectors")
        .arg(npy)
        .arg("--threshold")
        .arg(threshold.to_string())
        .arg("--threads")
        .arg(threads.to_string())
        .output()
        .with_context(|| {
            format!(
                "running {} (install faiss with scripts/setup-faiss, or pass --no-faiss)",
                python.display()
            )
        })?;
    if !out.status.success() {
        bail!(
            "faiss run failed (scripts/setup-faiss installs faiss-cpu; --no-faiss skips it): {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    serde_json::from_slice(&out.stdout).context("reading the faiss script's output")
}

/// Runs the benchmark.
pub fn run(args: &DedupBenchArgs) -> Result<DedupBenchReport> {
    let data = args.data.clone().unwrap_or_else(|| {
        PathBuf::from(format!(
            "bench-data/dedup-n{}-d{}-s42",
            args.subjects, args.dim
        ))
    });
    if !data.join("truth.jsonl").exists() {
        if data.exists() {
            std::fs::remove_dir_all(&data)?;
        }
        eprintln!("generating {} (once)", data.display());
        synth_gallery::write_gallery(
            &data,
            &SynthSpec {
                subjects: args.subjects,
                dim: args.dim,
                duplicates: 0.01,
                dtype: Dtype::I8,
                seed: 42,
            },
            &|_, _| {},
        )?;
    }
    let gallery = Gallery::open(&data, GalleryOptions::default())?;
    let npy = data.join("vectors.npy");
    if !args.no_faiss {
        export_npy(&gallery, &npy)?;
    }
    let (pool, threads) = search_pool(args.threads)?;
    let work = tempfile::tempdir()?;
    let mut rounds = Vec::new();
    let mut threshold = None;
    let mut faiss_version = None;
    let mut int8_instruction = "";
    let mut found = std::collections::BTreeSet::new();
    for r in 0..args.rounds.max(1) {
        let peak = pool.install(|| probe::int8_mac_peak(Duration::from_millis(500)));
        int8_instruction = peak.instruction;
        let out = work.path().join(format!("round-{r}"));
        let request = DedupRequest {
            collections: vec![synth_gallery::COLLECTION.into()],
            threshold,
            fmr: threshold.is_none().then_some(args.fmr),
            finger_threshold: None,
            tile_rows: None,
            out: out.clone(),
        };
        let summary = pool.install(|| -> Result<_> {
            let id = dedup::create(&gallery, &request)?;
            if threshold.is_none() {
                let (_, params) = dedup::job(&gallery, id)?.context("the job just made")?;
                threshold = Some(params.plan[0].threshold);
            }
            Ok(dedup::run(&gallery, id, &CancelFlag::default())?)
        })?;
        if r == 0 {
            let text = std::fs::read_to_string(out.join("pairs.jsonl"))?;
            for line in text.lines() {
                let v: serde_json::Value = serde_json::from_str(line)?;
                let (a, b) = (v["a"].as_str().unwrap_or(""), v["b"].as_str().unwrap_or(""));
                found.insert((a.min(b).to_string(), a.max(b).to_string()));
            }
        }
        let t = threshold.expect("set by the first job");
        let macs = summary.comparisons_per_s * args.dim as f64;
        let mut round = DedupRound {
            int8_peak_macs: peak.ops_per_second,
            pairs_per_s: summary.comparisons_per_s,
            macs,
            fraction_of_int8_peak: macs / peak.ops_per_second,
            job_s: summary.run_s,
            pairs_found: summary.pairs,
            faiss_pairs_per_s: None,
            faiss_pairs_found: None,
            speedup_vs_faiss: None,
        };
        if !args.no_faiss {
            let f = run_faiss(&python(args), &npy, t, threads)?;
            let per_s = (f.n * (f.n - 1) / 2) as f64 / f.seconds;
            round.faiss_pairs_per_s = Some(per_s);
            round.faiss_pairs_found = Some(f.pairs);
            round.speedup_vs_faiss = Some(summary.comparisons_per_s / per_s);
            faiss_version = Some(f.faiss_version);
        }
        eprintln!("round {}: {round:?}", r + 1);
        rounds.push(round);
    }
    let truth = std::fs::read_to_string(data.join("truth.jsonl"))?;
    let planted: Vec<(String, String)> = truth
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l)?;
            let (a, b) = (v["a"].as_str().unwrap_or(""), v["b"].as_str().unwrap_or(""));
            Ok((a.min(b).to_string(), a.max(b).to_string()))
        })
        .collect::<Result<_>>()?;
    let med = |f: &dyn Fn(&DedupRound) -> Option<f64>| {
        let mut v: Vec<f64> = rounds.iter().filter_map(f).collect();
        (!v.is_empty()).then(|| median(&mut v))
    };
    Ok(DedupBenchReport {
        cpu: cpu_model(),
        threads,
        simd_backend: biomatch_engine::vector::backend_name(),
        int8_instruction,
        templates: gallery
            .snapshot()
            .collection(synth_gallery::COLLECTION)?
            .1
            .len(),
        dim: args.dim,
        threshold: threshold.unwrap_or(f32::NAN),
        planted: planted.len(),
        planted_found: planted.iter().filter(|p| found.contains(p)).count(),
        faiss_version,
        median_pairs_per_s: med(&|r| Some(r.pairs_per_s)).unwrap_or(f64::NAN),
        median_fraction_of_int8_peak: med(&|r| Some(r.fraction_of_int8_peak)).unwrap_or(f64::NAN),
        median_faiss_pairs_per_s: med(&|r| r.faiss_pairs_per_s),
        median_speedup_vs_faiss: med(&|r| r.speedup_vs_faiss),
        rounds,
    })
}

/// Prints the report as a table.
pub fn print_table(r: &DedupBenchReport) {
    println!(
        "N:N de-duplication, {} templates × {} dims, threshold {:.4}, {} threads on {} ({}; int8 probe `{}`)",
        r.templates, r.dim, r.threshold, r.threads, r.cpu, r.simd_backend, r.int8_instruction
    );
    println!(
        "planted duplicates found: {} of {}",
        r.planted_found, r.planted
    );
    println!(
        "{:>5} {:>14} {:>10} {:>10} {:>9} {:>14} {:>9}",
        "round", "pairs/s", "GMAC/s", "int8 peak", "of peak", "faiss pairs/s", "vs faiss"
    );
    for (i, x) in r.rounds.iter().enumerate() {
        println!(
            "{:>5} {:>14.3e} {:>10.1} {:>10.1} {:>8.1}% {:>14} {:>9}",
            i + 1,
            x.pairs_per_s,
            x.macs / 1e9,
            x.int8_peak_macs / 1e9,
            100.0 * x.fraction_of_int8_peak,
            x.faiss_pairs_per_s
                .map_or("-".into(), |v| format!("{v:.3e}")),
            x.speedup_vs_faiss
                .map_or("-".into(), |v| format!("{v:.2}×")),
        );
    }
    println!(
        "median: {:.3e} pairs/s, {:.1} % of the int8 peak, faiss {}, biomatch/faiss {}",
        r.median_pairs_per_s,
        100.0 * r.median_fraction_of_int8_peak,
        r.median_faiss_pairs_per_s
            .map_or("-".into(), |v| format!("{v:.3e} pairs/s")),
        r.median_speedup_vs_faiss
            .map_or("-".into(), |v| format!("{v:.2}×")),
    );
}
