//! Contextual enhancement: each foreground pixel is filtered with the even
//! Gabor filter tuned to its ridge direction and period (Hong, Wan & Jain
//! 1998), from a bank quantised to 16 directions and half-pixel periods.
//! The sign of the response is the ridge/valley decision.
//!
//! The per-pixel work is a dot product of the image window with a kernel
//! (rows padded to 8 floats). [`dot_rows`] is the portable reference; it
//! sums each 8-float column of the rows in its own accumulator and
//! combines them in a fixed order. [`dot_block`] does the same sums with
//! AVX2 registers, in the same order, so both give the same bits (tests
//! check it on random data and on a fingerprint). It filters two
//! neighbouring pixels that share a kernel (nearly all do) with the
//! kernels of both banks at once: each kernel row is loaded once for two
//! pixels and each window row once for two banks, and loads are what
//! bounds this loop.

use std::f32::consts::PI;

use rayon::prelude::*;

use super::Plane;
use super::field::{self, Field};
use crate::vector::Backend;

/// Directions in the bank (11.25° apart).
pub(super) const ANGLES: usize = 16;
const MIN_PERIOD: f32 = 4.5;
const PERIOD_STEP: f32 = 0.5;
const PERIODS: usize = 22;

/// Gabor kernels for every (direction, period) pair.
pub(super) struct Bank {
    radius: usize,
    /// Row length, padded to a multiple of 8.
    stride: usize,
    /// The kernels, one after another, from `kernels[start]`.
    kernels: Vec<f32>,
    /// Where the first kernel starts: at a 32-byte boundary, so that with
    /// rows of a multiple of 8 floats no row of a kernel straddles two
    /// cache lines in the AVX2 loads.
    start: usize,
}

impl Bank {
    /// Kernels of `radius` with envelope σs `along` and `across` the ridges.
    ///
    /// # Panics
    /// If `radius` is above 63.
    pub(super) fn new(radius: usize, along: f32, across: f32) -> Bank {
        let side = 2 * radius + 1;
        let stride = side.div_ceil(8) * 8;
        assert!(
            stride <= 8 * MAX_COLUMNS,
            "Gabor radius {radius}: at most 63"
        );
        let size = stride * side;
        let mut kernels = vec![0f32; ANGLES * PERIODS * size + 7];
        let start = kernels.as_ptr().align_offset(32).min(7);
        let bank = &mut kernels[start..];
        for a in 0..ANGLES {
            let theta = a as f32 * PI / ANGLES as f32;
            let (c, s) = (theta.cos(), theta.sin());
            for t in 0..PERIODS {
                let period = MIN_PERIOD + t as f32 * PERIOD_STEP;
                let k = &mut bank[(a * PERIODS + t) * size..][..size];
                let mut envelope = vec![0f32; size];
                for dy in 0..side {
                    for dx in 0..side {
                        let (x, y) = (dx as f32 - radius as f32, dy as f32 - radius as f32);
                        // Along the ridge and across it.
                        let u = x * c + y * s;
                        let v = -x * s + y * c;
                        let env =
                            (-0.5 * (u * u / (along * along) + v * v / (across * across))).exp();
                        envelope[dy * stride + dx] = env;
                        k[dy * stride + dx] = env * (2.0 * PI * v / period).cos();
                    }
                }
                // Zero mean: flat regions give no response, whatever their grey level.
                let dc = k.iter().sum::<f32>() / envelope.iter().sum::<f32>();
                let mut norm = 0f32;
                for (kv, e) in k.iter_mut().zip(&envelope) {
                    *kv -= dc * e;
                    norm += *kv * *kv;
                }
                let norm = norm.sqrt();
                k.iter_mut().for_each(|kv| *kv /= norm);
            }
        }
        Bank {
            radius,
            stride,
            kernels,
            start,
        }
    }

    /// The index of the kernel for a direction bin and a period.
    fn index(angle: usize, period: f32) -> u16 {
        let t = (((period - MIN_PERIOD) / PERIOD_STEP).round() as usize).min(PERIODS - 1);
        (angle * PERIODS + t) as u16
    }

    fn kernel(&self, index: u16) -> &[f32] {
        let size = self.stride * (2 * self.radius + 1);
        &self.kernels[self.start + index as usize * size..][..size]
    }
}

/// Tangents of the bin boundaries within a quadrant of the doubled angle:
/// 11.25°, 33.75°, 56.25° and 78.75° (bins are 22.5° wide there).
const BIN_BOUNDS: [f32; 4] = [0.198_912_37, 0.668_178_6, 1.496_605_8, 5.027_339_5];

/// The direction bin of a doubled-angle vector `(cos 2θ, sin 2θ)`: the
/// nearest of the bank's directions, `round(θ · 16 / π) mod 16`. Found by
/// comparing against the bin boundaries in the vector's quadrant; one
/// `atan2` per pixel had cost a third of the enhancement.
pub(super) fn angle_bin(v: [f32; 2]) -> usize {
    let (ax, ay) = (v[0].abs(), v[1].abs());
    // Steps of 22.5° from the x axis within the quadrant, 0 to 4.
    let q = BIN_BOUNDS.iter().filter(|&&t| ay > t * ax).count();
    let half = ANGLES / 2;
    let k = match (v[0] >= 0.0, v[1] >= 0.0) {
        (true, true) => q,
        (false, true) => half - q,
        (false, false) => half + q,
        (true, false) => ANGLES - q,
    };
    k % ANGLES
}

/// The kernel (direction bin and period) each pixel of `mask` is filtered
/// with, for any bank: the orientation is interpolated once however many
/// banks filter the image.
pub(super) fn kernel_choice(field: &Field, mask: &[bool], w: usize, h: usize) -> Vec<u16> {
    let columns: Vec<field::Lerp> = (0..w).map(|x| field.lerp_x(x as f32 + 0.5)).collect();
    let mut choice = vec![0u16; w * h];
    for y in 0..h {
        let row = field.lerp_y(y as f32 + 0.5);
        for (x, column) in columns.iter().enumerate() {
            if mask[y * w + x] {
                let angle = angle_bin(field.smooth_between(column, &row));
                let period = field.period[field.block_of(x, y)];
                choice[y * w + x] = Bank::index(angle, period);
            }
        }
    }
    choice
}

/// The responses of `bank` and, when given, of `fine` (of the same
/// radius) at every pixel of `mask` (0 elsewhere), each pixel with the
/// kernel of `choice` (made by [`kernel_choice`] for a mask that covers
/// `mask`). Bands of rows run in parallel.
pub(super) fn enhance(
    img: &Plane,
    bank: &Bank,
    fine: Option<&Bank>,
    choice: &[u16],
    backend: Backend,
    mask: &[bool],
) -> (Vec<f32>, Option<Vec<f32>>) {
    match fine {
        None => {
            let [response] = enhance_with([bank], img, choice, backend, mask);
            (response, None)
        }
        Some(fine) => {
            let [response, fine] = enhance_with([bank, fine], img, choice, backend, mask);
            (response, Some(fine))
        }
    }
}

/// [`enhance`] for `K` banks at once.
fn enhance_with<const K: usize>(
    banks: [&Bank; K],
    img: &Plane,
    choice: &[u16],
    backend: Backend,
    mask: &[bool],
) -> [Vec<f32>; K] {
    let (r, stride) = (banks[0].radius, banks[0].stride);
    assert!(
        banks.iter().all(|b| b.radius == r),
        "enhance: banks of different radii"
    );
    let side = 2 * r + 1;
    // Edge-replicated copy with room for the padded rows (and for the
    // second pixel of a pair).
    let pw = img.w + 2 * r + stride + 1;
    let ph = img.h + 2 * r;
    let mut padded = vec![0f32; pw * ph];
    for y in 0..ph {
        let sy = y.saturating_sub(r).min(img.h - 1);
        let src = img.row(sy);
        for x in 0..pw {
            padded[y * pw + x] = src[x.saturating_sub(r).min(img.w - 1)];
        }
    }
    let scalar = backend == Backend::Scalar;
    let w = img.w;
    // Pixel-interleaved output (`K` values per pixel), split by rows.
    let mut out = vec![[0f32; K]; w * img.h];
    const BAND: usize = 16;
    out.par_chunks_mut(w * BAND)
        .enumerate()
        .for_each(|(band, rows)| {
            for (dy, row) in rows.chunks_exact_mut(w).enumerate() {
                let y = band * BAND + dy;
                let (mask, choice) = (&mask[y * w..][..w], &choice[y * w..][..w]);
                let mut x = 0;
                while x < w {
                    if !mask[x] {
                        x += 1;
                        continue;
                    }
                    let window = &padded[y * pw + x..];
                    let kernels = banks.map(|b| b.kernel(choice[x]));
                    if scalar {
                        row[x] = kernels.map(|k| dot_rows(window, pw, k, stride, side));
                        x += 1;
                    } else if x + 1 < w && mask[x + 1] && choice[x + 1] == choice[x] {
                        let [a, b] = dot_block::<2, K>(window, pw, kernels, stride, side);
                        row[x] = a;
                        row[x + 1] = b;
                        x += 2;
                    } else {
                        [row[x]] = dot_block::<1, K>(window, pw, kernels, stride, side);
                        x += 1;
                    }
                }
            }
        });
    std::array::from_fn(|k| out.iter().map(|px| px[k]).collect())
}

/// Widest kernel row, in 8-float columns (Gabor radius up to 63).
const MAX_COLUMNS: usize = 16;

/// Σ over `rows` rows of `window[row · pitch ..][..stride] · kernel[row · stride ..]`:
/// the portable reference. `stride` is a multiple of 8, at most 128. Lane
/// `l` of each 8-float column `c` has its own running sum over the rows;
/// the columns are added lane by lane in order, then the eight lanes in
/// order.
pub(super) fn dot_rows(
    window: &[f32],
    pitch: usize,
    kernel: &[f32],
    stride: usize,
    rows: usize,
) -> f32 {
    let columns = stride / 8;
    assert!(columns <= MAX_COLUMNS, "Gabor rows of {stride} floats");
    let mut acc = [[0f32; 8]; MAX_COLUMNS];
    for row in 0..rows {
        let w = &window[row * pitch..][..stride];
        let k = &kernel[row * stride..][..stride];
        for (a, (wc, kc)) in acc.iter_mut().zip(w.chunks_exact(8).zip(k.chunks_exact(8))) {
            for l in 0..8 {
                a[l] += wc[l] * kc[l];
            }
        }
    }
    let mut lanes = [0f32; 8];
    for a in &acc[..columns] {
        for l in 0..8 {
            lanes[l] += a[l];
        }
    }
    lanes.iter().sum()
}

/// [`dot_rows`] for `P` neighbouring pixels (the windows at
/// `window[p..]`) and `K` kernels: `out[p][k]`, each the same bits as
/// [`dot_rows`] gives. With AVX2 where the CPU has it and rows are 8 to
/// 32 floats (Gabor radius up to 15).
pub(super) fn dot_block<const P: usize, const K: usize>(
    window: &[f32],
    pitch: usize,
    kernels: [&[f32]; K],
    stride: usize,
    rows: usize,
) -> [[f32; K]; P] {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        type Dot<const P: usize, const K: usize> =
            unsafe fn(&[f32], usize, [&[f32]; K], usize) -> [[f32; K]; P];
        let simd: Option<Dot<P, K>> = match stride {
            8 => Some(x86::dot::<1, P, K>),
            16 => Some(x86::dot::<2, P, K>),
            24 => Some(x86::dot::<3, P, K>),
            32 => Some(x86::dot::<4, P, K>),
            _ => None,
        };
        if let Some(dot) = simd {
            // Every row read lies inside the slices (the AVX2 code does
            // not check).
            let fits = rows == 0
                || (window.len() >= (rows - 1) * pitch + P - 1 + stride
                    && kernels.iter().all(|k| k.len() >= rows * stride));
            assert!(fits, "dot_block: window or kernel shorter than {rows} rows");
            // SAFETY: AVX2 was just detected; the slices hold every row read.
            return unsafe { dot(window, pitch, kernels, rows) };
        }
    }
    std::array::from_fn(|p| kernels.map(|k| dot_rows(&window[p..], pitch, k, stride, rows)))
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// [`super::dot_rows`] for rows of `C` × 8 floats, `P` pixels and `K`
    /// kernels, in `C · P · K` accumulators (at most 12 of the 16
    /// registers for the sizes used). Multiplies and adds stay separate
    /// (no FMA), as in the reference.
    ///
    /// # Safety
    /// The CPU must support AVX2; `window` must hold `rows − 1` pitches
    /// plus `P − 1 + 8C` floats and every kernel `rows · 8C` floats.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn dot<const C: usize, const P: usize, const K: usize>(
        window: &[f32],
        pitch: usize,
        kernels: [&[f32]; K],
        rows: usize,
    ) -> [[f32; K]; P] {
        let mut acc = [[[_mm256_setzero_ps(); C]; K]; P];
        let w = window.as_ptr();
        let k = kernels.map(|k| k.as_ptr());
        for row in 0..rows {
            for c in 0..C {
                let kv = k.map(|k| {
                    let at = k.wrapping_add((row * C + c) * 8);
                    // SAFETY: within the rows the caller vouched for.
                    unsafe { _mm256_loadu_ps(at) }
                });
                for (p, acc) in acc.iter_mut().enumerate() {
                    let at = w.wrapping_add(row * pitch + p + c * 8);
                    // SAFETY: as above.
                    let wv = unsafe { _mm256_loadu_ps(at) };
                    for (a, kv) in acc.iter_mut().zip(kv) {
                        a[c] = _mm256_add_ps(a[c], _mm256_mul_ps(wv, kv));
                    }
                }
            }
        }
        acc.map(|acc| {
            acc.map(|columns| {
                let mut lanes = _mm256_setzero_ps();
                for a in columns {
                    lanes = _mm256_add_ps(lanes, a);
                }
                let mut out = [0f32; 8];
                // SAFETY: `out` holds eight floats.
                unsafe { _mm256_storeu_ps(out.as_mut_ptr(), lanes) };
                out.iter().sum()
            })
        })
    }
}
