//! Contextual enhancement: each foreground pixel is filtered with the even
//! Gabor filter tuned to its ridge direction and period (Hong, Wan & Jain
//! 1998), from a bank quantised to 16 directions and half-pixel periods.
//! The sign of the response is the ridge/valley decision.
//!
//! The per-pixel work is a dot product of the image window with a kernel
//! (rows padded to 8 floats), compiled twice from the same Rust code: a
//! portable version (the reference) and one with AVX2 enabled, summed in
//! the same order ([`tests`](super::tests) checks they agree).

use std::f32::consts::PI;

use super::field::Field;
use super::{ExtractParams, Plane};
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
    pub(super) fn new(p: &ExtractParams) -> Bank {
        let radius = p.gabor_radius;
        let side = 2 * radius + 1;
        let stride = side.div_ceil(8) * 8;
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
                        let along = x * c + y * s;
                        let across = -x * s + y * c;
                        let env = (-0.5
                            * (along * along / (p.gabor_sigma_along * p.gabor_sigma_along)
                                + across * across / (p.gabor_sigma_across * p.gabor_sigma_across)))
                            .exp();
                        envelope[dy * stride + dx] = env;
                        k[dy * stride + dx] = env * (2.0 * PI * across / period).cos();
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

    fn kernel(&self, angle: usize, period: f32) -> &[f32] {
        let t = (((period - MIN_PERIOD) / PERIOD_STEP).round() as usize).min(PERIODS - 1);
        let size = self.stride * (2 * self.radius + 1);
        &self.kernels[(angle * PERIODS + t) * size..][..size]
    }
}

/// The direction bin of a doubled-angle vector `(cos 2θ, sin 2θ)`.
pub(super) fn angle_bin(v: [f32; 2]) -> usize {
    let theta = 0.5 * v[1].atan2(v[0]);
    ((theta.rem_euclid(PI) * ANGLES as f32 / PI).round() as usize) % ANGLES
}

/// The Gabor response at every pixel of `mask` (0 elsewhere).
pub(super) fn enhance(
    img: &Plane,
    field: &Field,
    bank: &Bank,
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
    let mut out = vec![0f32; img.w * img.h];
    let use_avx2 = cfg!(target_arch = "x86_64") && backend != Backend::Scalar;
    for y in 0..img.h {
        for x in 0..img.w {
            if !mask[y * img.w + x] {
                continue;
            }
            let angle = angle_bin(field.smooth_at(x as f32 + 0.5, y as f32 + 0.5));
            let period = field.period[field.block_of(x, y)];
            let kernel = bank.kernel(angle, period);
            let window = &padded[y * pw + x..];
            out[y * img.w + x] = if use_avx2 {
                dot_fast(window, pw, kernel, bank.stride, side)
            } else {
                dot_rows(window, pw, kernel, bank.stride, side)
            };
        }
    }
    out
}

/// Σ over `rows` rows of `window[row · pitch ..][..stride] · kernel[row · stride ..]`,
/// in eight lanes; compiled as is for the portable reference and again
/// under AVX2 below.
#[inline(always)]
fn dot_body(window: &[f32], pitch: usize, kernel: &[f32], stride: usize, rows: usize) -> f32 {
    let mut acc = [0f32; 8];
    for row in 0..rows {
        let w = &window[row * pitch..][..stride];
        let k = &kernel[row * stride..][..stride];
        for (wc, kc) in w.as_chunks::<8>().0.iter().zip(k.as_chunks::<8>().0) {
            for l in 0..8 {
                acc[l] += wc[l] * kc[l];
            }
        }
    }
    acc.iter().sum()
}

/// The portable reference.
pub(super) fn dot_rows(
    window: &[f32],
    pitch: usize,
    kernel: &[f32],
    stride: usize,
    rows: usize,
) -> f32 {
    dot_body(window, pitch, kernel, stride, rows)
}

/// The same sums with AVX2 + FMA where the CPU has them.
pub(super) fn dot_fast(
    window: &[f32],
    pitch: usize,
    kernel: &[f32],
    stride: usize,
    rows: usize,
) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: AVX2 and FMA were just detected.
        return unsafe { dot_avx2(window, pitch, kernel, stride, rows) };
    }
    dot_rows(window, pitch, kernel, stride, rows)
}

/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_avx2(
    window: &[f32],
    pitch: usize,
    kernel: &[f32],
    stride: usize,
    rows: usize,
) -> f32 {
    dot_body(window, pitch, kernel, stride, rows)
}
