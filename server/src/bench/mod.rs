//! `biomatch bench …`: benchmarks that print a table or one JSON object,
//! each measuring the machine it runs on in the same run.
//!
//! * [`flat`]: the exact index — scan rate against memory bandwidth,
//!   batches against the arithmetic peaks;
//! * [`gallery`]: the durable gallery — enrollments per second, open times,
//!   identification latency while a writer enrolls;
//! * [`embed`]: the face pipeline — per-stage latency, overhead against a
//!   bare ONNX Runtime session, dynamic batching;
//! * [`finger`]: the minutiae matcher — comparisons per second, two-stage
//!   1:N search against exhaustive matching;
//! * [`dedup`]: N:N de-duplication — pairs per second against the int8
//!   peak and faiss `IndexFlatIP` range search on the same vectors;
//! * [`http`]: load on a running server — identify and verify with template
//!   and image probes.

pub mod dedup;
pub mod embed;
pub mod finger;
pub mod flat;
pub mod gallery;
pub mod http;

/// A rayon pool with `threads` threads (default: one per core) for the
/// searches, and its size.
pub(crate) fn search_pool(threads: Option<usize>) -> anyhow::Result<(rayon::ThreadPool, usize)> {
    use anyhow::Context;
    let threads =
        threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .context("starting the search threads")?;
    Ok((pool, threads))
}

/// Parses a storage type for clap.
pub(crate) fn parse_dtype(s: &str) -> Result<biomatch_engine::index::Dtype, String> {
    biomatch_engine::index::Dtype::parse(s).map_err(|e| e.to_string())
}

/// Total bytes of the files under `dir`.
pub(crate) fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_bytes(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

/// Nearest-rank percentile of sorted values.
pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

/// Median (sorts in place); NaN for no values.
pub(crate) fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    percentile(values, 0.5)
}

/// The CPU model from `/proc/cpuinfo`, or the architecture.
pub(crate) fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let v = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(percentile(&v, 0.5), 3.0);
        assert_eq!(percentile(&v, 0.0), 1.0);
        assert_eq!(percentile(&v, 0.99), 5.0);
        assert!(median(&mut []).is_nan());
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
    }
}
