//! Conversions from `f32` to the compact storage types.
//!
//! * `i8`: symmetric quantization with one scale per vector,
//!   `code = round(x / s)` with `s = max|x| / 127`, so codes lie in
//!   `[-127, 127]` and `|x − s·code| ≤ s · `[`I8_CODE_ERROR`].
//! * `f16`: IEEE binary16, round to nearest even; relative error at most
//!   [`F16_UNIT_ROUNDOFF`] for normal values.

use super::f16;

/// Largest finite `f16`; larger magnitudes cannot be stored as `f16`.
pub const F16_MAX: f32 = 65504.0;

/// Unit round-off of `f16` (2⁻¹¹): `|x − f16(x)| ≤ u·|x|` for normal values.
pub const F16_UNIT_ROUNDOFF: f32 = 1.0 / 2048.0;

/// Absolute rounding error of `f16` below the normal range: half the
/// subnormal spacing 2⁻²⁴.
pub const F16_SUBNORMAL_ERROR: f32 = 1.0 / 33_554_432.0;

/// Bound on `|x/s − code|` for [`quantize_i8`], in units of the scale: half
/// a step plus slack for the `f32` rounding of `s` and `x · 127 / max`.
pub const I8_CODE_ERROR: f32 = 0.5001;

/// Quantizes `v` into `codes` and returns the scale `s` (`v ≈ s · codes`).
///
/// A zero vector gets scale 0 and zero codes. Inputs must be finite (the
/// index validates them first).
///
/// # Panics
/// If `codes.len() != v.len()`.
pub fn quantize_i8(v: &[f32], codes: &mut [i8]) -> f32 {
    assert_eq!(v.len(), codes.len(), "code buffer length");
    let max = v.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    if max == 0.0 {
        codes.fill(0);
        return 0.0;
    }
    let inv = 127.0 / max;
    for (c, &x) in codes.iter_mut().zip(v) {
        *c = (x * inv).round().clamp(-127.0, 127.0) as i8;
    }
    max / 127.0
}

/// Reconstructs `s · codes` into `out`.
///
/// # Panics
/// If `out.len() != codes.len()`.
pub fn dequantize_i8(codes: &[i8], scale: f32, out: &mut [f32]) {
    assert_eq!(codes.len(), out.len(), "output length");
    for (o, &c) in out.iter_mut().zip(codes) {
        *o = f32::from(c) * scale;
    }
}

/// Converts `v` to `f16` (round to nearest even).
///
/// # Panics
/// If `out.len() != v.len()`.
pub fn to_f16(v: &[f32], out: &mut [f16]) {
    assert_eq!(v.len(), out.len(), "output length");
    for (o, &x) in out.iter_mut().zip(v) {
        *o = f16::from_f32(x);
    }
}

/// Widens `f16` values to `f32` (exact).
///
/// # Panics
/// If `out.len() != v.len()`.
pub fn from_f16(v: &[f16], out: &mut [f32]) {
    assert_eq!(v.len(), out.len(), "output length");
    for (o, &x) in out.iter_mut().zip(v) {
        *o = x.to_f32();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn i8_codes_stay_within_the_documented_error() {
        let v: Vec<f32> = (0..257)
            .map(|i| ((i * 7919) % 1000) as f32 / 333.0 - 1.5)
            .collect();
        let mut codes = vec![0i8; v.len()];
        let s = quantize_i8(&v, &mut codes);
        assert!(codes.iter().all(|&c| (-127..=127).contains(&c)));
        assert_eq!(codes.iter().map(|c| c.unsigned_abs()).max(), Some(127));
        for (&x, &c) in v.iter().zip(&codes) {
            assert!((x / s - f32::from(c)).abs() <= I8_CODE_ERROR, "{x} {c} {s}");
        }
        let mut back = vec![0.0f32; v.len()];
        dequantize_i8(&codes, s, &mut back);
        for (&x, &y) in v.iter().zip(&back) {
            assert!((x - y).abs() <= s * I8_CODE_ERROR * 1.0001, "{x} {y}");
        }
    }

    #[test]
    fn zero_vector_quantizes_to_zero_scale() {
        let mut codes = [1i8; 4];
        assert_eq!(quantize_i8(&[0.0; 4], &mut codes), 0.0);
        assert_eq!(codes, [0; 4]);
    }

    #[test]
    fn f16_round_trip_is_within_unit_roundoff() {
        let v = [1.0f32, -0.333_333, 1e-3, 65504.0, 3.0e-6];
        let mut h = [f16::ZERO; 5];
        to_f16(&v, &mut h);
        let mut back = [0.0f32; 5];
        from_f16(&h, &mut back);
        for (x, y) in v.iter().zip(back) {
            assert!((x - y).abs() <= F16_UNIT_ROUNDOFF * x.abs() + F16_SUBNORMAL_ERROR);
        }
    }
}
