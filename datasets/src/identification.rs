//! Open-set identification (1:N) error rates, NIST FRTE style.
//!
//! A *mated* search has its mate in the gallery; it succeeds at threshold
//! `t` and rank `R` when the mate scores `>= t` and at most `R − 1`
//! non-mates score higher. A *non-mated* search has no mate in the
//! gallery; it is a false positive at `t` when its best score is `>= t`.
//!
//! * CMC(r): fraction of mated searches with the mate at rank ≤ r (no threshold);
//!   rank-1 is CMC(1).
//! * FPIR(t): fraction of non-mated searches with a candidate at `t` or above.
//! * FNIR(t, R): fraction of mated searches that fail at `t` and rank `R`.
//!
//! Ranks count non-mates scoring strictly higher than the mate, so ties
//! go to the mate.

use serde::Serialize;

use crate::errors::Histogram;

/// One mated search.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MatedSearch {
    /// The mate's score.
    pub mate_score: f32,
    /// 1-based rank of the mate: 1 + non-mates scoring higher.
    pub rank: usize,
}

/// FNIR at the lowest threshold whose FPIR does not exceed a target.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct AtFpir {
    /// Target FPIR.
    pub fpir_target: f64,
    /// FPIR reached (≤ the target).
    pub fpir: f64,
    /// FNIR there.
    pub fnir: f64,
    /// The threshold.
    pub threshold: f32,
}

/// One point of the FNIR/FPIR trade-off.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct IdentPoint {
    /// Accept candidates scoring `>= threshold`.
    pub threshold: f32,
    /// False positive identification rate.
    pub fpir: f64,
    /// False negative identification rate.
    pub fnir: f64,
}

/// The outcomes of a set of searches.
#[derive(Debug, Clone)]
pub struct Identification {
    mated: Vec<MatedSearch>,
    /// Best score of each non-mated search, ascending.
    nonmated: Vec<f32>,
}

impl Identification {
    /// Collects the searches.
    ///
    /// # Panics
    /// If a score is NaN or a rank is 0.
    pub fn new(mated: Vec<MatedSearch>, mut nonmated: Vec<f32>) -> Identification {
        assert!(
            mated.iter().all(|m| !m.mate_score.is_nan() && m.rank >= 1)
                && nonmated.iter().all(|s| !s.is_nan()),
            "NaN score or rank 0"
        );
        nonmated.sort_by(f32::total_cmp);
        Identification { mated, nonmated }
    }

    /// Mated searches.
    pub fn mated(&self) -> &[MatedSearch] {
        &self.mated
    }

    /// Best scores of the non-mated searches, ascending.
    pub fn nonmated(&self) -> &[f32] {
        &self.nonmated
    }

    /// CMC at ranks 1 ..= `max_rank`.
    pub fn cmc(&self, max_rank: usize) -> Vec<f64> {
        let mut at = vec![0usize; max_rank + 1];
        for m in &self.mated {
            if m.rank <= max_rank {
                at[m.rank] += 1;
            }
        }
        let n = self.mated.len().max(1) as f64;
        let mut found = 0;
        at[1..]
            .iter()
            .map(|&c| {
                found += c;
                found as f64 / n
            })
            .collect()
    }

    /// Fraction of mated searches with the mate first.
    pub fn rank1(&self) -> f64 {
        self.cmc(1)[0]
    }

    /// Fraction of non-mated searches with a score `>= t`.
    pub fn fpir(&self, t: f32) -> f64 {
        let below = self.nonmated.partition_point(|&s| s < t);
        (self.nonmated.len() - below) as f64 / self.nonmated.len().max(1) as f64
    }

    /// Fraction of mated searches whose mate scores below `t` or ranks after `rank`.
    pub fn fnir(&self, t: f32, rank: usize) -> f64 {
        let missed = self
            .mated
            .iter()
            .filter(|m| m.mate_score < t || m.rank > rank)
            .count();
        missed as f64 / self.mated.len().max(1) as f64
    }

    /// FNIR (at `rank`) at the lowest threshold with FPIR ≤ `target`.
    pub fn fnir_at_fpir(&self, target: f64, rank: usize) -> AtFpir {
        // FPIR changes only at non-mated scores; the lowest threshold
        // meeting the target is just above the (allowed + 1)-th highest.
        let n = self.nonmated.len();
        let allowed = (target * n as f64).floor() as usize;
        let threshold = if allowed >= n {
            f32::NEG_INFINITY
        } else {
            self.nonmated[n - 1 - allowed].next_up()
        };
        AtFpir {
            fpir_target: target,
            fpir: self.fpir(threshold),
            fnir: self.fnir(threshold, rank),
            threshold,
        }
    }

    /// The FNIR/FPIR curve at `rank`, one point per distinct non-mated
    /// score (thinned to at most `max_points` evenly in log FPIR).
    pub fn curve(&self, rank: usize, max_points: usize) -> Vec<IdentPoint> {
        let mut ts: Vec<f32> = self.nonmated.iter().map(|s| s.next_up()).collect();
        ts.dedup();
        ts.insert(0, self.nonmated.first().copied().unwrap_or(0.0));
        let every = ts.len().div_ceil(max_points.max(2)).max(1);
        let mut points: Vec<IdentPoint> = ts
            .iter()
            .enumerate()
            .filter(|(i, _)| i % every == 0 || *i + 1 == ts.len())
            .map(|(_, &t)| IdentPoint {
                threshold: t,
                fpir: self.fpir(t),
                fnir: self.fnir(t, rank),
            })
            .collect();
        points.dedup_by(|b, a| a.fpir == b.fpir && a.fnir == b.fnir);
        points
    }

    /// Histograms of mate scores and of non-mated best scores over one range.
    pub fn histograms(&self, bins: usize) -> (Histogram, Histogram) {
        let mates: Vec<f32> = self.mated.iter().map(|m| m.mate_score).collect();
        let (lo, hi) = mates
            .iter()
            .chain(&self.nonmated)
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &s| {
                (lo.min(s), hi.max(s))
            });
        let (lo, hi) = if lo.is_finite() { (lo, hi) } else { (0.0, 1.0) };
        (
            Histogram::new(&mates, lo, hi, bins),
            Histogram::new(&self.nonmated, lo, hi, bins),
        )
    }
}

/// The outcome of one search given every gallery score of the probe:
/// `mate` is the index of the mate in `scores`; returns the mated search
/// and the best non-mate score (the non-mated search the same probe makes
/// against the gallery without its mate).
pub fn score_search(scores: &[f32], mate: usize) -> (MatedSearch, f32) {
    let mate_score = scores[mate];
    let mut higher = 0;
    let mut best_nonmate = f32::NEG_INFINITY;
    for (i, &s) in scores.iter().enumerate() {
        if i != mate {
            higher += usize::from(s > mate_score);
            best_nonmate = best_nonmate.max(s);
        }
    }
    (
        MatedSearch {
            mate_score,
            rank: higher + 1,
        },
        best_nonmate,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worked() -> Identification {
        // Three mated searches (mate at rank 1, 1, 3) and four non-mated.
        let mated = vec![
            MatedSearch {
                mate_score: 0.9,
                rank: 1,
            },
            MatedSearch {
                mate_score: 0.6,
                rank: 1,
            },
            MatedSearch {
                mate_score: 0.7,
                rank: 3,
            },
        ];
        Identification::new(mated, vec![0.2, 0.5, 0.3, 0.8])
    }

    #[test]
    fn cmc_and_rank1_count_mates_by_rank() {
        let id = worked();
        let cmc = id.cmc(4);
        assert_eq!(cmc, vec![2.0 / 3.0, 2.0 / 3.0, 1.0, 1.0]);
        assert_eq!(id.rank1(), 2.0 / 3.0);
    }

    #[test]
    fn fnir_at_fpir_follows_the_definitions() {
        let id = worked();
        // FPIR 1/4 allows one non-mated search (0.8) through: t just above 0.5.
        let at = id.fnir_at_fpir(0.25, 1);
        assert!(at.threshold > 0.5 && at.threshold < 0.6, "{at:?}");
        assert_eq!(at.fpir, 0.25);
        // Rank 1: the rank-3 mate fails; everyone else passes.
        assert_eq!(at.fnir, 1.0 / 3.0);
        assert_eq!(id.fnir(at.threshold, 3), 0.0);
        // FPIR 0: above 0.8, only the 0.9 mate passes.
        let at = id.fnir_at_fpir(0.0, 20);
        assert_eq!((at.fpir, at.fnir), (0.0, 2.0 / 3.0));
        // The curve starts with every search accepted and is monotone.
        let curve = id.curve(1, 100);
        assert_eq!(curve[0].fpir, 1.0);
        for w in curve.windows(2) {
            assert!(w[1].fpir <= w[0].fpir && w[1].fnir >= w[0].fnir);
        }
        assert_eq!(curve.last().unwrap().fpir, 0.0);
    }

    #[test]
    fn a_search_is_scored_against_the_gallery_with_and_without_its_mate() {
        let (m, best) = score_search(&[0.1, 0.7, 0.4, 0.9, 0.7], 1);
        // 0.9 beats the mate; the tie at 0.7 goes to the mate.
        assert_eq!(m.rank, 2);
        assert_eq!(m.mate_score, 0.7);
        assert_eq!(best, 0.9);
    }
}
