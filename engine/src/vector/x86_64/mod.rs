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

/// Turns `Σ (q + 128) · code_r` into `Σ q · code_r` for every query and
/// row, with the row code sums stored at the end of the block (see
/// [`crate::vector::layout`]): the VNNI kernels feed the query in offset by
/// +128 because `vpdpbusd` takes that operand unsigned.
fn remove_offset(block: &[u8], pdim: usize, out: &mut [i32]) {
    let (sums, _) = block[pdim * BLOCK_ROWS..].as_chunks::<4>();
    let mut bias = [0i32; BLOCK_ROWS];
    for (b, s) in bias.iter_mut().zip(sums) {
        *b = 128 * i32::from_le_bytes(*s);
    }
    for scores in out.chunks_exact_mut(BLOCK_ROWS) {
        for (s, b) in scores.iter_mut().zip(&bias) {
            *s -= b;
        }
    }
}
