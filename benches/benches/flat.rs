//! Flat-index search benches: N = 1 000 000 rows (`BIOMATCH_BENCH_N` to
//! change), d = 512, cosine, top-10, per dtype: one query, and a batch of
//! 64 queries per call. Runs on all cores (rayon's global pool).
//!
//! The indexes are generated once under `target/bench-fixtures/` (about
//! 8 GB for all three dtypes at the default size) and reused.

use biomatch_benches::{fixture_dir, flat_rows};
use biomatch_datasets::synth;
use biomatch_engine::index::flat::FlatConfig;
use biomatch_engine::index::{Dtype, Metric};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

const DIM: usize = 512;

fn flat(c: &mut Criterion) {
    let n = flat_rows();
    let queries = synth::random_unit(64, DIM, 0x0051_EE71);
    for dtype in Dtype::ALL {
        let dir = fixture_dir().join(format!("flat-n{n}-d{DIM}-{dtype}"));
        let config = FlatConfig::new(DIM, dtype, Metric::Cosine);
        let index = synth::flat_fixture(&dir, config, n, 42).expect("bench fixture");
        let snap = index.snapshot();
        let mut group = c.benchmark_group(format!("flat-n{n}-d{DIM}"));
        group.sample_size(10);
        group.throughput(Throughput::Bytes(snap.scan_bytes() as u64));
        group.bench_function(BenchmarkId::new("single", dtype), |b| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) % 64;
                snap.search(black_box(&queries[i * DIM..(i + 1) * DIM]), 10)
                    .unwrap()
            })
        });
        group.throughput(Throughput::Elements(64));
        group.bench_function(BenchmarkId::new("batch64", dtype), |b| {
            b.iter(|| snap.search_batch(black_box(&queries), 10).unwrap())
        });
        group.finish();
    }
}

criterion_group!(benches, flat);
criterion_main!(benches);
