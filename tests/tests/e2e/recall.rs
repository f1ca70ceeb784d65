//! Recall@10 of the compact (`f16`, `i8`) flat indexes against `f32`
//! brute force, on random and on clustered data. The bar is 0.999;
//! the design (error margins + exact re-scoring) should give 1.

use biomatch_datasets::synth;
use biomatch_engine::index::flat::{FlatConfig, FlatIndex};
use biomatch_engine::index::{Dtype, Hit, Metric};

const N: usize = 60_000;
const DIM: usize = 128;
const QUERIES: usize = 200;
const K: usize = 10;

fn index(dir: &std::path::Path, dtype: Dtype, data: &[f32]) -> FlatIndex {
    let config = FlatConfig::new(DIM, dtype, Metric::Cosine).with_segment_rows(25_000);
    let mut index = FlatIndex::create(dir, config).unwrap();
    let ids: Vec<u64> = (0..N as u64).collect();
    index.append_batch(&ids, data).unwrap();
    index
}

fn recall(got: &[Vec<Hit>], want: &[Vec<Hit>]) -> f64 {
    let mut found = 0;
    for (g, w) in got.iter().zip(want) {
        found += w.iter().filter(|h| g.iter().any(|x| x.id == h.id)).count();
    }
    found as f64 / (want.len() * K) as f64
}

fn check(name: &str, data: &[f32], queries: &[f32]) {
    let dir = tempfile::tempdir().unwrap();
    let exact = index(&dir.path().join("f32"), Dtype::F32, data).snapshot();
    let want = exact.search_batch(queries, K).unwrap();
    for dtype in [Dtype::F16, Dtype::I8] {
        let snap = index(&dir.path().join(dtype.name()), dtype, data).snapshot();
        let got = snap.search_batch(queries, K).unwrap();
        let r = recall(&got, &want);
        eprintln!("recall@{K} {name} {dtype}: {r:.6}");
        assert!(r >= 0.999, "{name} {dtype}: recall@{K} = {r}");
        // Beyond the bar: identical results, scores included.
        assert_eq!(got, want, "{name} {dtype}: results differ from f32");
    }
}

#[test]
fn compact_indexes_keep_recall_on_random_data() {
    let data = synth::random_unit(N, DIM, 1);
    let queries = synth::random_unit(QUERIES, DIM, 2);
    check("random", &data, &queries);
}

#[test]
fn compact_indexes_keep_recall_on_clustered_data() {
    // 600 tight clusters of ~100 near-duplicates: many nearly equal scores.
    let clusters = synth::Clusters::new(600, DIM, 0.3, 3);
    let (data, _) = clusters.sample(N, 4);
    let (queries, _) = clusters.sample(QUERIES, 5);
    check("clustered", &data, &queries);
}
