//! Kernel equivalence tests: every available backend against the scalar
//! reference (bit for bit where the result is defined exactly) and the
//! float pair kernels against an `f64` reference within a derived bound.
//!
//! Backends the CPU lacks cannot run here; [`simd_backends_under_test`]
//! prints which were skipped and fails when `BIOMATCH_REQUIRE_SIMD` names a
//! backend that is missing, so CI can insist on the ones it expects.

use proptest::prelude::*;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::layout::{self, BLOCK_ROWS};
use super::*;

/// Lengths from STYLE.md: around every SIMD width and tail boundary.
const LENGTHS: [usize; 14] = [0, 1, 7, 8, 15, 16, 31, 32, 63, 64, 127, 128, 257, 513];

/// Unit round-off of `f32`.
const U32: f64 = 1.0 / 16_777_216.0;

/// Higham's γₖ = k·u / (1 − k·u) for `f32`.
fn gamma(k: usize) -> f64 {
    let ku = k as f64 * U32;
    ku / (1.0 - ku)
}

fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

fn random_f32(rng: &mut ChaCha8Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-2.0f32..2.0)).collect()
}

fn random_i8(rng: &mut ChaCha8Rng, n: usize) -> Vec<i8> {
    (0..n).map(|_| rng.random::<i8>()).collect()
}

fn to_f16_vec(v: &[f32]) -> Vec<f16> {
    v.iter().map(|&x| f16::from_f32(x)).collect()
}

fn dot_f64(a: &[f64], b: &[f64]) -> (f64, f64) {
    let exact = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let abs = a.iter().zip(b).map(|(x, y)| (x * y).abs()).sum();
    (exact, abs)
}

fn l2_f64(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

fn widen(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| f64::from(x)).collect()
}

fn widen_f16(v: &[f16]) -> Vec<f64> {
    v.iter().map(|x| f64::from(x.to_f32())).collect()
}

/// `|got − exact| ≤ γₙ·Σ|aᵢbᵢ|` (Higham, Thm 3.5 — any summation order,
/// with or without FMA), plus `f64` slack for the reference itself.
fn assert_dot_within_bound(got: f32, a: &[f64], b: &[f64], what: &str) {
    let (exact, abs) = dot_f64(a, b);
    let bound = gamma(a.len()) * abs + 1e-30 + abs * 1e-15;
    let err = (f64::from(got) - exact).abs();
    assert!(err <= bound, "{what}: |{got} − {exact}| = {err} > {bound}");
}

/// `dᵢ = fl(aᵢ − bᵢ)` adds one rounding per term: `γₙ₊₂·Σ(aᵢ − bᵢ)²`.
fn assert_l2_within_bound(got: f32, a: &[f64], b: &[f64], what: &str) {
    let exact = l2_f64(a, b);
    let bound = gamma(a.len() + 2) * exact + 1e-30 + exact * 1e-15;
    let err = (f64::from(got) - exact).abs();
    assert!(err <= bound, "{what}: |{got} − {exact}| = {err} > {bound}");
}

#[test]
fn simd_backends_under_test() {
    let tested: Vec<&str> = Kernels::available()
        .iter()
        .map(|k| k.backend().name())
        .collect();
    let skipped: Vec<String> = Backend::PREFERENCE
        .into_iter()
        .filter(|b| !b.is_supported())
        .map(|b| {
            format!(
                "{} (CPU lacks {})",
                b.name(),
                b.missing_features().join(", ")
            )
        })
        .collect();
    eprintln!("SIMD backends tested: {}", tested.join(", "));
    if !skipped.is_empty() {
        eprintln!("SIMD backends SKIPPED: {}", skipped.join("; "));
    }
    if let Ok(required) = std::env::var("BIOMATCH_REQUIRE_SIMD") {
        for name in required.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let backend = Backend::parse(name).expect("BIOMATCH_REQUIRE_SIMD names a backend");
            assert!(
                backend.is_supported(),
                "BIOMATCH_REQUIRE_SIMD requires {name}, which this CPU lacks ({:?})",
                backend.missing_features()
            );
        }
    }
    assert!(tested.contains(&"scalar"));
    // The active backend is the best available one unless BIOMATCH_SIMD
    // forces another, and its name is queryable.
    let active = kernels().backend();
    assert_eq!(backend_name(), active.name());
    if std::env::var("BIOMATCH_SIMD").is_err() {
        assert_eq!(active, Backend::detect());
    }
}

#[test]
fn float_pair_kernels_are_within_the_rounding_bound() {
    let mut rng = rng(1);
    for kernels in Kernels::available() {
        for n in LENGTHS {
            let a = random_f32(&mut rng, n);
            let b = random_f32(&mut rng, n);
            let (a64, b64) = (widen(&a), widen(&b));
            let what = format!("{} dot_f32 n={n}", kernels.backend());
            assert_dot_within_bound(kernels.dot_f32(&a, &b), &a64, &b64, &what);
            let what = format!("{} l2sq_f32 n={n}", kernels.backend());
            assert_l2_within_bound(kernels.l2sq_f32(&a, &b), &a64, &b64, &what);

            let (ah, bh) = (to_f16_vec(&a), to_f16_vec(&b));
            let (ah64, bh64) = (widen_f16(&ah), widen_f16(&bh));
            let what = format!("{} dot_f16 n={n}", kernels.backend());
            assert_dot_within_bound(kernels.dot_f16(&ah, &bh), &ah64, &bh64, &what);
            let what = format!("{} l2sq_f16 n={n}", kernels.backend());
            assert_l2_within_bound(kernels.l2sq_f16(&ah, &bh), &ah64, &bh64, &what);
        }
    }
}

#[test]
fn integer_pair_kernels_are_bit_identical_to_scalar() {
    let mut rng = rng(2);
    for kernels in Kernels::available() {
        for n in LENGTHS {
            let a = random_i8(&mut rng, n);
            let b = random_i8(&mut rng, n);
            let name = kernels.backend();
            assert_eq!(
                kernels.dot_i8(&a, &b),
                scalar::dot_i8_scalar(&a, &b),
                "{name} dot n={n}"
            );
            assert_eq!(
                kernels.l2sq_i8(&a, &b),
                scalar::l2sq_i8_scalar(&a, &b),
                "{name} l2 n={n}"
            );
        }
    }
}

#[test]
fn integer_kernels_do_not_overflow_at_max_dim() {
    let lo = vec![i8::MIN; MAX_DIM];
    let hi = vec![i8::MAX; MAX_DIM];
    for kernels in Kernels::available() {
        assert_eq!(kernels.dot_i8(&lo, &lo), 128 * 128 * MAX_DIM as i32);
        assert_eq!(kernels.l2sq_i8(&lo, &hi), 255 * 255 * MAX_DIM as i32);
        assert_eq!(kernels.dot_i8(&lo, &hi), -128 * 127 * MAX_DIM as i32);
    }
}

#[test]
#[should_panic(expected = "vector lengths differ")]
fn mismatched_lengths_panic_before_any_kernel_runs() {
    kernels().dot_f32(&[1.0; 16], &[1.0; 15]);
}

#[test]
#[should_panic(expected = "block length")]
fn short_block_panics_before_any_kernel_runs() {
    let mut out = vec![0.0; BLOCK_ROWS];
    kernels().block_dot_f32(&[1.0; 8], 8, &[0.0; 8 * BLOCK_ROWS - 1], &mut out);
}

/// Query counts that exercise every tile size and remainder path.
const QUERY_COUNTS: [usize; 8] = [1, 2, 5, 6, 7, 12, 13, 25];

fn block_rows_f32(rng: &mut ChaCha8Rng, dim: usize, fill: usize) -> (Vec<f32>, Vec<f32>) {
    let rows = random_f32(rng, dim * fill);
    let block = layout::pack_f32(&rows, dim);
    (rows, block)
}

#[test]
fn float_block_kernels_are_bit_identical_across_backends() {
    let mut rng = rng(3);
    let scalar = Kernels::scalar();
    for dim in LENGTHS.into_iter().filter(|&d| d > 0) {
        for (nq, fill) in QUERY_COUNTS
            .into_iter()
            .zip([128, 1, 77, 128, 128, 5, 128, 128])
        {
            let queries = random_f32(&mut rng, nq * dim);
            let (_, block) = block_rows_f32(&mut rng, dim, fill);
            let block16 = to_f16_vec(&block);
            let mut want = vec![0.0f32; nq * BLOCK_ROWS];
            let mut got = want.clone();
            for kernels in Kernels::available() {
                let name = kernels.backend();
                scalar.block_dot_f32(&queries, dim, &block, &mut want);
                kernels.block_dot_f32(&queries, dim, &block, &mut got);
                assert_bits_eq(
                    &got,
                    &want,
                    &format!("{name} block_dot_f32 dim={dim} nq={nq}"),
                );
                scalar.block_l2sq_f32(&queries, dim, &block, &mut want);
                kernels.block_l2sq_f32(&queries, dim, &block, &mut got);
                assert_bits_eq(
                    &got,
                    &want,
                    &format!("{name} block_l2sq_f32 dim={dim} nq={nq}"),
                );
                scalar.block_dot_f16(&queries, dim, &block16, &mut want);
                kernels.block_dot_f16(&queries, dim, &block16, &mut got);
                assert_bits_eq(
                    &got,
                    &want,
                    &format!("{name} block_dot_f16 dim={dim} nq={nq}"),
                );
                scalar.block_l2sq_f16(&queries, dim, &block16, &mut want);
                kernels.block_l2sq_f16(&queries, dim, &block16, &mut got);
                assert_bits_eq(
                    &got,
                    &want,
                    &format!("{name} block_l2sq_f16 dim={dim} nq={nq}"),
                );
            }
        }
    }
}

fn assert_bits_eq(got: &[f32], want: &[f32], what: &str) {
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g.to_bits(), w.to_bits(), "{what}: index {i}: {g} != {w}");
    }
}

#[test]
fn scalar_block_kernels_are_within_the_rounding_bound() {
    let mut rng = rng(4);
    for dim in [1, 7, 128, 513] {
        let queries = random_f32(&mut rng, 3 * dim);
        let (rows, block) = block_rows_f32(&mut rng, dim, 100);
        let mut dots = vec![0.0f32; 3 * BLOCK_ROWS];
        let mut l2s = dots.clone();
        Kernels::scalar().block_dot_f32(&queries, dim, &block, &mut dots);
        Kernels::scalar().block_l2sq_f32(&queries, dim, &block, &mut l2s);
        for (q, query) in queries.chunks_exact(dim).enumerate() {
            for (r, row) in rows.chunks_exact(dim).enumerate() {
                let what = format!("dim={dim} q={q} r={r}");
                let (q64, r64) = (widen(query), widen(row));
                assert_dot_within_bound(dots[q * BLOCK_ROWS + r], &q64, &r64, &what);
                assert_l2_within_bound(l2s[q * BLOCK_ROWS + r], &q64, &r64, &what);
            }
        }
    }
}

#[test]
fn i8_block_kernels_are_exact() {
    let mut rng = rng(5);
    for dim in LENGTHS.into_iter().filter(|&d| d > 0) {
        for (nq, fill) in QUERY_COUNTS
            .into_iter()
            .zip([128, 1, 77, 128, 128, 5, 128, 128])
        {
            let queries = random_i8(&mut rng, nq * dim);
            let rows = random_i8(&mut rng, fill * dim);
            let block = layout::pack_i8(&rows, dim);
            let padded = layout::pad_queries_i8(&queries, dim);
            let mut sqnorms = vec![0i32; BLOCK_ROWS];
            for (n, row) in sqnorms.iter_mut().zip(rows.chunks_exact(dim)) {
                *n = layout::sqnorm_i8(row);
            }
            let mut got = vec![0i32; nq * BLOCK_ROWS];
            let mut got_l2 = got.clone();
            for kernels in Kernels::available() {
                kernels.block_dot_i8(&padded, dim, &block, &mut got);
                kernels.block_l2sq_i8(&padded, dim, &block, &sqnorms, &mut got_l2);
                for (q, query) in queries.chunks_exact(dim).enumerate() {
                    for r in 0..BLOCK_ROWS {
                        let row = rows.get(r * dim..(r + 1) * dim);
                        let zero = vec![0i8; dim];
                        let row = row.unwrap_or(&zero);
                        let name = kernels.backend();
                        assert_eq!(
                            got[q * BLOCK_ROWS + r],
                            scalar::dot_i8_scalar(query, row),
                            "{name} block_dot_i8 dim={dim} nq={nq} q={q} r={r}"
                        );
                        assert_eq!(
                            got_l2[q * BLOCK_ROWS + r],
                            scalar::l2sq_i8_scalar(query, row),
                            "{name} block_l2sq_i8 dim={dim} nq={nq} q={q} r={r}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn i8_block_kernels_handle_extreme_codes() {
    // All-(-128) queries against all-127 rows at a large dimension: the
    // offset-binary correction and the accumulators must not overflow.
    let dim = 4096;
    let queries = vec![i8::MIN; 13 * dim];
    let rows = vec![i8::MAX; BLOCK_ROWS * dim];
    let block = layout::pack_i8(&rows, dim);
    let mut out = vec![0i32; 13 * BLOCK_ROWS];
    for kernels in Kernels::available() {
        kernels.block_dot_i8(&queries, dim, &block, &mut out);
        assert!(
            out.iter().all(|&s| s == -128 * 127 * dim as i32),
            "{}",
            kernels.backend()
        );
    }
}

#[test]
fn row_rescoring_is_bit_identical_to_block_scores() {
    let mut rng = rng(7);
    for dim in LENGTHS.into_iter().filter(|&d| d > 0) {
        for fill in [1, 15, 16, 17, 100, 128] {
            let rows = random_f32(&mut rng, fill * dim);
            let block = layout::pack_f32(&rows, dim);
            let query = random_f32(&mut rng, dim);
            let refs: Vec<&[f32]> = rows.chunks_exact(dim).collect();
            let mut in_block = vec![0.0f32; BLOCK_ROWS];
            let mut by_rows = vec![0.0f32; fill];
            for kernels in Kernels::available() {
                let name = kernels.backend();
                kernels.block_dot_f32(&query, dim, &block, &mut in_block);
                kernels.rows_dot_f32(&query, &refs, &mut by_rows);
                assert_bits_eq(
                    &by_rows,
                    &in_block[..fill],
                    &format!("{name} rows_dot dim={dim} fill={fill}"),
                );
                kernels.block_l2sq_f32(&query, dim, &block, &mut in_block);
                kernels.rows_l2sq_f32(&query, &refs, &mut by_rows);
                assert_bits_eq(
                    &by_rows,
                    &in_block[..fill],
                    &format!("{name} rows_l2 dim={dim} fill={fill}"),
                );
            }
        }
    }
}

#[test]
#[should_panic(expected = "row length differs")]
fn short_rows_panic_before_any_kernel_runs() {
    kernels().rows_dot_f32(&[1.0; 8], &[&[1.0; 7]], &mut [0.0]);
}

#[test]
fn mask_ge_agrees_with_scalar_including_ties_and_nan() {
    let mut rng = rng(6);
    for round in 0..200 {
        let mut keys = [0.0f32; BLOCK_ROWS];
        for k in keys.iter_mut() {
            *k = rng.random_range(-1.0f32..1.0);
        }
        let threshold = keys[round % BLOCK_ROWS];
        keys[(round * 7) % BLOCK_ROWS] = f32::NAN;
        keys[(round * 11 + 3) % BLOCK_ROWS] = threshold;
        let want = scalar::mask_ge_scalar(&keys, threshold);
        assert_ne!(want, 0, "the tie always qualifies");
        for kernels in Kernels::available() {
            assert_eq!(
                kernels.mask_ge(&keys, threshold),
                want,
                "{}",
                kernels.backend()
            );
        }
    }
    let all = [1.0f32; BLOCK_ROWS];
    for kernels in Kernels::available() {
        assert_eq!(kernels.mask_ge(&all, 1.0), u128::MAX);
        assert_eq!(kernels.mask_ge(&all, f32::NEG_INFINITY), u128::MAX);
        assert_eq!(kernels.mask_ge(&all, 1.5), 0);
    }
}

#[test]
fn selection_honours_requests_and_refuses_missing_features() {
    let none = CpuFeatures::default();
    let avx2 = CpuFeatures {
        avx2: true,
        fma: true,
        f16c: true,
        ..CpuFeatures::default()
    };
    let all = CpuFeatures {
        avx512f: true,
        avx512bw: true,
        avx512vl: true,
        avx512vnni: true,
        ..avx2
    };
    assert_eq!(Backend::select_on(None, &none).unwrap(), Backend::Scalar);
    assert_eq!(Backend::select_on(None, &avx2).unwrap(), Backend::Avx2);
    assert_eq!(
        Backend::select_on(Some(""), &all).unwrap(),
        Backend::Avx512Vnni
    );
    assert_eq!(
        Backend::select_on(Some("AVX512"), &all).unwrap(),
        Backend::Avx512
    );
    assert_eq!(
        Backend::select_on(Some("scalar"), &all).unwrap(),
        Backend::Scalar
    );

    let err = Backend::select_on(Some("avx512"), &avx2)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("avx512f") && err.contains("supported here: avx2, scalar"),
        "{err}"
    );
    let err = Backend::select_on(Some("neon"), &all)
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown backend"), "{err}");
}

#[test]
fn unsupported_backend_cannot_be_instantiated() {
    for backend in Backend::PREFERENCE {
        assert_eq!(Kernels::new(backend).is_ok(), backend.is_supported());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn every_backend_agrees_with_scalar_on_pairs(
        a in proptest::collection::vec(-100.0f32..100.0, 0..600),
        seed in any::<u64>(),
    ) {
        let mut rng = rng(seed);
        let b = random_f32(&mut rng, a.len());
        let ai: Vec<i8> = a.iter().map(|&x| x as i8).collect();
        let bi = random_i8(&mut rng, a.len());
        let (a64, b64) = (widen(&a), widen(&b));
        for kernels in Kernels::available() {
            let name = kernels.backend();
            assert_dot_within_bound(kernels.dot_f32(&a, &b), &a64, &b64, name.name());
            assert_l2_within_bound(kernels.l2sq_f32(&a, &b), &a64, &b64, name.name());
            prop_assert_eq!(kernels.dot_i8(&ai, &bi), scalar::dot_i8_scalar(&ai, &bi));
            prop_assert_eq!(kernels.l2sq_i8(&ai, &bi), scalar::l2sq_i8_scalar(&ai, &bi));
        }
    }

    #[test]
    fn every_backend_agrees_with_scalar_on_blocks(
        dim in 1usize..300,
        nq in 1usize..30,
        fill in 1usize..=BLOCK_ROWS,
        seed in any::<u64>(),
    ) {
        let mut rng = rng(seed);
        let queries = random_f32(&mut rng, nq * dim);
        let (_, block) = block_rows_f32(&mut rng, dim, fill);
        let qi = layout::pad_queries_i8(&random_i8(&mut rng, nq * dim), dim);
        let block_i8 = layout::pack_i8(&random_i8(&mut rng, fill * dim), dim);
        let mut want = vec![0.0f32; nq * BLOCK_ROWS];
        let mut got = want.clone();
        let mut want_i = vec![0i32; nq * BLOCK_ROWS];
        let mut got_i = want_i.clone();
        Kernels::scalar().block_dot_f32(&queries, dim, &block, &mut want);
        Kernels::scalar().block_dot_i8(&qi, dim, &block_i8, &mut want_i);
        for kernels in Kernels::available() {
            kernels.block_dot_f32(&queries, dim, &block, &mut got);
            kernels.block_dot_i8(&qi, dim, &block_i8, &mut got_i);
            prop_assert!(got.iter().zip(&want).all(|(g, w)| g.to_bits() == w.to_bits()));
            prop_assert_eq!(&got_i, &want_i);
        }
    }
}
