//! A fixed-length vector per finger for the first stage of 1:N search.
//!
//! The vector is a histogram of minutia pairs described by quantities that
//! do not change when the finger moves or turns: for every ordered pair
//! `(i, k)` of minutiae at most [`MAX_DISTANCE`] pixels apart, the distance
//! ([`DISTANCE_BINS`] bins), the direction of `k` seen from `i` relative to
//! `i`'s direction ([`ANGLE_BINS`] bins) and `k`'s direction relative to
//! `i`'s ([`ANGLE_BINS`] bins), each spread linearly over its two nearest
//! bins. Square roots of the counts, L2-normalised: two impressions of a
//! finger share many of their short-range pairs (which survive partial
//! overlap and skin distortion better than long ones), so their cosine is
//! high. It is coarse — it only has to keep the true mate among the best
//! few percent for the minutiae matcher to re-rank ([`super::matcher`]);
//! `biomatch bench finger` measures how often it does. Short pairs with
//! fine angle bins (80 px, 6 × 16 × 16) were chosen on that benchmark over
//! 150 px, 10 × 8 × 8 (shortlist recall 93 % against 85 % at 5 %).

use std::f32::consts::TAU;

use super::matcher::Template;

/// Pairs farther apart than this (pixels) are not counted.
pub const MAX_DISTANCE: f32 = 80.0;
/// Distance bins.
pub const DISTANCE_BINS: usize = 6;
/// Bins for each of the two angles.
pub const ANGLE_BINS: usize = 16;
/// Vector length.
pub const DIM: usize = DISTANCE_BINS * ANGLE_BINS * ANGLE_BINS;

/// The finger's vector: unit length (a uniform vector when the template
/// has fewer than two minutiae, so that it can still be indexed).
pub fn fixed_length(t: &Template) -> Vec<f32> {
    let (max_d, dbins, abins) = (MAX_DISTANCE, DISTANCE_BINS, ANGLE_BINS);
    let mut h = vec![0f32; DIM];
    let step = max_d / dbins as f32;
    // Linear interpolation between the two nearest bins, for distances and
    // for both angles (which wrap around).
    let bins = |a: f32| -> [(usize, f32); 2] {
        let pos = a.rem_euclid(TAU) / TAU * abins as f32 - 0.5;
        let lo = pos.floor();
        let w = pos - lo;
        let lo = (lo as isize).rem_euclid(abins as isize) as usize;
        [(lo, 1.0 - w), ((lo + 1) % abins, w)]
    };
    let n = t.len();
    for i in 0..n {
        for k in 0..n {
            if i == k {
                continue;
            }
            let d = t.distance(i, k);
            if d > max_d {
                continue;
            }
            let pos = (d / step - 0.5).max(0.0);
            let lo = (pos as usize).min(dbins - 1);
            let hi = (lo + 1).min(dbins - 1);
            let w = (pos - lo as f32).min(1.0);
            for (ra, wa) in bins(t.radial_angle(i, k)) {
                for (rb, wb) in bins(t.angle(k) - t.angle(i)) {
                    let cell = ra * abins + rb;
                    h[lo * abins * abins + cell] += (1.0 - w) * wa * wb;
                    h[hi * abins * abins + cell] += w * wa * wb;
                }
            }
        }
    }
    for v in &mut h {
        *v = v.sqrt();
    }
    let norm = h.iter().map(|v| v * v).sum::<f32>().sqrt();
    if norm > 0.0 {
        h.iter_mut().for_each(|v| *v /= norm);
    } else {
        h.fill(1.0 / (DIM as f32).sqrt());
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finger::tests::fvc_record;
    use crate::finger::{Encoder, MinutiaeRecord, Params};

    fn vector(enc: &Encoder, db: u32, f: u32, i: u32) -> Option<Vec<f32>> {
        let bytes = fvc_record(db, f, i)?;
        Some(fixed_length(
            &enc.encode(&MinutiaeRecord::parse(&bytes).unwrap().views[0]),
        ))
    }

    #[test]
    fn mates_are_closer_than_other_fingers_on_average() {
        let enc = Encoder::new(Params::default());
        let cos = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
        let (mut mates, mut others) = (Vec::new(), Vec::new());
        for f in 101..=110 {
            let Some(a) = vector(&enc, 1, f, 1) else {
                return;
            };
            assert!((cos(&a, &a) - 1.0).abs() < 1e-5, "unit length");
            mates.push(cos(&a, &vector(&enc, 1, f, 2).unwrap()));
            let other = if f == 110 { 101 } else { f + 1 };
            others.push(cos(&a, &vector(&enc, 1, other, 2).unwrap()));
        }
        let mean = |v: &[f32]| v.iter().sum::<f32>() / v.len() as f32;
        assert!(
            mean(&mates) > mean(&others) + 0.05,
            "{mates:?} vs {others:?}"
        );
    }
}
