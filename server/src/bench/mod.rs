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
//! * [`compare`]: the flat index side by side with faiss's exact and
//!   approximate indexes on the same vectors (`benches/compare/run`);
//! * [`http`]: load on a running server — identify and verify with template
//!   and image probes.

pub mod compare;
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

/// Bytes before the data in a `.npy` written by [`write_npy`].
pub(crate) const NPY_HEADER: usize = 128;

/// Writes `n` rows of `dim` float32 as a `.npy` (version 1.0, a
/// [`NPY_HEADER`]-byte header), `rows(start, count)` giving the rows in
/// pieces; written to a temporary name, synced, then renamed.
pub(crate) fn write_npy(
    path: &std::path::Path,
    n: usize,
    dim: usize,
    rows: impl Fn(usize, usize) -> Vec<f32>,
) -> anyhow::Result<()> {
    use anyhow::Context;
    use std::io::Write;
    let dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({n}, {dim}), }}");
    // Magic (6), version (2), header length (2), the dict padded with
    // spaces and ended by a newline.
    let mut head = dict.into_bytes();
    anyhow::ensure!(head.len() < NPY_HEADER - 11, "npy header too long");
    head.resize(NPY_HEADER - 10 - 1, b' ');
    head.push(b'\n');
    let tmp = path.with_extension("npy.part");
    let write = || -> std::io::Result<()> {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        f.write_all(b"\x93NUMPY\x01\x00")?;
        f.write_all(&(head.len() as u16).to_le_bytes())?;
        f.write_all(&head)?;
        const PIECE: usize = 65_536;
        for start in (0..n).step_by(PIECE) {
            let count = PIECE.min(n - start);
            let data = rows(start, count);
            assert_eq!(data.len(), count * dim, "rows() gave the wrong length");
            f.write_all(bytemuck::cast_slice(&data))?;
        }
        f.into_inner()?.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().with_context(|| format!("writing {}", path.display()))
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
