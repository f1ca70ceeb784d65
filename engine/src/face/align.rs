//! Five-point alignment to the ArcFace 112×112 template.
//!
//! The transform is the least-squares similarity (rotation, uniform scale,
//! translation; no reflection) from the detected landmarks to the template —
//! Umeyama's estimator, which in 2-D has the closed form used here — and
//! the crop is a bilinear warp with a black border.

use crate::error::Result;
use crate::imaging::{Affine, RgbImage, warp_affine};

/// ArcFace template: left eye, right eye, nose tip, left and right mouth
/// corner in a 112×112 crop.
pub const ARCFACE_112: [[f64; 2]; 5] = [
    [38.2946, 51.6963],
    [73.5318, 51.5014],
    [56.0252, 71.7366],
    [41.5493, 92.3655],
    [70.7299, 92.2041],
];

/// Side of the aligned crop.
pub const ALIGNED_SIZE: u32 = 112;

/// Least-squares similarity transform sending `src` points onto `dst`.
///
/// Minimises Σ‖s·R·pᵢ + t − qᵢ‖². With centred points, the optimum has
/// `s·cos θ = Σ(p·q)/Σ‖p‖²` and `s·sin θ = Σ(p×q)/Σ‖p‖²` (Umeyama 1991,
/// specialised to 2-D, where the rotation with det = +1 is found directly).
pub fn similarity_transform(src: &[[f64; 2]], dst: &[[f64; 2]]) -> Option<Affine> {
    if src.len() != dst.len() || src.len() < 2 {
        return None;
    }
    let n = src.len() as f64;
    let mean = |pts: &[[f64; 2]]| {
        let (x, y) = pts
            .iter()
            .fold((0.0, 0.0), |(x, y), p| (x + p[0], y + p[1]));
        (x / n, y / n)
    };
    let (msx, msy) = mean(src);
    let (mdx, mdy) = mean(dst);
    let (mut dot, mut cross, mut var) = (0.0, 0.0, 0.0);
    for (p, q) in src.iter().zip(dst) {
        let (px, py) = (p[0] - msx, p[1] - msy);
        let (qx, qy) = (q[0] - mdx, q[1] - mdy);
        dot += px * qx + py * qy;
        cross += px * qy - py * qx;
        var += px * px + py * py;
    }
    if var < 1e-12 || !(dot.is_finite() && cross.is_finite()) {
        return None;
    }
    let (a, b) = (dot / var, cross / var);
    Some(Affine([
        [a, -b, mdx - (a * msx - b * msy)],
        [b, a, mdy - (b * msx + a * msy)],
    ]))
}

/// Warps the face with these landmarks onto the ArcFace template.
pub fn align_arcface(image: &RgbImage, landmarks: &[[f32; 2]; 5]) -> Result<RgbImage> {
    let src: Vec<[f64; 2]> = landmarks
        .iter()
        .map(|p| [f64::from(p[0]), f64::from(p[1])])
        .collect();
    let map = similarity_transform(&src, &ARCFACE_112).ok_or_else(|| {
        crate::Error::invalid("landmarks", "degenerate landmarks (all points coincide)")
    })?;
    warp_affine(image, &map, ALIGNED_SIZE, ALIGNED_SIZE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_a_known_similarity() {
        // dst = 1.7·R(25°)·src + (10, −4)
        let (s, t) = (1.7f64, 25f64.to_radians());
        let src = [[0.0, 0.0], [10.0, 0.0], [3.0, 7.0], [-2.0, 5.0], [8.0, 9.0]];
        let dst: Vec<[f64; 2]> = src
            .iter()
            .map(|p| {
                [
                    s * (t.cos() * p[0] - t.sin() * p[1]) + 10.0,
                    s * (t.sin() * p[0] + t.cos() * p[1]) - 4.0,
                ]
            })
            .collect();
        let m = similarity_transform(&src, &dst).unwrap();
        for (p, q) in src.iter().zip(&dst) {
            let (x, y) = m.apply(p[0], p[1]);
            assert!((x - q[0]).abs() < 1e-9 && (y - q[1]).abs() < 1e-9);
        }
    }

    #[test]
    fn is_the_least_squares_optimum_on_noisy_points() {
        let src = [
            [100.0, 120.0],
            [150.0, 118.0],
            [127.0, 150.0],
            [105.0, 175.0],
            [148.0, 174.0],
        ];
        let m = similarity_transform(&src, &ARCFACE_112).unwrap();
        // At the least-squares optimum the gradient of the squared residual
        // with respect to each parameter (a, b, tx, ty) vanishes.
        let (mut ga, mut gb, mut gx, mut gy) = (0.0, 0.0, 0.0, 0.0);
        for (p, q) in src.iter().zip(&ARCFACE_112) {
            let (x, y) = m.apply(p[0], p[1]);
            let (rx, ry) = (x - q[0], y - q[1]);
            ga += rx * p[0] + ry * p[1];
            gb += -rx * p[1] + ry * p[0];
            gx += rx;
            gy += ry;
        }
        for g in [ga, gb, gx, gy] {
            assert!(g.abs() < 1e-6, "gradient {g}");
        }
        assert!(similarity_transform(&[[1.0, 1.0]; 5], &ARCFACE_112).is_none());
    }
}
