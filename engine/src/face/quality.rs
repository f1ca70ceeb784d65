//! Face sample quality: detector score, inter-eye distance, sharpness
//! (variance of the Laplacian of the aligned crop), and head pose (yaw and
//! roll) estimated from the five landmarks.

use serde::Serialize;

use crate::error::{Error, Result};
use crate::imaging::RgbImage;

use super::detect::Detection;

/// Quality measures returned with every face template.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Quality {
    /// Detector confidence.
    pub detector_score: f32,
    /// Distance between the eye centres, in source-image pixels.
    pub inter_eye_px: f32,
    /// Variance of the 4-neighbour Laplacian of the aligned grey crop (higher = sharper).
    pub blur: f32,
    /// Head yaw in degrees (0 = frontal), estimated from the nose's offset from the eye axis midpoint.
    pub yaw_deg: f32,
    /// Head roll in degrees (0 = eyes level).
    pub roll_deg: f32,
}

/// Gates applied before a template is accepted; `None` disables a gate.
#[derive(Debug, Clone, Copy, PartialEq, serde::Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct QualityThresholds {
    /// Minimum detector score.
    pub min_detector_score: Option<f32>,
    /// Minimum inter-eye distance in pixels (ICAO portraits ask for ≥ 60; selfies get less).
    pub min_inter_eye_px: Option<f32>,
    /// Minimum Laplacian variance of the aligned crop.
    pub min_blur: Option<f32>,
    /// Maximum |yaw| in degrees.
    pub max_abs_yaw_deg: Option<f32>,
    /// Maximum |roll| in degrees.
    pub max_abs_roll_deg: Option<f32>,
}

impl Default for QualityThresholds {
    fn default() -> Self {
        QualityThresholds {
            min_detector_score: Some(0.7),
            min_inter_eye_px: Some(20.0),
            min_blur: Some(15.0),
            max_abs_yaw_deg: Some(45.0),
            max_abs_roll_deg: Some(30.0),
        }
    }
}

impl QualityThresholds {
    /// No gate at all (evaluation runs).
    pub fn none() -> Self {
        QualityThresholds {
            min_detector_score: None,
            min_inter_eye_px: None,
            min_blur: None,
            max_abs_yaw_deg: None,
            max_abs_roll_deg: None,
        }
    }

    /// Checks `q`; the error names the first failing measure.
    pub fn check(&self, q: &Quality) -> Result<()> {
        let min = |measure, value: f32, limit: Option<f32>| match limit {
            Some(limit) if value < limit => Err(Error::QualityRejected {
                measure,
                value,
                limit,
                relation: "below",
            }),
            _ => Ok(()),
        };
        let max = |measure, value: f32, limit: Option<f32>| match limit {
            Some(limit) if value.abs() > limit => Err(Error::QualityRejected {
                measure,
                value,
                limit,
                relation: "above",
            }),
            _ => Ok(()),
        };
        min("detector_score", q.detector_score, self.min_detector_score)?;
        min("inter_eye_px", q.inter_eye_px, self.min_inter_eye_px)?;
        min("blur", q.blur, self.min_blur)?;
        max("yaw_deg", q.yaw_deg, self.max_abs_yaw_deg)?;
        max("roll_deg", q.roll_deg, self.max_abs_roll_deg)
    }
}

/// Measures a detected face and its aligned crop.
pub fn measure(face: &Detection, aligned: &RgbImage) -> Quality {
    let [le, re, nose, ..] = face.landmarks;
    let (dx, dy) = (re[0] - le[0], re[1] - le[1]);
    let inter_eye = (dx * dx + dy * dy).sqrt();
    let roll = dy.atan2(dx);
    // Nose offset along the (de-rolled) eye axis, relative to half the eye
    // distance: for a head turned by θ, the nose tip (about half an eye
    // distance in front of the eyes) projects to tan θ half-distances.
    let mid = [(le[0] + re[0]) / 2.0, (le[1] + re[1]) / 2.0];
    let along = ((nose[0] - mid[0]) * roll.cos() + (nose[1] - mid[1]) * roll.sin())
        / (inter_eye / 2.0).max(1e-3);
    Quality {
        detector_score: face.score,
        inter_eye_px: inter_eye,
        blur: laplacian_variance(aligned),
        yaw_deg: along.atan().to_degrees(),
        roll_deg: roll.to_degrees(),
    }
}

/// Variance of the 4-neighbour Laplacian over the interior of the image's
/// grey version (BT.601 luma).
pub fn laplacian_variance(image: &RgbImage) -> f32 {
    let (w, h) = (image.width() as usize, image.height() as usize);
    if w < 3 || h < 3 {
        return 0.0;
    }
    let grey: Vec<f64> = image
        .pixels()
        .map(|p| 0.299 * f64::from(p[0]) + 0.587 * f64::from(p[1]) + 0.114 * f64::from(p[2]))
        .collect();
    let (mut sum, mut sum2, mut n) = (0.0, 0.0, 0.0);
    for y in 1..h - 1 {
        for x in 1..w - 1 {
            let i = y * w + x;
            let l = grey[i - 1] + grey[i + 1] + grey[i - w] + grey[i + w] - 4.0 * grey[i];
            sum += l;
            sum2 += l * l;
            n += 1.0;
        }
    }
    let mean = sum / n;
    (sum2 / n - mean * mean) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pose_from_landmarks() {
        let frontal = Detection {
            bbox: [0.0, 0.0, 100.0, 100.0],
            score: 0.9,
            landmarks: [
                [30.0, 40.0],
                [70.0, 40.0],
                [50.0, 60.0],
                [35.0, 80.0],
                [65.0, 80.0],
            ],
        };
        let crop = RgbImage::new(112, 112);
        let q = measure(&frontal, &crop);
        assert!((q.inter_eye_px - 40.0).abs() < 1e-4);
        assert!(q.yaw_deg.abs() < 1e-4 && q.roll_deg.abs() < 1e-4);
        let mut turned = frontal.clone();
        turned.landmarks[2] = [70.0, 60.0];
        assert!((measure(&turned, &crop).yaw_deg - 45.0).abs() < 1e-3);
        let mut tilted = frontal.clone();
        tilted.landmarks[1] = [70.0, 80.0];
        assert!((measure(&tilted, &crop).roll_deg - 45.0).abs() < 1e-3);
    }

    #[test]
    fn blur_is_zero_on_flat_and_high_on_texture() {
        let flat = RgbImage::from_pixel(20, 20, image::Rgb([90, 90, 90]));
        assert_eq!(laplacian_variance(&flat), 0.0);
        let checker = RgbImage::from_fn(20, 20, |x, y| {
            image::Rgb([if (x + y) % 2 == 0 { 255 } else { 0 }; 3])
        });
        assert!(laplacian_variance(&checker) > 1000.0);
    }

    #[test]
    fn rejection_names_the_failing_measure() {
        let q = Quality {
            detector_score: 0.95,
            inter_eye_px: 10.0,
            blur: 100.0,
            yaw_deg: 5.0,
            roll_deg: 0.0,
        };
        match QualityThresholds::default().check(&q) {
            Err(Error::QualityRejected {
                measure: "inter_eye_px",
                relation: "below",
                ..
            }) => {}
            other => panic!("{other:?}"),
        }
        let q = Quality {
            inter_eye_px: 50.0,
            yaw_deg: -60.0,
            ..q
        };
        match QualityThresholds::default().check(&q) {
            Err(Error::QualityRejected {
                measure: "yaw_deg",
                relation: "above",
                ..
            }) => {}
            other => panic!("{other:?}"),
        }
        QualityThresholds::none().check(&q).unwrap();
    }
}
