//! Contextual enhancement: each foreground pixel is filtered with the even
//! Gabor filter tuned to its ridge direction and period (Hong, Wan & Jain
//! 1998), from a bank quantised to 16 directions and half-pixel periods.
//! The sign of the response is the ridge/valley decision.
//!
//! The per-pixel work is a dot product of the image window with a kernel
//! (rows padded to 8 floats). [`dot_rows`] is the portable reference; it
//! sums each 8-float column of even and of odd rows in its own accumulator
//! (independent chains instead of one long one) and combines them in a
//! fixed order. [`dot_fast`] does the same sums with AVX2 registers, in the
//! same order, so both give the same bits (tests check it on random data
//! and on a fingerprint).

use std::f32::consts::PI;

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
    kernels: Vec<f32>,
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
        let mut kernels = vec![0f32; ANGLES * PERIODS * size];
        for a in 0..ANGLES {
            let theta = a as f32 * PI / ANGLES as f32;
            let (c, s) = (theta.cos(), theta.sin());
            for t in 0..PERIODS {
                let period = MIN_PERIOD + t as f32 * PERIOD_STEP;
                let k = &mut kernels[(a * PERIODS + t) * size..][..size];
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
        }
    }

    /// The index of the kernel for a direction bin and a period.
    fn index(angle: usize, period: f32) -> u16 {
        let t = (((period - MIN_PERIOD) / PERIOD_STEP).round() as usize).min(PERIODS - 1);
        (angle * PERIODS + t) as u16
    }

    fn kernel(&self, index: u16) -> &[f32] {
        let size = self.stride * (2 * self.radius + 1);
        &self.kernels[index as usize * size..][..size]
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

/// The response of `bank` at every pixel of `mask` (0 elsewhere), each
/// pixel with the kernel of `choice` (made by [`kernel_choice`] for a mask
/// that covers `mask`).
pub(super) fn enhance(
    img: &Plane,
    bank: &Bank,
    choice: &[u16],
    backend: Backend,
    mask: &[bool],
) -> Vec<f32> {
    let r = bank.radius;
    let side = 2 * r + 1;
    // Edge-replicated copy with room for the padded rows.
    let pw = img.w + 2 * r + bank.stride;
    let ph = img.h + 2 * r;
    let mut padded = vec![0f32; pw * ph];
    for y in 0..ph {
        let sy = y.saturating_sub(r).min(img.h - 1);
        let src = img.row(sy);
        for x in 0..pw {
            padded[y * pw + x] = src[x.saturating_sub(r).min(img.w - 1)];
        }
    }
    let dot = if backend == Backend::Scalar {
        dot_rows
    } else {
        dot_fast
    };
    let mut out = vec![0f32; img.w * img.h];
    for y in 0..img.h {
        for x in 0..img.w {
            let i = y * img.w + x;
            if mask[i] {
                let kernel = bank.kernel(choice[i]);
                out[i] = dot(&padded[y * pw + x..], pw, kernel, bank.stride, side);
            }
        }
    }
    out
}

/// Widest kernel row, in 8-float columns (Gabor radius up to 63).
const MAX_COLUMNS: usize = 16;

/// Σ over `rows` rows of `window[row · pitch ..][..stride] · kernel[row · stride ..]`:
/// the portable reference. `stride` is a multiple of 8, at most 128. Lane `l` of column
/// `c` of the even rows and of the odd rows each have their own running
/// sum; the sums are combined lane by lane (even columns, then odd ones),
/// then the eight lanes in order.
pub(super) fn dot_rows(
    window: &[f32],
    pitch: usize,
    kernel: &[f32],
    stride: usize,
    rows: usize,
) -> f32 {
    let columns = stride / 8;
    assert!(columns <= MAX_COLUMNS, "Gabor rows of {stride} floats");
    let mut acc = [[0f32; 8]; 2 * MAX_COLUMNS];
    for row in 0..rows {
        let w = &window[row * pitch..][..stride];
        let k = &kernel[row * stride..][..stride];
        let parity = &mut acc[(row & 1) * MAX_COLUMNS..][..columns];
        for (a, (wc, kc)) in parity
            .iter_mut()
            .zip(w.chunks_exact(8).zip(k.chunks_exact(8)))
        {
            for l in 0..8 {
                a[l] += wc[l] * kc[l];
            }
        }
    }
    let mut lanes = [0f32; 8];
    for a in acc[..columns].iter().chain(&acc[MAX_COLUMNS..][..columns]) {
        for l in 0..8 {
            lanes[l] += a[l];
        }
    }
    lanes.iter().sum()
}

/// [`dot_rows`] with AVX2 where the CPU has it and rows are 8 to 32 floats
/// (Gabor radius up to 15); the same sums in the same order.
pub(super) fn dot_fast(
    window: &[f32],
    pitch: usize,
    kernel: &[f32],
    stride: usize,
    rows: usize,
) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        type Dot = unsafe fn(&[f32], usize, &[f32], usize) -> f32;
        let simd: Option<Dot> = match stride {
            8 => Some(x86::dot::<1>),
            16 => Some(x86::dot::<2>),
            24 => Some(x86::dot::<3>),
            32 => Some(x86::dot::<4>),
            _ => None,
        };
        if let Some(dot) = simd {
            // Every row read lies inside both slices (the AVX2 code does
            // not check).
            let fits = rows == 0
                || (window.len() >= (rows - 1) * pitch + stride && kernel.len() >= rows * stride);
            assert!(fits, "dot_fast: window or kernel shorter than {rows} rows");
            // SAFETY: AVX2 was just detected; the slices hold every row read.
            return unsafe { dot(window, pitch, kernel, rows) };
        }
    }
    dot_rows(window, pitch, kernel, stride, rows)
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// [`super::dot_rows`] for rows of `C` × 8 floats in `2C` registers.
    /// Multiplies and adds stay separate (no FMA), as in the reference.
    ///
    /// # Safety
    /// The CPU must support AVX2; `window` must hold `rows − 1` pitches
    /// plus `8C` floats and `kernel` `rows · 8C` floats.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn dot<const C: usize>(
        window: &[f32],
        pitch: usize,
        kernel: &[f32],
        rows: usize,
    ) -> f32 {
        let mut even = [_mm256_setzero_ps(); C];
        let mut odd = [_mm256_setzero_ps(); C];
        let (w, k) = (window.as_ptr(), kernel.as_ptr());
        // Adds row `$row` into the accumulators `$acc`.
        macro_rules! add_row {
            ($acc:ident, $row:expr) => {
                for (c, a) in $acc.iter_mut().enumerate() {
                    // SAFETY: within the rows the caller vouched for.
                    let (wv, kv) = unsafe {
                        (
                            _mm256_loadu_ps(w.add($row * pitch + c * 8)),
                            _mm256_loadu_ps(k.add(($row * C + c) * 8)),
                        )
                    };
                    *a = _mm256_add_ps(*a, _mm256_mul_ps(wv, kv));
                }
            };
        }
        let mut row = 0;
        while row + 1 < rows {
            add_row!(even, row);
            add_row!(odd, row + 1);
            row += 2;
        }
        if row < rows {
            add_row!(even, row);
        }
        let mut lanes = _mm256_setzero_ps();
        for a in even.iter().chain(&odd) {
            lanes = _mm256_add_ps(lanes, *a);
        }
        let mut out = [0f32; 8];
        // SAFETY: `out` holds eight floats.
        unsafe { _mm256_storeu_ps(out.as_mut_ptr(), lanes) };
        out.iter().sum()
    }
}
