//! Liveness (presentation-attack detection) with the MiniFASNet ensemble of
//! Silent-Face-Anti-Spoofing: each model sees the face box scaled by its
//! own factor (2.7 for V2, 4.0 for V1SE), shifted inside the image,
//! resized to 80×80, BGR 0–255; the softmax outputs are averaged and class
//! 1 is "real".

use crate::embed::{Model, ModelManifest, RunOptions, Task, preprocess};
use crate::error::{Error, Result};
use crate::imaging::{RgbImage, crop_resize};

use super::detect::Detection;

/// One ensemble member: a model and its crop scale.
#[derive(Debug)]
struct Member {
    model: Model,
    manifest: ModelManifest,
    scale: f32,
}

/// The liveness ensemble.
#[derive(Debug)]
pub struct Liveness {
    members: Vec<Member>,
}

impl Liveness {
    /// Loads `face-liveness` models, each with its manifest's `crop_scale`.
    pub fn load(manifests: &[ModelManifest], options: &RunOptions) -> Result<Self> {
        if manifests.is_empty() {
            return Err(Error::invalid("liveness", "at least one model is needed"));
        }
        let members = manifests
            .iter()
            .map(|m| {
                if m.task != Task::FaceLiveness {
                    return Err(Error::model(
                        &m.id,
                        format!("is a {} model, not face-liveness", m.task.as_str()),
                    ));
                }
                let scale = m
                    .crop_scale
                    .filter(|s| s.is_finite() && *s > 0.0)
                    .ok_or_else(|| Error::model(&m.id, "manifest lacks a positive crop_scale"))?;
                Ok(Member {
                    model: Model::load(m, options)?,
                    manifest: m.clone(),
                    scale,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Liveness { members })
    }

    /// Probability that `face` in `image` is a live face.
    pub fn score(&self, image: &RgbImage, face: &Detection) -> Result<f32> {
        let mut live = 0.0;
        for member in &self.members {
            let (w, h) = (
                member.manifest.input.shape[3] as u32,
                member.manifest.input.shape[2] as u32,
            );
            let crop = crop_resize(
                image,
                scaled_box(image.dimensions(), face, member.scale),
                w,
                h,
            )?;
            let input = preprocess::tensor_from_rgb(&[&crop], &member.manifest.input)?;
            let outputs = member.model.run(input)?;
            let logits = outputs[0]
                .as_slice()
                .ok_or_else(|| Error::model(&member.manifest.id, "non-contiguous output"))?;
            if logits.len() < 2 {
                return Err(Error::model(
                    &member.manifest.id,
                    "expected at least 2 logits",
                ));
            }
            let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let exp: Vec<f32> = logits.iter().map(|l| (l - max).exp()).collect();
            live += exp[1] / exp.iter().sum::<f32>();
        }
        Ok(live / self.members.len() as f32)
    }
}

/// Silent-Face's `_get_new_box`: the face box scaled about its centre
/// (scale reduced when the image is too small), shifted to stay inside the
/// image; inclusive integer corners.
fn scaled_box((w, h): (u32, u32), face: &Detection, scale: f32) -> (u32, u32, u32, u32) {
    let (src_w, src_h) = (w as f32, h as f32);
    let box_w = (face.bbox[2] - face.bbox[0]).max(1.0);
    let box_h = (face.bbox[3] - face.bbox[1]).max(1.0);
    let scale = scale.min((src_h - 1.0) / box_h).min((src_w - 1.0) / box_w);
    let (new_w, new_h) = (box_w * scale, box_h * scale);
    let (cx, cy) = (face.bbox[0] + box_w / 2.0, face.bbox[1] + box_h / 2.0);
    let (mut x0, mut y0) = (cx - new_w / 2.0, cy - new_h / 2.0);
    let (mut x1, mut y1) = (cx + new_w / 2.0, cy + new_h / 2.0);
    if x0 < 0.0 {
        x1 -= x0;
        x0 = 0.0;
    }
    if y0 < 0.0 {
        y1 -= y0;
        y0 = 0.0;
    }
    if x1 > src_w - 1.0 {
        x0 -= x1 - src_w + 1.0;
        x1 = src_w - 1.0;
    }
    if y1 > src_h - 1.0 {
        y0 -= y1 - src_h + 1.0;
        y1 = src_h - 1.0;
    }
    (
        x0.max(0.0) as u32,
        y0.max(0.0) as u32,
        x1.max(0.0) as u32,
        y1.max(0.0) as u32,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaled_box_stays_inside_the_image() {
        let face = Detection {
            bbox: [10.0, 10.0, 60.0, 70.0],
            score: 1.0,
            landmarks: [[0.0; 2]; 5],
        };
        let (x0, y0, x1, y1) = scaled_box((200, 200), &face, 2.7);
        assert_eq!((x0, y0), (0, 0));
        assert!(x1 < 200 && y1 < 200);
        assert!((x1 - x0) as f32 >= 50.0 * 2.7 - 2.0);
        // Scale shrinks when the image cannot hold it.
        let (x0, _, x1, _) = scaled_box((100, 100), &face, 4.0);
        assert!(x1 - x0 <= 99);
    }
}
