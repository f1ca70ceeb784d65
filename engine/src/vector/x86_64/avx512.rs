//! AVX-512 kernels (F/BW/VL, with AVX2/FMA/F16C), and the VNNI variants of
//! the `i8` kernels.
//!
//! As in [`super::avx2`], functions are `unsafe` only for their CPU
//! requirement; loads take array references or use AVX-512 masked loads,
//! which never touch masked-off elements, for slice tails.

use std::arch::x86_64::*;

use crate::vector::f16;
use crate::vector::layout::BLOCK_ROWS;

// ---------------------------------------------------------------------------
// Loads
// ---------------------------------------------------------------------------

/// Mask selecting the first `min(len, 16)` lanes.
#[inline]
fn mask16(len: usize) -> __mmask16 {
    if len >= 16 {
        u16::MAX
    } else {
        (1u16 << len) - 1
    }
}

/// Mask selecting the first `min(len, 32)` lanes.
#[inline]
fn mask32(len: usize) -> __mmask32 {
    if len >= 32 {
        u32::MAX
    } else {
        (1u32 << len) - 1
    }
}

/// Mask selecting the first `min(len, 64)` lanes.
#[inline]
fn mask64(len: usize) -> __mmask64 {
    if len >= 64 {
        u64::MAX
    } else {
        (1u64 << len) - 1
    }
}

#[target_feature(enable = "avx512f")]
#[inline]
fn load_f32(x: &[f32; 16]) -> __m512 {
    // SAFETY: `x` is 16 readable floats; `loadu` has no alignment requirement.
    unsafe { _mm512_loadu_ps(x.as_ptr()) }
}

#[target_feature(enable = "avx512f")]
#[inline]
fn load_f32_partial(x: &[f32]) -> __m512 {
    // SAFETY: only the first `min(x.len(), 16)` lanes are enabled, all inside
    // `x`; masked-off lanes are neither read nor fault.
    unsafe { _mm512_maskz_loadu_ps(mask16(x.len()), x.as_ptr()) }
}

#[target_feature(enable = "avx512f,f16c")]
#[inline]
fn load_f16(x: &[f16; 16]) -> __m512 {
    // SAFETY: `x` is 32 readable bytes (`f16` is `repr(transparent)` over `u16`).
    let h = unsafe { _mm256_loadu_si256(x.as_ptr().cast()) };
    _mm512_cvtph_ps(h)
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
#[inline]
fn load_f16_partial(x: &[f16]) -> __m512 {
    // SAFETY: only the first `min(x.len(), 16)` lanes are enabled, all inside
    // `x`; masked-off lanes are neither read nor fault.
    let h = unsafe { _mm256_maskz_loadu_epi16(mask16(x.len()), x.as_ptr().cast()) };
    _mm512_cvtph_ps(h)
}

#[target_feature(enable = "avx512f")]
#[inline]
pub(crate) fn load_512<T>(x: &[T; 64]) -> __m512i
where
    T: bytemuck::Pod,
{
    const { assert!(size_of::<T>() == 1) };
    // SAFETY: `x` is 64 readable bytes (`T` is byte-sized, checked above).
    unsafe { _mm512_loadu_si512(x.as_ptr().cast()) }
}

#[target_feature(enable = "avx512f,avx512bw")]
#[inline]
fn load_512_partial(x: &[i8]) -> __m512i {
    // SAFETY: only the first `min(x.len(), 64)` bytes are enabled, all inside
    // `x`; masked-off bytes are neither read nor fault.
    unsafe { _mm512_maskz_loadu_epi8(mask64(x.len()), x.as_ptr()) }
}

#[target_feature(enable = "avx512f")]
#[inline]
fn load_256<T>(x: &[T; 32]) -> __m256i
where
    T: bytemuck::Pod,
{
    const { assert!(size_of::<T>() == 1) };
    // SAFETY: `x` is 32 readable bytes (`T` is byte-sized, checked above).
    unsafe { _mm256_loadu_si256(x.as_ptr().cast()) }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
#[inline]
fn load_256_partial(x: &[i8]) -> __m256i {
    // SAFETY: only the first `min(x.len(), 32)` bytes are enabled, all inside
    // `x`; masked-off bytes are neither read nor fault.
    unsafe { _mm256_maskz_loadu_epi8(mask32(x.len()), x.as_ptr()) }
}

/// Bytes ahead of the current row that single-query scans prefetch: far
/// enough to cover DRAM latency at full bandwidth, across 4 KiB page
/// boundaries where hardware prefetchers stop.
const PREFETCH_AHEAD: usize = 4096;

/// Prefetches the 512 bytes `PREFETCH_AHEAD` past `row` into L1.
#[target_feature(enable = "avx512f")]
#[inline]
fn prefetch_ahead<T>(row: &[T]) {
    let base = row.as_ptr().cast::<i8>().wrapping_add(PREFETCH_AHEAD);
    // A prefetch is only a hint: it never faults, whatever the address,
    // and the pointer is never dereferenced.
    for line in 0..8 {
        _mm_prefetch::<_MM_HINT_T0>(base.wrapping_add(64 * line));
    }
}

#[target_feature(enable = "avx512f")]
#[inline]
fn store_f32(out: &mut [f32; 16], v: __m512) {
    // SAFETY: `out` is 16 writable floats.
    unsafe { _mm512_storeu_ps(out.as_mut_ptr(), v) }
}

#[target_feature(enable = "avx512f")]
#[inline]
fn store_i32(out: &mut [i32; 16], v: __m512i) {
    // SAFETY: `out` is 16 writable i32.
    unsafe { _mm512_storeu_si512(out.as_mut_ptr().cast(), v) }
}

// ---------------------------------------------------------------------------
// Pair kernels
// ---------------------------------------------------------------------------

/// Four accumulators over 64-element strides, then 16-wide steps, then one
/// masked step for the tail.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
#[inline]
fn pair_float<T>(
    a: &[T],
    b: &[T],
    load: impl Fn(&[T; 16]) -> __m512,
    load_partial: impl Fn(&[T]) -> __m512,
    step: impl Fn(__m512, __m512, __m512) -> __m512,
) -> f32 {
    let (a64, a_rest) = a.as_chunks::<64>();
    let (b64, b_rest) = b.as_chunks::<64>();
    let mut acc = [_mm512_setzero_ps(); 4];
    for (x, y) in a64.iter().zip(b64) {
        let (x16, _) = x.as_chunks::<16>();
        let (y16, _) = y.as_chunks::<16>();
        for i in 0..4 {
            acc[i] = step(load(&x16[i]), load(&y16[i]), acc[i]);
        }
    }
    let (a16, a_tail) = a_rest.as_chunks::<16>();
    let (b16, b_tail) = b_rest.as_chunks::<16>();
    for (i, (x, y)) in a16.iter().zip(b16).enumerate() {
        acc[i] = step(load(x), load(y), acc[i]);
    }
    if !a_tail.is_empty() {
        // Masked-off lanes are zero in both operands: they add 0 for both
        // the product and the squared difference.
        acc[3] = step(load_partial(a_tail), load_partial(b_tail), acc[3]);
    }
    let v = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]));
    _mm512_reduce_add_ps(v)
}

/// Inner product. See [`crate::vector::Kernels::dot_f32`].
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VL, AVX2, FMA and F16C.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
pub(crate) unsafe fn dot_f32_avx512(a: &[f32], b: &[f32]) -> f32 {
    pair_float(
        a,
        b,
        |x| load_f32(x),
        |x| load_f32_partial(x),
        |x, y, acc| _mm512_fmadd_ps(x, y, acc),
    )
}

/// Squared L2 distance. See [`crate::vector::Kernels::l2sq_f32`].
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VL, AVX2, FMA and F16C.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
pub(crate) unsafe fn l2sq_f32_avx512(a: &[f32], b: &[f32]) -> f32 {
    pair_float(
        a,
        b,
        |x| load_f32(x),
        |x| load_f32_partial(x),
        |x, y, acc| {
            let d = _mm512_sub_ps(x, y);
            _mm512_fmadd_ps(d, d, acc)
        },
    )
}

/// Inner product of `f16` vectors. See [`crate::vector::Kernels::dot_f16`].
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VL, AVX2, FMA and F16C.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
pub(crate) unsafe fn dot_f16_avx512(a: &[f16], b: &[f16]) -> f32 {
    pair_float(
        a,
        b,
        |x| load_f16(x),
        |x| load_f16_partial(x),
        |x, y, acc| _mm512_fmadd_ps(x, y, acc),
    )
}

/// Squared L2 distance of `f16` vectors. See [`crate::vector::Kernels::l2sq_f16`].
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VL, AVX2, FMA and F16C.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
pub(crate) unsafe fn l2sq_f16_avx512(a: &[f16], b: &[f16]) -> f32 {
    pair_float(
        a,
        b,
        |x| load_f16(x),
        |x| load_f16_partial(x),
        |x, y, acc| {
            let d = _mm512_sub_ps(x, y);
            _mm512_fmadd_ps(d, d, acc)
        },
    )
}

/// Widens 32 signed bytes of each input to i16 and folds them with `step`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
#[inline]
fn pair_i8_widened(a: &[i8], b: &[i8], step: impl Fn(__m512i, __m512i, __m512i) -> __m512i) -> i32 {
    let (a32, a_tail) = a.as_chunks::<32>();
    let (b32, b_tail) = b.as_chunks::<32>();
    let mut acc = [_mm512_setzero_si512(); 2];
    for (i, (x, y)) in a32.iter().zip(b32).enumerate() {
        let x = _mm512_cvtepi8_epi16(load_256(x));
        let y = _mm512_cvtepi8_epi16(load_256(y));
        acc[i % 2] = step(x, y, acc[i % 2]);
    }
    if !a_tail.is_empty() {
        let x = _mm512_cvtepi8_epi16(load_256_partial(a_tail));
        let y = _mm512_cvtepi8_epi16(load_256_partial(b_tail));
        acc[0] = step(x, y, acc[0]);
    }
    _mm512_reduce_add_epi32(_mm512_add_epi32(acc[0], acc[1]))
}

/// Exact `i8` inner product via 16-bit multiply-adds. See
/// [`crate::vector::Kernels::dot_i8`].
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VL, AVX2, FMA and F16C.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
pub(crate) unsafe fn dot_i8_avx512bw(a: &[i8], b: &[i8]) -> i32 {
    pair_i8_widened(a, b, |x, y, acc| {
        _mm512_add_epi32(acc, _mm512_madd_epi16(x, y))
    })
}

/// Exact `i8` squared L2 distance via 16-bit multiply-adds.
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VL, AVX2, FMA and F16C.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
pub(crate) unsafe fn l2sq_i8_avx512bw(a: &[i8], b: &[i8]) -> i32 {
    pair_i8_widened(a, b, |x, y, acc| {
        let d = _mm512_sub_epi16(x, y);
        _mm512_add_epi32(acc, _mm512_madd_epi16(d, d))
    })
}

/// Exact `i8` inner product with VNNI.
///
/// `vpdpbusd` multiplies unsigned by signed bytes, so `a` is flipped to
/// offset binary (`a + 128`) and `128 · Σ b` (also a `vpdpbusd`, against
/// ones) is subtracted.
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VL/VNNI, AVX2, FMA and F16C.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(crate) unsafe fn dot_i8_avx512vnni(a: &[i8], b: &[i8]) -> i32 {
    let flip = _mm512_set1_epi8(i8::MIN);
    let ones = _mm512_set1_epi8(1);
    let (a64, a_tail) = a.as_chunks::<64>();
    let (b64, b_tail) = b.as_chunks::<64>();
    let mut acc = [_mm512_setzero_si512(); 2];
    let mut sum_b = [_mm512_setzero_si512(); 2];
    for (i, (x, y)) in a64.iter().zip(b64).enumerate() {
        let x = _mm512_xor_si512(load_512(x), flip);
        let y = load_512(y);
        acc[i % 2] = _mm512_dpbusd_epi32(acc[i % 2], x, y);
        sum_b[i % 2] = _mm512_dpbusd_epi32(sum_b[i % 2], ones, y);
    }
    if !a_tail.is_empty() {
        // Masked-off bytes: `a` becomes 0 ^ 0x80 = 128 but `b` is 0, so
        // both products are 0.
        let x = _mm512_xor_si512(load_512_partial(a_tail), flip);
        let y = load_512_partial(b_tail);
        acc[0] = _mm512_dpbusd_epi32(acc[0], x, y);
        sum_b[0] = _mm512_dpbusd_epi32(sum_b[0], ones, y);
    }
    let raw = _mm512_reduce_add_epi32(_mm512_add_epi32(acc[0], acc[1]));
    let sb = _mm512_reduce_add_epi32(_mm512_add_epi32(sum_b[0], sum_b[1]));
    raw - 128 * sb
}

/// Exact `i8` squared L2 distance with VNNI (`vpdpwssd` on widened differences).
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VL/VNNI, AVX2, FMA and F16C.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(crate) unsafe fn l2sq_i8_avx512vnni(a: &[i8], b: &[i8]) -> i32 {
    pair_i8_widened(a, b, |x, y, acc| {
        let d = _mm512_sub_epi16(x, y);
        _mm512_dpwssd_epi32(acc, d, d)
    })
}

// ---------------------------------------------------------------------------
// Block kernels
// ---------------------------------------------------------------------------

/// Registers per block dimension: 128 rows / 16 lanes.
const CHUNKS: usize = BLOCK_ROWS / 16;

/// Scores `Q` queries against `16 · R` rows per pass, all passes of a block.
/// See [`super::avx2`]'s `float_tile` for the scheme.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
#[inline]
fn float_tile<T, const Q: usize, const R: usize>(
    queries: &[f32],
    rows: &[[T; BLOCK_ROWS]],
    out: &mut [[f32; BLOCK_ROWS]; Q],
    load: &impl Fn(&[T; BLOCK_ROWS], usize) -> __m512,
    step: &impl Fn(__m512, __m512, __m512) -> __m512,
) {
    let dim = rows.len();
    let qs: [&[f32]; Q] = std::array::from_fn(|j| &queries[j * dim..(j + 1) * dim]);
    for pass in 0..CHUNKS / R {
        let mut acc = [[_mm512_setzero_ps(); R]; Q];
        for (k, row) in rows.iter().enumerate() {
            let x: [__m512; R] = std::array::from_fn(|i| load(row, pass * R + i));
            for (acc_q, q) in acc.iter_mut().zip(&qs) {
                let b = _mm512_set1_ps(q[k]);
                for (a, &xi) in acc_q.iter_mut().zip(&x) {
                    *a = step(b, xi, *a);
                }
            }
        }
        for (acc_q, o) in acc.iter().zip(out.iter_mut()) {
            let (o16, _) = o.as_chunks_mut::<16>();
            for (i, &a) in acc_q.iter().enumerate() {
                store_f32(&mut o16[pass * R + i], a);
            }
        }
    }
}

/// Tiles all queries over one block: `BQ` queries at a time, then singles.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
#[inline]
fn float_block<T, const BQ: usize, const BR: usize>(
    queries: &[f32],
    dim: usize,
    block: &[T],
    out: &mut [f32],
    load: impl Fn(&[T; BLOCK_ROWS], usize) -> __m512,
    step: impl Fn(__m512, __m512, __m512) -> __m512,
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

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
#[inline]
fn lanes_f32(row: &[f32; BLOCK_ROWS], c: usize) -> __m512 {
    let (chunks, _) = row.as_chunks::<16>();
    load_f32(&chunks[c])
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
#[inline]
fn lanes_f16(row: &[f16; BLOCK_ROWS], c: usize) -> __m512 {
    let (chunks, _) = row.as_chunks::<16>();
    load_f16(&chunks[c])
}

/// Block inner products. See [`crate::vector::Kernels::block_dot_f32`].
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VL, AVX2, FMA and F16C.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
pub(crate) unsafe fn block_dot_f32_avx512(
    queries: &[f32],
    dim: usize,
    block: &[f32],
    out: &mut [f32],
) {
    float_block::<f32, 12, 2>(
        queries,
        dim,
        block,
        out,
        |r, c| lanes_f32(r, c),
        |q, x, acc| _mm512_fmadd_ps(q, x, acc),
    );
}

/// Block squared L2. See [`crate::vector::Kernels::block_l2sq_f32`].
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VL, AVX2, FMA and F16C.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
pub(crate) unsafe fn block_l2sq_f32_avx512(
    queries: &[f32],
    dim: usize,
    block: &[f32],
    out: &mut [f32],
) {
    float_block::<f32, 8, 2>(
        queries,
        dim,
        block,
        out,
        |r, c| lanes_f32(r, c),
        |q, x, acc| {
            let d = _mm512_sub_ps(x, q);
            _mm512_fmadd_ps(d, d, acc)
        },
    );
}

/// Block inner products over `f16` rows. See [`crate::vector::Kernels::block_dot_f16`].
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VL, AVX2, FMA and F16C.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
pub(crate) unsafe fn block_dot_f16_avx512(
    queries: &[f32],
    dim: usize,
    block: &[f16],
    out: &mut [f32],
) {
    float_block::<f16, 12, 2>(
        queries,
        dim,
        block,
        out,
        |r, c| lanes_f16(r, c),
        |q, x, acc| _mm512_fmadd_ps(q, x, acc),
    );
}

/// Block squared L2 over `f16` rows. See [`crate::vector::Kernels::block_l2sq_f16`].
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VL, AVX2, FMA and F16C.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
pub(crate) unsafe fn block_l2sq_f16_avx512(
    queries: &[f32],
    dim: usize,
    block: &[f16],
    out: &mut [f32],
) {
    float_block::<f16, 8, 2>(
        queries,
        dim,
        block,
        out,
        |r, c| lanes_f16(r, c),
        |q, x, acc| {
            let d = _mm512_sub_ps(x, q);
            _mm512_fmadd_ps(d, d, acc)
        },
    );
}

/// VNNI `i8` tile: each 64 bytes of the block are 16 rows × 4 dimensions
/// (signed codes), multiplied with the query's 4 codes offset by +128 and
/// broadcast to every lane (`vpdpbusd`'s unsigned operand). The rows are
/// the instruction's memory operand when `R` is large (single queries),
/// so a scan issues one instruction per 64 bytes.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
#[inline]
fn vnni_tile<const Q: usize, const R: usize>(
    queries: &[[i8; 4]],
    qgroups: &[[u8; 4 * BLOCK_ROWS]],
    out: &mut [[i32; BLOCK_ROWS]; Q],
) {
    let ng = qgroups.len();
    let qs: [&[[i8; 4]]; Q] = std::array::from_fn(|j| &queries[j * ng..(j + 1) * ng]);
    let offset = _mm512_set1_epi8(i8::MIN);
    for pass in 0..CHUNKS / R {
        let mut acc = [[_mm512_setzero_si512(); R]; Q];
        for (g, group) in qgroups.iter().enumerate() {
            if Q == 1 {
                prefetch_ahead(group);
            }
            let (chunks, _) = group.as_chunks::<64>();
            let x: [__m512i; R] = std::array::from_fn(|i| load_512(&chunks[pass * R + i]));
            for (acc_q, q) in acc.iter_mut().zip(&qs) {
                let codes = _mm512_set1_epi32(i32::from_le_bytes(q[g].map(|c| c as u8)));
                let b = _mm512_xor_si512(codes, offset);
                for (a, &xi) in acc_q.iter_mut().zip(&x) {
                    *a = _mm512_dpbusd_epi32(*a, b, xi);
                }
            }
        }
        for (acc_q, o) in acc.iter().zip(out.iter_mut()) {
            let (o16, _) = o.as_chunks_mut::<16>();
            for (i, &a) in acc_q.iter().enumerate() {
                store_i32(&mut o16[pass * R + i], a);
            }
        }
    }
}

/// Exact block inner products of `i8` queries with VNNI. See
/// [`crate::vector::Kernels::block_dot_i8`].
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VL/VNNI, AVX2, FMA and F16C.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(crate) unsafe fn block_dot_i8_avx512vnni(
    queries: &[i8],
    pdim: usize,
    block: &[u8],
    out: &mut [i32],
) {
    let ng = pdim / 4;
    let (qgroups, _) = block.as_chunks::<{ 4 * BLOCK_ROWS }>();
    let qgroups = &qgroups[..ng];
    let (outs, _) = out.as_chunks_mut::<BLOCK_ROWS>();
    let (groups, _) = queries.as_chunks::<4>();
    // Tiles of 12 queries, then 4, then single queries.
    let mut done = 0;
    for (g, o) in groups.chunks_exact(12 * ng).zip(outs.chunks_exact_mut(12)) {
        vnni_tile::<12, 2>(g, qgroups, o.try_into().expect("tile"));
        done += 12;
    }
    let (groups, outs) = (&groups[done * ng..], &mut outs[done..]);
    let mut four = 0;
    for (g, o) in groups.chunks_exact(4 * ng).zip(outs.chunks_exact_mut(4)) {
        vnni_tile::<4, 4>(g, qgroups, o.try_into().expect("tile"));
        four += 4;
    }
    for (g, o) in groups[four * ng..].chunks_exact(ng).zip(&mut outs[four..]) {
        vnni_tile::<1, 8>(g, qgroups, std::array::from_mut(o));
    }
    super::remove_offset(block, pdim, out);
}

/// Non-VNNI `i8` tile: 32 code bytes (8 rows × 4 dims) are sign-extended
/// to i16 and multiplied with the query group broadcast as four i16
/// (`vpmaddwd`), two partial sums per row added at the end of the pass.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
#[inline]
fn madd_tile<const Q: usize, const R: usize>(
    groups: &[i64],
    qgroups: &[[u8; 4 * BLOCK_ROWS]],
    out: &mut [[i32; BLOCK_ROWS]; Q],
) {
    const CHUNKS8: usize = BLOCK_ROWS / 8;
    let ng = qgroups.len();
    let qs: [&[i64]; Q] = std::array::from_fn(|j| &groups[j * ng..(j + 1) * ng]);
    for pass in 0..CHUNKS8 / R {
        let mut acc = [[_mm512_setzero_si512(); R]; Q];
        for (g, group) in qgroups.iter().enumerate() {
            if Q == 1 {
                prefetch_ahead(group);
            }
            let (chunks, _) = group.as_chunks::<32>();
            let x: [__m512i; R] =
                std::array::from_fn(|i| _mm512_cvtepi8_epi16(load_256(&chunks[pass * R + i])));
            for (acc_q, q) in acc.iter_mut().zip(&qs) {
                let b = _mm512_set1_epi64(q[g]);
                for (a, &xi) in acc_q.iter_mut().zip(&x) {
                    *a = _mm512_add_epi32(*a, _mm512_madd_epi16(xi, b));
                }
            }
        }
        for (acc_q, o) in acc.iter().zip(out.iter_mut()) {
            for (i, &a) in acc_q.iter().enumerate() {
                let mut pairs = [0i32; 16];
                store_i32(&mut pairs, a);
                let base = (pass * R + i) * 8;
                for r in 0..8 {
                    o[base + r] = pairs[2 * r] + pairs[2 * r + 1];
                }
            }
        }
    }
}

/// Exact block inner products of `i8` queries without VNNI.
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VL, AVX2, FMA and F16C.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
pub(crate) unsafe fn block_dot_i8_avx512bw(
    queries: &[i8],
    pdim: usize,
    block: &[u8],
    out: &mut [i32],
) {
    let ng = pdim / 4;
    let (qgroups, _) = block.as_chunks::<{ 4 * BLOCK_ROWS }>();
    let qgroups = &qgroups[..ng];
    let (outs, _) = out.as_chunks_mut::<BLOCK_ROWS>();
    let groups = super::i16_groups(queries);
    let mut g_tiles = groups.chunks_exact(8 * ng);
    let mut o_tiles = outs.chunks_exact_mut(8);
    for (g, o) in (&mut g_tiles).zip(&mut o_tiles) {
        madd_tile::<8, 2>(g, qgroups, o.try_into().expect("tile"));
    }
    for (g, o) in g_tiles
        .remainder()
        .chunks_exact(ng)
        .zip(o_tiles.into_remainder())
    {
        madd_tile::<1, 8>(g, qgroups, std::array::from_mut(o));
    }
}

/// Bit `r` set iff `keys[r] >= threshold` (ordered compare: NaN never qualifies).
///
/// # Safety
/// The CPU must support AVX-512F.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn mask_ge_avx512(keys: &[f32; BLOCK_ROWS], threshold: f32) -> u128 {
    let t = _mm512_set1_ps(threshold);
    let (chunks, _) = keys.as_chunks::<16>();
    let mut mask = 0u128;
    for (i, c) in chunks.iter().enumerate() {
        let m = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(load_f32(c), t);
        mask |= u128::from(m) << (16 * i);
    }
    mask
}

// ---------------------------------------------------------------------------
// Machine probes (see `crate::vector::probe`)
// ---------------------------------------------------------------------------

/// Wrapping sum of `data`: 8 independent 64-byte loads per iteration.
///
/// # Safety
/// The CPU must support AVX-512F.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn read_sum_avx512(data: &[u64]) -> u64 {
    let (blocks, rest) = data.as_chunks::<64>();
    let mut acc = [_mm512_setzero_si512(); 8];
    for block in blocks {
        let (lines, _) = block.as_chunks::<8>();
        for (a, line) in acc.iter_mut().zip(lines) {
            // SAFETY: `line` is 64 readable bytes.
            let v = unsafe { _mm512_loadu_si512(line.as_ptr().cast()) };
            *a = _mm512_add_epi64(*a, v);
        }
    }
    let total = acc
        .iter()
        .fold(_mm512_setzero_si512(), |s, &a| _mm512_add_epi64(s, a));
    (_mm512_reduce_add_epi64(total) as u64)
        .wrapping_add(crate::vector::probe::read_sum_scalar(rest))
}

/// 16 chains of `acc = vpdpbusd(acc, a, b)`; chain `i` starts at `i`.
/// Returns the sum of all lanes.
///
/// # Safety
/// The CPU must support AVX-512F/BW/VNNI.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub(crate) unsafe fn int8_mac_loop_vnni(iterations: u64, a: i8, b: i8) -> i64 {
    let x = _mm512_set1_epi8(a);
    let y = _mm512_set1_epi8(b);
    let mut acc: [__m512i; 16] = std::array::from_fn(|i| _mm512_set1_epi32(i as i32));
    for _ in 0..iterations {
        for v in &mut acc {
            *v = _mm512_dpbusd_epi32(*v, x, y);
        }
    }
    acc.iter()
        .map(|&v| {
            let mut lanes = [0i32; 16];
            store_i32(&mut lanes, v);
            lanes.iter().map(|&l| i64::from(l)).sum::<i64>()
        })
        .sum()
}

/// 16 chains of `acc = vpmaddubsw(acc, b)`; chain `i` starts with bytes
/// `a + i`. Returns the sum of all i16 lanes.
///
/// # Safety
/// The CPU must support AVX-512F/BW.
#[target_feature(enable = "avx512f,avx512bw")]
pub(crate) unsafe fn int8_mac_loop_avx512bw(iterations: u64, a: i8, b: i8) -> i64 {
    let y = _mm512_set1_epi8(b);
    let mut acc: [__m512i; 16] = std::array::from_fn(|i| _mm512_set1_epi8(a.wrapping_add(i as i8)));
    for _ in 0..iterations {
        for v in &mut acc {
            *v = _mm512_maddubs_epi16(*v, y);
        }
    }
    acc.iter()
        .map(|&v| {
            let mut lanes = [0i32; 16];
            store_i32(&mut lanes, v);
            lanes
                .iter()
                .flat_map(|&l| [l as i16, (l >> 16) as i16])
                .map(i64::from)
                .sum::<i64>()
        })
        .sum()
}

/// 16 chains of `x = fma(x, a, b)`; chain `i` starts at `1 + i/1024`.
/// Returns the largest lane.
///
/// # Safety
/// The CPU must support AVX-512F.
#[target_feature(enable = "avx512f,fma")]
pub(crate) unsafe fn fma_loop_avx512(iterations: u64, a: f32, b: f32) -> f32 {
    let va = _mm512_set1_ps(a);
    let vb = _mm512_set1_ps(b);
    let mut acc: [__m512; 16] = std::array::from_fn(|i| _mm512_set1_ps(1.0 + i as f32 / 1024.0));
    for _ in 0..iterations {
        for v in &mut acc {
            *v = _mm512_fmadd_ps(*v, va, vb);
        }
    }
    let m = acc.iter().fold(_mm512_set1_ps(f32::NEG_INFINITY), |m, &v| {
        _mm512_max_ps(m, v)
    });
    _mm512_reduce_max_ps(m)
}
