//! `biomatch bench flat`: speed of the exact index on seeded data, reported
//! next to what the machine can do, measured in the same run.
//!
//! * single queries: latency percentiles; `scan_gbps` is the bytes of codes
//!   one query scans divided by the median latency, compared with
//!   `mem_read_gbps`, a streaming read of a buffer far larger than the last
//!   level cache on the same threads;
//! * batches: queries per second, and multiply-adds per second as a fraction
//!   of the CPU's int8 (for `i8`) or `f32` FMA peak, probed with the widest
//!   instructions the CPU has.
//!
//! Shared machines drift: bandwidth measured a minute apart can differ by
//! half. So the run is split into rounds, each measuring the machine (read
//! bandwidth, int8 and FMA peaks), then a share of the single queries, then
//! one batch; every fraction is computed within its round and the report
//! gives the median over rounds.
//!
//! The index is generated once per (n, dim, dtype, metric, seed) under
//! `bench-data/` and reused by later runs.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use biomatch_datasets::synth;
use biomatch_engine::index::flat::{DEFAULT_SEGMENT_ROWS, FlatConfig, FlatSnapshot};
use biomatch_engine::index::{Dtype, Metric};
use biomatch_engine::vector::{self, probe};
use serde::Serialize;

use super::{cpu_model, median, parse_dtype, percentile};

/// Arguments of `biomatch bench flat`.
#[derive(Clone, Debug, clap::Args)]
pub struct FlatArgs {
    /// Rows in the index.
    #[arg(long)]
    pub n: usize,
    /// Vector dimension.
    #[arg(long)]
    pub dim: usize,
    /// Storage type: f32, f16 or i8.
    #[arg(long, value_parser = parse_dtype)]
    pub dtype: Dtype,
    /// Metric: cosine, inner_product or l2.
    #[arg(long, default_value = "cosine", value_parser = parse_metric)]
    pub metric: Metric,
    /// Single queries to time (spread over the rounds).
    #[arg(long, default_value_t = 200)]
    pub queries: usize,
    /// Queries per batch.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Rounds, each: machine probes, a share of the single queries, one batch.
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    /// Search threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Results per query.
    #[arg(long, default_value_t = 10)]
    pub k: usize,
    /// Seed of the data and the queries.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Where to keep the generated index (default: bench-data/flat-…).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Size of the buffer for the memory-bandwidth probe, in MiB.
    #[arg(long, default_value_t = 1024)]
    pub bandwidth_mib: usize,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

fn parse_metric(s: &str) -> Result<Metric, String> {
    Metric::parse(s).map_err(|e| e.to_string())
}

/// Everything one run measured.
#[derive(Debug, Serialize)]
pub struct FlatReport {
    /// Rows.
    pub n: usize,
    /// Dimension.
    pub dim: usize,
    /// Storage type.
    pub dtype: Dtype,
    /// Metric.
    pub metric: Metric,
    /// Results per query.
    pub k: usize,
    /// Threads searching.
    pub threads: usize,
    /// SIMD backend of the kernels.
    pub backend: &'static str,
    /// CPU model.
    pub cpu: String,
    /// Seconds to generate and write the index (`null` when reused).
    pub build_s: Option<f64>,
    /// Seconds to open (and checksum) the index.
    pub open_s: f64,
    /// Bytes of codes one query scans.
    pub scan_bytes: usize,
    /// Single queries timed.
    pub queries: usize,
    /// Median single-query latency, ms.
    pub single_query_ms_p50: f64,
    /// 90th percentile, ms.
    pub single_query_ms_p90: f64,
    /// 99th percentile, ms.
    pub single_query_ms_p99: f64,
    /// Mean, ms.
    pub single_query_ms_mean: f64,
    /// `scan_bytes` / median latency, GB/s (10⁹ bytes).
    pub scan_gbps: f64,
    /// Streaming read bandwidth on the same threads, GB/s (median of rounds).
    pub mem_read_gbps: f64,
    /// `scan_gbps / mem_read_gbps` within each round, median of rounds.
    pub scan_fraction_of_mem_read: f64,
    /// Queries per batch.
    pub batch: usize,
    /// Rounds (one batch each).
    pub rounds: usize,
    /// Median batch latency, ms.
    pub batch_ms_p50: f64,
    /// Queries per second in batches (median batch).
    pub batch_queries_per_s: f64,
    /// Multiply-adds per second in batches, 10⁹ (`batch · n · dim / t`).
    pub batch_gmacs: f64,
    /// int8 multiply-add peak of the CPU on these threads, 10⁹/s (median of rounds).
    pub int8_peak_gmacs: f64,
    /// Instruction the int8 peak was measured with.
    pub int8_peak_instruction: &'static str,
    /// `f32` FMA peak on these threads, 10⁹ flop/s (median of rounds).
    pub f32_peak_gflops: f64,
    /// Instruction the `f32` peak was measured with.
    pub f32_peak_instruction: &'static str,
    /// `i8`: batch multiply-adds per second over the int8 peak, within each
    /// round, median of rounds.
    pub batch_fraction_of_int8_peak: Option<f64>,
    /// `f32`/`f16`: batch flops (2 per multiply-add) over the FMA peak,
    /// within each round, median of rounds.
    pub batch_fraction_of_f32_peak: Option<f64>,
}

/// Runs the benchmark and prints its report.
pub fn run(args: &FlatArgs) -> Result<FlatReport> {
    let kernels = vector::init().context("choosing the SIMD backend")?;
    anyhow::ensure!(
        args.n > 0 && args.queries > 0 && args.batch > 0 && args.rounds > 0,
        "--n, --queries, --batch and --rounds must be positive"
    );
    let (pool, threads) = super::search_pool(args.threads)?;
    let dir = args.data_dir.clone().unwrap_or_else(|| {
        PathBuf::from(format!(
            "bench-data/flat-n{}-d{}-{}-{}-s{}",
            args.n, args.dim, args.dtype, args.metric, args.seed
        ))
    });
    let config = FlatConfig::new(args.dim, args.dtype, args.metric)
        .with_segment_rows(DEFAULT_SEGMENT_ROWS.min(args.n.next_multiple_of(vector::BLOCK_ROWS)));

    pool.install(|| {
        let fresh = !dir.join("index.bmman").exists();
        let t = Instant::now();
        let index = synth::flat_fixture(&dir, config, args.n, args.seed)
            .with_context(|| format!("preparing the index in {}", dir.display()))?;
        let build_s = fresh.then(|| t.elapsed().as_secs_f64());
        drop(index);
        let t = Instant::now();
        let index = biomatch_engine::index::flat::FlatIndex::open(&dir, Default::default())?;
        let open_s = t.elapsed().as_secs_f64();
        let snap = index.snapshot();
        let scan_bytes = snap.scan_bytes();
        let macs_per_batch = (args.batch * args.n * args.dim) as f64;

        let words = args.bandwidth_mib * (1 << 20) / 8;
        let buffer: Vec<u64> = (0..words as u64).collect();
        let queries = synth::random_unit(
            args.queries.max(args.batch),
            args.dim,
            args.seed ^ 0x0051_EE71,
        );
        let per_round = args.queries.div_ceil(args.rounds);
        warm_up(&snap, &queries, args)?;

        let mut singles = Vec::new();
        let mut rounds = Vec::with_capacity(args.rounds);
        for round in 0..args.rounds {
            let mem = probe::read_bandwidth_gbps(&buffer, 2);
            let int8 = probe::int8_mac_peak(Duration::from_millis(150));
            let fma = probe::f32_fma_peak(Duration::from_millis(150));
            let lo = (round * per_round).min(args.queries);
            let hi = ((round + 1) * per_round).min(args.queries);
            let mut times = time_single(&snap, &queries[lo * args.dim..hi * args.dim], args)?;
            let batch = time_batch(&snap, &queries, round, args)?;
            let round_scan = if times.is_empty() {
                f64::NAN
            } else {
                scan_bytes as f64 / median(&mut times) / 1e9
            };
            singles.extend(times);
            rounds.push(Round {
                mem,
                int8: int8.ops_per_second,
                fma: fma.ops_per_second,
                scan_fraction: round_scan / mem,
                batch,
                int8_fraction: macs_per_batch / batch / int8.ops_per_second,
                fma_fraction: 2.0 * macs_per_batch / batch / fma.ops_per_second,
                int8_instruction: int8.instruction,
                fma_instruction: fma.instruction,
            });
        }

        singles.sort_by(f64::total_cmp);
        let p50 = percentile(&singles, 0.5);
        let med = |f: fn(&Round) -> f64| {
            median(
                &mut rounds
                    .iter()
                    .map(f)
                    .filter(|x| x.is_finite())
                    .collect::<Vec<_>>(),
            )
        };
        let batch_p50 = med(|r| r.batch);
        let report = FlatReport {
            n: args.n,
            dim: args.dim,
            dtype: args.dtype,
            metric: args.metric,
            k: args.k,
            threads,
            backend: kernels.backend().name(),
            cpu: cpu_model(),
            build_s,
            open_s,
            scan_bytes,
            queries: singles.len(),
            single_query_ms_p50: p50 * 1e3,
            single_query_ms_p90: percentile(&singles, 0.9) * 1e3,
            single_query_ms_p99: percentile(&singles, 0.99) * 1e3,
            single_query_ms_mean: singles.iter().sum::<f64>() / singles.len() as f64 * 1e3,
            scan_gbps: scan_bytes as f64 / p50 / 1e9,
            mem_read_gbps: med(|r| r.mem),
            scan_fraction_of_mem_read: med(|r| r.scan_fraction),
            batch: args.batch,
            rounds: rounds.len(),
            batch_ms_p50: batch_p50 * 1e3,
            batch_queries_per_s: args.batch as f64 / batch_p50,
            batch_gmacs: macs_per_batch / batch_p50 / 1e9,
            int8_peak_gmacs: med(|r| r.int8) / 1e9,
            int8_peak_instruction: rounds[0].int8_instruction,
            f32_peak_gflops: med(|r| r.fma) / 1e9,
            f32_peak_instruction: rounds[0].fma_instruction,
            batch_fraction_of_int8_peak: (args.dtype == Dtype::I8)
                .then(|| med(|r| r.int8_fraction)),
            batch_fraction_of_f32_peak: (args.dtype != Dtype::I8).then(|| med(|r| r.fma_fraction)),
        };
        Ok(report)
    })
}

/// What one round measured.
struct Round {
    mem: f64,
    int8: f64,
    fma: f64,
    scan_fraction: f64,
    batch: f64,
    int8_fraction: f64,
    fma_fraction: f64,
    int8_instruction: &'static str,
    fma_instruction: &'static str,
}

/// A few queries and one batch before timing: faults in the pages the
/// searches touch and starts the pool's threads.
fn warm_up(snap: &FlatSnapshot, queries: &[f32], args: &FlatArgs) -> Result<()> {
    for q in queries.chunks(args.dim).take(3) {
        snap.search(q, args.k)?;
    }
    snap.search_batch(&queries[..args.batch * args.dim], args.k)?;
    Ok(())
}

/// Seconds per single query.
fn time_single(snap: &FlatSnapshot, queries: &[f32], args: &FlatArgs) -> Result<Vec<f64>> {
    let mut times = Vec::new();
    for q in queries.chunks(args.dim) {
        let t = Instant::now();
        let hits = snap.search(q, args.k)?;
        times.push(t.elapsed().as_secs_f64());
        std::hint::black_box(hits);
    }
    Ok(times)
}

/// Seconds for one batch (a rotating window of the queries).
fn time_batch(snap: &FlatSnapshot, queries: &[f32], round: usize, args: &FlatArgs) -> Result<f64> {
    let n = queries.len() / args.dim;
    let first = (round * 7) % (n - args.batch + 1);
    let batch = &queries[first * args.dim..(first + args.batch) * args.dim];
    let t = Instant::now();
    let hits = snap.search_batch(batch, args.k)?;
    let elapsed = t.elapsed().as_secs_f64();
    std::hint::black_box(hits);
    Ok(elapsed)
}

/// Prints a report as a table.
pub fn print_table(r: &FlatReport) {
    println!(
        "flat index: n = {}, dim = {}, dtype = {}, metric = {}, k = {}",
        r.n, r.dim, r.dtype, r.metric, r.k
    );
    println!(
        "machine:    {} ({} threads, kernels: {})",
        r.cpu, r.threads, r.backend
    );
    println!();
    println!(
        "single query   p50 {:8.3} ms   p90 {:8.3} ms   p99 {:8.3} ms",
        r.single_query_ms_p50, r.single_query_ms_p90, r.single_query_ms_p99
    );
    println!(
        "scan           {:8.2} GB/s  of {:.2} GB/s memory read = {:5.1} %",
        r.scan_gbps,
        r.mem_read_gbps,
        100.0 * r.scan_fraction_of_mem_read
    );
    println!(
        "batch of {:<4}  p50 {:8.3} ms   {:10.1} queries/s   {:8.1} GMAC/s",
        r.batch, r.batch_ms_p50, r.batch_queries_per_s, r.batch_gmacs
    );
    println!(
        "               (fractions: median over {} rounds, each against its own probe)",
        r.rounds
    );
    if let Some(f) = r.batch_fraction_of_int8_peak {
        println!(
            "               {:5.1} % of the int8 peak ({:.1} GMAC/s, {})",
            100.0 * f,
            r.int8_peak_gmacs,
            r.int8_peak_instruction
        );
    }
    if let Some(f) = r.batch_fraction_of_f32_peak {
        println!(
            "               {:5.1} % of the f32 FMA peak ({:.1} GFLOP/s, {})",
            100.0 * f,
            r.f32_peak_gflops,
            r.f32_peak_instruction
        );
    }
}
