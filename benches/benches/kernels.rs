//! Kernel benches: every available backend side by side, per dtype, at
//! d = 128 and 512 — pair kernels and block kernels (1 query and a batch of
//! 64 against one block of 128 rows, in cache).
//!
//! Ids read `pair-dot-f32/d512/avx512vnni`, `block-dot-i8-batch64/d512/avx2`.

use biomatch_datasets::synth;
use biomatch_engine::vector::{BLOCK_ROWS, Kernels, f16, layout, quant};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

fn codes(v: &[f32], dim: usize) -> Vec<i8> {
    let mut out = vec![0i8; v.len()];
    for (x, c) in v.chunks(dim).zip(out.chunks_mut(dim)) {
        quant::quantize_i8(x, c);
    }
    out
}

fn pairs(c: &mut Criterion) {
    for dim in [128, 512] {
        let a = synth::random_unit(1, dim, 1);
        let b = synth::random_unit(1, dim, 2);
        let (ah, bh): (Vec<f16>, Vec<f16>) = (
            a.iter().map(|&x| f16::from_f32(x)).collect(),
            b.iter().map(|&x| f16::from_f32(x)).collect(),
        );
        let (ai, bi) = (codes(&a, dim), codes(&b, dim));
        let mut group = c.benchmark_group(format!("pair/d{dim}"));
        group.throughput(Throughput::Elements(dim as u64));
        for k in Kernels::available() {
            let name = k.backend().name();
            group.bench_function(BenchmarkId::new("dot-f32", name), |bench| {
                bench.iter(|| k.dot_f32(black_box(&a), black_box(&b)))
            });
            group.bench_function(BenchmarkId::new("l2sq-f32", name), |bench| {
                bench.iter(|| k.l2sq_f32(black_box(&a), black_box(&b)))
            });
            group.bench_function(BenchmarkId::new("dot-f16", name), |bench| {
                bench.iter(|| k.dot_f16(black_box(&ah), black_box(&bh)))
            });
            group.bench_function(BenchmarkId::new("dot-i8", name), |bench| {
                bench.iter(|| k.dot_i8(black_box(&ai), black_box(&bi)))
            });
            group.bench_function(BenchmarkId::new("l2sq-i8", name), |bench| {
                bench.iter(|| k.l2sq_i8(black_box(&ai), black_box(&bi)))
            });
        }
        group.finish();
    }
}

fn blocks(c: &mut Criterion) {
    for dim in [128, 512] {
        let rows = synth::random_unit(BLOCK_ROWS, dim, 3);
        let block = layout::pack_f32(&rows, dim);
        let block16: Vec<f16> = block.iter().map(|&x| f16::from_f32(x)).collect();
        let block8 = layout::pack_i8(&codes(&rows, dim), dim);
        for nq in [1usize, 64] {
            let queries = synth::random_unit(nq, dim, 4);
            let qcodes = layout::pad_queries_i8(&codes(&queries, dim), dim);
            let mut out = vec![0.0f32; nq * BLOCK_ROWS];
            let mut outi = vec![0i32; nq * BLOCK_ROWS];
            let label = if nq == 1 {
                "single".to_string()
            } else {
                format!("batch{nq}")
            };
            let mut group = c.benchmark_group(format!("block-{label}/d{dim}"));
            // Multiply-adds per call.
            group.throughput(Throughput::Elements((nq * BLOCK_ROWS * dim) as u64));
            for k in Kernels::available() {
                let name = k.backend().name();
                group.bench_function(BenchmarkId::new("dot-f32", name), |b| {
                    b.iter(|| {
                        k.block_dot_f32(black_box(&queries), dim, black_box(&block), &mut out)
                    })
                });
                group.bench_function(BenchmarkId::new("dot-f16", name), |b| {
                    b.iter(|| {
                        k.block_dot_f16(black_box(&queries), dim, black_box(&block16), &mut out)
                    })
                });
                group.bench_function(BenchmarkId::new("dot-i8", name), |b| {
                    b.iter(|| {
                        k.block_dot_i8(black_box(&qcodes), dim, black_box(&block8), &mut outi)
                    })
                });
                group.bench_function(BenchmarkId::new("l2sq-f32", name), |b| {
                    b.iter(|| {
                        k.block_l2sq_f32(black_box(&queries), dim, black_box(&block), &mut out)
                    })
                });
            }
            group.finish();
        }
    }
}

criterion_group!(benches, pairs, blocks);
criterion_main!(benches);
