//! FVC fingerprint sets (FVC2002 B layout: `DB{n}_B/{finger}_{impression}.iso`
//! and `.png`) and the FVC verification protocol.
//!
//! Protocol (Maio et al., FVC2000/FVC2002): genuine comparisons are all
//! pairs of impressions of the same finger (28 per finger with 8
//! impressions); the FVC's impostor comparisons are the first impression of
//! each finger against the first impression of every other finger (45 with
//! 10 fingers). [`Protocol::all_impostors`] adds every cross-finger pair of
//! impressions (2 880 with 10 × 8), for error rates with less sampling noise.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use biomatch_engine::finger::{FingerView, MinutiaeRecord};
use rand::{Rng, RngExt};
use rand_distr::{Distribution, Normal};

/// One impression of a set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Impression {
    /// Finger number as in the file name (101, 102, …).
    pub finger: u32,
    /// Impression number (1 to 8).
    pub impression: u32,
    /// The minutiae record file (`.iso`).
    pub record: PathBuf,
    /// The image file (`.png`, `.tif` or `.bmp`), if present.
    pub image: Option<PathBuf>,
}

impl Impression {
    /// Reads and parses the minutiae record; its first finger view, at 500 dpi.
    pub fn first_view(&self) -> Result<FingerView> {
        let bytes = std::fs::read(&self.record)
            .with_context(|| format!("reading {}", self.record.display()))?;
        let record =
            MinutiaeRecord::parse(&bytes).with_context(|| self.record.display().to_string())?;
        record
            .view_at_500dpi(0)
            .with_context(|| format!("{}: no finger view", self.record.display()))
    }
}

/// One set: a folder of impressions.
#[derive(Debug, Clone)]
pub struct FvcSet {
    /// Set name (the folder name, e.g. `DB1_B`).
    pub name: String,
    /// Impressions sorted by finger, then impression.
    pub impressions: Vec<Impression>,
}

/// Indices into [`FvcSet::impressions`] for each comparison class.
#[derive(Debug, Clone, Default)]
pub struct Protocol {
    /// Same finger, every pair of impressions.
    pub genuine: Vec<(usize, usize)>,
    /// First impressions of different fingers (the FVC's impostor set).
    pub fvc_impostors: Vec<(usize, usize)>,
    /// Every pair of impressions of different fingers.
    pub all_impostors: Vec<(usize, usize)>,
}

impl FvcSet {
    /// Reads a set folder: every `{finger}_{impression}.iso`, with the image
    /// of the same stem if there is one.
    pub fn load(dir: &Path) -> Result<FvcSet> {
        let name = dir.file_name().map_or_else(
            || dir.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let mut impressions = Vec::new();
        let entries =
            std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
        for entry in entries {
            let path = entry?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("iso") {
                continue;
            }
            let stem = path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default();
            let Some((f, i)) = stem.split_once('_') else {
                bail!("{}: expected FINGER_IMPRESSION.iso", path.display());
            };
            let (Ok(finger), Ok(impression)) = (f.parse(), i.parse()) else {
                bail!("{}: expected FINGER_IMPRESSION.iso", path.display());
            };
            let image = ["png", "tif", "bmp"]
                .iter()
                .map(|ext| path.with_extension(ext))
                .find(|p| p.exists());
            impressions.push(Impression {
                finger,
                impression,
                record: path,
                image,
            });
        }
        if impressions.is_empty() {
            bail!("{}: no .iso records", dir.display());
        }
        impressions.sort_by_key(|i| (i.finger, i.impression));
        Ok(FvcSet { name, impressions })
    }

    /// The scan resolution of the set's images: 569 dpi for FVC2002 DB2
    /// (the only set not at 500 dpi, per the FVC2002 report), 500 otherwise.
    pub fn dpi(&self) -> f32 {
        if self.name.starts_with("DB2") {
            569.0
        } else {
            500.0
        }
    }

    /// The sets under `root` (`DB*_*` folders), sorted by name.
    pub fn load_all(root: &Path) -> Result<Vec<FvcSet>> {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)
            .with_context(|| format!("reading {}", root.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.is_dir()
                    && p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("DB"))
            })
            .collect();
        dirs.sort();
        if dirs.is_empty() {
            bail!("{}: no DB* set folders", root.display());
        }
        dirs.iter().map(|d| FvcSet::load(d)).collect()
    }

    /// The comparisons of the FVC protocol on this set.
    pub fn protocol(&self) -> Protocol {
        let imp = &self.impressions;
        let first = |k: usize| {
            imp.iter()
                .filter(|i| i.finger == imp[k].finger)
                .map(|i| i.impression)
                .min()
                == Some(imp[k].impression)
        };
        let mut p = Protocol::default();
        for a in 0..imp.len() {
            for b in a + 1..imp.len() {
                if imp[a].finger == imp[b].finger {
                    p.genuine.push((a, b));
                } else {
                    p.all_impostors.push((a, b));
                    if first(a) && first(b) {
                        p.fvc_impostors.push((a, b));
                    }
                }
            }
        }
        p
    }
}

/// A synthetic distractor finger made from a real one, for padding 1:N
/// galleries: the minutiae turned by up to ±30° about their centre and
/// shifted by up to ±40 px, cropped to a random window of 70–100 % of
/// their extent, jittered (σ 2 px, σ 4°), with 10 % dropped and up to
/// three spurious minutiae added. It keeps the statistics of real
/// minutiae (density, directions following ridges) but is not a mate of
/// anything except its source's finger. Seeded by the caller's `rng`.
pub fn distractor(source: &FingerView, rng: &mut impl Rng) -> FingerView {
    use std::f32::consts::{PI, TAU};
    let mut out = source.clone();
    let ms = &source.minutiae;
    if ms.is_empty() {
        return out;
    }
    let (cx, cy) = (
        ms.iter().map(|m| m.x as f32).sum::<f32>() / ms.len() as f32,
        ms.iter().map(|m| m.y as f32).sum::<f32>() / ms.len() as f32,
    );
    let turn = rng.random_range(-PI / 6.0..PI / 6.0);
    let (dx, dy) = (
        rng.random_range(-40.0..40.0f32),
        rng.random_range(-40.0..40.0f32),
    );
    let (s, c) = turn.sin_cos();
    let jitter = Normal::new(0.0f32, 2.0).expect("valid σ");
    let spin = Normal::new(0.0f32, 4f32.to_radians()).expect("valid σ");
    let (x0, x1) = ms.iter().fold((f32::MAX, f32::MIN), |(a, b), m| {
        (a.min(m.x as f32), b.max(m.x as f32))
    });
    let (y0, y1) = ms.iter().fold((f32::MAX, f32::MIN), |(a, b), m| {
        (a.min(m.y as f32), b.max(m.y as f32))
    });
    let (w, h) = (x1 - x0, y1 - y0);
    let (fw, fh) = (
        rng.random_range(0.7..=1.0f32),
        rng.random_range(0.7..=1.0f32),
    );
    let wx = x0 + rng.random_range(0.0..=1.0f32) * w * (1.0 - fw);
    let wy = y0 + rng.random_range(0.0..=1.0f32) * h * (1.0 - fh);
    let limit = |v: f32| v.clamp(0.0, 16383.0).round() as u16;
    out.minutiae.clear();
    for m in ms {
        let (x, y) = (m.x as f32, m.y as f32);
        let inside = x >= wx && x <= wx + w * fw && y >= wy && y <= wy + h * fh;
        if !inside || !rng.random_bool(0.9) {
            continue;
        }
        let (x, y) = (x - cx, y - cy);
        let mut m = *m;
        m.x = limit(cx + x * c + y * s + dx + jitter.sample(rng));
        m.y = limit(cy - x * s + y * c + dy + jitter.sample(rng));
        m.angle = (m.angle + turn + spin.sample(rng)).rem_euclid(TAU);
        out.minutiae.push(m);
    }
    for _ in 0..rng.random_range(0..=3) {
        let mut m = ms[0];
        m.x = limit(rng.random_range(x0..=x1.max(x0 + 1.0)) + dx);
        m.y = limit(rng.random_range(y0..=y1.max(y0 + 1.0)) + dy);
        m.angle = rng.random_range(0.0..TAU);
        out.minutiae.push(m);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_counts_match_the_fvc_for_ten_fingers_of_eight() {
        let dir = tempfile::tempdir().unwrap();
        for f in 101..=110 {
            for i in 1..=8 {
                std::fs::write(dir.path().join(format!("{f}_{i}.iso")), b"").unwrap();
            }
        }
        std::fs::write(dir.path().join("readme.txt"), b"").unwrap();
        let set = FvcSet::load(dir.path()).unwrap();
        assert_eq!(set.impressions.len(), 80);
        let p = set.protocol();
        assert_eq!(p.genuine.len(), 280);
        assert_eq!(p.fvc_impostors.len(), 45);
        assert_eq!(p.all_impostors.len(), 2880);
        for &(a, b) in &p.fvc_impostors {
            assert_eq!(set.impressions[a].impression, 1);
            assert_eq!(set.impressions[b].impression, 1);
        }
        std::fs::write(dir.path().join("x_1.iso"), b"").unwrap();
        assert!(FvcSet::load(dir.path()).is_err());
    }
}
