//! Face detection with five landmarks: YuNet and SCRFD decoders, NMS.
//!
//! The image is letterboxed into the model's input (scaled to fit, padded
//! right and bottom with black), run, decoded per stride, filtered by score
//! and non-maximum suppression, and mapped back to image coordinates.
//!
//! * **YuNet** (OpenCV zoo 2023): per stride `s` ∈ {8, 16, 32} and grid cell
//!   `(c, r)`, `score = √(clamp(cls)·clamp(obj))`, box centre
//!   `((c + dx)·s, (r + dy)·s)`, size `exp(dw)·s × exp(dh)·s`, landmark
//!   `((c + kx)·s, (r + ky)·s)`. Input BGR 0–255.
//! * **SCRFD** (InsightFace): two anchors per cell, centre `(c·s, r·s)`,
//!   box = centre ∓ distances·s, landmark = centre + offset·s; scores are
//!   already probabilities. Input RGB `(x − 127.5)/128`.

use crate::embed::{Model, ModelManifest, RunOptions, Task, preprocess};
use crate::error::{Error, Result};
use crate::imaging::{RgbImage, resize_bilinear};

/// One detected face, in source-image pixels.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Detection {
    /// Box `[x0, y0, x1, y1]`.
    pub bbox: [f32; 4],
    /// Detector confidence in `[0, 1]`.
    pub score: f32,
    /// Left eye, right eye, nose, left and right mouth corner (as seen in the image).
    pub landmarks: [[f32; 2]; 5],
}

impl Detection {
    /// Box width × height.
    pub fn area(&self) -> f32 {
        (self.bbox[2] - self.bbox[0]).max(0.0) * (self.bbox[3] - self.bbox[1]).max(0.0)
    }

    fn iou(&self, other: &Detection) -> f32 {
        let ix = (self.bbox[2].min(other.bbox[2]) - self.bbox[0].max(other.bbox[0])).max(0.0);
        let iy = (self.bbox[3].min(other.bbox[3]) - self.bbox[1].max(other.bbox[1])).max(0.0);
        let inter = ix * iy;
        let union = self.area() + other.area() - inter;
        if union <= 0.0 { 0.0 } else { inter / union }
    }
}

/// Detector settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DetectorConfig {
    /// Minimum score of a reported face.
    pub score_threshold: f32,
    /// IoU above which the lower-scored of two boxes is suppressed.
    pub nms_threshold: f32,
    /// Longest side of the network input for models with a dynamic input size.
    pub dynamic_size: u32,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        DetectorConfig {
            score_threshold: 0.6,
            nms_threshold: 0.3,
            dynamic_size: 640,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    YuNet,
    Scrfd,
}

/// A loaded face detector.
#[derive(Debug)]
pub struct Detector {
    model: Model,
    manifest: ModelManifest,
    family: Family,
    config: DetectorConfig,
}

const STRIDES: [usize; 3] = [8, 16, 32];

impl Detector {
    /// Loads a `face-detect` model.
    pub fn load(
        manifest: &ModelManifest,
        options: &RunOptions,
        config: DetectorConfig,
    ) -> Result<Self> {
        if manifest.task != Task::FaceDetect {
            return Err(Error::model(
                &manifest.id,
                format!("is a {} model, not face-detect", manifest.task.as_str()),
            ));
        }
        let family = match manifest.family.as_deref() {
            Some("yunet") => Family::YuNet,
            Some("scrfd") => Family::Scrfd,
            other => {
                return Err(Error::model(
                    &manifest.id,
                    format!("unknown detector family {other:?}"),
                ));
            }
        };
        if !(0.0..=1.0).contains(&config.score_threshold)
            || !(0.0..=1.0).contains(&config.nms_threshold)
        {
            return Err(Error::invalid(
                "detector",
                "score and NMS thresholds must be in [0, 1]",
            ));
        }
        if config.dynamic_size < 32 || config.dynamic_size > 4096 {
            return Err(Error::invalid("detector.dynamic_size", "must be 32..=4096"));
        }
        let model = Model::load(manifest, options)?;
        let expected = 9 + 3 * usize::from(family == Family::YuNet);
        if model.output_names().len() != expected {
            return Err(Error::model(
                &manifest.id,
                format!(
                    "{} outputs, a {family:?} detector has {expected}",
                    model.output_names().len()
                ),
            ));
        }
        Ok(Detector {
            model,
            manifest: manifest.clone(),
            family,
            config,
        })
    }

    /// The detector's manifest.
    pub fn manifest(&self) -> &ModelManifest {
        &self.manifest
    }

    /// Requests waiting for the detector's sessions.
    pub fn queue_len(&self) -> usize {
        self.model.queue_len()
    }

    /// Settings in force.
    pub fn config(&self) -> &DetectorConfig {
        &self.config
    }

    /// Network input size (width, height) for an image of this size.
    fn input_size(&self, width: u32, height: u32) -> (u32, u32) {
        let dims = self.model.input_dims();
        match (dims[2], dims[3]) {
            (Some(h), Some(w)) => (w as u32, h as u32),
            _ => {
                let scale = f64::from(self.config.dynamic_size) / f64::from(width.max(height));
                let round32 = |v: u32| {
                    let scaled = (f64::from(v) * scale).round() as u32;
                    scaled.div_ceil(32).max(1) * 32
                };
                (round32(width), round32(height))
            }
        }
    }

    /// Detects faces, best score first.
    pub fn detect(&self, image: &RgbImage) -> Result<Vec<Detection>> {
        let (w, h) = image.dimensions();
        let (iw, ih) = self.input_size(w, h);
        let scale = (f64::from(iw) / f64::from(w)).min(f64::from(ih) / f64::from(h));
        let rw = ((f64::from(w) * scale).round() as u32).clamp(1, iw);
        let rh = ((f64::from(h) * scale).round() as u32).clamp(1, ih);
        let resized = if (rw, rh) == (w, h) {
            image.clone()
        } else {
            resize_bilinear(image, rw, rh)?
        };
        let mut canvas = RgbImage::new(iw, ih);
        image::imageops::replace(&mut canvas, &resized, 0, 0);
        let input = preprocess::tensor_from_rgb(&[&canvas], &self.manifest.input)?;
        let outputs = self.model.run(input)?;
        let mut faces = match self.family {
            Family::YuNet => self.decode_yunet(&outputs, iw as usize, ih as usize)?,
            Family::Scrfd => self.decode_scrfd(&outputs, iw as usize, ih as usize)?,
        };
        // Back to source pixels: the letterbox scaled (rw/w, rh/h) without offset.
        let (sx, sy) = (f64::from(rw) / f64::from(w), f64::from(rh) / f64::from(h));
        for face in &mut faces {
            for i in [0, 2] {
                face.bbox[i] = ((f64::from(face.bbox[i]) / sx) as f32).clamp(0.0, w as f32);
                face.bbox[i + 1] = ((f64::from(face.bbox[i + 1]) / sy) as f32).clamp(0.0, h as f32);
            }
            for p in &mut face.landmarks {
                p[0] = (f64::from(p[0]) / sx) as f32;
                p[1] = (f64::from(p[1]) / sy) as f32;
            }
        }
        Ok(nms(faces, self.config.nms_threshold))
    }

    fn output<'a>(&self, outputs: &'a [ndarray::ArrayD<f32>], name: &str) -> Result<&'a [f32]> {
        let i = self
            .model
            .output_names()
            .iter()
            .position(|n| n == name)
            .ok_or_else(|| Error::model(&self.manifest.id, format!("no output named {name}")))?;
        outputs[i]
            .as_slice()
            .ok_or_else(|| Error::model(&self.manifest.id, "non-contiguous output"))
    }

    fn decode_yunet(
        &self,
        outputs: &[ndarray::ArrayD<f32>],
        iw: usize,
        ih: usize,
    ) -> Result<Vec<Detection>> {
        let mut faces = Vec::new();
        for s in STRIDES {
            let (cols, rows) = (iw / s, ih / s);
            let cls = self.output(outputs, &format!("cls_{s}"))?;
            let obj = self.output(outputs, &format!("obj_{s}"))?;
            let bbox = self.output(outputs, &format!("bbox_{s}"))?;
            let kps = self.output(outputs, &format!("kps_{s}"))?;
            let cells = rows * cols;
            if cls.len() != cells
                || obj.len() != cells
                || bbox.len() != 4 * cells
                || kps.len() != 10 * cells
            {
                return Err(Error::model(
                    &self.manifest.id,
                    format!("stride {s} outputs do not match a {iw}×{ih} input"),
                ));
            }
            let sf = s as f32;
            for i in 0..cells {
                let score = (cls[i].clamp(0.0, 1.0) * obj[i].clamp(0.0, 1.0)).sqrt();
                if score < self.config.score_threshold {
                    continue;
                }
                let (c, r) = ((i % cols) as f32, (i / cols) as f32);
                let b = &bbox[4 * i..4 * i + 4];
                let (cx, cy) = ((c + b[0]) * sf, (r + b[1]) * sf);
                let (bw, bh) = (b[2].exp() * sf, b[3].exp() * sf);
                let k = &kps[10 * i..10 * i + 10];
                let mut landmarks = [[0.0; 2]; 5];
                for (j, p) in landmarks.iter_mut().enumerate() {
                    *p = [(k[2 * j] + c) * sf, (k[2 * j + 1] + r) * sf];
                }
                faces.push(Detection {
                    bbox: [cx - bw / 2.0, cy - bh / 2.0, cx + bw / 2.0, cy + bh / 2.0],
                    score,
                    landmarks,
                });
            }
        }
        Ok(faces)
    }

    fn decode_scrfd(
        &self,
        outputs: &[ndarray::ArrayD<f32>],
        iw: usize,
        ih: usize,
    ) -> Result<Vec<Detection>> {
        const ANCHORS: usize = 2;
        let mut faces = Vec::new();
        for (level, s) in STRIDES.into_iter().enumerate() {
            let (cols, rows) = (iw / s, ih / s);
            let n = rows * cols * ANCHORS;
            let slice = |i: usize| {
                outputs[i]
                    .as_slice()
                    .ok_or_else(|| Error::model(&self.manifest.id, "non-contiguous output"))
            };
            let (scores, boxes, kps) = (slice(level)?, slice(3 + level)?, slice(6 + level)?);
            if scores.len() != n || boxes.len() != 4 * n || kps.len() != 10 * n {
                return Err(Error::model(
                    &self.manifest.id,
                    format!("stride {s} outputs do not match a {iw}×{ih} input"),
                ));
            }
            let sf = s as f32;
            for i in 0..n {
                let score = scores[i];
                if score < self.config.score_threshold {
                    continue;
                }
                let cell = i / ANCHORS;
                let (cx, cy) = ((cell % cols) as f32 * sf, (cell / cols) as f32 * sf);
                let d = &boxes[4 * i..4 * i + 4];
                let k = &kps[10 * i..10 * i + 10];
                let mut landmarks = [[0.0; 2]; 5];
                for (j, p) in landmarks.iter_mut().enumerate() {
                    *p = [cx + k[2 * j] * sf, cy + k[2 * j + 1] * sf];
                }
                faces.push(Detection {
                    bbox: [
                        cx - d[0] * sf,
                        cy - d[1] * sf,
                        cx + d[2] * sf,
                        cy + d[3] * sf,
                    ],
                    score,
                    landmarks,
                });
            }
        }
        Ok(faces)
    }
}

/// Greedy non-maximum suppression; returns survivors best score first.
pub fn nms(mut faces: Vec<Detection>, iou_threshold: f32) -> Vec<Detection> {
    faces.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept: Vec<Detection> = Vec::new();
    for face in faces {
        if kept.iter().all(|k| k.iou(&face) <= iou_threshold) {
            kept.push(face);
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(bbox: [f32; 4], score: f32) -> Detection {
        Detection {
            bbox,
            score,
            landmarks: [[0.0; 2]; 5],
        }
    }

    #[test]
    fn nms_keeps_the_best_of_overlapping_boxes() {
        let faces = vec![
            det([0.0, 0.0, 10.0, 10.0], 0.8),
            det([1.0, 1.0, 11.0, 11.0], 0.9),
            det([50.0, 50.0, 60.0, 60.0], 0.7),
        ];
        let kept = nms(faces, 0.3);
        assert_eq!(kept.len(), 2);
        assert_eq!(kept[0].score, 0.9);
        assert_eq!(kept[1].score, 0.7);
    }
}
