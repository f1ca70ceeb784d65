//! AVX2 + FMA + F16C kernels.
//!
//! Every public function here is `unsafe` only because it must run on a CPU
//! with AVX2, FMA and F16C; [`crate::vector::Kernels`] guarantees that and
//! checks slice lengths before calling in. Loads go through the small safe
//! helpers below, which take array references, so the kernels themselves
//! cannot read out of bounds.

use std::arch::x86_64::*;

use crate::vector::f16;
use crate::vector::layout::BLOCK_ROWS;

// ---------------------------------------------------------------------------
// Loads and reductions
// ---------------------------------------------------------------------------

#[target_feature(enable = "avx2")]
#[inline]
fn load_f32(x: &[f32; 8]) -> __m256 {
    // SAFETY: `x` is 8 readable floats; `loadu` has no alignment requirement.
    unsafe { _mm256_loadu_ps(x.as_ptr()) }
}

#[target_feature(enable = "avx2,f16c")]
#[inline]
fn load_f16(x: &[f16; 8]) -> __m256 {
    // SAFETY: `x` is 16 readable bytes (`f16` is `repr(transparent)` over `u16`).
    let h = unsafe { _mm_loadu_si128(x.as_ptr().cast()) };
    _mm256_cvtph_ps(h)
}

#[target_feature(enable = "avx2")]
#[inline]
fn load_i8x16(x: &[i8; 16]) -> __m128i {
    // SAFETY: `x` is 16 readable bytes.
    unsafe { _mm_loadu_si128(x.as_ptr().cast()) }
}

#[target_feature(enable = "avx2")]
#[inline]
fn load_u8x16(x: &[u8; 16]) -> __m128i {
    // SAFETY: `x` is 16 readable bytes.
    unsafe { _mm_loadu_si128(x.as_ptr().cast()) }
}

#[target_feature(enable = "avx2")]
#[inline]
fn store_f32(out: &mut [f32; 8], v: __m256) {
    // SAFETY: `out` is 8 writable floats.
    unsafe { _mm256_storeu_ps(out.as_mut_ptr(), v) }
}

#[target_feature(enable = "avx2")]
#[inline]
fn store_i32(out: &mut [i32; 8], v: __m256i) {
    // SAFETY: `out` is 8 writable i32.
    unsafe { _mm256_storeu_si256(out.as_mut_ptr().cast(), v) }
}

#[target_feature(enable = "avx2")]
#[inline]
fn hsum_f32(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

#[target_feature(enable = "avx2")]
#[inline]
pub(crate) fn hsum_i32(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
    _mm_cvtsi128_si32(s)
}

// ---------------------------------------------------------------------------
// Pair kernels
// ---------------------------------------------------------------------------

/// Runs `step` over 8-wide chunks with four accumulators, `tail` over the rest.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn pair_float<T>(
    a: &[T],
    b: &[T],
    load: impl Fn(&[T; 8]) -> __m256,
    step: impl Fn(__m256, __m256, __m256) -> __m256,
    tail: impl Fn(&[T], &[T]) -> f32,
) -> f32 {
    let (a32, a_rest) = a.as_chunks::<32>();
    let (b32, b_rest) = b.as_chunks::<32>();
    let mut acc = [_mm256_setzero_ps(); 4];
    for (x, y) in a32.iter().zip(b32) {
        let (x8, _) = x.as_chunks::<8>();
        let (y8, _) = y.as_chunks::<8>();
        for i in 0..4 {
            acc[i] = step(load(&x8[i]), load(&y8[i]), acc[i]);
        }
    }
    let (a8, a_tail) = a_rest.as_chunks::<8>();
    let (b8, b_tail) = b_rest.as_chunks::<8>();
    for (x, y) in a8.iter().zip(b8) {
        acc[0] = step(load(x), load(y), acc[0]);
    }
    let v = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    hsum_f32(v) + tail(a_tail, b_tail)
}

/// Inner product. See [`crate::vector::Kernels::dot_f32`].
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn dot_f32_avx2(a: &[f32], b: &[f32]) -> f32 {
    pair_float(
        a,
        b,
        |x| load_f32(x),
        |x, y, acc| _mm256_fmadd_ps(x, y, acc),
        crate::vector::scalar::dot_f32_scalar,
    )
}

/// Squared L2 distance. See [`crate::vector::Kernels::l2sq_f32`].
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn l2sq_f32_avx2(a: &[f32], b: &[f32]) -> f32 {
    pair_float(
        a,
        b,
        |x| load_f32(x),
        |x, y, acc| {
            let d = _mm256_sub_ps(x, y);
            _mm256_fmadd_ps(d, d, acc)
        },
        crate::vector::scalar::l2sq_f32_scalar,
    )
}

/// Inner product of `f16` vectors. See [`crate::vector::Kernels::dot_f16`].
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn dot_f16_avx2(a: &[f16], b: &[f16]) -> f32 {
    pair_float(
        a,
        b,
        |x| load_f16(x),
        |x, y, acc| _mm256_fmadd_ps(x, y, acc),
        crate::vector::scalar::dot_f16_scalar,
    )
}

/// Squared L2 distance of `f16` vectors. See [`crate::vector::Kernels::l2sq_f16`].
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn l2sq_f16_avx2(a: &[f16], b: &[f16]) -> f32 {
    pair_float(
        a,
        b,
        |x| load_f16(x),
        |x, y, acc| {
            let d = _mm256_sub_ps(x, y);
            _mm256_fmadd_ps(d, d, acc)
        },
        crate::vector::scalar::l2sq_f16_scalar,
    )
}

/// Widens 16 signed bytes of each input to i16 and folds them with `step`.
#[target_feature(enable = "avx2")]
#[inline]
fn pair_i8(
    a: &[i8],
    b: &[i8],
    step: impl Fn(__m256i, __m256i, __m256i) -> __m256i,
    tail: impl Fn(&[i8], &[i8]) -> i32,
) -> i32 {
    let (a16, a_tail) = a.as_chunks::<16>();
    let (b16, b_tail) = b.as_chunks::<16>();
    let mut acc = [_mm256_setzero_si256(); 2];
    let mut pairs = a16.iter().zip(b16);
    // Two accumulators: consecutive chunks alternate between them.
    while let Some((x0, y0)) = pairs.next() {
        let x = _mm256_cvtepi8_epi16(load_i8x16(x0));
        let y = _mm256_cvtepi8_epi16(load_i8x16(y0));
        acc[0] = step(x, y, acc[0]);
        if let Some((x1, y1)) = pairs.next() {
            let x = _mm256_cvtepi8_epi16(load_i8x16(x1));
            let y = _mm256_cvtepi8_epi16(load_i8x16(y1));
            acc[1] = step(x, y, acc[1]);
        }
    }
    hsum_i32(_mm256_add_epi32(acc[0], acc[1])) + tail(a_tail, b_tail)
}

/// Exact `i8` inner product. See [`crate::vector::Kernels::dot_i8`].
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn dot_i8_avx2(a: &[i8], b: &[i8]) -> i32 {
    pair_i8(
        a,
        b,
        |x, y, acc| _mm256_add_epi32(acc, _mm256_madd_epi16(x, y)),
        crate::vector::scalar::dot_i8_scalar,
    )
}

/// Exact `i8` squared L2 distance. See [`crate::vector::Kernels::l2sq_i8`].
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn l2sq_i8_avx2(a: &[i8], b: &[i8]) -> i32 {
    pair_i8(
        a,
        b,
        |x, y, acc| {
            let d = _mm256_sub_epi16(x, y);
            _mm256_add_epi32(acc, _mm256_madd_epi16(d, d))
        },
        crate::vector::scalar::l2sq_i8_scalar,
    )
}

// ---------------------------------------------------------------------------
// Block kernels
// ---------------------------------------------------------------------------

/// Registers per block dimension: 128 rows / 8 lanes.
const CHUNKS: usize = BLOCK_ROWS / 8;

/// Scores `Q` queries against `8 · R` rows per pass, all passes of a block.
///
/// `rows[k]` is dimension `k` of the block's 128 rows; `load(row, c)` loads
/// lanes `8c..8c+8` as `f32`. Each (query, row) score is one sequential
/// chain of `step(q[k] broadcast, row[k], acc)`, hence backend-independent.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn float_tile<T, const Q: usize, const R: usize>(
    queries: &[f32],
    rows: &[[T; BLOCK_ROWS]],
    out: &mut [[f32; BLOCK_ROWS]; Q],
    load: &impl Fn(&[T; BLOCK_ROWS], usize) -> __m256,
    step: &impl Fn(__m256, __m256, __m256) -> __m256,
) {
    let dim = rows.len();
    let qs: [&[f32]; Q] = std::array::from_fn(|j| &queries[j * dim..(j + 1) * dim]);
    for pass in 0..CHUNKS / R {
        let mut acc = [[_mm256_setzero_ps(); R]; Q];
        for (k, row) in rows.iter().enumerate() {
            let x: [__m256; R] = std::array::from_fn(|i| load(row, pass * R + i));
            for (acc_q, q) in acc.iter_mut().zip(&qs) {
                let b = _mm256_set1_ps(q[k]);
                for (a, &xi) in acc_q.iter_mut().zip(&x) {
                    *a = step(b, xi, *a);
                }
            }
        }
        for (acc_q, o) in acc.iter().zip(out.iter_mut()) {
            let (o8, _) = o.as_chunks_mut::<8>();
            for (i, &a) in acc_q.iter().enumerate() {
                store_f32(&mut o8[pass * R + i], a);
            }
        }
    }
}

/// Tiles all queries over one block: `BQ` queries at a time, then singles.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn float_block<T, const BQ: usize, const BR: usize>(
    queries: &[f32],
    dim: usize,
    block: &[T],
    out: &mut [f32],
    load: impl Fn(&[T; BLOCK_ROWS], usize) -> __m256,
    step: impl Fn(__m256, __m256, __m256) -> __m256,
) {
    let (rows, _) = block.as_chunks::<BLOCK_ROWS>();
    let (outs, _) = out.as_chunks_mut::<BLOCK_ROWS>();
    let mut q_tiles = queries.chunks_exact(BQ * dim);
    let mut o_tiles = outs.chunks_exact_mut(BQ);
    for (q, o) in (&mut q_tiles).zip(&mut o_tiles) {
        float_tile::<T, BQ, BR>(q, rows, o.try_into().expect("tile"), &load, &step);
    }
    let singles = q_tiles.remainder().chunks_exact(dim);
    for (q, o) in singles.zip(o_tiles.into_remainder()) {
        float_tile::<T, 1, 8>(q, rows, std::array::from_mut(o), &load, &step);
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn lanes_f32(row: &[f32; BLOCK_ROWS], c: usize) -> __m256 {
    let (chunks, _) = row.as_chunks::<8>();
    load_f32(&chunks[c])
}

#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn lanes_f16(row: &[f16; BLOCK_ROWS], c: usize) -> __m256 {
    let (chunks, _) = row.as_chunks::<8>();
    load_f16(&chunks[c])
}

/// Block inner products. See [`crate::vector::Kernels::block_dot_f32`].
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn block_dot_f32_avx2(
    queries: &[f32],
    dim: usize,
    block: &[f32],
    out: &mut [f32],
) {
    float_block::<f32, 6, 2>(
        queries,
        dim,
        block,
        out,
        |r, c| lanes_f32(r, c),
        |q, x, acc| _mm256_fmadd_ps(q, x, acc),
    );
}

/// Block squared L2. See [`crate::vector::Kernels::block_l2sq_f32`].
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn block_l2sq_f32_avx2(
    queries: &[f32],
    dim: usize,
    block: &[f32],
    out: &mut [f32],
) {
    float_block::<f32, 4, 2>(
        queries,
        dim,
        block,
        out,
        |r, c| lanes_f32(r, c),
        |q, x, acc| {
            let d = _mm256_sub_ps(x, q);
            _mm256_fmadd_ps(d, d, acc)
        },
    );
}

/// Block inner products over `f16` rows. See [`crate::vector::Kernels::block_dot_f16`].
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn block_dot_f16_avx2(
    queries: &[f32],
    dim: usize,
    block: &[f16],
    out: &mut [f32],
) {
    float_block::<f16, 6, 2>(
        queries,
        dim,
        block,
        out,
        |r, c| lanes_f16(r, c),
        |q, x, acc| _mm256_fmadd_ps(q, x, acc),
    );
}

/// Block squared L2 over `f16` rows. See [`crate::vector::Kernels::block_l2sq_f16`].
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn block_l2sq_f16_avx2(
    queries: &[f32],
    dim: usize,
    block: &[f16],
    out: &mut [f32],
) {
    float_block::<f16, 4, 2>(
        queries,
        dim,
        block,
        out,
        |r, c| lanes_f16(r, c),
        |q, x, acc| {
            let d = _mm256_sub_ps(x, q);
            _mm256_fmadd_ps(d, d, acc)
        },
    );
}

/// Chunks of 4 rows × 4 bytes per `i8` block dimension group.
const I8_CHUNKS: usize = BLOCK_ROWS / 4;

/// `i8` tile without VNNI: 16 code bytes (4 rows × 4 dims) are
/// sign-extended to i16 and multiplied with the query group broadcast as
/// four i16 (`vpmaddwd`), giving two partial sums per row that are added
/// at the end of the pass.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn i8_tile<const Q: usize, const R: usize>(
    groups: &[i64],
    qgroups: &[[u8; 4 * BLOCK_ROWS]],
    out: &mut [[i32; BLOCK_ROWS]; Q],
) {
    let ng = qgroups.len();
    let qs: [&[i64]; Q] = std::array::from_fn(|j| &groups[j * ng..(j + 1) * ng]);
    for pass in 0..I8_CHUNKS / R {
        let mut acc = [[_mm256_setzero_si256(); R]; Q];
        for (g, group) in qgroups.iter().enumerate() {
            let (chunks, _) = group.as_chunks::<16>();
            let x: [__m256i; R] =
                std::array::from_fn(|i| _mm256_cvtepi8_epi16(load_u8x16(&chunks[pass * R + i])));
            for (acc_q, q) in acc.iter_mut().zip(&qs) {
                let b = _mm256_set1_epi64x(q[g]);
                for (a, &xi) in acc_q.iter_mut().zip(&x) {
                    *a = _mm256_add_epi32(*a, _mm256_madd_epi16(xi, b));
                }
            }
        }
        for (acc_q, o) in acc.iter().zip(out.iter_mut()) {
            for (i, &a) in acc_q.iter().enumerate() {
                let mut pairs = [0i32; 8];
                store_i32(&mut pairs, a);
                let base = (pass * R + i) * 4;
                for r in 0..4 {
                    o[base + r] = pairs[2 * r] + pairs[2 * r + 1];
                }
            }
        }
    }
}

/// Exact block inner products of `i8` queries. See
/// [`crate::vector::Kernels::block_dot_i8`].
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn block_dot_i8_avx2(queries: &[i8], pdim: usize, block: &[u8], out: &mut [i32]) {
    let ng = pdim / 4;
    let (qgroups, _) = block.as_chunks::<{ 4 * BLOCK_ROWS }>();
    let qgroups = &qgroups[..ng];
    let (outs, _) = out.as_chunks_mut::<BLOCK_ROWS>();
    let groups = super::i16_groups(queries);
    let mut g_tiles = groups.chunks_exact(4 * ng);
    let mut o_tiles = outs.chunks_exact_mut(4);
    for (g, o) in (&mut g_tiles).zip(&mut o_tiles) {
        i8_tile::<4, 2>(g, qgroups, o.try_into().expect("tile"));
    }
    for (g, o) in g_tiles
        .remainder()
        .chunks_exact(ng)
        .zip(o_tiles.into_remainder())
    {
        i8_tile::<1, 4>(g, qgroups, std::array::from_mut(o));
    }
}

/// Row-major re-scoring with block semantics, compiled with hardware FMA.
/// See [`crate::vector::Kernels::rows_dot_f32`].
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn rows_dot_f32_fma(query: &[f32], rows: &[&[f32]], out: &mut [f32]) {
    crate::vector::scalar::rows_chain(query, rows, out, |q, x, acc| q.mul_add(x, acc));
}

/// Row-major squared-L2 re-scoring with block semantics, hardware FMA.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn rows_l2sq_f32_fma(query: &[f32], rows: &[&[f32]], out: &mut [f32]) {
    crate::vector::scalar::rows_chain(query, rows, out, |q, x, acc| {
        let d = x - q;
        d.mul_add(d, acc)
    });
}

/// Bit `r` set iff `keys[r] >= threshold` (ordered compare: NaN never qualifies).
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn mask_ge_avx2(keys: &[f32; BLOCK_ROWS], threshold: f32) -> u128 {
    let t = _mm256_set1_ps(threshold);
    let (chunks, _) = keys.as_chunks::<8>();
    let mut mask = 0u128;
    for (i, c) in chunks.iter().enumerate() {
        let m = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_GE_OQ>(load_f32(c), t)) as u32;
        mask |= u128::from(m) << (8 * i);
    }
    mask
}

// ---------------------------------------------------------------------------
// Machine probes (see `crate::vector::probe`)
// ---------------------------------------------------------------------------

/// Wrapping sum of `data`: 8 independent 32-byte loads per iteration.
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn read_sum_avx2(data: &[u64]) -> u64 {
    let (blocks, rest) = data.as_chunks::<32>();
    let mut acc = [_mm256_setzero_si256(); 8];
    for block in blocks {
        let (lines, _) = block.as_chunks::<4>();
        for (a, line) in acc.iter_mut().zip(lines) {
            // SAFETY: `line` is 32 readable bytes.
            let v = unsafe { _mm256_loadu_si256(line.as_ptr().cast()) };
            *a = _mm256_add_epi64(*a, v);
        }
    }
    let total = acc
        .iter()
        .fold(_mm256_setzero_si256(), |s, &a| _mm256_add_epi64(s, a));
    let mut lanes = [0i32; 8];
    store_i32(&mut lanes, total);
    let words =
        [0, 2, 4, 6].map(|i| (lanes[i] as u32 as u64) | ((lanes[i + 1] as u32 as u64) << 32));
    words
        .iter()
        .fold(crate::vector::probe::read_sum_scalar(rest), |s, &w| {
            s.wrapping_add(w)
        })
}

/// 12 chains of `acc = vpmaddubsw(acc, b)`; chain `i` starts with bytes
/// `a + i`. Returns the sum of all i16 lanes.
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn int8_mac_loop_avx2(iterations: u64, a: i8, b: i8) -> i64 {
    let y = _mm256_set1_epi8(b);
    let mut acc: [__m256i; 12] = std::array::from_fn(|i| _mm256_set1_epi8(a.wrapping_add(i as i8)));
    for _ in 0..iterations {
        for v in &mut acc {
            *v = _mm256_maddubs_epi16(*v, y);
        }
    }
    acc.iter()
        .map(|&v| {
            let mut lanes = [0i32; 8];
            store_i32(&mut lanes, v);
            lanes
                .iter()
                .flat_map(|&l| [l as i16, (l >> 16) as i16])
                .map(i64::from)
                .sum::<i64>()
        })
        .sum()
}

/// 12 chains of `x = fma(x, a, b)`; chain `i` starts at `1 + i/1024`.
/// Returns the largest lane.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn fma_loop_avx2(iterations: u64, a: f32, b: f32) -> f32 {
    let va = _mm256_set1_ps(a);
    let vb = _mm256_set1_ps(b);
    let mut acc: [__m256; 12] = std::array::from_fn(|i| _mm256_set1_ps(1.0 + i as f32 / 1024.0));
    for _ in 0..iterations {
        for v in &mut acc {
            *v = _mm256_fmadd_ps(*v, va, vb);
        }
    }
    let m = acc.iter().fold(_mm256_set1_ps(f32::NEG_INFINITY), |m, &v| {
        _mm256_max_ps(m, v)
    });
    let mut lanes = [0f32; 8];
    store_f32(&mut lanes, m);
    lanes.iter().copied().fold(f32::NEG_INFINITY, f32::max)
}
