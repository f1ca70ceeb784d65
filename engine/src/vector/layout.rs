//! The column-blocked row layout that block kernels and segment files share.
//!
//! Rows are grouped in blocks of [`BLOCK_ROWS`]. Inside a block the rows are
//! stored "column-blocked": for every dimension `k`, the values of all 128
//! rows are contiguous. A SIMD register loaded from a block therefore holds
//! one dimension of 8 or 16 *different rows*, so a query is scored against a
//! whole block with broadcasts and fused multiply-adds and no horizontal
//! reduction, and many queries reuse each loaded register (the batched
//! search's arithmetic intensity comes from this).
//!
//! * `f32` / `f16`: element `(row r, dim k)` is at `k * BLOCK_ROWS + r`.
//! * `i8`: dimensions are padded to a multiple of 4 ([`padded_dim_i8`]);
//!   byte `(row r, dim k)` is at `(k / 4) * 4 * BLOCK_ROWS + r * 4 + k % 4`,
//!   i.e. each 32-bit lane holds 4 consecutive dimensions of one row, the
//!   operand shape of `vpdpbusd`. Codes are stored as plain signed bytes so
//!   that the rows can be `vpdpbusd`'s *memory* operand (its signed one):
//!   a scan then issues one instruction per 64 bytes, which keeps more
//!   bytes in flight. The query goes in as the unsigned operand, offset by
//!   +128, which adds `128 · Σ row codes`; each block therefore ends with
//!   one more 4-byte group per row holding that row's code sum (`i32`,
//!   little-endian, at `padded_dim * BLOCK_ROWS + r * 4`) for the kernels
//!   to subtract.
//!
//! Rows beyond a block's fill are zero (all dtypes); their scores are
//! computed and ignored.

use super::f16;

/// Rows per block. 128 rows × 4 bytes = 8 AVX-512 registers per dimension.
pub const BLOCK_ROWS: usize = 128;

/// Dimensions of an `i8` row once padded to whole 4-byte groups.
pub fn padded_dim_i8(dim: usize) -> usize {
    dim.div_ceil(4) * 4
}

/// Elements in one `f32` or `f16` block.
pub fn block_len(dim: usize) -> usize {
    dim * BLOCK_ROWS
}

/// Bytes in one `i8` block: the codes plus one `i32` code sum per row.
pub fn block_len_i8(dim: usize) -> usize {
    (padded_dim_i8(dim) + 4) * BLOCK_ROWS
}

/// Byte offset of the row code sums in an `i8` block.
pub fn sums_offset_i8(dim: usize) -> usize {
    padded_dim_i8(dim) * BLOCK_ROWS
}

/// The code sum of row `r` stored in an `i8` block of dimension `dim`.
pub fn row_sum_i8(block: &[u8], dim: usize, r: usize) -> i32 {
    let at = sums_offset_i8(dim) + 4 * r;
    i32::from_le_bytes(block[at..at + 4].try_into().expect("4 bytes"))
}

/// A new `f32` block with every row zero.
pub fn new_block_f32(dim: usize) -> Vec<f32> {
    vec![0.0; block_len(dim)]
}

/// A new `f16` block with every row zero.
pub fn new_block_f16(dim: usize) -> Vec<f16> {
    vec![f16::ZERO; block_len(dim)]
}

/// A new `i8` block with every code zero.
pub fn new_block_i8(dim: usize) -> Vec<u8> {
    vec![0; block_len_i8(dim)]
}

/// Writes `row` as row `r` of an `f32` or `f16` block.
///
/// # Panics
/// If `r >= BLOCK_ROWS` or the block is not `row.len() * BLOCK_ROWS` long.
pub fn set_row<T: Copy>(block: &mut [T], r: usize, row: &[T]) {
    assert!(r < BLOCK_ROWS, "row {r} outside block");
    assert_eq!(block.len(), block_len(row.len()), "block length");
    for (k, &v) in row.iter().enumerate() {
        block[k * BLOCK_ROWS + r] = v;
    }
}

/// Reads row `r` of an `f32` or `f16` block into `out`.
///
/// # Panics
/// If `r >= BLOCK_ROWS` or the block is not `out.len() * BLOCK_ROWS` long.
pub fn get_row<T: Copy>(block: &[T], r: usize, out: &mut [T]) {
    assert!(r < BLOCK_ROWS, "row {r} outside block");
    assert_eq!(block.len(), block_len(out.len()), "block length");
    for (k, v) in out.iter_mut().enumerate() {
        *v = block[k * BLOCK_ROWS + r];
    }
}

/// Writes `codes` as row `r` of an `i8` block.
///
/// # Panics
/// If `r >= BLOCK_ROWS` or the block is not [`block_len_i8`]`(codes.len())` long.
pub fn set_row_i8(block: &mut [u8], r: usize, codes: &[i8]) {
    let dim = codes.len();
    assert!(r < BLOCK_ROWS, "row {r} outside block");
    assert_eq!(block.len(), block_len_i8(dim), "block length");
    for (k, &c) in codes.iter().enumerate() {
        block[i8_offset(r, k)] = c as u8;
    }
    for k in dim..padded_dim_i8(dim) {
        block[i8_offset(r, k)] = 0;
    }
    let sum: i32 = codes.iter().map(|&c| i32::from(c)).sum();
    let at = sums_offset_i8(dim) + 4 * r;
    block[at..at + 4].copy_from_slice(&sum.to_le_bytes());
}

/// Reads row `r` of an `i8` block into `out` (`out.len()` is the dimension).
///
/// # Panics
/// If `r >= BLOCK_ROWS` or the block is not [`block_len_i8`]`(out.len())` long.
pub fn get_row_i8(block: &[u8], r: usize, out: &mut [i8]) {
    assert!(r < BLOCK_ROWS, "row {r} outside block");
    assert_eq!(block.len(), block_len_i8(out.len()), "block length");
    for (k, c) in out.iter_mut().enumerate() {
        *c = block[i8_offset(r, k)] as i8;
    }
}

#[inline]
fn i8_offset(r: usize, k: usize) -> usize {
    (k / 4) * 4 * BLOCK_ROWS + r * 4 + k % 4
}

/// Packs up to [`BLOCK_ROWS`] row-major rows into a new `f32` block.
///
/// # Panics
/// If `rows` is not a whole number of `dim`-vectors or holds more than a block.
pub fn pack_f32(rows: &[f32], dim: usize) -> Vec<f32> {
    let mut block = new_block_f32(dim);
    for (r, row) in rows_of(rows, dim).enumerate() {
        set_row(&mut block, r, row);
    }
    block
}

/// Packs up to [`BLOCK_ROWS`] row-major rows into a new `f16` block.
///
/// # Panics
/// If `rows` is not a whole number of `dim`-vectors or holds more than a block.
pub fn pack_f16(rows: &[f16], dim: usize) -> Vec<f16> {
    let mut block = new_block_f16(dim);
    for (r, row) in rows_of(rows, dim).enumerate() {
        set_row(&mut block, r, row);
    }
    block
}

/// Packs up to [`BLOCK_ROWS`] row-major `i8` rows into a new `i8` block.
///
/// # Panics
/// If `rows` is not a whole number of `dim`-vectors or holds more than a block.
pub fn pack_i8(rows: &[i8], dim: usize) -> Vec<u8> {
    let mut block = new_block_i8(dim);
    for (r, row) in rows_of(rows, dim).enumerate() {
        set_row_i8(&mut block, r, row);
    }
    block
}

/// Copies `queries` (row-major, `dim` codes each) into the padded layout the
/// `i8` block kernels take.
pub fn pad_queries_i8(queries: &[i8], dim: usize) -> Vec<i8> {
    let pdim = padded_dim_i8(dim);
    let mut out = vec![0i8; queries.len() / dim * pdim];
    for (src, dst) in queries.chunks_exact(dim).zip(out.chunks_exact_mut(pdim)) {
        dst[..dim].copy_from_slice(src);
    }
    out
}

/// `Σ code²` of an `i8` vector, exact.
pub fn sqnorm_i8(codes: &[i8]) -> i32 {
    codes.iter().map(|&c| i32::from(c) * i32::from(c)).sum()
}

fn rows_of<T>(rows: &[T], dim: usize) -> std::slice::ChunksExact<'_, T> {
    assert!(dim > 0, "dimension must be positive");
    assert_eq!(
        rows.len() % dim,
        0,
        "rows are not a whole number of vectors"
    );
    assert!(
        rows.len() / dim <= BLOCK_ROWS,
        "more rows than a block holds"
    );
    rows.chunks_exact(dim)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f32_rows_round_trip_and_land_column_blocked() {
        let dim = 5;
        let rows: Vec<f32> = (0..3 * dim).map(|i| i as f32).collect();
        let block = pack_f32(&rows, dim);
        // Row 1, dim 2 is element 7 of the input.
        assert_eq!(block[2 * BLOCK_ROWS + 1], 7.0);
        let mut out = vec![0.0; dim];
        for r in 0..3 {
            get_row(&block, r, &mut out);
            assert_eq!(out, rows[r * dim..(r + 1) * dim]);
        }
        get_row(&block, 3, &mut out);
        assert_eq!(out, vec![0.0; dim], "unfilled rows are zero");
    }

    #[test]
    fn i8_rows_round_trip_with_padding_and_sums() {
        for dim in [1, 3, 4, 5, 8, 13] {
            let rows: Vec<i8> = (0..2 * dim).map(|i| (i as i8).wrapping_mul(37)).collect();
            let block = pack_i8(&rows, dim);
            assert_eq!(block.len(), (padded_dim_i8(dim) + 4) * BLOCK_ROWS);
            for r in 0..2 {
                let sum: i32 = rows[r * dim..(r + 1) * dim]
                    .iter()
                    .map(|&c| i32::from(c))
                    .sum();
                assert_eq!(row_sum_i8(&block, dim, r), sum);
            }
            assert_eq!(row_sum_i8(&block, dim, 2), 0);
            let mut out = vec![0i8; dim];
            for r in 0..2 {
                get_row_i8(&block, r, &mut out);
                assert_eq!(out, rows[r * dim..(r + 1) * dim], "dim {dim} row {r}");
            }
            get_row_i8(&block, 5, &mut out);
            assert!(out.iter().all(|&c| c == 0));
        }
    }

    #[test]
    fn pad_queries_appends_zero_codes() {
        let q = [1i8, 2, 3, 4, 5, 6];
        assert_eq!(pad_queries_i8(&q, 3), vec![1, 2, 3, 0, 4, 5, 6, 0]);
    }
}
