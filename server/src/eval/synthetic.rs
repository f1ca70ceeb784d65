//! `biomatch eval synthetic`: the whole harness on seeded synthetic face
//! vectors ([`biomatch_datasets::synth_gallery::SynthFaces`]), no model or
//! dataset needed — and the index's storage type in the loop.
//!
//! `--gallery N` identities are enrolled (capture 1) into a real flat index
//! of the chosen `--dtype`; `--probes M` mated searches use capture 2 of
//! identities `0..M`, and M non-mated searches use identities that are not
//! enrolled. Searches return the top 20 (exact `f32` scores of the
//! candidates); a mate outside them counts as rank 21. Verification scores:
//! mate cosines against the cosines of each probe with 100 random
//! non-mated gallery entries (seeded).

use std::time::Instant;

use anyhow::{Context, Result, ensure};
use biomatch_datasets::errors::ScoreSets;
use biomatch_datasets::identification::{Identification, MatedSearch};
use biomatch_datasets::synth_gallery::SynthFaces;
use biomatch_engine::index::flat::{FlatConfig, FlatIndex};
use biomatch_engine::index::{Dtype, Metric};
use biomatch_engine::vector::dot_f32 as dot;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::Serialize;

use super::lfw1n::print_summary;
use super::report::{CANDIDATES, IdentificationReport, Report, ReportArgs, Verification};
use crate::bench::{parse_dtype, search_pool};

/// Impostor comparisons per probe in the verification score set.
const IMPOSTORS_PER_PROBE: usize = 100;

/// `biomatch eval synthetic` arguments.
#[derive(Debug, clap::Args)]
pub struct SyntheticArgs {
    /// Enrolled identities.
    #[arg(long, default_value_t = 100_000)]
    pub gallery: usize,
    /// Mated searches (and as many non-mated ones).
    #[arg(long, default_value_t = 10_000)]
    pub probes: usize,
    /// Vector dimension.
    #[arg(long, default_value_t = 512)]
    pub dim: usize,
    /// Index storage type (f32, f16, i8).
    #[arg(long, default_value = "i8", value_parser = parse_dtype)]
    pub dtype: Dtype,
    /// Seed of the identities, captures and impostor sample.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Search threads; default: all cores.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Report folder (`--calibrate` is refused: synthetic vectors have no manifest).
    #[command(flatten)]
    pub output: ReportArgs,
}

/// The protocol's own numbers (`details` in report.json).
#[derive(Debug, Serialize)]
pub struct SyntheticDetails {
    /// Enrolled identities.
    pub gallery: usize,
    /// Mated searches.
    pub probes: usize,
    /// Vector dimension.
    pub dim: usize,
    /// Index storage type.
    pub dtype: String,
    /// Seed.
    pub seed: u64,
    /// Searches per second (top 20, batches of 256).
    pub searches_per_s: f64,
    /// Wall-clock seconds.
    pub seconds: f64,
}

/// Runs the protocol, prints a summary, writes the report.
pub fn eval_synthetic(args: &SyntheticArgs) -> Result<()> {
    ensure!(
        !args.output.calibrate,
        "--calibrate needs a model manifest; synthetic vectors have none"
    );
    ensure!(
        args.gallery >= 2 && args.probes >= 1,
        "--gallery must be ≥ 2 and --probes ≥ 1"
    );
    ensure!(
        args.probes <= args.gallery,
        "--probes ({}) must not exceed --gallery ({}): probes are captures of enrolled identities",
        args.probes,
        args.gallery
    );
    let started = Instant::now();
    let (pool, _) = search_pool(args.threads)?;
    let faces = SynthFaces::new(args.dim, args.seed);
    let tmp = tempfile::tempdir().context("creating a temporary index folder")?;
    let mut index = FlatIndex::create(
        &tmp.path().join("index"),
        FlatConfig::new(args.dim, args.dtype, Metric::Cosine),
    )?;
    let piece = 16_384;
    for start in (0..args.gallery).step_by(piece) {
        let end = (start + piece).min(args.gallery);
        let rows: Vec<f32> = pool.install(|| {
            (start..end)
                .into_par_iter()
                .flat_map_iter(|i| faces.capture(i, 1))
                .collect()
        });
        let ids: Vec<u64> = (start as u64..end as u64).collect();
        index.append_batch(&ids, &rows)?;
    }
    index.seal()?;
    let snapshot = index.snapshot();
    eprintln!(
        "eval synthetic: {} identities enrolled ({})",
        args.gallery,
        args.dtype.name()
    );

    // Mated probes: capture 2 of 0..M; non-mated: capture 1 of unenrolled identities.
    let probe = |k: usize| -> Vec<f32> {
        if k < args.probes {
            faces.capture(k, 2)
        } else {
            faces.capture(args.gallery + (k - args.probes), 1)
        }
    };
    let searched = Instant::now();
    let outcomes: Vec<(Vec<f32>, Vec<biomatch_engine::index::Hit>)> = pool.install(|| {
        (0..2 * args.probes)
            .collect::<Vec<_>>()
            .par_chunks(256)
            .map(|chunk| {
                let queries: Vec<Vec<f32>> = chunk.iter().map(|&k| probe(k)).collect();
                let flat: Vec<f32> = queries.concat();
                let hits = snapshot.search_batch(&flat, CANDIDATES)?;
                Ok(queries.into_iter().zip(hits).collect::<Vec<_>>())
            })
            .collect::<biomatch_engine::Result<Vec<_>>>()
            .map(|v| v.into_iter().flatten().collect())
    })?;
    let searches_per_s = outcomes.len() as f64 / searched.elapsed().as_secs_f64();

    let mut mated = Vec::with_capacity(args.probes);
    let mut nonmated = Vec::with_capacity(args.probes * 2);
    for (k, (query, hits)) in outcomes.iter().enumerate() {
        if k < args.probes {
            let mate = k as u64;
            let search = match hits.iter().position(|h| h.id == mate) {
                Some(p) => MatedSearch {
                    mate_score: hits[p].score,
                    rank: p + 1,
                },
                None => MatedSearch {
                    mate_score: dot(query, &faces.capture(k, 1)),
                    rank: CANDIDATES + 1,
                },
            };
            mated.push(search);
        } else {
            nonmated.push(hits.first().map_or(f32::NEG_INFINITY, |h| h.score));
        }
    }
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed ^ 0x1_4B05_7042);
    let pairs: Vec<(usize, usize)> = (0..args.probes)
        .flat_map(|k| {
            (0..IMPOSTORS_PER_PROBE)
                .map(|_| {
                    loop {
                        let g = rng.random_range(0..args.gallery);
                        if g != k {
                            break (k, g);
                        }
                    }
                })
                .collect::<Vec<_>>()
        })
        .collect();
    let impostor: Vec<f32> = pool.install(|| {
        pairs
            .par_iter()
            .map(|&(k, g)| dot(&outcomes[k].0, &faces.capture(g, 1)))
            .collect()
    });
    let genuine: Vec<f32> = mated.iter().map(|m| m.mate_score).collect();
    let sets = ScoreSets::new(genuine, impostor);
    let id = Identification::new(mated, nonmated);
    let name = format!("synthetic-{}d-{}", args.dim, args.dtype.name());
    let ident = IdentificationReport::new(&name, args.gallery, &id);
    let verification = Verification::new(&name, &sets, None);
    let details = SyntheticDetails {
        gallery: args.gallery,
        probes: args.probes,
        dim: args.dim,
        dtype: args.dtype.name().to_string(),
        seed: args.seed,
        searches_per_s,
        seconds: started.elapsed().as_secs_f64(),
    };
    let dataset = format!(
        "synthetic faces: {} enrolled, {} mated + {} non-mated searches, d = {}, {}, seed {}",
        args.gallery,
        args.probes,
        args.probes,
        args.dim,
        args.dtype.name(),
        args.seed
    );
    print_summary(&dataset, &ident, &verification, &details, args.json)?;
    let mut report = Report {
        protocol: "synthetic".into(),
        dataset,
        models: vec![],
        verification: vec![verification],
        identification: vec![ident],
        calibration: None,
        details: serde_json::to_value(&details)?,
        plots: vec![],
    };
    if let Some(dir) = &args.output.report {
        report.save(dir)?;
    }
    Ok(())
}
