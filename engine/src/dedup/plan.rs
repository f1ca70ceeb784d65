//! What a de-duplication job will do, fixed when it is created: per
//! collection, the tiles and the decision threshold, and the impostor
//! statistics that fusion normalises scores with.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::gallery::{Gallery, GallerySnapshot, is_minutiae};
use crate::vector::Metric;

use super::DedupRequest;

/// Fraction of impostor finger pairs the vector stage lets through to the
/// minutiae matcher in minutiae collections (`biomatch bench finger`: the
/// vectors keep the true mate in the best 5 % for 93 % of probes).
pub const PREFILTER_FMR: f64 = 0.05;
/// Minutiae template pairs sampled for a finger threshold (the matcher is
/// far slower than a dot product).
const FINGER_SAMPLES: usize = 200_000;

/// Random pairs drawn per sampling task.
const SAMPLE_CHUNK: usize = 100_000;
/// Fewest and most impostor pairs sampled per collection.
const MIN_SAMPLES: usize = 200_000;
const MAX_SAMPLES: usize = 10_000_000;
/// Sampled scores wanted above an empirical threshold; below this the
/// threshold comes from a normal fit of the sample instead.
const TAIL_SAMPLES: f64 = 50.0;

/// How a collection's threshold was obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThresholdMethod {
    /// Given by the caller.
    Given,
    /// The `1 − fmr` quantile of the sampled impostor scores.
    SampledQuantile,
    /// `mean + z(fmr) · sd` of the sampled impostor scores (the FMR is too
    /// small for the sample to reach: an extrapolation).
    NormalFit,
}

/// Impostor score statistics of a collection, from sampled random pairs of
/// templates of different subjects.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImpostorStats {
    /// Pairs sampled.
    pub samples: usize,
    /// Mean score.
    pub mean: f64,
    /// Standard deviation.
    pub sd: f64,
}

/// Bins in a histogram.
const BINS: usize = 40;

/// Counts of scores in [`BINS`] equal bins over `[lo, hi]`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Bins {
    /// Lower edge of the first bin (the smallest score).
    pub lo: f32,
    /// Upper edge of the last bin (the largest score).
    pub hi: f32,
    /// Scores per bin (empty for no scores).
    pub counts: Vec<u64>,
}

impl Bins {
    /// The histogram of `scores`.
    pub fn of(scores: &[f32]) -> Bins {
        let lo = scores.iter().fold(f32::INFINITY, |m, &x| m.min(x));
        let hi = scores.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
        if !lo.is_finite() || !hi.is_finite() {
            return Bins::default();
        }
        let width = ((hi - lo) / BINS as f32).max(f32::MIN_POSITIVE);
        let mut counts = vec![0u64; BINS];
        for &x in scores {
            counts[(((x - lo) / width) as usize).min(BINS - 1)] += 1;
        }
        Bins { lo, hi, counts }
    }
}

/// The plan for one collection.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CollectionPlan {
    /// Collection name.
    pub name: String,
    /// Catalog id.
    pub id: u64,
    /// `face` or `finger`.
    pub modality: String,
    /// Whether higher scores are better (similarities) or lower (L2).
    pub higher_is_better: bool,
    /// A pair matches in this collection at or beyond this score.
    pub threshold: f32,
    /// Where the threshold came from.
    pub method: ThresholdMethod,
    /// Impostor statistics (fusion's z-scores use them).
    pub impostor: ImpostorStats,
    /// Histogram of the sampled impostor scores (for the summary).
    #[serde(default)]
    pub impostor_histogram: Bins,
    /// First template id of every tile.
    pub tile_starts: Vec<u64>,
    /// Templates per tile (rounded up to whole blocks).
    pub tile_rows: usize,
    /// Minutiae collections: the first stage's cosine threshold on the
    /// fingers' fixed-length vectors (at [`PREFILTER_FMR`] of sampled
    /// impostors); pairs passing it are scored by the minutiae matcher,
    /// whose score `threshold` applies to.
    pub prefilter: Option<f32>,
    /// Largest template id when the job was planned: templates enrolled
    /// later are not part of the job, so a resumed job covers the same
    /// templates as the run it continues.
    pub last_id: u64,
}

impl CollectionPlan {
    /// Tile pairs `(a, b)`, `a ≤ b`, in processing order.
    pub fn tile_pairs(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        let t = self.tile_starts.len() as u32;
        (0..t).flat_map(move |a| (a..t).map(move |b| (a, b)))
    }

    /// The ids tile `t` covers.
    pub fn tile_range(&self, t: u32) -> std::ops::RangeInclusive<u64> {
        let t = t as usize;
        self.tile_starts[t]..=self.tile_starts.get(t + 1).map_or(self.last_id, |&s| s - 1)
    }

    /// Whether `score` matches.
    pub fn matches(&self, score: f32) -> bool {
        if self.higher_is_better {
            score >= self.threshold
        } else {
            score <= self.threshold
        }
    }

    /// `score` as an impostor z-score, oriented so that higher means more
    /// alike.
    pub fn z(&self, score: f32) -> f64 {
        let sd = self.impostor.sd.max(1e-12);
        let z = (f64::from(score) - self.impostor.mean) / sd;
        if self.higher_is_better { z } else { -z }
    }
}

/// Builds the plan for `request` on `snapshot`.
pub(super) fn plan(
    gallery: &Gallery,
    snapshot: &GallerySnapshot,
    request: &DedupRequest,
) -> Result<Vec<CollectionPlan>> {
    let names: Vec<String> = if request.collections.is_empty() {
        // Every collection with something to compare.
        snapshot
            .collections()
            .map(|c| c.spec.name.clone())
            .filter(|name| snapshot.collection(name).is_ok_and(|(_, i)| i.len() >= 2))
            .collect()
    } else {
        request.collections.clone()
    };
    if names.is_empty() {
        return Err(Error::invalid(
            "collections",
            "the gallery has no collection with two or more templates to de-duplicate",
        ));
    }
    let mut plans = Vec::new();
    for name in names {
        let (info, index) = snapshot.collection(&name)?;
        let minutiae = is_minutiae(&info.spec);
        let higher_is_better = info.spec.metric != Metric::L2;
        let sample = |count: usize| -> Vec<f32> {
            (0..count.div_ceil(SAMPLE_CHUNK))
                .into_par_iter()
                .flat_map_iter(|chunk| {
                    let seed = 0x0DED_0000 ^ (info.id << 32) ^ chunk as u64;
                    index.sample_pair_scores(SAMPLE_CHUNK.min(count - chunk * SAMPLE_CHUNK), seed)
                })
                .collect()
        };
        let count = match request.fmr {
            Some(fmr) => ((TAIL_SAMPLES / fmr).ceil() as usize).clamp(MIN_SAMPLES, MAX_SAMPLES),
            None => MIN_SAMPLES,
        };
        let (mut scores, prefilter) = if minutiae {
            let mut vectors = sample(MIN_SAMPLES);
            let vector_stats = stats(&vectors);
            let (prefilter, _) = fmr_threshold(&mut vectors, PREFILTER_FMR, true, &vector_stats);
            let scores = gallery.sample_finger_template_scores(
                &name,
                FINGER_SAMPLES,
                0x0DED_F000 ^ info.id,
            )?;
            (scores, Some(prefilter))
        } else {
            (sample(count), None)
        };
        let impostor = stats(&scores);
        let impostor_histogram = Bins::of(&scores);
        let tile_rows = request
            .tile_rows
            .unwrap_or_else(|| DedupRequest::default_tile_rows(index.len()));
        // Minutiae scores live on their own scale: a raw threshold is for
        // the vector collections; fingers take `finger_threshold`, else
        // the FMR (1e-5 with a raw threshold).
        let decision = match (minutiae, request.threshold, request.fmr) {
            (true, _, _) => match request.finger_threshold {
                Some(t) => (Some(t), None),
                None => (None, Some(request.fmr.unwrap_or(1e-5))),
            },
            (false, t, f) => (t, f),
        };
        let (threshold, method) = match decision {
            (Some(t), None) => (t, ThresholdMethod::Given),
            (None, Some(fmr)) => {
                if scores.len() < 2 {
                    return Err(Error::invalid(
                        "fmr",
                        format!(
                            "collection `{name}` has too few subjects to estimate its impostor scores; give a threshold"
                        ),
                    ));
                }
                fmr_threshold(&mut scores, fmr, higher_is_better, &impostor)
            }
            _ => {
                return Err(Error::invalid(
                    "threshold",
                    "give exactly one of threshold and fmr",
                ));
            }
        };
        plans.push(CollectionPlan {
            name: name.clone(),
            id: info.id,
            modality: info.spec.modality.name().to_string(),
            higher_is_better,
            threshold,
            method,
            impostor,
            impostor_histogram,
            tile_starts: index.tile_starts(tile_rows),
            tile_rows,
            prefilter,
            last_id: index.last_id().unwrap_or(0),
        });
    }
    Ok(plans)
}

pub(super) fn stats(scores: &[f32]) -> ImpostorStats {
    let n = scores.len().max(1) as f64;
    let mean = scores.iter().map(|&s| f64::from(s)).sum::<f64>() / n;
    let var = scores
        .iter()
        .map(|&s| (f64::from(s) - mean).powi(2))
        .sum::<f64>()
        / (n - 1.0).max(1.0);
    ImpostorStats {
        samples: scores.len(),
        mean,
        sd: var.sqrt(),
    }
}

/// The score a random impostor pair reaches with probability `fmr`.
fn fmr_threshold(
    scores: &mut [f32],
    fmr: f64,
    higher_is_better: bool,
    impostor: &ImpostorStats,
) -> (f32, ThresholdMethod) {
    let n = scores.len();
    if fmr * n as f64 >= TAIL_SAMPLES {
        // The k-th most alike sampled score: k − 1 samples lie beyond it.
        scores.sort_by(|a, b| {
            if higher_is_better {
                b.total_cmp(a)
            } else {
                a.total_cmp(b)
            }
        });
        let k = ((fmr * n as f64).floor() as usize).clamp(1, n);
        // Ties at the threshold would match; step just beyond it.
        let t = scores[k - 1];
        let t = if higher_is_better {
            t.next_up()
        } else {
            t.next_down()
        };
        (t, ThresholdMethod::SampledQuantile)
    } else {
        let z = normal_quantile(1.0 - fmr);
        let t = if higher_is_better {
            impostor.mean + z * impostor.sd
        } else {
            impostor.mean - z * impostor.sd
        };
        (t as f32, ThresholdMethod::NormalFit)
    }
}

/// The standard normal quantile (Acklam's rational approximation, relative
/// error below 1.2·10⁻⁹), for `p` in (0, 1).
pub(crate) fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < 0.02425 {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - 0.02425 {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_quantiles_match_tables() {
        for (p, z) in [
            (0.5, 0.0),
            (0.975, 1.959_963_985),
            (1.0 - 1e-3, 3.090_232_306),
            (1.0 - 1e-5, 4.264_890_794),
            (1e-6, -4.753_424_309),
        ] {
            assert!(
                (normal_quantile(p) - z).abs() < 1e-7,
                "{p}: {}",
                normal_quantile(p)
            );
        }
    }

    #[test]
    fn thresholds_come_from_the_sample_or_a_normal_fit() {
        // 1000 scores 0.000, 0.001, ..., 0.999.
        let mut scores: Vec<f32> = (0..1000).map(|i| i as f32 / 1000.0).collect();
        let st = stats(&scores);
        let (t, m) = fmr_threshold(&mut scores.clone(), 0.1, true, &st);
        assert_eq!(m, ThresholdMethod::SampledQuantile);
        // 100 samples lie at or above the threshold.
        assert_eq!(scores.iter().filter(|&&s| s >= t).count(), 99);
        let (t, _) = fmr_threshold(&mut scores, 0.1, false, &st);
        assert_eq!(scores.iter().filter(|&&s| s <= t).count(), 99);
        let (t, m) = fmr_threshold(&mut scores, 1e-4, true, &st);
        assert_eq!(m, ThresholdMethod::NormalFit);
        assert!(
            (f64::from(t) - (st.mean + 3.719 * st.sd)).abs() < 1e-3,
            "{t}"
        );
    }
}
