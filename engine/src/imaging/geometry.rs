//! Bilinear resize and affine warp with OpenCV's sampling conventions.
//!
//! * resize (`INTER_LINEAR`): destination pixel `d` samples source
//!   coordinate `(d + 0.5)·(src/dst) − 0.5`, clamped to the edge;
//! * warp (`warpAffine`, `BORDER_CONSTANT` 0): destination pixel `d`
//!   samples `M⁻¹·d` with pixel centres on integers; taps outside the
//!   image read 0.
//!
//! Results are rounded to u8 like OpenCV's 8-bit paths (OpenCV itself uses
//! fixed-point weights, so individual pixels may differ by one level).

use image::{ImageBuffer, Pixel};

use crate::error::{Error, ImageProblem, Result};

/// A 2×3 affine map `[x', y'] = M·[x, y, 1]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Affine(pub [[f64; 3]; 2]);

impl Affine {
    /// Maps a point.
    pub fn apply(&self, x: f64, y: f64) -> (f64, f64) {
        let m = &self.0;
        (
            m[0][0] * x + m[0][1] * y + m[0][2],
            m[1][0] * x + m[1][1] * y + m[1][2],
        )
    }

    /// The inverse map, or `None` when the linear part is singular.
    pub fn inverse(&self) -> Option<Affine> {
        let [[a, b, c], [d, e, f]] = self.0;
        let det = a * e - b * d;
        if det.abs() < 1e-12 || !det.is_finite() {
            return None;
        }
        let (ia, ib, id, ie) = (e / det, -b / det, -d / det, a / det);
        Some(Affine([
            [ia, ib, -(ia * c + ib * f)],
            [id, ie, -(id * c + ie * f)],
        ]))
    }
}

/// Samples channel values at (x, y) with bilinear weights; taps outside read 0.
#[inline]
fn sample<const C: usize>(src: &[u8], w: usize, h: usize, x: f64, y: f64, out: &mut [f64; C]) {
    let x0 = x.floor();
    let y0 = y.floor();
    let fx = x - x0;
    let fy = y - y0;
    let (x0, y0) = (x0 as i64, y0 as i64);
    *out = [0.0; C];
    for (dy, wy) in [(0, 1.0 - fy), (1, fy)] {
        let yy = y0 + dy;
        if wy == 0.0 || yy < 0 || yy >= h as i64 {
            continue;
        }
        for (dx, wx) in [(0, 1.0 - fx), (1, fx)] {
            let xx = x0 + dx;
            if wx == 0.0 || xx < 0 || xx >= w as i64 {
                continue;
            }
            let at = (yy as usize * w + xx as usize) * C;
            for c in 0..C {
                out[c] += wx * wy * f64::from(src[at + c]);
            }
        }
    }
}

fn round_u8(v: f64) -> u8 {
    v.round().clamp(0.0, 255.0) as u8
}

/// Warps `src` into a `width × height` image: destination pixel `d` takes
/// the source value at `map⁻¹(d)` (so `map` sends source to destination).
pub fn warp_affine<P>(
    src: &ImageBuffer<P, Vec<u8>>,
    map: &Affine,
    width: u32,
    height: u32,
) -> Result<ImageBuffer<P, Vec<u8>>>
where
    P: Pixel<Subpixel = u8>,
{
    let inverse = map
        .inverse()
        .ok_or_else(|| Error::invalid("transform", "the affine map is singular"))?;
    Ok(match P::CHANNEL_COUNT {
        1 => warp_channels::<P, 1>(src, &inverse, width, height),
        3 => warp_channels::<P, 3>(src, &inverse, width, height),
        4 => warp_channels::<P, 4>(src, &inverse, width, height),
        n => {
            return Err(Error::invalid(
                "image",
                format!("{n} channels are not supported"),
            ));
        }
    })
}

fn warp_channels<P, const C: usize>(
    src: &ImageBuffer<P, Vec<u8>>,
    inverse: &Affine,
    width: u32,
    height: u32,
) -> ImageBuffer<P, Vec<u8>>
where
    P: Pixel<Subpixel = u8>,
{
    let (w, h) = (src.width() as usize, src.height() as usize);
    let raw = src.as_raw();
    let mut out = vec![0u8; width as usize * height as usize * C];
    let mut px = [0.0; C];
    for y in 0..height as usize {
        for x in 0..width as usize {
            let (sx, sy) = inverse.apply(x as f64, y as f64);
            sample::<C>(raw, w, h, sx, sy, &mut px);
            let at = (y * width as usize + x) * C;
            for c in 0..C {
                out[at + c] = round_u8(px[c]);
            }
        }
    }
    ImageBuffer::from_raw(width, height, out).expect("buffer sized for the image")
}

/// Resizes with OpenCV `INTER_LINEAR` semantics (edge-clamped).
pub fn resize_bilinear<P>(
    src: &ImageBuffer<P, Vec<u8>>,
    width: u32,
    height: u32,
) -> Result<ImageBuffer<P, Vec<u8>>>
where
    P: Pixel<Subpixel = u8>,
{
    if src.width() == 0 || src.height() == 0 || width == 0 || height == 0 {
        return Err(Error::image(
            ImageProblem::TooSmall,
            format!("resize {}×{} → {width}×{height}", src.width(), src.height()),
        ));
    }
    let c = P::CHANNEL_COUNT as usize;
    let (w, h) = (src.width() as usize, src.height() as usize);
    let sx = w as f64 / f64::from(width);
    let sy = h as f64 / f64::from(height);
    // Per destination column: left tap and its weight (edge-clamped).
    let taps = |d: usize, scale: f64, n: usize| -> (usize, usize, f64) {
        let s = ((d as f64 + 0.5) * scale - 0.5).max(0.0);
        let i = (s.floor() as usize).min(n - 1);
        let f = if i + 1 < n { s - i as f64 } else { 0.0 };
        (i, (i + 1).min(n - 1), f)
    };
    let cols: Vec<_> = (0..width as usize).map(|x| taps(x, sx, w)).collect();
    let raw = src.as_raw();
    let mut out = vec![0u8; width as usize * height as usize * c];
    for y in 0..height as usize {
        let (y0, y1, fy) = taps(y, sy, h);
        for (x, &(x0, x1, fx)) in cols.iter().enumerate() {
            for ch in 0..c {
                let p = |yy: usize, xx: usize| f64::from(raw[(yy * w + xx) * c + ch]);
                let top = p(y0, x0) * (1.0 - fx) + p(y0, x1) * fx;
                let bottom = p(y1, x0) * (1.0 - fx) + p(y1, x1) * fx;
                out[(y * width as usize + x) * c + ch] = round_u8(top * (1.0 - fy) + bottom * fy);
            }
        }
    }
    Ok(ImageBuffer::from_raw(width, height, out).expect("buffer sized for the image"))
}

/// Crops the inclusive pixel box `[x0, x1] × [y0, y1]` (clamped to the
/// image) and resizes it to `width × height`.
pub fn crop_resize<P>(
    src: &ImageBuffer<P, Vec<u8>>,
    (x0, y0, x1, y1): (u32, u32, u32, u32),
    width: u32,
    height: u32,
) -> Result<ImageBuffer<P, Vec<u8>>>
where
    P: Pixel<Subpixel = u8> + 'static,
{
    let x1 = x1.min(src.width().saturating_sub(1));
    let y1 = y1.min(src.height().saturating_sub(1));
    if x0 > x1 || y0 > y1 {
        return Err(Error::image(
            ImageProblem::TooSmall,
            format!("empty crop ({x0},{y0})–({x1},{y1})"),
        ));
    }
    let crop = image::imageops::crop_imm(src, x0, y0, x1 - x0 + 1, y1 - y0 + 1).to_image();
    resize_bilinear(&crop, width, height)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{GrayImage, Luma};

    fn ramp(w: u32, h: u32) -> GrayImage {
        GrayImage::from_fn(w, h, |x, y| Luma([(x * 10 + y * 3) as u8]))
    }

    #[test]
    fn identity_warp_and_resize_are_exact() {
        let img = ramp(20, 15);
        let id = Affine([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]);
        assert_eq!(warp_affine(&img, &id, 20, 15).unwrap(), img);
        assert_eq!(resize_bilinear(&img, 20, 15).unwrap(), img);
    }

    #[test]
    fn integer_shift_moves_pixels_and_fills_black() {
        let img = ramp(20, 15);
        let shift = Affine([[1.0, 0.0, 3.0], [0.0, 1.0, 2.0]]);
        let out = warp_affine(&img, &shift, 20, 15).unwrap();
        assert_eq!(out.get_pixel(5, 4), img.get_pixel(2, 2));
        assert_eq!(out.get_pixel(0, 0)[0], 0);
    }

    #[test]
    fn resize_matches_opencv_on_a_known_case() {
        // cv2.resize(np.array([[0, 100], [200, 255]], np.uint8), (4, 4), interpolation=cv2.INTER_LINEAR)
        let img = GrayImage::from_raw(2, 2, vec![0, 100, 200, 255]).unwrap();
        let out = resize_bilinear(&img, 4, 4).unwrap();
        let expected: Vec<u8> = vec![
            0, 25, 75, 100, //
            50, 72, 117, 139, //
            150, 167, 200, 216, //
            200, 214, 241, 255,
        ];
        assert_eq!(out.into_raw(), expected);
    }

    #[test]
    fn inverse_round_trips() {
        let m = Affine([[0.8, -0.3, 12.0], [0.3, 0.8, -4.0]]);
        let inv = m.inverse().unwrap();
        let (x, y) = m.apply(7.0, 9.0);
        let (bx, by) = inv.apply(x, y);
        assert!((bx - 7.0).abs() < 1e-9 && (by - 9.0).abs() < 1e-9);
        assert!(
            Affine([[1.0, 2.0, 0.0], [2.0, 4.0, 0.0]])
                .inverse()
                .is_none()
        );
    }
}
