//! `biomatch dedup` (N:N de-duplication of a data directory, resumable) and
//! `biomatch datasets synth` (a synthetic gallery with planted duplicates).
//!
//! Progress goes to an `indicatif` bar (rate, ETA) when stderr is a
//! terminal, and to structured log lines every [`LOG_EVERY`] otherwise.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use biomatch_datasets::synth_gallery::{self, SynthSpec};
use biomatch_engine::dedup::{self, DedupRequest, Observer, Progress, Summary};
use biomatch_engine::gallery::{Gallery, GalleryOptions};
use biomatch_engine::index::Dtype;
use indicatif::{ProgressBar, ProgressStyle};

use crate::bench::{parse_dtype, search_pool};

/// Interval between progress log lines when stderr is not a terminal.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// Arguments of `biomatch dedup`.
#[derive(Clone, Debug, clap::Args)]
pub struct DedupArgs {
    /// Data directory of the gallery (as `serve --data-dir`; not served at the time).
    #[arg(long)]
    pub data: PathBuf,
    /// Output directory for pairs.jsonl, clusters.jsonl and summary.json.
    #[arg(long)]
    pub out: PathBuf,
    /// Target false match rate per template pair; each collection's
    /// threshold is estimated from sampled impostor pairs (default 1e-5).
    #[arg(long, conflicts_with = "threshold")]
    pub fmr: Option<f64>,
    /// Score threshold, applied in every collection.
    #[arg(long)]
    pub threshold: Option<f32>,
    /// Minutiae score threshold for finger collections (default: estimated
    /// for --fmr, or for 1e-5 with --threshold).
    #[arg(long)]
    pub finger_threshold: Option<f32>,
    /// Collections to scan, comma-separated (default: every collection with templates).
    #[arg(long, value_delimiter = ',')]
    pub collections: Vec<String>,
    /// Scan threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Templates per tile (the unit of checkpointing is a pair of tiles;
    /// default: 16 384, more for galleries above 4 M templates).
    #[arg(long)]
    pub tile_rows: Option<usize>,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `biomatch datasets synth`.
#[derive(Clone, Debug, clap::Args)]
pub struct SynthArgs {
    /// Distinct people.
    #[arg(long)]
    pub subjects: usize,
    /// Embedding dimension.
    #[arg(long, default_value_t = 512)]
    pub dim: usize,
    /// Fraction of people enrolled a second time under another id.
    #[arg(long, default_value_t = 0.01)]
    pub duplicates: f64,
    /// Index storage type: i8, f16 or f32.
    #[arg(long, default_value = "i8", value_parser = parse_dtype)]
    pub dtype: Dtype,
    /// Seed.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Data directory to create.
    #[arg(long)]
    pub out: PathBuf,
}

/// Reports progress on a bar or in log lines.
pub struct ProgressReporter {
    bar: Option<ProgressBar>,
    last_log: Mutex<Option<Instant>>,
}

impl ProgressReporter {
    /// A bar when stderr is a terminal, log lines otherwise.
    pub fn new(what: &str) -> ProgressReporter {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix} [{elapsed_precise}] {wide_bar} {percent:>3}% {msg} ETA {eta}",
                )
                .expect("valid template"),
            );
            bar.set_prefix(what.to_string());
            bar
        });
        ProgressReporter {
            bar,
            last_log: Mutex::new(None),
        }
    }

    /// Reports `done` of `total` units, with a message.
    pub fn report(&self, done: u64, total: u64, message: impl FnOnce() -> String) {
        if let Some(bar) = &self.bar {
            bar.set_length(total);
            bar.set_position(done);
            bar.set_message(message());
            return;
        }
        let mut last = self.last_log.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_none_or(|t| t.elapsed() >= LOG_EVERY) || done == total {
            *last = Some(Instant::now());
            tracing::info!(done, total, "{}", message());
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Observer for ProgressReporter {
    fn progress(&self, p: &Progress) {
        self.report(p.comparisons_done, p.comparisons_total, || {
            format!(
                "job {}: {:.1} % of {:.3e} pairs, tile pairs {}/{}, {:.3e} pairs/s, ETA {}",
                p.job,
                100.0 * p.fraction(),
                p.comparisons_total as f64,
                p.tiles_done,
                p.tiles_total,
                p.comparisons_per_s,
                p.eta_s.map_or("-".into(), |s| format!("{s:.0} s")),
            )
        });
    }
}

/// Opens an existing gallery (not creating one where there is none).
pub fn open_existing(data: &std::path::Path) -> Result<Gallery> {
    if !data.join("catalog.sqlite").is_file() {
        bail!("no gallery in {} (no catalog.sqlite)", data.display());
    }
    Gallery::open(data, GalleryOptions::default())
        .with_context(|| format!("opening the gallery in {}", data.display()))
}

/// The request `args` ask for.
pub fn request(args: &DedupArgs) -> DedupRequest {
    let (threshold, fmr) = match (args.threshold, args.fmr) {
        (Some(t), _) => (Some(t), None),
        (None, f) => (None, Some(f.unwrap_or(1e-5))),
    };
    DedupRequest {
        collections: args.collections.clone(),
        threshold,
        fmr,
        finger_threshold: args.finger_threshold,
        tile_rows: args.tile_rows,
        out: std::path::absolute(&args.out).unwrap_or_else(|_| args.out.clone()),
    }
}

/// `biomatch dedup`: resumes the unfinished job for the same request, or
/// starts one, and runs it to the end.
pub fn run(args: &DedupArgs) -> Result<Summary> {
    let gallery = open_existing(&args.data)?;
    let request = request(args);
    let (pool, threads) = search_pool(args.threads)?;
    let id = match dedup::find_unfinished(&gallery, &request)? {
        Some(id) => {
            tracing::info!(job = id, "resuming the unfinished job for this request");
            id
        }
        None => {
            let id = pool.install(|| dedup::create(&gallery, &request))?;
            tracing::info!(job = id, threads, "de-duplication job created");
            id
        }
    };
    let reporter = ProgressReporter::new("dedup");
    let summary = pool.install(|| dedup::run(&gallery, id, &reporter));
    reporter.finish();
    Ok(summary?)
}

/// Prints a summary as a few lines.
pub fn print(summary: &Summary) {
    println!("job {}: output in {}", summary.job, summary.out);
    for c in &summary.collections {
        match (c.threshold, c.method) {
            (Some(t), Some(m)) => println!(
                "  {:<12} threshold {t:.4} ({m:?}), impostor mean {:.4} sd {:.4} ({} samples), {} template pairs kept",
                c.name, c.impostor.mean, c.impostor.sd, c.impostor.samples, c.kept_template_pairs
            ),
            _ => println!(
                "  {:<12} scored for reported pairs; impostor mean {:.4} sd {:.4}",
                c.name, c.impostor.mean, c.impostor.sd
            ),
        }
    }
    println!(
        "  {} subject pairs in {} clusters; {:.3e} comparisons ({} of {} tile pairs resumed), {:.3e} comparisons/s, {:.1} s",
        summary.pairs,
        summary.clusters,
        summary.comparisons as f64,
        summary.tiles_resumed,
        summary.tiles,
        summary.comparisons_per_s,
        summary.run_s
    );
}

/// `biomatch datasets synth`.
pub fn synth(args: &SynthArgs) -> Result<synth_gallery::SynthReport> {
    let spec = SynthSpec {
        subjects: args.subjects,
        dim: args.dim,
        duplicates: args.duplicates,
        dtype: args.dtype,
        seed: args.seed,
    };
    let reporter = ProgressReporter::new("synth");
    let report = synth_gallery::write_gallery(&args.out, &spec, &|done, total| {
        reporter.report(done as u64, total as u64, || {
            format!("{done} of {total} subjects enrolled")
        })
    });
    reporter.finish();
    report
}
