//! Seeded synthetic vectors.
//!
//! Every generator is a pure function of its seed: the same arguments give
//! the same vectors on any machine and with any number of threads (rows are
//! generated in fixed chunks, each from its own ChaCha8 stream).
//!
//! * [`random_unit`]: independent Gaussian directions, L2-normalised —
//!   the worst case for pruning (no structure), the common benchmark.
//! * [`clustered`]: tight groups around random centres — many nearly equal
//!   scores, the hard case for approximate scans and the shape of a gallery
//!   with several enrollments per person.

use std::path::Path;

use biomatch_engine::Result;
use biomatch_engine::index::flat::{FlatConfig, FlatIndex, OpenOptions};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use rayon::prelude::*;

/// Rows generated per random stream.
const CHUNK_ROWS: usize = 4096;

fn stream(seed: u64, chunk: usize) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(chunk as u64);
    rng
}

fn normalise(v: &mut [f32]) {
    let norm = v
        .iter()
        .map(|&x| f64::from(x) * f64::from(x))
        .sum::<f64>()
        .sqrt();
    if norm > 0.0 {
        let inv = (1.0 / norm) as f32;
        v.iter_mut().for_each(|x| *x *= inv);
    }
}

/// `n` L2-normalised Gaussian vectors of dimension `dim`, row-major.
pub fn random_unit(n: usize, dim: usize, seed: u64) -> Vec<f32> {
    random_unit_rows(0, n, dim, seed)
}

/// Rows `start..start + n` of the infinite sequence [`random_unit`] draws
/// from; lets large sets be generated piecewise with identical results.
pub fn random_unit_rows(start: usize, n: usize, dim: usize, seed: u64) -> Vec<f32> {
    let mut out = vec![0.0f32; n * dim];
    let first_chunk = start / CHUNK_ROWS;
    let last_chunk = (start + n).div_ceil(CHUNK_ROWS);
    let pieces: Vec<(usize, Vec<f32>)> = (first_chunk..last_chunk)
        .into_par_iter()
        .map(|chunk| {
            let mut rng = stream(seed, chunk);
            let lo = chunk * CHUNK_ROWS;
            let rows: Vec<f32> = (0..CHUNK_ROWS * dim)
                .map(|_| StandardNormal.sample(&mut rng))
                .collect();
            (lo, rows)
        })
        .collect();
    for (lo, mut rows) in pieces {
        rows.chunks_exact_mut(dim).for_each(normalise);
        for (i, row) in rows.chunks_exact(dim).enumerate() {
            let r = lo + i;
            if (start..start + n).contains(&r) {
                let at = (r - start) * dim;
                out[at..at + dim].copy_from_slice(row);
            }
        }
    }
    out
}

/// Random unit centres that [`Clusters::sample`] draws tight groups around.
#[derive(Clone, Debug)]
pub struct Clusters {
    centres: Vec<f32>,
    dim: usize,
    spread: f32,
}

impl Clusters {
    /// `count` random unit centres of dimension `dim`, from `seed`.
    ///
    /// A sampled row is `centre + spread · g / √dim` (`g` standard
    /// Gaussian), normalised: `spread` is roughly its distance from the
    /// centre, and its cosine to the centre ≈ `1 / √(1 + spread²)`.
    ///
    /// # Panics
    /// If `count` is 0.
    pub fn new(count: usize, dim: usize, spread: f32, seed: u64) -> Clusters {
        assert!(count > 0, "at least one cluster");
        Clusters {
            centres: random_unit(count, dim, seed ^ 0x5EED_C1A5),
            dim,
            spread,
        }
    }

    /// The centres, row-major.
    pub fn centres(&self) -> &[f32] {
        &self.centres
    }

    /// `n` rows around uniformly chosen centres, from `seed`; returns the
    /// rows (row-major) and each row's centre.
    pub fn sample(&self, n: usize, seed: u64) -> (Vec<f32>, Vec<usize>) {
        let dim = self.dim;
        let count = self.centres.len() / dim;
        let scale = self.spread / (dim as f32).sqrt();
        let chunks: Vec<(Vec<f32>, Vec<usize>)> = (0..n.div_ceil(CHUNK_ROWS))
            .into_par_iter()
            .map(|chunk| {
                let mut rng = stream(seed, chunk);
                let rows = CHUNK_ROWS.min(n - chunk * CHUNK_ROWS);
                let mut data = Vec::with_capacity(rows * dim);
                let mut labels = Vec::with_capacity(rows);
                for _ in 0..rows {
                    let c = rng.random_range(0..count);
                    let centre = &self.centres[c * dim..(c + 1) * dim];
                    let start = data.len();
                    data.extend(centre.iter().map(|&x| {
                        let g: f32 = StandardNormal.sample(&mut rng);
                        x + scale * g
                    }));
                    normalise(&mut data[start..]);
                    labels.push(c);
                }
                (data, labels)
            })
            .collect();
        let mut data = Vec::with_capacity(n * dim);
        let mut labels = Vec::with_capacity(n);
        for (d, l) in chunks {
            data.extend(d);
            labels.extend(l);
        }
        (data, labels)
    }
}

/// `n` rows around `clusters` centres: `Clusters::new(clusters, dim,
/// spread, seed).sample(n, seed)`.
pub fn clustered(
    n: usize,
    dim: usize,
    clusters: usize,
    spread: f32,
    seed: u64,
) -> (Vec<f32>, Vec<usize>) {
    Clusters::new(clusters, dim, spread, seed).sample(n, seed)
}

/// A flat index of `n` [`random_unit`] rows (ids `0..n`) in `dir`, built on
/// first use and reused afterwards (benchmark fixtures are cached on disk).
///
/// An existing directory is reused only if it opens cleanly with the same
/// settings and row count; otherwise it is rebuilt. Rows are generated and
/// appended in pieces, so memory stays bounded by the segment size.
pub fn flat_fixture(dir: &Path, config: FlatConfig, n: usize, seed: u64) -> Result<FlatIndex> {
    if dir.exists() {
        match FlatIndex::open_or_create(dir, config, OpenOptions::default()) {
            Ok(index)
                if index.len() == n && index.last_id() == n.checked_sub(1).map(|l| l as u64) =>
            {
                return Ok(index);
            }
            Ok(_) => tracing::info!(dir = %dir.display(), "fixture incomplete; rebuilding"),
            Err(e) => {
                tracing::info!(dir = %dir.display(), error = %e, "fixture unusable; rebuilding")
            }
        }
        std::fs::remove_dir_all(dir).map_err(|e| biomatch_engine::Error::io(dir, e))?;
    }
    let mut index = FlatIndex::create(dir, config)?;
    let piece = 65_536;
    for start in (0..n).step_by(piece) {
        let rows = piece.min(n - start);
        let data = random_unit_rows(start, rows, config.dim, seed);
        let ids: Vec<u64> = (start as u64..(start + rows) as u64).collect();
        index.append_batch(&ids, &data)?;
    }
    index.seal()?;
    index.sync()?;
    Ok(index)
}

#[cfg(test)]
mod tests {
    use super::*;
    use biomatch_engine::index::{Dtype, Metric};

    #[test]
    fn generation_is_deterministic_piecewise_and_across_thread_counts() {
        let whole = random_unit(10_000, 7, 3);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        assert_eq!(pool.install(|| random_unit(10_000, 7, 3)), whole);
        let piece = random_unit_rows(4000, 5000, 7, 3);
        assert_eq!(piece, whole[4000 * 7..9000 * 7]);
        assert_ne!(random_unit(10, 7, 4), whole[..70]);
        for row in whole.chunks(7) {
            let n: f32 = row.iter().map(|x| x * x).sum();
            assert!((n - 1.0).abs() < 1e-5);
        }
    }

    #[test]
    fn clusters_are_tight_with_the_documented_cosine() {
        let dim = 256;
        let (data, labels) = clustered(2000, dim, 4, 0.5, 9);
        let clusters = Clusters::new(4, dim, 0.5, 9);
        let centres = clusters.centres();
        let expected = 1.0 / (1.0f32 + 0.25).sqrt();
        for (row, &c) in data.chunks(dim).zip(&labels) {
            let cos: f32 = row
                .iter()
                .zip(&centres[c * dim..])
                .map(|(a, b)| a * b)
                .sum();
            assert!((cos - expected).abs() < 0.1, "cos {cos} vs {expected}");
        }
        assert_eq!(clustered(2000, dim, 4, 0.5, 9).0, data);
        let (other, _) = clusters.sample(10, 10);
        assert_ne!(
            other[..dim],
            data[..dim],
            "another seed, other rows, same centres"
        );
    }

    #[test]
    fn fixtures_are_built_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fx");
        let config = FlatConfig::new(8, Dtype::I8, Metric::Cosine).with_segment_rows(1000);
        let a = flat_fixture(&path, config, 2500, 1).unwrap();
        assert_eq!(a.len(), 2500);
        let first = a.snapshot().search(&random_unit(1, 8, 2), 5).unwrap();
        drop(a);
        let modified = std::fs::metadata(path.join("index.bmman"))
            .unwrap()
            .modified()
            .unwrap();
        let b = flat_fixture(&path, config, 2500, 1).unwrap();
        assert_eq!(
            std::fs::metadata(path.join("index.bmman"))
                .unwrap()
                .modified()
                .unwrap(),
            modified
        );
        assert_eq!(
            b.snapshot().search(&random_unit(1, 8, 2), 5).unwrap(),
            first
        );
        drop(b);
        // Another size rebuilds.
        assert_eq!(flat_fixture(&path, config, 300, 1).unwrap().len(), 300);
    }
}
