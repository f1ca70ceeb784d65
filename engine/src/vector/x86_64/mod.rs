//! x86-64 SIMD backends. Only [`crate::vector::Kernels`] calls into them,
//! after checking the CPU features and the slice lengths.

pub(crate) mod avx2;
pub(crate) mod avx512;

use crate::vector::layout::BLOCK_ROWS;

/// Each query's 4-code groups widened to four `i16` lanes packed in an
/// `i64`, ready for a 64-bit broadcast into `vpmaddwd` (the non-VNNI `i8`
/// block kernels).
fn i16_groups(queries: &[i8]) -> Vec<i64> {
    let (groups, _) = queries.as_chunks::<4>();
    groups
        .iter()
        .map(|g| {
            let lanes = g.map(|c| i64::from(c as i16 as u16));
            lanes[0] | lanes[1] << 16 | lanes[2] << 32 | lanes[3] << 48
        })
        .collect()
}

/// Turns `Σ (code_r + 128) · q` into `Σ code_r · q` for every query and row.
///
/// The block stores codes offset by +128 (see [`crate::vector::layout`]),
/// so every raw score carries `128 · Σ q` too much.
fn remove_offset(queries: &[i8], pdim: usize, out: &mut [i32]) {
    for (q, scores) in queries
        .chunks_exact(pdim)
        .zip(out.chunks_exact_mut(BLOCK_ROWS))
    {
        let bias = 128 * q.iter().map(|&c| i32::from(c)).sum::<i32>();
        for s in scores {
            *s -= bias;
        }
    }
}
