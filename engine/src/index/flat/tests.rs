//! Flat index tests: exactness against a brute-force reference, equality of
//! compact dtypes with `f32`, persistence, bad input and damaged files.

use std::path::Path;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

use super::*;
use crate::index::Hit;

fn gaussian(rng: &mut ChaCha8Rng, n: usize, dim: usize) -> Vec<f32> {
    (0..n * dim).map(|_| StandardNormal.sample(rng)).collect()
}

/// `n` points around `clusters` centres: tight groups of near-duplicates,
/// the hard case for approximate scans (many nearly equal scores).
fn clustered(rng: &mut ChaCha8Rng, n: usize, dim: usize, clusters: usize, spread: f32) -> Vec<f32> {
    let centres = gaussian(rng, clusters, dim);
    let mut out = Vec::with_capacity(n * dim);
    for _ in 0..n {
        let c = rng.random_range(0..clusters);
        for k in 0..dim {
            let noise: f32 = StandardNormal.sample(rng);
            out.push(centres[c * dim + k] + spread * noise);
        }
    }
    out
}

/// The stored form of `v`, as `prepare` makes it.
fn stored(metric: Metric, v: &[f32]) -> Vec<f32> {
    if metric != Metric::Cosine {
        return v.to_vec();
    }
    let norm = v
        .iter()
        .map(|&x| f64::from(x) * f64::from(x))
        .sum::<f64>()
        .sqrt();
    let inv = (1.0 / norm) as f32;
    v.iter().map(|&x| x * inv).collect()
}

/// The exact key the index defines: one sequential FMA chain in `f32`.
fn exact_key(metric: Metric, q: &[f32], r: &[f32]) -> f32 {
    let mut acc = 0.0f32;
    for (&a, &b) in q.iter().zip(r) {
        acc = match metric {
            Metric::L2 => {
                let d = b - a;
                d.mul_add(d, acc)
            }
            _ => a.mul_add(b, acc),
        };
    }
    if metric == Metric::L2 { -acc } else { acc }
}

/// Brute-force top-k over `(id, vector)` rows.
fn brute_force(metric: Metric, rows: &[(u64, Vec<f32>)], query: &[f32], k: usize) -> Vec<Hit> {
    let q = stored(metric, query);
    let mut scored: Vec<(f32, u64)> = rows
        .iter()
        .map(|(id, v)| (exact_key(metric, &q, &stored(metric, v)), *id))
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    scored
        .into_iter()
        .take(k)
        .map(|(key, id)| Hit {
            id,
            label: id,
            score: if metric == Metric::L2 { -key } else { key },
        })
        .collect()
}

fn build(dir: &Path, config: FlatConfig, data: &[f32], first_id: u64) -> FlatIndex {
    let mut index = FlatIndex::create(dir, config).unwrap();
    let n = data.len() / config.dim;
    let ids: Vec<u64> = (0..n as u64).map(|i| first_id + 2 * i).collect();
    // Several batches, so that appends cross seal boundaries mid-batch.
    let per = n.div_ceil(3).max(1);
    for (ids, rows) in ids.chunks(per).zip(data.chunks(per * config.dim)) {
        index.append_batch(ids, rows).unwrap();
    }
    index
}

fn assert_same_hits(got: &[Hit], want: &[Hit], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g.id, w.id, "{what}: rank {i} id");
        assert_eq!(
            g.score.to_bits(),
            w.score.to_bits(),
            "{what}: rank {i} score {} vs {}",
            g.score,
            w.score
        );
    }
}

#[test]
fn f32_index_equals_brute_force_for_every_metric() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let dim = 37;
    let data = gaussian(&mut rng, 1500, dim);
    let rows: Vec<(u64, Vec<f32>)> = data
        .chunks(dim)
        .enumerate()
        .map(|(i, v)| (100 + 2 * i as u64, v.to_vec()))
        .collect();
    let queries = gaussian(&mut rng, 7, dim);
    for metric in Metric::ALL {
        let dir = tempfile::tempdir().unwrap();
        // 1500 rows, 400 per segment: three sealed segments + a writable one.
        let config = FlatConfig::new(dim, Dtype::F32, metric).with_segment_rows(400);
        let index = build(dir.path(), config, &data, 100);
        let snap = index.snapshot();
        assert_eq!(snap.segments.len(), 4);
        for (qi, q) in queries.chunks(dim).enumerate() {
            for k in [1, 10, 200, 2000] {
                let got = snap.search(q, k).unwrap();
                let want = brute_force(metric, &rows, q, k);
                assert_same_hits(&got, &want, &format!("{metric} q{qi} k{k}"));
            }
        }
    }
}

#[test]
fn compact_dtypes_return_exactly_the_f32_results() {
    for (data_kind, seed) in [("random", 21u64), ("clustered", 22)] {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let dim = 64;
        let n = 3000;
        let data = match data_kind {
            "random" => gaussian(&mut rng, n, dim),
            _ => clustered(&mut rng, n, dim, 20, 0.05),
        };
        let queries = match data_kind {
            "random" => gaussian(&mut rng, 9, dim),
            _ => clustered(&mut rng, 9, dim, 20, 0.05),
        };
        for metric in Metric::ALL {
            let base = tempfile::tempdir().unwrap();
            let config = FlatConfig::new(dim, Dtype::F32, metric).with_segment_rows(1024);
            let reference = build(&base.path().join("f32"), config, &data, 1).snapshot();
            for dtype in [Dtype::F16, Dtype::I8] {
                let index = build(
                    &base.path().join(dtype.name()),
                    FlatConfig { dtype, ..config },
                    &data,
                    1,
                );
                let snap = index.snapshot();
                for k in [1, 10, 100] {
                    let got = snap.search_batch(&queries, k).unwrap();
                    let want = reference.search_batch(&queries, k).unwrap();
                    for (q, (g, w)) in got.iter().zip(&want).enumerate() {
                        assert_same_hits(g, w, &format!("{data_kind} {metric} {dtype} k{k} q{q}"));
                    }
                }
                // Threshold at the 20th best score of each query.
                for q in queries.chunks(dim) {
                    let t = reference.search(q, 20).unwrap()[19].score;
                    let got = snap.search_threshold(q, t).unwrap();
                    let want = reference.search_threshold(q, t).unwrap();
                    assert!(want.len() >= 20);
                    assert_same_hits(
                        &got,
                        &want,
                        &format!("{data_kind} {metric} {dtype} threshold {t}"),
                    );
                }
            }
        }
    }
}

#[test]
fn batch_results_equal_single_query_results_bit_for_bit() {
    let mut rng = ChaCha8Rng::seed_from_u64(31);
    let dim = 48;
    let data = gaussian(&mut rng, 2000, dim);
    let queries = gaussian(&mut rng, 25, dim);
    for dtype in Dtype::ALL {
        let dir = tempfile::tempdir().unwrap();
        let index = build(
            dir.path(),
            FlatConfig::new(dim, dtype, Metric::Cosine),
            &data,
            1,
        );
        let snap = index.snapshot();
        let batch = snap.search_batch(&queries, 15).unwrap();
        let thresholds = snap.search_threshold_batch(&queries, 0.3).unwrap();
        for (q, query) in queries.chunks(dim).enumerate() {
            assert_same_hits(
                &batch[q],
                &snap.search(query, 15).unwrap(),
                &format!("{dtype} q{q}"),
            );
            assert_same_hits(
                &thresholds[q],
                &snap.search_threshold(query, 0.3).unwrap(),
                &format!("{dtype} t q{q}"),
            );
        }
    }
}

#[test]
fn results_do_not_depend_on_the_thread_count() {
    let mut rng = ChaCha8Rng::seed_from_u64(41);
    let dim = 32;
    let data = clustered(&mut rng, 5000, dim, 10, 0.02);
    let queries = clustered(&mut rng, 5, dim, 10, 0.02);
    let dir = tempfile::tempdir().unwrap();
    let index = build(
        dir.path(),
        FlatConfig::new(dim, Dtype::I8, Metric::Cosine),
        &data,
        1,
    );
    let snap = index.snapshot();
    let run = |threads| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| snap.search_batch(&queries, 50).unwrap())
    };
    let one = run(1);
    for threads in [2, 3, 7] {
        let many = run(threads);
        for (a, b) in one.iter().zip(&many) {
            assert_same_hits(a, b, &format!("{threads} threads"));
        }
    }
}

#[test]
fn margins_bound_every_rows_approximation_error() {
    let mut rng = ChaCha8Rng::seed_from_u64(51);
    for dim in [3, 64, 515] {
        // Mixed magnitudes, so the bounds are exercised away from unit norm.
        let data: Vec<f32> = gaussian(&mut rng, 600, dim)
            .iter()
            .enumerate()
            .map(|(i, x)| x * (1 + i % 7) as f32)
            .collect();
        let queries = gaussian(&mut rng, 4, dim);
        for metric in Metric::ALL {
            let base = tempfile::tempdir().unwrap();
            let config = FlatConfig::new(dim, Dtype::F32, metric);
            let exact = build(&base.path().join("f32"), config, &data, 1).snapshot();
            for dtype in [Dtype::F16, Dtype::I8] {
                let snap = build(
                    &base.path().join(dtype.name()),
                    FlatConfig { dtype, ..config },
                    &data,
                    1,
                )
                .snapshot();
                let p = search::Prepared::new(&snap, &queries, 4).unwrap();
                // Approximate keys of every row, through the threshold path with no threshold.
                let mut worst = 0.0f64;
                for q in 0..4 {
                    let query = &queries[q * dim..(q + 1) * dim];
                    let approx = approximate_keys(&snap, &p, q);
                    let truth = exact.search(query, 600).unwrap();
                    for hit in truth {
                        let key = if metric == Metric::L2 {
                            -hit.score
                        } else {
                            hit.score
                        };
                        let err = (f64::from(approx[&hit.id]) - f64::from(key)).abs();
                        let m = f64::from(p.margin(q));
                        assert!(
                            err <= m,
                            "{dtype} {metric} dim {dim}: error {err} > margin {m}"
                        );
                        worst = worst.max(err / m);
                    }
                }
                assert!(
                    worst > 0.0,
                    "{dtype} {metric}: approximation suspiciously exact"
                );
            }
        }
    }
}

/// Approximate key of every row for query `q`, as the scan computes them.
fn approximate_keys(
    snap: &FlatSnapshot,
    p: &search::Prepared,
    q: usize,
) -> std::collections::HashMap<u64, f32> {
    let mut out = std::collections::HashMap::new();
    for (s, seg) in snap.segments.iter().enumerate() {
        for b in 0..seg.data.block_count() {
            let block = seg.data.block(b);
            for (id, key) in block.ids.iter().zip(p.approximate_keys(snap, q, s, b)) {
                out.insert(*id, key);
            }
        }
    }
    out
}

#[test]
fn deleted_rows_disappear_and_unknown_ids_are_refused() {
    let mut rng = ChaCha8Rng::seed_from_u64(61);
    let dim = 16;
    let data = gaussian(&mut rng, 700, dim);
    for dtype in Dtype::ALL {
        let dir = tempfile::tempdir().unwrap();
        let config = FlatConfig::new(dim, dtype, Metric::Cosine).with_segment_rows(256);
        let mut index = build(dir.path(), config, &data, 1);
        let q = &data[5 * dim..6 * dim];
        let before = index.snapshot().search(q, 5).unwrap();
        assert_eq!(before[0].id, 11, "row 5 (id 11) is its own best match");
        // One id in a sealed segment, one in the writable segment.
        index.delete(11).unwrap();
        index.delete(1 + 2 * 650).unwrap();
        let snap = index.snapshot();
        assert_eq!(snap.len(), 698);
        assert!(!snap.contains(11) && snap.get(11).is_none());
        let after = snap.search(q, 5).unwrap();
        assert!(after.iter().all(|h| h.id != 11));
        assert_eq!(after[..4], before[1..]);
        let all = snap.search_threshold(q, -1.0).unwrap();
        assert_eq!(all.len(), 698);
        assert!(matches!(index.delete(11), Err(Error::UnknownId { id: 11 })));
        assert!(matches!(index.delete(12), Err(Error::UnknownId { id: 12 })));
        assert!(matches!(
            index.delete(1_000_000),
            Err(Error::UnknownId { .. })
        ));

        // Deletions survive a reopen, including across a seal.
        index.seal().unwrap();
        index.sync().unwrap();
        drop(index);
        let index = FlatIndex::open(dir.path(), OpenOptions::default()).unwrap();
        assert_eq!(index.len(), 698);
        assert!(!index.snapshot().contains(11));
        assert!(!index.snapshot().contains(1 + 2 * 650));
    }
}

#[test]
fn reopened_index_returns_identical_results() {
    let mut rng = ChaCha8Rng::seed_from_u64(71);
    let dim = 24;
    let data = gaussian(&mut rng, 1000, dim);
    let queries = gaussian(&mut rng, 5, dim);
    for dtype in Dtype::ALL {
        let dir = tempfile::tempdir().unwrap();
        let config = FlatConfig::new(dim, dtype, Metric::L2).with_segment_rows(300);
        let mut index = build(dir.path(), config, &data, 7);
        index.sync().unwrap();
        let before = index.snapshot().search_batch(&queries, 20).unwrap();
        let last = index.last_id();
        drop(index);
        let index = FlatIndex::open(dir.path(), OpenOptions::default()).unwrap();
        assert_eq!(index.open_report().segments, 3);
        assert_eq!(index.open_report().replayed_rows, 100);
        assert_eq!(index.last_id(), last);
        assert_eq!(index.snapshot().search_batch(&queries, 20).unwrap(), before);
        assert_eq!(index.snapshot().get(7), Some(data[..dim].to_vec()));
    }
}

#[test]
fn bad_vectors_are_typed_errors_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut index =
        FlatIndex::create(dir.path(), FlatConfig::new(4, Dtype::F16, Metric::Cosine)).unwrap();
    index.append(10, &[1.0, 0.0, 0.0, 0.0]).unwrap();
    let err = |r: Result<()>| r.unwrap_err();
    assert!(matches!(
        err(index.append(11, &[1.0; 3])),
        Error::DimensionMismatch {
            expected: 4,
            got: 3
        }
    ));
    assert!(matches!(
        err(index.append(11, &[1.0, f32::NAN, 0.0, 0.0])),
        Error::NonFinite { index: 1, .. }
    ));
    assert!(matches!(
        err(index.append(11, &[f32::INFINITY, 0.0, 0.0, 0.0])),
        Error::NonFinite { index: 0, .. }
    ));
    assert!(matches!(
        err(index.append(11, &[0.0; 4])),
        Error::ZeroVector { .. }
    ));
    assert!(matches!(
        err(index.append(10, &[1.0; 4])),
        Error::IdNotIncreasing { id: 10, last: 10 }
    ));
    // All or nothing: the bad second row keeps the good first one out.
    let batch = [1.0, 1.0, 1.0, 1.0, 1.0, f32::NAN, 1.0, 1.0];
    assert!(index.append_batch(&[11, 12], &batch).is_err());
    assert_eq!(index.len(), 1);
    assert!(index.append_batch(&[11, 12], &[1.0; 7]).is_err());

    let snap = index.snapshot();
    assert!(matches!(
        snap.search(&[1.0; 5], 1),
        Err(Error::DimensionMismatch { .. })
    ));
    assert!(matches!(
        snap.search(&[f32::NAN; 4], 1),
        Err(Error::NonFinite { .. })
    ));
    assert!(matches!(
        snap.search(&[0.0; 4], 1),
        Err(Error::ZeroVector { .. })
    ));
    assert!(matches!(
        snap.search_threshold(&[1.0; 4], f32::NAN),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        snap.search_batch(&[1.0; 6], 1),
        Err(Error::DimensionMismatch { .. })
    ));
    assert!(matches!(
        snap.search_batch(&[], 1),
        Err(Error::DimensionMismatch { .. })
    ));
    assert!(snap.search(&[1.0; 4], 0).unwrap().is_empty());

    // f16 storage refuses what f16 cannot hold; L2 accepts zero vectors.
    let dir = tempfile::tempdir().unwrap();
    let mut l2 = FlatIndex::create(dir.path(), FlatConfig::new(2, Dtype::F16, Metric::L2)).unwrap();
    let e = err(l2.append(1, &[70000.0, 0.0]));
    assert!(e.to_string().contains("f16 range"), "{e}");
    l2.append(1, &[0.0, 0.0]).unwrap();
    assert_eq!(l2.snapshot().search(&[3.0, 4.0], 1).unwrap()[0].score, 25.0);

    assert!(matches!(
        FlatIndex::create(
            &dir.path().join("x"),
            FlatConfig::new(0, Dtype::F32, Metric::L2)
        ),
        Err(Error::InvalidArgument { name: "dim", .. })
    ));
}

#[test]
fn reopening_with_other_settings_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = FlatConfig::new(8, Dtype::I8, Metric::Cosine);
    FlatIndex::create(dir.path(), config).unwrap();
    assert!(FlatIndex::create(dir.path(), config).is_err());
    let other = FlatConfig { dim: 9, ..config };
    let e = FlatIndex::open_or_create(dir.path(), other, OpenOptions::default()).unwrap_err();
    assert!(
        matches!(e, Error::ConfigMismatch { field: "dim", .. }),
        "{e}"
    );
    let other = FlatConfig {
        dtype: Dtype::F32,
        ..config
    };
    let e = FlatIndex::open_or_create(dir.path(), other, OpenOptions::default()).unwrap_err();
    assert!(
        matches!(e, Error::ConfigMismatch { field: "dtype", .. }),
        "{e}"
    );
    assert!(FlatIndex::open_or_create(dir.path(), config, OpenOptions::default()).is_ok());
}

fn sealed_index(dir: &Path) -> FlatIndex {
    let mut rng = ChaCha8Rng::seed_from_u64(81);
    let config = FlatConfig::new(16, Dtype::I8, Metric::Cosine).with_segment_rows(200);
    let data = gaussian(&mut rng, 500, 16);
    let mut index = build(dir, config, &data, 1);
    index.sync().unwrap();
    index
}

#[test]
fn damaged_segments_are_reported_with_their_path() {
    let dir = tempfile::tempdir().unwrap();
    drop(sealed_index(dir.path()));
    let seg = segment::segment_path(dir.path(), 1);
    let full = std::fs::read(&seg).unwrap();
    let open = || FlatIndex::open(dir.path(), OpenOptions::default());

    std::fs::write(&seg, &full[..full.len() - 100]).unwrap();
    let e = open().unwrap_err();
    assert!(
        matches!(e, Error::Corrupted { ref path, .. } if path == &seg),
        "{e}"
    );

    let mut flipped = full.clone();
    flipped[full.len() / 2] ^= 4;
    std::fs::write(&seg, &flipped).unwrap();
    let e = open().unwrap_err();
    assert!(e.to_string().contains("checksum"), "{e}");
    // Without verification the flip goes unnoticed at open (documented).
    assert!(
        FlatIndex::open(
            dir.path(),
            OpenOptions {
                verify_checksums: false
            }
        )
        .is_ok()
    );

    let mut foreign = full.clone();
    foreign[..8].copy_from_slice(b"GARBAGE!");
    std::fs::write(&seg, &foreign).unwrap();
    assert!(matches!(
        open().unwrap_err(),
        Error::IncompatibleFormat { .. }
    ));

    std::fs::remove_file(&seg).unwrap();
    let e = open().unwrap_err();
    assert!(
        matches!(e, Error::Io { ref path, .. } if path == &seg),
        "{e}"
    );

    // A segment swapped for another one is caught by the manifest check.
    std::fs::copy(segment::segment_path(dir.path(), 2), &seg).unwrap();
    let e = open().unwrap_err();
    assert!(e.to_string().contains("manifest says"), "{e}");
}

#[test]
fn a_torn_log_tail_loses_only_the_torn_row() {
    let dir = tempfile::tempdir().unwrap();
    let index = sealed_index(dir.path());
    let log = index.growing.log_path();
    drop(index);
    let len = std::fs::metadata(&log).unwrap().len();
    let file = std::fs::OpenOptions::new().write(true).open(&log).unwrap();
    file.set_len(len - 10).unwrap();
    drop(file);
    let index = FlatIndex::open(dir.path(), OpenOptions::default()).unwrap();
    let report = index.open_report();
    assert_eq!(report.replayed_rows, 99);
    assert!(report.vector_log.dropped_bytes > 0);
    assert_eq!(index.len(), 499);
    assert_eq!(index.last_id(), Some(1 + 2 * 498));
}

#[test]
fn leftovers_of_an_interrupted_seal_are_cleaned_up() {
    let dir = tempfile::tempdir().unwrap();
    drop(sealed_index(dir.path()));
    // A segment file written but never listed (crash before the manifest
    // update), a stale log of a sealed segment, and a stray temporary.
    std::fs::copy(
        segment::segment_path(dir.path(), 1),
        segment::segment_path(dir.path(), 9),
    )
    .unwrap();
    std::fs::write(dir.path().join(growing::log_file_name(1)), b"stale").unwrap();
    std::fs::write(dir.path().join("index.bmman.tmp"), b"half").unwrap();
    let index = FlatIndex::open(dir.path(), OpenOptions::default()).unwrap();
    assert_eq!(index.open_report().removed_files.len(), 3);
    assert_eq!(index.len(), 500);
    assert!(!segment::segment_path(dir.path(), 3).exists());

    // A missing writable-segment log (crash right after the manifest
    // update) is recreated empty.
    let log = index.growing.log_path();
    drop(index);
    std::fs::remove_file(&log).unwrap();
    let index = FlatIndex::open(dir.path(), OpenOptions::default()).unwrap();
    assert_eq!(index.len(), 400);
}

#[test]
fn snapshots_are_isolated_from_later_writes() {
    let dir = tempfile::tempdir().unwrap();
    let mut index =
        FlatIndex::create(dir.path(), FlatConfig::new(2, Dtype::F32, Metric::Cosine)).unwrap();
    index.append(1, &[1.0, 0.0]).unwrap();
    let old = index.snapshot();
    index.append(2, &[1.0, 0.1]).unwrap();
    index.delete(1).unwrap();
    assert_eq!(old.len(), 1);
    assert_eq!(old.search(&[1.0, 0.0], 5).unwrap().len(), 1);
    assert!(old.contains(1));
    let new = index.snapshot();
    assert_eq!(
        new.search(&[1.0, 0.0], 5)
            .unwrap()
            .iter()
            .map(|h| h.id)
            .collect::<Vec<_>>(),
        vec![2]
    );
}

#[test]
fn concurrent_searches_see_whole_batches_only() {
    let dir = tempfile::tempdir().unwrap();
    let dim = 8;
    let config = FlatConfig::new(dim, Dtype::I8, Metric::Cosine).with_segment_rows(500);
    let mut index = FlatIndex::create(dir.path(), config).unwrap();
    let reader = index.reader();
    let batch = 37;
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        let searcher = scope.spawn(|| {
            let mut seen = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let snap = reader.snapshot();
                let n = snap.len();
                assert_eq!(n % batch, 0, "a search saw part of a batch");
                let hits = snap.search_threshold(&[1.0; 8], -1.0).unwrap();
                assert_eq!(hits.len(), n);
                seen = seen.max(n);
            }
            seen
        });
        let mut rng = ChaCha8Rng::seed_from_u64(91);
        for b in 0..40u64 {
            let ids: Vec<u64> = (0..batch as u64).map(|i| b * 100 + i).collect();
            index
                .append_batch(&ids, &gaussian(&mut rng, batch, dim))
                .unwrap();
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(searcher.join().unwrap() > 0);
    });
    assert_eq!(index.len(), 40 * batch);
}

/// Format version 1, as written by `examples/generate_fixtures.rs` into
/// `tests/fixtures/flat-v1/`: one index per dtype with a sealed segment, a
/// writable segment's log and tombstones. Future builds must keep opening
/// these files and answering exactly (or bump the version and convert).
#[test]
fn version_1_fixtures_open_and_answer_exactly() {
    const ROWS: usize = 300;
    const DIM: usize = 12;
    let value = |row: usize, k: usize| ((row * 31 + k * 17) % 97) as f32 / 48.5 - 1.0 + 0.01;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/flat-v1");
    for (dtype, metric) in [
        (Dtype::F32, Metric::Cosine),
        (Dtype::F16, Metric::L2),
        (Dtype::I8, Metric::InnerProduct),
    ] {
        // Open a copy: opening may repair files, and fixtures must not change.
        let src = root.join(dtype.name());
        let dir = tempfile::tempdir().unwrap();
        let mut files = 0;
        for entry in std::fs::read_dir(&src).unwrap() {
            let path = entry.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            assert_eq!(&bytes[..8], b"BIOMATCH", "{}", path.display());
            assert_eq!(
                u16::from_le_bytes([bytes[12], bytes[13]]),
                1,
                "{}",
                path.display()
            );
            std::fs::write(dir.path().join(path.file_name().unwrap()), bytes).unwrap();
            files += 1;
        }
        assert_eq!(files, 4, "{dtype}: manifest, segment, log, tombstones");

        let index = FlatIndex::open(dir.path(), OpenOptions::default()).unwrap();
        let report = index.open_report();
        assert_eq!((report.segments, report.replayed_rows), (1, 100), "{dtype}");
        assert!(report.removed_files.is_empty() && report.vector_log.dropped_bytes == 0);
        assert_eq!(
            index.config(),
            FlatConfig::new(DIM, dtype, metric).with_segment_rows(200)
        );
        let deleted = [1000 + 3 * 5, 1000 + 3 * 250];
        let rows: Vec<(u64, Vec<f32>)> = (0..ROWS)
            .map(|r| (1000 + 3 * r as u64, (0..DIM).map(|k| value(r, k)).collect()))
            .filter(|(id, _)| !deleted.contains(id))
            .collect();
        let snap = index.snapshot();
        assert_eq!(snap.len(), rows.len());
        for id in deleted {
            assert!(!snap.contains(id));
        }
        for (id, v) in &rows {
            assert_eq!(snap.label(*id), Some(id / 7), "{dtype} row {id}");
            let got = snap.get(*id).unwrap();
            let want = stored(metric, v);
            assert!(
                got.iter()
                    .zip(&want)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "{dtype} row {id}"
            );
        }
        for q in [7usize, 123, 260, 299] {
            let query: Vec<f32> = (0..DIM).map(|k| value(q, k) * 0.5 + 0.1).collect();
            let got = snap.search(&query, 20).unwrap();
            assert_same_hits(
                &got,
                &brute_force(metric, &rows, &query, 20),
                &format!("{dtype} q{q}"),
            );
        }
    }
}

#[test]
fn a_log_from_the_future_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(sealed_index(dir.path()));
    let current = dir.path().join(growing::log_file_name(3));
    std::fs::copy(&current, dir.path().join(growing::log_file_name(99))).unwrap();
    let e = FlatIndex::open(dir.path(), OpenOptions::default()).unwrap_err();
    assert!(
        e.to_string().contains("newer than the writable segment"),
        "{e}"
    );
}

#[test]
fn labels_are_stored_and_returned_with_hits() {
    let mut rng = ChaCha8Rng::seed_from_u64(101);
    for dtype in Dtype::ALL {
        let dir = tempfile::tempdir().unwrap();
        let config = FlatConfig::new(8, dtype, Metric::Cosine).with_segment_rows(150);
        let mut index = FlatIndex::create(dir.path(), config).unwrap();
        let ids: Vec<u64> = (0..400).collect();
        let labels: Vec<u64> = ids.iter().map(|i| 1_000_000 + i / 3).collect();
        let data = gaussian(&mut rng, 400, 8);
        index.append_labeled(&ids, &labels, &data).unwrap();
        assert!(matches!(
            index.append_labeled(&[400], &[], &data[..8]),
            Err(Error::InvalidArgument { name: "labels", .. })
        ));
        index.sync().unwrap();
        for index in [
            index,
            FlatIndex::open(dir.path(), OpenOptions::default()).unwrap(),
        ] {
            let snap = index.snapshot();
            for h in snap.search_threshold(&data[..8], -1.0).unwrap() {
                assert_eq!(h.label, 1_000_000 + h.id / 3, "{dtype}");
            }
            assert_eq!(snap.label(7), Some(1_000_002));
            let scored = snap.score(&data[..8], &[0, 7, 9999]).unwrap();
            assert_eq!(scored[1].unwrap().label, 1_000_002);
            assert!(scored[2].is_none());
            let top = snap.search(&data[..8], 1).unwrap()[0];
            assert_eq!(
                (top.id, top.score.to_bits()),
                (0, scored[0].unwrap().score.to_bits())
            );
        }
    }
}

#[test]
fn compaction_reclaims_deleted_rows_and_keeps_results() {
    let mut rng = ChaCha8Rng::seed_from_u64(111);
    let dim = 16;
    let data = gaussian(&mut rng, 1000, dim);
    let queries = gaussian(&mut rng, 6, dim);
    for dtype in Dtype::ALL {
        let dir = tempfile::tempdir().unwrap();
        let config = FlatConfig::new(dim, dtype, Metric::Cosine).with_segment_rows(256);
        let mut index = build(dir.path(), config, &data, 1);
        // Every row of the first segment, every third row elsewhere
        // (sealed and writable segments).
        let doomed: Vec<u64> = (0..1000u64)
            .filter(|i| *i < 256 || i % 3 == 0)
            .map(|i| 1 + 2 * i)
            .collect();
        for &id in &doomed {
            index.delete(id).unwrap();
        }
        let before = index.snapshot().search_batch(&queries, 50).unwrap();
        let old_files: Vec<_> = (1..=3)
            .map(|seq| segment::segment_path(dir.path(), seq))
            .collect();
        assert!(old_files.iter().all(|p| p.exists()));

        // A high bar only takes the fully deleted segment...
        let report = index.compact(0.9).unwrap();
        assert_eq!(
            (
                report.segments_dropped,
                report.segments_rewritten,
                report.rows_removed
            ),
            (1, 0, 256),
            "{dtype}"
        );
        // ...and no bar the other two sealed ones.
        let report = index.compact(0.0).unwrap();
        assert_eq!(
            (report.segments_dropped, report.segments_rewritten),
            (0, 2),
            "{dtype}"
        );
        let in_sealed = doomed.iter().filter(|&&id| id < 1 + 2 * 768).count();
        assert_eq!(256 + report.rows_removed, in_sealed);
        assert!(
            old_files.iter().all(|p| !p.exists()),
            "old segment files removed"
        );
        let snap = index.snapshot();
        assert_eq!(
            snap.deleted(),
            doomed.len() - in_sealed,
            "only the writable segment's deletions remain"
        );
        assert_eq!(snap.search_batch(&queries, 50).unwrap(), before);

        // The compacted state survives a reopen, tombstones included.
        index.sync().unwrap();
        drop(index);
        let index = FlatIndex::open(dir.path(), OpenOptions::default()).unwrap();
        assert_eq!(index.open_report().unknown_tombstones, 0);
        assert_eq!(index.len(), 1000 - doomed.len());
        assert_eq!(index.snapshot().search_batch(&queries, 50).unwrap(), before);
    }
}

#[test]
fn an_interrupted_compaction_leaves_a_consistent_index() {
    let mut rng = ChaCha8Rng::seed_from_u64(121);
    let data = gaussian(&mut rng, 600, 8);
    let config = FlatConfig::new(8, Dtype::I8, Metric::Cosine).with_segment_rows(200);
    let dir = tempfile::tempdir().unwrap();
    let mut index = build(dir.path(), config, &data, 1);
    for id in [1, 3, 5, 401, 403] {
        index.delete(id).unwrap();
    }
    index.sync().unwrap();
    let want = index.snapshot().search_threshold(&data[..8], -1.0).unwrap();
    let manifest_before = std::fs::read(dir.path().join("index.bmman")).unwrap();
    let tombstones_before = std::fs::read(dir.path().join(TOMBSTONES_FILE)).unwrap();
    index.compact(0.0).unwrap();
    let seg_after: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".bmseg"))
        .collect();
    drop(index);

    // Crash before the manifest switch: the new segment files exist but are
    // unlisted, the old ones still listed.
    let scratch = tempfile::tempdir().unwrap();
    for p in &seg_after {
        std::fs::copy(p, scratch.path().join(p.file_name().unwrap())).unwrap();
    }
    std::fs::write(dir.path().join("index.bmman"), &manifest_before).unwrap();
    std::fs::write(dir.path().join(TOMBSTONES_FILE), &tombstones_before).unwrap();
    // Restore the old segment files from a fresh build of the same data.
    let rebuilt = tempfile::tempdir().unwrap();
    let mut again = build(rebuilt.path(), config, &data, 1);
    again.sync().unwrap();
    drop(again);
    for seq in [1, 2] {
        std::fs::copy(
            segment::segment_path(rebuilt.path(), seq),
            segment::segment_path(dir.path(), seq),
        )
        .unwrap();
    }
    let index = FlatIndex::open(dir.path(), OpenOptions::default()).unwrap();
    assert!(
        !index.open_report().removed_files.is_empty(),
        "unlisted compacted files removed"
    );
    assert_eq!(
        index.snapshot().search_threshold(&data[..8], -1.0).unwrap(),
        want
    );
    drop(index);

    // Crash after the manifest switch, before the tombstone rewrite: the
    // old tombstones name rows that are gone, which is harmless.
    let dir2 = tempfile::tempdir().unwrap();
    let mut index = build(dir2.path(), config, &data, 1);
    for id in [1, 3, 5, 401, 403] {
        index.delete(id).unwrap();
    }
    index.sync().unwrap();
    let old_tombstones = std::fs::read(dir2.path().join(TOMBSTONES_FILE)).unwrap();
    index.compact(0.0).unwrap();
    drop(index);
    std::fs::write(dir2.path().join(TOMBSTONES_FILE), &old_tombstones).unwrap();
    let index = FlatIndex::open(dir2.path(), OpenOptions::default()).unwrap();
    // All five deleted rows were in compacted segments (ids 401 and 403 are
    // rows 200 and 201, in segment 2).
    assert_eq!(index.open_report().unknown_tombstones, 5);
    assert_eq!(
        index.snapshot().search_threshold(&data[..8], -1.0).unwrap(),
        want
    );
}

/// Rows by id, as a catalog would hold them: (label, vector).
struct MapSource(std::collections::BTreeMap<u64, (u64, Vec<f32>)>);

impl RowSource for MapSource {
    fn rows(&mut self, first: u64, last: u64, row: &mut RowSink<'_>) -> Result<()> {
        for (&id, (label, v)) in self.0.range(first..=last) {
            row(id, *label, v)?;
        }
        Ok(())
    }
}

#[test]
fn damaged_files_are_rebuilt_from_the_source() {
    let mut rng = ChaCha8Rng::seed_from_u64(131);
    let dim = 12;
    let data = gaussian(&mut rng, 700, dim);
    for dtype in Dtype::ALL {
        let dir = tempfile::tempdir().unwrap();
        let config = FlatConfig::new(dim, dtype, Metric::L2).with_segment_rows(200);
        let mut index = build(dir.path(), config, &data, 1);
        for id in [3, 5, 601] {
            index.delete(id).unwrap();
        }
        index.sync().unwrap();
        let want = index
            .snapshot()
            .search_threshold(&data[..dim], 1e9)
            .unwrap();
        drop(index);
        let mut source = MapSource(
            (0..700u64)
                .map(|i| {
                    (
                        1 + 2 * i,
                        (
                            1 + 2 * i,
                            data[i as usize * dim..(i as usize + 1) * dim].to_vec(),
                        ),
                    )
                })
                .filter(|(id, _)| ![3, 5, 601].contains(id))
                .collect(),
        );

        // Flip a bit in segment 1, delete segment 2, garble the log's header.
        let seg1 = segment::segment_path(dir.path(), 1);
        let mut bytes = std::fs::read(&seg1).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 1;
        std::fs::write(&seg1, &bytes).unwrap();
        std::fs::remove_file(segment::segment_path(dir.path(), 2)).unwrap();
        let log = dir.path().join(growing::log_file_name(4));
        let mut bytes = std::fs::read(&log).unwrap();
        bytes[0] = b'X';
        std::fs::write(&log, &bytes).unwrap();

        assert!(
            FlatIndex::open(dir.path(), OpenOptions::default()).is_err(),
            "plain open refuses damage"
        );
        let index =
            FlatIndex::open_with_repair(dir.path(), OpenOptions::default(), &mut source).unwrap();
        let repaired: Vec<_> = index
            .open_report()
            .repaired
            .iter()
            .map(|r| r.path.clone())
            .collect();
        assert_eq!(
            repaired,
            vec![seg1.clone(), segment::segment_path(dir.path(), 2), log],
            "{dtype}"
        );
        // The writable segment's rows are gone with its log; the sealed ones are back.
        assert_eq!(index.last_id(), Some(1 + 2 * 599));
        let got = index
            .snapshot()
            .search_threshold(&data[..dim], 1e9)
            .unwrap();
        let expect: Vec<Hit> = want
            .iter()
            .copied()
            .filter(|h| h.id <= 1 + 2 * 599)
            .collect();
        assert_eq!(got, expect, "{dtype}");
        drop(index);
        // Repaired files are plain valid files afterwards.
        assert!(FlatIndex::open(dir.path(), OpenOptions::default()).is_ok());
    }
}

#[test]
fn manifest_and_tombstone_damage_need_a_full_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    drop(sealed_index(dir.path()));
    let mut source = MapSource(Default::default());
    for file in ["index.bmman", TOMBSTONES_FILE] {
        let path = dir.path().join(file);
        let good = std::fs::read(&path).unwrap();
        let mut bad = good.clone();
        bad[3] ^= 1;
        std::fs::write(&path, &bad).unwrap();
        assert!(
            FlatIndex::open_with_repair(dir.path(), OpenOptions::default(), &mut source).is_err(),
            "{file}"
        );
        std::fs::write(&path, &good).unwrap();
    }
    assert!(FlatIndex::open(dir.path(), OpenOptions::default()).is_ok());
}

#[test]
fn self_join_over_all_tile_pairs_equals_brute_force() {
    let mut rng = ChaCha8Rng::seed_from_u64(202);
    let (n, dim) = (700, 24);
    let data = clustered(&mut rng, n, dim, 40, 0.35);
    for metric in [Metric::Cosine, Metric::L2] {
        // The brute-force pairs, and a threshold that keeps ~1500 of them.
        let mut all: Vec<(u64, u64, f32)> = Vec::new();
        for i in 0..n {
            for j in i + 1..n {
                // The join's queries are stored rows, prepared again.
                let a = stored(metric, &stored(metric, &data[i * dim..(i + 1) * dim]));
                let b = stored(metric, &data[j * dim..(j + 1) * dim]);
                all.push((2 * i as u64, 2 * j as u64, exact_key(metric, &a, &b)));
            }
        }
        let deleted: Vec<u64> = (0..n as u64).step_by(7).map(|i| 2 * i).collect();
        all.retain(|(a, b, _)| !deleted.contains(a) && !deleted.contains(b));
        let mut keys: Vec<f32> = all.iter().map(|p| p.2).collect();
        keys.sort_by(|a, b| b.total_cmp(a));
        let key = keys[1500];
        let threshold = if metric == Metric::L2 { -key } else { key };
        let mut want: Vec<(u64, u64, u32)> = all
            .iter()
            .filter(|p| p.2 >= key)
            .map(|&(a, b, k)| (a, b, (if metric == Metric::L2 { -k } else { k }).to_bits()))
            .collect();
        want.sort();
        for dtype in Dtype::ALL {
            let dir = tempfile::tempdir().unwrap();
            let config = FlatConfig::new(dim, dtype, metric).with_segment_rows(300);
            let mut index = build(dir.path(), config, &data, 0);
            for &id in &deleted {
                index.delete(id).unwrap();
            }
            let snap = index.snapshot();
            for tile_rows in [128, 256, 1000] {
                let starts = snap.tile_starts(tile_rows);
                let range = |t: usize| starts[t]..=starts.get(t + 1).map_or(u64::MAX, |&s| s - 1);
                let mut got = Vec::new();
                let mut comparisons = 0;
                for ta in 0..starts.len() {
                    for tb in ta..starts.len() {
                        let join = snap.join(range(ta), range(tb), threshold).unwrap();
                        comparisons += join.comparisons;
                        got.extend(join.pairs.iter().map(|p| {
                            assert_eq!((p.a_label, p.b_label), (p.a, p.b));
                            (p.a, p.b, p.score.to_bits())
                        }));
                    }
                }
                got.sort();
                let live = (n - deleted.len()) as u64;
                let what = format!("{metric} {dtype} tiles of {tile_rows}");
                assert_eq!(comparisons, live * (live - 1) / 2, "{what}");
                assert_eq!(got.len(), want.len(), "{what}: pair count");
                let differ: Vec<_> = got
                    .iter()
                    .zip(&want)
                    .filter(|(g, w)| g != w)
                    .take(3)
                    .collect();
                assert!(differ.is_empty(), "{what}: {differ:?}");
            }
        }
    }
}

#[test]
fn sampled_pair_scores_are_seeded_and_skip_same_label_rows() {
    let mut rng = ChaCha8Rng::seed_from_u64(203);
    let dir = tempfile::tempdir().unwrap();
    let config = FlatConfig::new(16, Dtype::I8, Metric::Cosine).with_segment_rows(200);
    let mut index = FlatIndex::create(dir.path(), config).unwrap();
    let ids: Vec<u64> = (0..500).collect();
    // Pairs of rows share a label and are the same vector.
    let labels: Vec<u64> = ids.iter().map(|i| i / 2).collect();
    let base = gaussian(&mut rng, 250, 16);
    let data: Vec<f32> = (0..500)
        .flat_map(|i| base[(i / 2) * 16..(i / 2 + 1) * 16].to_vec())
        .collect();
    index.append_labeled(&ids, &labels, &data).unwrap();
    let snap = index.snapshot();
    let a = snap.sample_pair_scores(2000, 9);
    assert_eq!(a.len(), 2000);
    assert_eq!(a, snap.sample_pair_scores(2000, 9));
    assert_ne!(a, snap.sample_pair_scores(2000, 10));
    // Same-label pairs (score 1) are never drawn.
    assert!(
        a.iter().all(|&s| s < 0.999),
        "{:?}",
        a.iter().cloned().fold(f32::MIN, f32::max)
    );
    let empty = FlatIndex::create(&dir.path().join("e"), config).unwrap();
    assert!(empty.snapshot().sample_pair_scores(10, 1).is_empty());
    assert!(empty.snapshot().tile_starts(128).is_empty());
}
