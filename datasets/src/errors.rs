//! Error rates of a verification system from its genuine and impostor
//! scores: FMR and FNMR at a threshold, the equal error rate as the FVC
//! competitions define it, and FNMR at a target FMR.
//!
//! A comparison is accepted when `score >= threshold`. FMR(t) is the
//! fraction of impostor scores accepted, FNMR(t) the fraction of genuine
//! scores rejected.

use serde::Serialize;

/// Genuine and impostor scores, sorted for threshold queries.
#[derive(Debug, Clone)]
pub struct ScoreSets {
    genuine: Vec<f32>,
    impostor: Vec<f32>,
}

/// The equal error rate with its bracket (Maio et al., "FVC2000",
/// IEEE TPAMI 2002, section 4).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Eer {
    /// `(low + high) / 2`.
    pub eer: f64,
    /// Lower end of the bracket.
    pub low: f64,
    /// Upper end of the bracket.
    pub high: f64,
    /// A threshold at the crossing.
    pub threshold: f32,
}

/// FNMR at the lowest threshold whose FMR does not exceed a target.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct AtFmr {
    /// Target FMR.
    pub fmr_target: f64,
    /// FNMR there.
    pub fnmr: f64,
    /// FMR actually reached (≤ the target).
    pub fmr: f64,
    /// The threshold.
    pub threshold: f32,
}

impl ScoreSets {
    /// Sorts the scores; NaN scores are errors of the caller.
    ///
    /// # Panics
    /// If a score is NaN.
    pub fn new(mut genuine: Vec<f32>, mut impostor: Vec<f32>) -> ScoreSets {
        assert!(
            genuine.iter().chain(&impostor).all(|s| !s.is_nan()),
            "NaN score"
        );
        genuine.sort_by(f32::total_cmp);
        impostor.sort_by(f32::total_cmp);
        ScoreSets { genuine, impostor }
    }

    /// Genuine scores, ascending.
    pub fn genuine(&self) -> &[f32] {
        &self.genuine
    }

    /// Impostor scores, ascending.
    pub fn impostor(&self) -> &[f32] {
        &self.impostor
    }

    /// Fraction of impostor scores `>= t`.
    pub fn fmr(&self, t: f32) -> f64 {
        let below = self.impostor.partition_point(|&s| s < t);
        (self.impostor.len() - below) as f64 / self.impostor.len().max(1) as f64
    }

    /// Fraction of genuine scores `< t`.
    pub fn fnmr(&self, t: f32) -> f64 {
        self.genuine.partition_point(|&s| s < t) as f64 / self.genuine.len().max(1) as f64
    }

    /// Every threshold at which a rate changes, and one above all scores.
    fn thresholds(&self) -> Vec<f32> {
        let mut t: Vec<f32> = self.genuine.iter().chain(&self.impostor).copied().collect();
        t.sort_by(f32::total_cmp);
        t.dedup();
        t.push(t.last().map_or(1.0, |&s| s.next_up()));
        t
    }

    /// The FVC equal error rate: with `t1` the largest threshold where
    /// FNMR ≤ FMR and `t2` the smallest where FNMR ≥ FMR, the bracket is
    /// `[FNMR(t1), FMR(t1)]` if `FNMR(t1) + FMR(t1) ≤ FNMR(t2) + FMR(t2)`
    /// and `[FMR(t2), FNMR(t2)]` otherwise; the EER is its midpoint.
    pub fn eer(&self) -> Eer {
        let ts = self.thresholds();
        // FNMR grows and FMR falls with t, so t1 ≤ t2 are neighbours.
        let t1 = ts
            .iter()
            .copied()
            .rfind(|&t| self.fnmr(t) <= self.fmr(t))
            .unwrap_or(ts[0]);
        let t2 = ts
            .iter()
            .copied()
            .find(|&t| self.fnmr(t) >= self.fmr(t))
            .unwrap_or(ts[ts.len() - 1]);
        let (a1, b1) = (self.fnmr(t1), self.fmr(t1));
        let (a2, b2) = (self.fnmr(t2), self.fmr(t2));
        let (low, high, threshold) = if a1 + b1 <= a2 + b2 {
            (a1, b1, t1)
        } else {
            (b2, a2, t2)
        };
        Eer {
            eer: (low + high) / 2.0,
            low,
            high,
            threshold,
        }
    }

    /// FNMR at the lowest threshold with FMR ≤ `target`.
    pub fn fnmr_at_fmr(&self, target: f64) -> AtFmr {
        let ts = self.thresholds();
        let t = ts
            .iter()
            .copied()
            .find(|&t| self.fmr(t) <= target)
            .unwrap_or(ts[ts.len() - 1]);
        AtFmr {
            fmr_target: target,
            fnmr: self.fnmr(t),
            fmr: self.fmr(t),
            threshold: t,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separated_scores_have_zero_eer() {
        let s = ScoreSets::new(vec![0.8, 0.9, 0.7], vec![0.1, 0.2, 0.3, 0.4]);
        let e = s.eer();
        assert_eq!((e.eer, e.low, e.high), (0.0, 0.0, 0.0));
        assert!(e.threshold > 0.4 && e.threshold <= 0.7, "{e:?}");
        let at = s.fnmr_at_fmr(0.0);
        assert_eq!((at.fnmr, at.fmr), (0.0, 0.0));
    }

    #[test]
    fn eer_follows_the_fvc_definition_on_a_worked_example() {
        // Genuine 0.2 0.5 0.6 0.9; impostor 0.1 0.3 0.4 0.7.
        // t = 0.5: FNMR 1/4, FMR 1/4 → equal: EER 25 %.
        let s = ScoreSets::new(vec![0.2, 0.5, 0.6, 0.9], vec![0.1, 0.3, 0.4, 0.7]);
        let e = s.eer();
        assert_eq!(e.eer, 0.25, "{e:?}");
        // No exact crossing: genuine 0.5 0.9; impostor 0.1 0.6 0.7.
        // t1 = 0.6 (FNMR 1/2 ≤ FMR 2/3, sum 7/6); t2 = 0.7 (FNMR 1/2 ≥
        // FMR 1/3, sum 5/6, the smaller): the bracket is [1/3, 1/2].
        let s = ScoreSets::new(vec![0.5, 0.9], vec![0.1, 0.6, 0.7]);
        let e = s.eer();
        assert!(
            (e.low - 1.0 / 3.0).abs() < 1e-12 && (e.high - 0.5).abs() < 1e-12,
            "{e:?}"
        );
        assert!((e.eer - 5.0 / 12.0).abs() < 1e-12);
    }

    #[test]
    fn fnmr_at_fmr_takes_the_lowest_threshold_meeting_the_target() {
        let impostor: Vec<f32> = (0..1000).map(|i| i as f32 / 1000.0).collect();
        let genuine = vec![0.995, 0.9995, 0.5];
        let s = ScoreSets::new(genuine, impostor);
        let at = s.fnmr_at_fmr(0.01);
        // 10 impostors (0.990 … 0.999) may pass: t = 0.990.
        assert!((at.threshold - 0.990).abs() < 1e-6, "{at:?}");
        assert!((at.fnmr - 1.0 / 3.0).abs() < 1e-12);
        assert!(at.fmr <= 0.01);
        let at = s.fnmr_at_fmr(0.001);
        assert!((at.threshold - 0.999).abs() < 1e-6, "{at:?}");
        assert!((at.fnmr - 2.0 / 3.0).abs() < 1e-12);
    }
}
