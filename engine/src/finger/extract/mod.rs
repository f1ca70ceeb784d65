//! Fingerprint images to minutiae records.
//!
//! The pipeline, at 500 dpi (other resolutions are resampled first):
//!
//! 1. **Fields** ([`field`]): after a local contrast normalisation
//!    (mean and standard deviation over 25 × 25 pixels), the gradient
//!    structure tensor summed over 8 × 8 blocks and smoothed gives the
//!    ridge orientation and its coherence; blocks with grey-level contrast
//!    and coherent orientation form the foreground (closed, opened,
//!    largest component, holes filled); the ridge period per block comes
//!    from the spectrum of grey levels sampled across the ridges.
//! 2. **Enhancement** ([`gabor`]): every foreground pixel is filtered with
//!    the even Gabor filter of its direction and period; the sign of the
//!    response separates ridges from valleys. The foreground is then
//!    refined per pixel: where the response's local RMS (over
//!    25 × 25 pixels) is below 0.3 × its median over the finger there are
//!    no ridges to speak of (blank margins inside edge blocks, textured
//!    background, faded contact), and those pixels become background.
//!    Valley specks enclosed by a ridge (pores, < 20 pixels) are filled.
//! 3. **Thinning** ([`skeleton`]): Zhang–Suen, then a pass that leaves the
//!    ridges one 8-connected pixel wide.
//! 4. **Minutiae**: skeleton pixels with one neighbour are endings, those
//!    with three branches bifurcations. Direction: the smoothed ridge
//!    orientation interpolated at the minutia, turned towards the ridge
//!    the minutia sits on (an ending points along its ridge, away from the
//!    gap; a bifurcation between its two branches), as ISO/IEC 19794-2
//!    defines it.
//! 5. **False minutiae** are dropped: endings whose ridge runs on into
//!    the background (the edge cut it), anything within a few pixels of
//!    the edge, spurs (an ending whose ridge reaches a
//!    bifurcation within half a period), short ridges (two endings joined by
//!    a short ridge), bridges and holes (two bifurcations joined by a short
//!    ridge), broken ridges (two endings facing each other across a short
//!    gap along the ridge flow), and any two minutiae closer than 0.3
//!    period. Each rule drops both minutiae, so the lengths are short:
//!    longer ones dropped real pairs.
//! 6. **A finer pass** ([`FinePass`]): the along-ridge smoothing of step 2
//!    (σ 4.5 px) merges forks and fills dotted ridges, and about a fifth
//!    of the minutiae a commercial extractor reports never appear on its
//!    skeleton. The same pixels are filtered again with a shorter, wider
//!    envelope (σ 2.5 px along, 4.5 px across), thinned, and put through
//!    steps 4–5; its minutiae are added only where the main pass found
//!    none within two ridge periods, since this pass also keeps more
//!    noise. Both filterings are done in one pass over the image, whose
//!    bands of rows run in parallel when a second core is free.
//!
//! Each minutia gets a quality from its block's coherence and its distance
//! to the edge; the finger gets a [`FingerQuality`] score (area, coherence,
//! periodicity, minutiae count) that enrollment compares with
//! [`ExtractParams::min_quality`].
//!
//! The record is written in the input image's own geometry (its width,
//! height and resolution), so it maps onto the image it came from; the
//! matcher brings every record to 500 dpi
//! ([`MinutiaeRecord::view_at_500dpi`]).

mod field;
mod gabor;
mod render;
mod skeleton;
#[cfg(test)]
mod tests;

use std::f32::consts::PI;

use self::field::Field;
use self::gabor::Bank;
use self::skeleton::Skeleton;
use super::iso19794::{FingerView, Format, Minutia, MinutiaKind, MinutiaeRecord};
use crate::error::{Error, ImageProblem, Result};
use crate::imaging::{GreyImage, resize_bilinear};
use crate::vector::Backend;

pub use render::render;

/// The resolution the pipeline works at.
pub const WORKING_DPI: f32 = 500.0;

/// Extraction settings. Lengths are in pixels at 500 dpi.
#[derive(Debug, Clone, PartialEq)]
pub struct ExtractParams {
    /// Side of the blocks of the orientation and segmentation fields.
    pub block: usize,
    /// Foreground blocks have at least this standard deviation of grey
    /// levels…
    pub min_contrast: f32,
    /// …and at least this orientation coherence (over about 4 blocks).
    pub segmentation_coherence: f32,
    /// σ, in blocks, of the smoothing of the orientation used by the
    /// enhancement.
    pub orientation_smoothing: f32,
    /// Gabor kernel radius (at most 63).
    pub gabor_radius: usize,
    /// Gabor envelope σ along the ridges.
    pub gabor_sigma_along: f32,
    /// Gabor envelope σ across the ridges.
    pub gabor_sigma_across: f32,
    /// The second, sharper enhancement (module docs, step 6); `None`
    /// skips it.
    pub fine: Option<FinePass>,
    /// Minutiae closer than this to the background are dropped.
    pub border: f32,
    /// Endings whose ridge, continued this far beyond the tip, reaches
    /// the background are dropped (the edge cut the ridge).
    pub edge_look: f32,
    /// Foreground pixels whose local Gabor response RMS is below this
    /// fraction of its median over the finger become background.
    pub min_response: f32,
    /// Half side of the window of that RMS.
    pub response_window: usize,
    /// Valley components enclosed by ridge (pores, specks) smaller than
    /// this many pixels are filled before thinning.
    pub max_pore: usize,
    /// Two bifurcations joined by a ridge at most this many ridge periods
    /// long are a bridge or a hole: both dropped.
    pub bridge: f32,
    /// An ending joined to another minutia by a ridge at most this many
    /// periods long is a spur or a short ridge: both dropped.
    pub spur: f32,
    /// Two endings facing each other across at most this many periods
    /// along the flow are a broken ridge: both dropped.
    pub gap: f32,
    /// Any two minutiae closer than this many periods are both dropped.
    pub crowd: f32,
    /// At most this many minutiae are kept (the best by quality).
    pub max_minutiae: usize,
    /// Smaller foregrounds (pixels at 500 dpi) are "no fingerprint".
    pub min_area: usize,
    /// [`Extractor::extract`] refuses fingers whose quality score is lower.
    pub min_quality: u8,
}

impl Default for ExtractParams {
    fn default() -> Self {
        ExtractParams {
            block: 8,
            min_contrast: 12.0,
            segmentation_coherence: 0.1,
            orientation_smoothing: 2.0,
            gabor_radius: 11,
            gabor_sigma_along: 4.5,
            gabor_sigma_across: 3.5,
            fine: Some(FinePass {
                sigma_along: 2.5,
                sigma_across: 4.5,
                spacing: 2.0,
            }),
            border: 4.0,
            edge_look: 16.0,
            min_response: 0.3,
            response_window: 12,
            max_pore: 20,
            bridge: 0.5,
            spur: 0.5,
            gap: 0.8,
            crowd: 0.3,
            max_minutiae: 128,
            min_area: 12_000,
            min_quality: 20,
        }
    }
}

/// A second Gabor filtering with a shorter envelope along the ridges. It
/// keeps the forks that the main pass smooths over (and more noise), so
/// only its minutiae in places where the main pass found none are added.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FinePass {
    /// Gabor envelope σ along the ridges.
    pub sigma_along: f32,
    /// Gabor envelope σ across the ridges.
    pub sigma_across: f32,
    /// A minutia of this pass is added when no minutia of the main pass
    /// lies within this many ridge periods of it.
    pub spacing: f32,
}

/// Smallest and largest image side accepted, in pixels at 500 dpi.
const MIN_SIDE: usize = 96;
const MAX_SIDE: usize = 2500;

/// How good a finger image is, and why.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FingerQuality {
    /// 0 (unusable) to 100: the geometric mean of the four terms below,
    /// each mapped to `[0, 1]` (area over 60 mm², coherence from 0.2 to
    /// 0.6, periodic fraction, minutiae over 25).
    pub score: u8,
    /// Foreground area in mm².
    pub area_mm2: f32,
    /// Mean orientation coherence over the foreground.
    pub coherence: f32,
    /// Fraction of foreground blocks with a clear ridge period.
    pub periodic: f32,
    /// Minutiae kept.
    pub minutiae: usize,
}

/// The result of [`Extractor::extract`].
#[derive(Debug, Clone)]
pub struct Extraction {
    /// An ISO/IEC 19794-2:2005 record with one view, in the input image's geometry.
    pub record: MinutiaeRecord,
    /// The finger's quality.
    pub quality: FingerQuality,
}

/// Intermediate results, for [`render`] and for looking at what went wrong.
#[derive(Debug, Clone)]
pub struct Analysis {
    /// The extraction (whatever its quality).
    pub extraction: Extraction,
    /// Input pixels per working pixel (`dpi / 500`).
    pub scale: f32,
    /// Working image width.
    pub width: usize,
    /// Working image height.
    pub height: usize,
    /// Foreground per working pixel.
    pub foreground: Vec<bool>,
    /// Ridge skeleton of the main pass per working pixel (minutiae added
    /// by the fine pass lie on its own skeleton, not drawn).
    pub skeleton: Vec<bool>,
}

/// A grey image as `f32`, row-major.
pub(crate) struct Plane {
    w: usize,
    h: usize,
    data: Vec<f32>,
}

impl Plane {
    fn from_grey(img: &GreyImage) -> Plane {
        Plane {
            w: img.width() as usize,
            h: img.height() as usize,
            data: img.as_raw().iter().map(|&v| v as f32).collect(),
        }
    }

    fn row(&self, y: usize) -> &[f32] {
        &self.data[y * self.w..(y + 1) * self.w]
    }

    /// Bilinear sample, clamped to the image.
    fn bilinear(&self, x: f32, y: f32) -> f32 {
        let x = x.clamp(0.0, (self.w - 1) as f32);
        let y = y.clamp(0.0, (self.h - 1) as f32);
        let (x0, y0) = (x as usize, y as usize);
        let (x1, y1) = ((x0 + 1).min(self.w - 1), (y0 + 1).min(self.h - 1));
        let (tx, ty) = (x - x0 as f32, y - y0 as f32);
        let at = |xx: usize, yy: usize| self.data[yy * self.w + xx];
        let top = at(x0, y0) * (1.0 - tx) + at(x1, y0) * tx;
        let bottom = at(x0, y1) * (1.0 - tx) + at(x1, y1) * tx;
        top * (1.0 - ty) + bottom * ty
    }

    /// [`Plane::bilinear`] (the same value) at a point with
    /// `0 ≤ x < w − 1` and `0 ≤ y < h − 1`, where no clamping is needed.
    fn bilinear_inside(&self, x: f32, y: f32) -> f32 {
        debug_assert!((0.0..(self.w - 1) as f32).contains(&x));
        debug_assert!((0.0..(self.h - 1) as f32).contains(&y));
        let (x0, y0) = (x as usize, y as usize);
        let (tx, ty) = (x - x0 as f32, y - y0 as f32);
        let corner = y0 * self.w + x0;
        let p = &self.data[corner..corner + self.w + 2];
        let top = p[0] * (1.0 - tx) + p[1] * tx;
        let bottom = p[self.w] * (1.0 - tx) + p[self.w + 1] * tx;
        top * (1.0 - ty) + bottom * ty
    }
}

/// Turns fingerprint images into minutiae records. Cheap to share: it
/// holds the Gabor bank and the settings.
pub struct Extractor {
    params: ExtractParams,
    bank: Bank,
    fine_bank: Option<Bank>,
    backend: Backend,
}

impl Extractor {
    /// An extractor with `params`, on the best SIMD backend of this CPU.
    pub fn new(params: ExtractParams) -> Extractor {
        Extractor::with_backend(params, Backend::detect())
    }

    /// An extractor on a given backend (tests compare them).
    pub fn with_backend(params: ExtractParams, backend: Backend) -> Extractor {
        let radius = params.gabor_radius;
        Extractor {
            bank: Bank::new(radius, params.gabor_sigma_along, params.gabor_sigma_across),
            fine_bank: params
                .fine
                .map(|f| Bank::new(radius, f.sigma_along, f.sigma_across)),
            params,
            backend,
        }
    }

    /// The settings.
    pub fn params(&self) -> &ExtractParams {
        &self.params
    }

    /// Extracts the minutiae of a finger image scanned at `dpi`; refuses
    /// images whose quality score is below [`ExtractParams::min_quality`].
    pub fn extract(&self, image: &GreyImage, dpi: f32) -> Result<Extraction> {
        let extraction = self.analyse(image, dpi)?.extraction;
        if extraction.quality.score < self.params.min_quality {
            return Err(Error::QualityRejected {
                measure: "finger_quality",
                value: extraction.quality.score as f32,
                limit: self.params.min_quality as f32,
                relation: "below",
            });
        }
        Ok(extraction)
    }

    /// Runs the whole pipeline without the quality gate and keeps the
    /// intermediate images.
    pub fn analyse(&self, image: &GreyImage, dpi: f32) -> Result<Analysis> {
        if !(250.0..=1200.0).contains(&dpi) {
            return Err(Error::invalid(
                "dpi",
                format!("{dpi}: finger images are accepted from 250 to 1200 dpi"),
            ));
        }
        let scale = dpi / WORKING_DPI;
        let (w0, h0) = (image.width() as usize, image.height() as usize);
        let (w, h) = (
            (w0 as f32 / scale).round() as usize,
            (h0 as f32 / scale).round() as usize,
        );
        if w.min(h) < MIN_SIDE {
            return Err(Error::image(
                ImageProblem::TooSmall,
                format!(
                    "{w0}×{h0} at {dpi} dpi: a finger image needs at least {MIN_SIDE} px a side at 500 dpi"
                ),
            ));
        }
        if w.max(h) > MAX_SIDE {
            return Err(Error::image(
                ImageProblem::TooManyPixels,
                format!(
                    "{w0}×{h0} at {dpi} dpi: larger than a finger ({MAX_SIDE} px a side at 500 dpi)"
                ),
            ));
        }
        let plane = if (w, h) == (w0, h0) {
            Plane::from_grey(image)
        } else {
            Plane::from_grey(&resize_bilinear(image, w as u32, h as u32)?)
        };
        let p = &self.params;
        let normal = field::normalise(&plane, 12, 4.0);
        let field = field::compute(&plane, &normal, p);
        let foreground = field.pixel_mask(w, h);
        ridge_area(&foreground, p.min_area)?;
        let choice = gabor::kernel_choice(&field, &foreground, w, h);
        let (response, fine_response) = gabor::enhance(
            &normal,
            &self.bank,
            self.fine_bank.as_ref(),
            &choice,
            self.backend,
            &foreground,
        );
        let foreground = responsive(&response, &foreground, w, h, p);
        let area = ridge_area(&foreground, p.min_area)?;
        let skeleton = Skeleton::thin(&ridges(&response, &foreground, w, h, p), w, h);
        let distance = distance_to_background(&foreground, w, h);
        let mut minutiae = find_minutiae(&skeleton, &field, &distance, p);
        if let (Some(fine), Some(response)) = (p.fine, fine_response) {
            let skeleton = Skeleton::thin(&ridges(&response, &foreground, w, h, p), w, h);
            let extra = find_minutiae(&skeleton, &field, &distance, p);
            add_isolated(&mut minutiae, &extra, &field, fine.spacing, p.max_minutiae);
        }
        let quality = finger_quality(&field, area, minutiae.len());
        let record = to_record(&minutiae, image, dpi, scale, quality.score);
        let skeleton_px = (0..w * h)
            .map(|i| skeleton.px[(i / w + 1) * skeleton.w + i % w + 1] == 1)
            .collect();
        Ok(Analysis {
            extraction: Extraction { record, quality },
            scale,
            width: w,
            height: h,
            foreground,
            skeleton: skeleton_px,
        })
    }
}

/// The foreground's area in pixels, or "no finger" below `min`.
fn ridge_area(foreground: &[bool], min: usize) -> Result<usize> {
    let area = foreground.iter().filter(|&&m| m).count();
    if area < min {
        return Err(Error::NoFinger {
            reason: format!("ridge area {area} px at 500 dpi, at least {min} needed"),
        });
    }
    Ok(area)
}

/// A minutia found on the skeleton (working frame).
#[derive(Debug, Clone, Copy)]
struct Found {
    pixel: usize,
    x: f32,
    y: f32,
    kind: MinutiaKind,
    /// Direction in image axes (y down), radians.
    direction: f32,
    quality: f32,
    keep: bool,
}

/// Chamfer (3-4) distance in pixels from each pixel to the nearest
/// background pixel or image edge.
fn distance_to_background(fg: &[bool], w: usize, h: usize) -> Vec<f32> {
    let big = u32::MAX / 4;
    let mut d: Vec<u32> = fg.iter().map(|&m| if m { big } else { 0 }).collect();
    let at = |x: isize, y: isize, d: &[u32]| -> u32 {
        if x < 0 || y < 0 || x >= w as isize || y >= h as isize {
            0
        } else {
            d[y as usize * w + x as usize]
        }
    };
    for y in 0..h as isize {
        for x in 0..w as isize {
            let i = y as usize * w + x as usize;
            if d[i] == 0 {
                continue;
            }
            let v = (at(x - 1, y, &d) + 3)
                .min(at(x, y - 1, &d) + 3)
                .min(at(x - 1, y - 1, &d) + 4)
                .min(at(x + 1, y - 1, &d) + 4);
            d[i] = d[i].min(v);
        }
    }
    for y in (0..h as isize).rev() {
        for x in (0..w as isize).rev() {
            let i = y as usize * w + x as usize;
            if d[i] == 0 {
                continue;
            }
            let v = (at(x + 1, y, &d) + 3)
                .min(at(x, y + 1, &d) + 3)
                .min(at(x + 1, y + 1, &d) + 4)
                .min(at(x - 1, y + 1, &d) + 4);
            d[i] = d[i].min(v);
        }
    }
    d.iter().map(|&v| v as f32 / 3.0).collect()
}

/// Angular distance between two directions, in `[0, π]`.
fn angle_between(a: f32, b: f32) -> f32 {
    let d = (a - b).rem_euclid(2.0 * PI);
    d.min(2.0 * PI - d)
}

/// Direction from `from` to `to` in image axes.
fn heading(s: &Skeleton, from: usize, to: usize) -> f32 {
    let (x0, y0) = s.xy(from);
    let (x1, y1) = s.xy(to);
    (y1 - y0).atan2(x1 - x0)
}

/// The pixel `steps` into a walk (or its end).
fn along(walk: &skeleton::Walk, steps: usize) -> usize {
    walk.path[steps.min(walk.path.len()) - 1]
}

/// Detection, direction and the false-minutiae rules (module docs).
fn find_minutiae(s: &Skeleton, field: &Field, distance: &[f32], p: &ExtractParams) -> Vec<Found> {
    let w = s.w - 2;
    let mut found: Vec<Found> = Vec::new();
    let mut at = vec![u32::MAX; s.px.len()];
    for (i, &v) in s.px.iter().enumerate() {
        if v == 0 {
            continue;
        }
        let (x, y) = s.xy(i);
        let (xu, yu) = (x as usize, y as usize);
        if distance[yu * w + xu] <= 0.0 {
            continue;
        }
        let kind = match (s.count(i), s.branches(i)) {
            (1, _) => MinutiaKind::Ending,
            (_, 3) => MinutiaKind::Bifurcation,
            _ => continue,
        };
        // A junction drawn over two adjacent pixels is one bifurcation.
        if kind == MinutiaKind::Bifurcation
            && (0..8).any(|n| {
                let j = s.step(i, n);
                at[j] != u32::MAX && found[at[j] as usize].kind == MinutiaKind::Bifurcation
            })
        {
            continue;
        }
        at[i] = found.len() as u32;
        found.push(Found {
            pixel: i,
            x,
            y,
            kind,
            direction: 0.0,
            quality: 0.0,
            keep: true,
        });
    }
    let is_minutia = |j: usize| at[j] != u32::MAX;
    let mut drop_pairs: Vec<(usize, usize)> = Vec::new();
    for k in 0..found.len() {
        let m = found[k];
        let b = field.block_of(m.x as usize, m.y as usize);
        let period = field.period[b];
        // Walk far enough for the short-ridge rules and for one period of
        // direction.
        let reach = (p.spur.max(p.bridge).max(1.0) * period).round() as usize;
        let dir_steps = period.round() as usize;
        let starts = s.branch_starts(m.pixel);
        let walks: Vec<skeleton::Walk> = starts
            .iter()
            .map(|&st| {
                let others: Vec<usize> = starts.iter().copied().filter(|&o| o != st).collect();
                s.walk(m.pixel, st, &others, reach, is_minutia)
            })
            .collect();
        let traced = match m.kind {
            MinutiaKind::Ending => heading(s, m.pixel, along(&walks[0], dir_steps)),
            _ => {
                let dirs: Vec<f32> = walks
                    .iter()
                    .map(|wk| heading(s, m.pixel, along(wk, dir_steps)))
                    .collect();
                // The stem is the branch farthest from the other two; the
                // bifurcation points between the other two (away from it).
                let stem = (0..3)
                    .max_by(|&a, &b| {
                        let spread = |i: usize| {
                            (0..3)
                                .filter(|&j| j != i)
                                .map(|j| angle_between(dirs[i], dirs[j]))
                                .sum::<f32>()
                        };
                        spread(a).total_cmp(&spread(b))
                    })
                    .unwrap_or(0);
                dirs[stem] + PI
            }
        };
        // The smoothed orientation is steadier than a few skeleton pixels;
        // the walk says which of its two senses.
        let theta = field.direction_at(m.x + 0.5, m.y + 0.5);
        let refined = [theta, theta + PI]
            .into_iter()
            .min_by(|&a, &c| angle_between(a, traced).total_cmp(&angle_between(c, traced)))
            .unwrap_or(traced);
        found[k].direction = if angle_between(refined, traced) < PI / 4.0 {
            refined
        } else {
            traced
        };
        let dist = distance[m.y as usize * w + m.x as usize];
        let coherence = field.coherence[b];
        found[k].quality = (coherence / 0.7).min(1.0) * (dist / (3.0 * p.border)).min(1.0);
        // An ending whose ridge would go on into the background is where
        // the foreground cuts the ridge, not a minutia.
        let cut = m.kind == MinutiaKind::Ending && {
            let (dx, dy) = (found[k].direction.cos(), found[k].direction.sin());
            (1..=p.edge_look as usize).any(|t| {
                let (x, y) = (m.x - t as f32 * dx, m.y - t as f32 * dy);
                x < 0.0
                    || y < 0.0
                    || x >= w as f32
                    || y >= distance.len() as f32 / w as f32
                    || distance[y as usize * w + x as usize] <= 0.0
            })
        };
        if cut || dist < p.border {
            found[k].keep = false;
        }
        for wk in walks.iter().filter(|wk| wk.hit) {
            let other = at[wk.end()] as usize;
            let len = wk.path.len() as f32;
            let short = match (m.kind, found[other].kind) {
                (MinutiaKind::Bifurcation, MinutiaKind::Bifurcation) => len <= p.bridge * period,
                _ => len <= p.spur * period,
            };
            if short {
                drop_pairs.push((k, other));
            }
        }
    }
    // Broken ridges and crowded pairs.
    for a in 0..found.len() {
        for b in a + 1..found.len() {
            let (ma, mb) = (found[a], found[b]);
            let (dx, dy) = (mb.x - ma.x, mb.y - ma.y);
            let d = dx.hypot(dy);
            let period = field.period[field.block_of(ma.x as usize, ma.y as usize)];
            if d > p.gap.max(p.crowd) * period {
                continue;
            }
            if d < p.crowd * period {
                drop_pairs.push((a, b));
                continue;
            }
            if ma.kind == MinutiaKind::Ending && mb.kind == MinutiaKind::Ending {
                let gap = dy.atan2(dx);
                // Each ridge runs away from the gap, and the gap follows the flow.
                let facing = angle_between(ma.direction, gap + PI) < PI / 4.0
                    && angle_between(mb.direction, gap) < PI / 4.0;
                let theta = field.orientation[field.block_of(ma.x as usize, ma.y as usize)];
                let along_flow =
                    angle_between(gap, theta).min(angle_between(gap, theta + PI)) < PI / 4.0;
                if facing && along_flow && d <= p.gap * period {
                    drop_pairs.push((a, b));
                }
            }
        }
    }
    for (a, b) in drop_pairs {
        found[a].keep = false;
        found[b].keep = false;
    }
    let mut kept: Vec<Found> = found.into_iter().filter(|m| m.keep).collect();
    kept.sort_by(|a, b| b.quality.total_cmp(&a.quality));
    kept.truncate(p.max_minutiae);
    kept.sort_by_key(|m| m.pixel);
    kept
}

/// Ridge pixels: the foreground where the Gabor response is negative
/// (dark), with the pores filled.
fn ridges(response: &[f32], fg: &[bool], w: usize, h: usize, p: &ExtractParams) -> Vec<bool> {
    let mut ridges: Vec<bool> = response
        .iter()
        .zip(fg)
        .map(|(&r, &m)| m && r < 0.0)
        .collect();
    fill_pores(&mut ridges, fg, w, h, p.max_pore);
    ridges
}

/// Adds the minutiae of `extra` that lie farther than `spacing` ridge
/// periods from every minutia of `kept`; the best `max` by quality stay.
fn add_isolated(kept: &mut Vec<Found>, extra: &[Found], field: &Field, spacing: f32, max: usize) {
    let main = kept.len();
    for m in extra {
        let period = field.period[field.block_of(m.x as usize, m.y as usize)];
        let reach = spacing * period;
        if kept[..main]
            .iter()
            .all(|o| (o.x - m.x).hypot(o.y - m.y) > reach)
        {
            kept.push(*m);
        }
    }
    if kept.len() > max {
        kept.sort_by(|a, b| b.quality.total_cmp(&a.quality));
        kept.truncate(max);
    }
    kept.sort_by_key(|m| m.pixel);
}

/// The foreground pixels of `fg` where the Gabor response `resp` has a
/// local RMS (over a `(2r + 1)²` window) of at least
/// [`ExtractParams::min_response`] × its median over `fg`.
fn responsive(resp: &[f32], fg: &[bool], w: usize, h: usize, p: &ExtractParams) -> Vec<bool> {
    let energy = field::Integral::new(w, h, |i| f64::from(resp[i] * resp[i]));
    // Only the foreground's RMS matters (0 elsewhere).
    let rms: Vec<f32> = (0..w * h)
        .map(|i| {
            if fg[i] {
                energy
                    .window_mean(i % w, i / w, p.response_window)
                    .max(0.0)
                    .sqrt() as f32
            } else {
                0.0
            }
        })
        .collect();
    let mut inside: Vec<f32> = (0..w * h).filter(|&i| fg[i]).map(|i| rms[i]).collect();
    if inside.is_empty() {
        return fg.to_vec();
    }
    let middle = inside.len() / 2;
    let median = *inside.select_nth_unstable_by(middle, f32::total_cmp).1;
    let floor = p.min_response * median;
    (0..w * h).map(|i| fg[i] && rms[i] >= floor).collect()
}

/// Fills the valley components (4-connected, inside the foreground, not
/// touching the background) of fewer than `max` pixels: pores and specks
/// that would thin into holes.
fn fill_pores(ridges: &mut [bool], fg: &[bool], w: usize, h: usize, max: usize) {
    // Per pixel: 0 not yet looked at, 1 in the component being explored,
    // 2 a valley pixel whose component is no pore. An exploration stops as
    // soon as its component is known to be no pore (it reaches `max`
    // pixels, the background or the image's edge, or a pixel already
    // known to be in such a component), so the long valleys between the
    // ridges are dismissed a few pixels at a time instead of walked whole.
    let mut state = vec![0u8; ridges.len()];
    let mut component = Vec::new();
    let mut stack = Vec::new();
    for start in 0..ridges.len() {
        if ridges[start] || !fg[start] || state[start] != 0 {
            continue;
        }
        component.clear();
        stack.clear();
        state[start] = 1;
        stack.push(start);
        let mut pore = true;
        'explore: while let Some(i) = stack.pop() {
            component.push(i);
            let (x, y) = (i % w, i / w);
            if component.len() >= max || x == 0 || y == 0 || x + 1 == w || y + 1 == h {
                pore = false;
                break;
            }
            for j in [i - 1, i + 1, i - w, i + w] {
                if !fg[j] || state[j] == 2 {
                    pore = false;
                    break 'explore;
                }
                if !ridges[j] && state[j] == 0 {
                    state[j] = 1;
                    stack.push(j);
                }
            }
        }
        if pore {
            for &i in &component {
                ridges[i] = true;
            }
        } else {
            for &i in component.iter().chain(&stack) {
                state[i] = 2;
            }
        }
    }
}

/// The finger quality score (see [`FingerQuality`]).
fn finger_quality(field: &Field, area_px: usize, minutiae: usize) -> FingerQuality {
    let fg: Vec<usize> = (0..field.mask.len()).filter(|&i| field.mask[i]).collect();
    let n = fg.len().max(1) as f32;
    let coherence = fg.iter().map(|&i| field.coherence[i]).sum::<f32>() / n;
    let periodic = fg.iter().filter(|&&i| field.period_found[i]).count() as f32 / n;
    let mm_per_px = 25.4 / WORKING_DPI;
    let area_mm2 = area_px as f32 * mm_per_px * mm_per_px;
    let terms = [
        (area_mm2 / 60.0).min(1.0),
        ((coherence - 0.2) / 0.4).clamp(0.0, 1.0),
        periodic,
        (minutiae as f32 / 25.0).min(1.0),
    ];
    let score = (100.0 * terms.iter().product::<f32>().powf(0.25)).round() as u8;
    FingerQuality {
        score,
        area_mm2,
        coherence,
        periodic,
        minutiae,
    }
}

/// Builds the record in the input image's geometry.
fn to_record(
    found: &[Found],
    image: &GreyImage,
    dpi: f32,
    scale: f32,
    quality: u8,
) -> MinutiaeRecord {
    let (w, h) = (image.width(), image.height());
    let minutiae = found
        .iter()
        .map(|m| {
            let x = ((m.x + 0.5) * scale - 0.5)
                .round()
                .clamp(0.0, (w - 1) as f32);
            let y = ((m.y + 0.5) * scale - 0.5)
                .round()
                .clamp(0.0, (h - 1) as f32);
            Minutia {
                kind: m.kind,
                x: x as u16,
                y: y as u16,
                // Image axes have y down; ISO angles turn counter-clockwise.
                angle: (-m.direction).rem_euclid(2.0 * PI),
                quality: (1.0 + 99.0 * m.quality).round() as u8,
            }
        })
        .collect();
    let per_cm = (dpi / 2.54).round() as u16;
    MinutiaeRecord {
        format: Format::Iso2005,
        product_id: 0,
        capture_equipment: 0,
        width: w as u16,
        height: h as u16,
        x_resolution: per_cm,
        y_resolution: per_cm,
        views: vec![FingerView {
            position: 0,
            view_number: 0,
            impression_type: 0,
            quality,
            minutiae,
            extended: Vec::new(),
        }],
    }
}
