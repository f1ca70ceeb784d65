//! The fused cylinder kernel: one cylinder of template A against a list of
//! cylinders of template B, three exact integer sums per pair in one pass.
//!
//! A cylinder is stored as three planes ([`Layout`]):
//!
//! * `v`: the cell values, `dim` bytes (a multiple of 64), 0 to 127, zero
//!   in invalid cells;
//! * `e`: per spatial cell, the energy `Σ_k v² / 4` over its direction
//!   bins, as little-endian `i16` (at most 6 · 127² / 4 < 2¹⁵), `cells`
//!   of them (a multiple of 32), zero in invalid cells;
//! * `m`: per spatial cell, 1 if the cell is valid, as `i16`.
//!
//! For cylinders `a` and `b` the kernel returns
//!
//! * `Σ v_a · v_b`: the inner product over the cells valid in both;
//! * `Σ e_a · m_b`: `a`'s energy over the common cells (÷ 4);
//! * `Σ m_a · e_b`: `b`'s energy over the common cells (÷ 4),
//!
//! which is all the MCC similarity needs. The `v` bytes are in `0..=127`,
//! so `vpdpbusd` (unsigned × signed bytes) and `vpmaddubsw` (whose pairwise
//! `i16` sums stay below 2 · 127² < 2¹⁵) are exact, and so are the `i16`
//! multiply-adds of the energy planes. [`sums_scalar`] is the reference;
//! the SIMD versions are tested equal to it.

use crate::vector::{Backend, Kernels};

/// Plane sizes of a cylinder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Bytes of the value plane (a positive multiple of 64).
    pub dim: usize,
    /// `i16` entries of each cell plane (a positive multiple of 32).
    pub cells: usize,
}

impl Layout {
    /// A layout for `values` cell values over `cells` spatial cells,
    /// padded to the SIMD widths.
    pub fn new(values: usize, cells: usize) -> Layout {
        Layout {
            dim: values.div_ceil(64).max(1) * 64,
            cells: cells.div_ceil(32).max(1) * 32,
        }
    }

    /// Bytes per cylinder.
    pub fn bytes(self) -> usize {
        self.dim + 4 * self.cells
    }

    fn check(self) {
        assert!(
            self.dim > 0
                && self.dim.is_multiple_of(64)
                && self.cells > 0
                && self.cells.is_multiple_of(32),
            "{self:?}"
        );
    }
}

fn i16_at(c: &[u8], at: usize) -> i32 {
    i16::from_le_bytes([c[at], c[at + 1]]) as i32
}

/// The three sums for one pair (reference implementation).
pub fn sums_scalar(a: &[u8], b: &[u8], layout: Layout) -> [i32; 3] {
    let Layout { dim, cells } = layout;
    let vv = (0..dim)
        .map(|k| a[k] as i8 as i32 * b[k] as i8 as i32)
        .sum();
    let (e, m) = (dim, dim + 2 * cells);
    let em = (0..cells)
        .map(|c| i16_at(a, e + 2 * c) * i16_at(b, m + 2 * c))
        .sum();
    let me = (0..cells)
        .map(|c| i16_at(a, m + 2 * c) * i16_at(b, e + 2 * c))
        .sum();
    [vv, em, me]
}

/// Computes the sums of cylinder `a` against cylinders `js` of the packed
/// cylinder array `bs` (cylinder `j` at `j · layout.bytes()`), into `out`.
///
/// # Panics
/// If the layout is not padded, `a` is not one cylinder long, `out` is
/// shorter than `js`, or a `j` lies beyond `bs`.
pub fn one_to_many(
    kernels: Kernels,
    a: &[u8],
    bs: &[u8],
    layout: Layout,
    js: &[u16],
    out: &mut [[i32; 3]],
) {
    layout.check();
    let size = layout.bytes();
    assert_eq!(a.len(), size, "one cylinder");
    assert!(out.len() >= js.len());
    let count = bs.len() / size;
    assert!(
        js.iter().all(|&j| (j as usize) < count),
        "cylinder index out of range"
    );
    match kernels.backend() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Kernels` only exists for a backend the CPU supports; this
        // one includes AVX-512 F/BW and VNNI. Indices and lengths are checked above.
        Backend::Avx512Vnni => unsafe { x86::one_to_many_vnni(a, bs, layout, js, out) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: both backends include AVX2; lengths checked above.
        Backend::Avx2 | Backend::Avx512 => unsafe { x86::one_to_many_avx2(a, bs, layout, js, out) },
        _ => {
            for (o, &j) in out.iter_mut().zip(js) {
                let j = j as usize;
                *o = sums_scalar(a, &bs[j * size..(j + 1) * size], layout);
            }
        }
    }
}

/// The cylinders of B worth comparing with cylinder `i` of A: valid, with
/// a direction within `max_turn` (in 1/65536 of a turn) of `angle` and at
/// least `min_cells` valid cells in common with `mask`. Appends to `out`.
#[allow(clippy::too_many_arguments)]
pub fn candidates(
    kernels: Kernels,
    angle: u16,
    mask: u128,
    b_angles: &[u16],
    b_masks: &[u128],
    b_valid: &[bool],
    max_turn: i32,
    min_cells: u32,
    out: &mut Vec<u16>,
) {
    let run = |out: &mut Vec<u16>| {
        for (j, ((&ang, &m), &valid)) in b_angles.iter().zip(b_masks).zip(b_valid).enumerate() {
            let turn = (angle.wrapping_sub(ang) as i16 as i32).abs();
            if valid && turn <= max_turn && (mask & m).count_ones() >= min_cells {
                out.push(j as u16);
            }
        }
    };
    #[cfg(target_arch = "x86_64")]
    if kernels.backend() != Backend::Scalar && std::arch::is_x86_feature_detected!("popcnt") {
        // SAFETY: POPCNT was just detected.
        return unsafe { x86::with_popcnt(out, run) };
    }
    let _ = kernels;
    run(out)
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::Layout;
    use crate::vector::x86_64::{avx2::hsum_i32, avx512::load_512};

    /// Runs `f` compiled with POPCNT so `count_ones` is one instruction.
    ///
    /// # Safety
    /// The CPU must support POPCNT.
    #[target_feature(enable = "popcnt")]
    #[inline]
    pub(super) unsafe fn with_popcnt<T>(arg: &mut T, f: impl Fn(&mut T)) {
        f(arg)
    }

    #[target_feature(enable = "avx2")]
    #[inline]
    fn load_256(x: &[u8; 32]) -> __m256i {
        // SAFETY: `x` is 32 readable bytes.
        unsafe { _mm256_loadu_si256(x.as_ptr().cast()) }
    }

    /// The value, energy and mask planes of one cylinder, in `N`-byte chunks.
    fn planes<const N: usize>(c: &[u8], layout: Layout) -> [&[[u8; N]]; 3] {
        let (v, rest) = c.split_at(layout.dim);
        let (e, m) = rest.split_at(2 * layout.cells);
        [v, e, m].map(|p| p.as_chunks::<N>().0)
    }

    /// # Safety
    /// AVX-512 F/BW/VNNI must be available. Slices are checked by indexing.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2")]
    pub(super) unsafe fn one_to_many_vnni(
        a: &[u8],
        bs: &[u8],
        layout: Layout,
        js: &[u16],
        out: &mut [[i32; 3]],
    ) {
        let size = layout.bytes();
        let [av, ae, am] = planes::<64>(a, layout);
        for (o, &j) in out.iter_mut().zip(js) {
            let [bv, be, bm] = planes::<64>(&bs[j as usize * size..][..size], layout);
            let mut acc = [_mm512_setzero_si512(); 3];
            for (x, y) in av.iter().zip(bv) {
                acc[0] = _mm512_dpbusd_epi32(acc[0], load_512(x), load_512(y));
            }
            for (x, y) in ae.iter().zip(bm) {
                acc[1] = _mm512_dpwssd_epi32(acc[1], load_512(x), load_512(y));
            }
            for (x, y) in am.iter().zip(be) {
                acc[2] = _mm512_dpwssd_epi32(acc[2], load_512(x), load_512(y));
            }
            *o = acc.map(|x| _mm512_reduce_add_epi32(x));
        }
    }

    /// # Safety
    /// AVX2 must be available. Slices are checked by indexing.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn one_to_many_avx2(
        a: &[u8],
        bs: &[u8],
        layout: Layout,
        js: &[u16],
        out: &mut [[i32; 3]],
    ) {
        let size = layout.bytes();
        let ones = _mm256_set1_epi16(1);
        let [av, ae, am] = planes::<32>(a, layout);
        for (o, &j) in out.iter_mut().zip(js) {
            let [bv, be, bm] = planes::<32>(&bs[j as usize * size..][..size], layout);
            let mut acc = [_mm256_setzero_si256(); 3];
            for (x, y) in av.iter().zip(bv) {
                let prod = _mm256_maddubs_epi16(load_256(x), load_256(y));
                acc[0] = _mm256_add_epi32(acc[0], _mm256_madd_epi16(prod, ones));
            }
            for (x, y) in ae.iter().zip(bm) {
                acc[1] = _mm256_add_epi32(acc[1], _mm256_madd_epi16(load_256(x), load_256(y)));
            }
            for (x, y) in am.iter().zip(be) {
                acc[2] = _mm256_add_epi32(acc[2], _mm256_madd_epi16(load_256(x), load_256(y)));
            }
            *o = acc.map(|x| hsum_i32(x));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt, SeedableRng};

    fn random_cylinders(rng: &mut rand_chacha::ChaCha8Rng, n: usize, layout: Layout) -> Vec<u8> {
        let mut out = vec![0u8; n * layout.bytes()];
        for c in out.chunks_mut(layout.bytes()) {
            for cell in 0..layout.cells {
                let valid = rng.random_bool(0.8);
                let mut energy = 0;
                for k in 0..6 {
                    let at = cell * 6 + k;
                    if valid && at < layout.dim {
                        let v: u8 = rng.random_range(0..=127);
                        c[at] = v;
                        energy += v as i32 * v as i32;
                    }
                }
                let e = layout.dim + 2 * cell;
                let m = layout.dim + 2 * layout.cells + 2 * cell;
                c[e..e + 2].copy_from_slice(&((energy / 4) as i16).to_le_bytes());
                c[m..m + 2].copy_from_slice(&(valid as i16).to_le_bytes());
            }
        }
        out
    }

    #[test]
    fn every_backend_equals_the_scalar_reference() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for layout in [
            Layout::new(64, 10),
            Layout::new(312, 52),
            Layout::new(672, 112),
        ] {
            let a = random_cylinders(&mut rng, 1, layout);
            // Extremes: the first is 127 in every value and the largest energies.
            let mut bs = random_cylinders(&mut rng, 9, layout);
            bs[..layout.dim].fill(127);
            for c in 0..layout.cells {
                let e = layout.dim + 2 * c;
                bs[e..e + 2].copy_from_slice(&((6 * 127 * 127 / 4) as i16).to_le_bytes());
            }
            let js: Vec<u16> = vec![0, 3, 8, 1, 1];
            let expected: Vec<[i32; 3]> = js
                .iter()
                .map(|&j| {
                    let s = layout.bytes() * j as usize;
                    sums_scalar(&a, &bs[s..s + layout.bytes()], layout)
                })
                .collect();
            for backend in ["scalar", "avx2", "avx512", "avx512vnni"] {
                let Ok(kernels) = Backend::parse(backend).and_then(Kernels::new) else {
                    eprintln!("SKIPPED {backend}: not supported here");
                    continue;
                };
                let mut out = vec![[0; 3]; js.len()];
                one_to_many(kernels, &a, &bs, layout, &js, &mut out);
                assert_eq!(out, expected, "{backend} {layout:?}");
            }
        }
    }

    #[test]
    #[should_panic(expected = "out of range")]
    fn indices_beyond_the_array_panic_before_any_simd() {
        let layout = Layout::new(64, 10);
        let bs = vec![0u8; 2 * layout.bytes()];
        let a = vec![0u8; layout.bytes()];
        one_to_many(
            crate::vector::kernels(),
            &a,
            &bs,
            layout,
            &[2],
            &mut [[0; 3]],
        );
    }
}
