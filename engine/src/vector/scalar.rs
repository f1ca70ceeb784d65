//! Reference kernels in plain safe Rust: the parity baseline.
//!
//! Every SIMD backend is tested against these functions: integer kernels and
//! the `f32`/`f16` block kernels must match them bit for bit, the float pair
//! kernels within a derived rounding bound of an `f64` reference. They are
//! also the production fallback on CPUs without a SIMD backend.
//!
//! Preconditions (equal lengths, block sizes) are checked by the safe
//! wrappers in [`super::Kernels`]; called directly, mismatched lengths are
//! truncated by `zip` rather than read out of bounds.

use super::f16;
use super::layout::BLOCK_ROWS;

/// `Σ a[i]·b[i]`, summed left to right in `f32`.
pub fn dot_f32_scalar(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// `Σ (a[i] − b[i])²`, summed left to right in `f32`.
pub fn l2sq_f32_scalar(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| {
            let d = x - y;
            d * d
        })
        .sum()
}

/// `Σ a[i]·b[i]` of `f16` vectors, widened and summed in `f32`.
pub fn dot_f16_scalar(a: &[f16], b: &[f16]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x.to_f32() * y.to_f32()).sum()
}

/// `Σ (a[i] − b[i])²` of `f16` vectors, widened and summed in `f32`.
pub fn l2sq_f16_scalar(a: &[f16], b: &[f16]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| {
            let d = x.to_f32() - y.to_f32();
            d * d
        })
        .sum()
}

/// Exact `Σ a[i]·b[i]` of `i8` vectors.
pub fn dot_i8_scalar(a: &[i8], b: &[i8]) -> i32 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| i32::from(x) * i32::from(y))
        .sum()
}

/// Exact `Σ (a[i] − b[i])²` of `i8` vectors.
pub fn l2sq_i8_scalar(a: &[i8], b: &[i8]) -> i32 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| {
            let d = i32::from(x) - i32::from(y);
            d * d
        })
        .sum()
}

/// Scores every query against an `f32` block: per row,
/// `acc = fma(q[k], row[k], acc)` for `k = 0..dim`.
pub fn block_dot_f32_scalar(queries: &[f32], dim: usize, block: &[f32], out: &mut [f32]) {
    block_scalar(
        queries,
        dim,
        block,
        out,
        |x| x,
        |q, x, acc| q.mul_add(x, acc),
    );
}

/// Squared distances of every query to an `f32` block: per row,
/// `acc = fma(d, d, acc)` with `d = row[k] − q[k]`.
pub fn block_l2sq_f32_scalar(queries: &[f32], dim: usize, block: &[f32], out: &mut [f32]) {
    block_scalar(
        queries,
        dim,
        block,
        out,
        |x| x,
        |q, x, acc| {
            let d = x - q;
            d.mul_add(d, acc)
        },
    );
}

/// As [`block_dot_f32_scalar`] with the rows widened from `f16`.
pub fn block_dot_f16_scalar(queries: &[f32], dim: usize, block: &[f16], out: &mut [f32]) {
    block_scalar(queries, dim, block, out, f16::to_f32, |q, x, acc| {
        q.mul_add(x, acc)
    });
}

/// As [`block_l2sq_f32_scalar`] with the rows widened from `f16`.
pub fn block_l2sq_f16_scalar(queries: &[f32], dim: usize, block: &[f16], out: &mut [f32]) {
    block_scalar(queries, dim, block, out, f16::to_f32, |q, x, acc| {
        let d = x - q;
        d.mul_add(d, acc)
    });
}

/// Exact inner products of `i8` queries (`pdim` codes each, padded) with
/// the rows of an `i8` block.
pub fn block_dot_i8_scalar(queries: &[i8], pdim: usize, block: &[u8], out: &mut [i32]) {
    let (groups, _) = block.as_chunks::<{ 4 * BLOCK_ROWS }>();
    let groups = &groups[..pdim / 4];
    for (q, scores) in queries
        .chunks_exact(pdim)
        .zip(out.chunks_exact_mut(BLOCK_ROWS))
    {
        let mut acc = [0i32; BLOCK_ROWS];
        for (qg, group) in q.chunks_exact(4).zip(groups) {
            let (lanes, _) = group.as_chunks::<4>();
            for (a, lane) in acc.iter_mut().zip(lanes) {
                for (&byte, &qc) in lane.iter().zip(qg) {
                    *a += i32::from(byte as i8) * i32::from(qc);
                }
            }
        }
        scores.copy_from_slice(&acc);
    }
}

/// Scores of `query` against row-major `rows`, each one sequential FMA
/// chain `acc = fma(q[k], row[k], acc)`: bit-identical to the same rows
/// scored in a block by [`block_dot_f32_scalar`].
pub fn rows_dot_f32_scalar(query: &[f32], rows: &[&[f32]], out: &mut [f32]) {
    rows_chain(query, rows, out, |q, x, acc| q.mul_add(x, acc));
}

/// As [`rows_dot_f32_scalar`] for squared L2 (`d = row[k] − q[k]`,
/// `acc = fma(d, d, acc)`), bit-identical to [`block_l2sq_f32_scalar`].
pub fn rows_l2sq_f32_scalar(query: &[f32], rows: &[&[f32]], out: &mut [f32]) {
    rows_chain(query, rows, out, |q, x, acc| {
        let d = x - q;
        d.mul_add(d, acc)
    });
}

/// Sixteen rows at a time, one chain each, so the chains' latencies overlap
/// (the SIMD backends compile this same loop with hardware FMA).
#[inline(always)]
pub(crate) fn rows_chain(
    query: &[f32],
    rows: &[&[f32]],
    out: &mut [f32],
    step: impl Fn(f32, f32, f32) -> f32,
) {
    let dim = query.len();
    for (group, scores) in rows.chunks(16).zip(out.chunks_mut(16)) {
        let mut acc = [0.0f32; 16];
        let group: Vec<&[f32]> = group.iter().map(|r| &r[..dim]).collect();
        for (k, &qk) in query.iter().enumerate() {
            for (a, row) in acc.iter_mut().zip(&group) {
                *a = step(qk, row[k], *a);
            }
        }
        scores.copy_from_slice(&acc[..group.len()]);
    }
}

/// Bit `r` set iff `keys[r] >= threshold` (NaN keys never qualify).
pub fn mask_ge_scalar(keys: &[f32; BLOCK_ROWS], threshold: f32) -> u128 {
    keys.iter()
        .enumerate()
        .fold(0u128, |m, (r, &k)| m | (u128::from(k >= threshold) << r))
}

/// Every query against every row of a float block: per row and query,
/// `acc = step(q[k], widen(row[k]), acc)` for `k = 0..dim`.
fn block_scalar<T: Copy>(
    queries: &[f32],
    dim: usize,
    block: &[T],
    out: &mut [f32],
    widen: impl Fn(T) -> f32,
    step: impl Fn(f32, f32, f32) -> f32,
) {
    let (rows_by_dim, _) = block.as_chunks::<BLOCK_ROWS>();
    for (q, scores) in queries
        .chunks_exact(dim)
        .zip(out.chunks_exact_mut(BLOCK_ROWS))
    {
        let mut acc = [0.0f32; BLOCK_ROWS];
        for (&qk, values) in q.iter().zip(rows_by_dim) {
            for (a, &x) in acc.iter_mut().zip(values) {
                *a = step(qk, widen(x), *a);
            }
        }
        scores.copy_from_slice(&acc);
    }
}
