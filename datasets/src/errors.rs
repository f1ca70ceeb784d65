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

    /// FNMR at the lowest threshold with FMR ≤ `target` (thresholds are
    /// the distinct scores and one above all). Binary searches over the
    /// sorted scores: no copy, so it is cheap on millions of impostors.
    pub fn fnmr_at_fmr(&self, target: f64) -> AtFmr {
        let (g, i) = (&self.genuine, &self.impostor);
        let n = i.len();
        // The most impostor scores that may pass: the largest c with c / n ≤ target.
        let mut allowed = (target * n as f64).floor().clamp(0.0, n as f64) as usize;
        while allowed < n && (allowed + 1) as f64 / n as f64 <= target {
            allowed += 1;
        }
        while allowed > 0 && allowed as f64 / n as f64 > target {
            allowed -= 1;
        }
        let lowest = g
            .first()
            .into_iter()
            .chain(i.first())
            .copied()
            .reduce(f32::min);
        let t = if allowed >= n {
            lowest.unwrap_or(1.0)
        } else {
            // The lowest score above the impostor that must be rejected,
            // else one above every score.
            let v = i[n - 1 - allowed];
            let above = |s: &[f32]| s.get(s.partition_point(|&x| x <= v)).copied();
            let highest = g
                .last()
                .into_iter()
                .chain(i.last())
                .copied()
                .reduce(f32::max);
            match (above(g), above(i)) {
                (Some(a), Some(b)) => a.min(b),
                (Some(a), None) | (None, Some(a)) => a,
                (None, None) => highest.map_or(1.0, f32::next_up),
            }
        };
        AtFmr {
            fmr_target: target,
            fnmr: self.fnmr(t),
            fmr: self.fmr(t),
            threshold: t,
        }
    }
}

/// One point of a DET / ROC curve.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct DetPoint {
    /// Accept when `score >= threshold`.
    pub threshold: f32,
    /// False match rate there.
    pub fmr: f64,
    /// False non-match rate there (1 − TAR).
    pub fnmr: f64,
}

/// A histogram of scores over `[lo, hi)` in equal bins.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Histogram {
    /// Lower edge of the first bin.
    pub lo: f32,
    /// Upper edge of the last bin.
    pub hi: f32,
    /// Scores per bin (the last bin also holds `hi`).
    pub counts: Vec<u64>,
}

impl Histogram {
    /// Counts `scores` into `bins` bins over `[lo, hi]`; scores outside are clamped into the end bins.
    pub fn new(scores: &[f32], lo: f32, hi: f32, bins: usize) -> Histogram {
        let bins = bins.max(1);
        let mut counts = vec![0u64; bins];
        let width = (hi - lo).max(f32::MIN_POSITIVE);
        for &s in scores {
            let b = (((s - lo) / width) * bins as f32).floor();
            counts[(b.max(0.0) as usize).min(bins - 1)] += 1;
        }
        Histogram { lo, hi, counts }
    }
}

/// A threshold for a target FMR, measured or extrapolated.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Calibrated {
    /// Target FMR.
    pub fmr: f64,
    /// Accept when `score >= threshold`.
    pub threshold: f32,
    /// `false`: the empirical quantile (at least [`MIN_TAIL`] impostor
    /// scores at or above it); `true`: extrapolated from the tail fit.
    pub extrapolated: bool,
}

/// Impostor scores a measured threshold must have at or above it; rarer
/// targets are extrapolated.
pub const MIN_TAIL: usize = 10;

/// How [`ScoreSets::calibrate`] extrapolates, for reports and manifests.
pub const TAIL_METHOD: &str = "peaks over threshold: exponential fit (mean excess) of the top 1 % of \
     impostor scores (at most 1000, at least 50)";

impl ScoreSets {
    /// The DET curve: every threshold where a rate changes, thinned to at
    /// most `max_points` spread evenly in log(FMR) (both ends kept).
    /// Streams over the sorted scores: memory is the curve's, not the scores'.
    pub fn det(&self, max_points: usize) -> Vec<DetPoint> {
        let (g, i) = (&self.genuine, &self.impostor);
        let point = |t: f32, below_g: usize, below_i: usize| DetPoint {
            threshold: t,
            fmr: (i.len() - below_i) as f64 / i.len().max(1) as f64,
            fnmr: below_g as f64 / g.len().max(1) as f64,
        };
        let floor = 0.5 / i.len().max(1) as f64;
        let log = |p: &DetPoint| p.fmr.max(floor).log10();
        let step = -floor.log10() / max_points.saturating_sub(2).max(1) as f64;
        let mut kept: Vec<DetPoint> = Vec::new();
        let mut next = 0.0;
        let (mut a, mut b) = (0, 0);
        // Thresholds ascending: each distinct score, then one above all.
        loop {
            let t = match (g.get(a), i.get(b)) {
                (Some(&x), Some(&y)) => x.min(y),
                (Some(&x), None) => x,
                (None, Some(&y)) => y,
                (None, None) => break,
            };
            let p = point(t, a, b);
            if kept.is_empty() || log(&p) <= next {
                kept.push(p);
                while next >= log(&p) {
                    next -= step;
                }
            }
            while g.get(a).is_some_and(|&x| x <= t) {
                a += 1;
            }
            while i.get(b).is_some_and(|&y| y <= t) {
                b += 1;
            }
        }
        let last = g
            .last()
            .into_iter()
            .chain(i.last())
            .fold(f32::NEG_INFINITY, |m, &s| m.max(s));
        let end = point(
            if last.is_finite() {
                last.next_up()
            } else {
                1.0
            },
            a,
            b,
        );
        if kept.last() != Some(&end) {
            kept.push(end);
        }
        kept
    }

    /// Thresholds for each target FMR: the empirical quantile where at
    /// least [`MIN_TAIL`] impostor scores reach it, else an extrapolation
    /// of the impostor tail ([`TAIL_METHOD`]; needs ≥ 50 impostor scores).
    /// The exponential tail falls slower than a normal one, so on light
    /// tails the extrapolated thresholds err high (a lower real FMR).
    pub fn calibrate(&self, targets: &[f64]) -> Vec<Calibrated> {
        let n = self.impostor.len();
        targets
            .iter()
            .filter_map(|&fmr| {
                if fmr * n as f64 >= MIN_TAIL as f64 {
                    let at = self.fnmr_at_fmr(fmr);
                    return Some(Calibrated {
                        fmr,
                        threshold: at.threshold,
                        extrapolated: false,
                    });
                }
                let k = (n / 100).clamp(50, 1000);
                if n < k {
                    return None;
                }
                // Exceedances over u, the k-th highest impostor score.
                let top = &self.impostor[n - k..];
                let u = top[0] as f64;
                let beta = top.iter().map(|&s| s as f64 - u).sum::<f64>() / (k - 1) as f64;
                let p_u = k as f64 / n as f64;
                let t = u + beta.max(1e-9) * (p_u / fmr).ln();
                Some(Calibrated {
                    fmr,
                    threshold: t as f32,
                    extrapolated: true,
                })
            })
            .collect()
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

    #[test]
    fn det_curve_is_monotone_thinned_and_keeps_its_ends() {
        let impostor: Vec<f32> = (0..10_000).map(|i| i as f32 / 10_000.0).collect();
        let genuine: Vec<f32> = (0..1000).map(|i| 0.5 + i as f32 / 2000.0).collect();
        let s = ScoreSets::new(genuine, impostor);
        let det = s.det(50);
        assert!(det.len() <= 50 && det.len() > 20, "{}", det.len());
        assert_eq!((det[0].fmr, det[0].fnmr), (1.0, 0.0));
        assert_eq!(det.last().unwrap().fmr, 0.0);
        for w in det.windows(2) {
            assert!(w[1].threshold > w[0].threshold);
            assert!(w[1].fmr <= w[0].fmr && w[1].fnmr >= w[0].fnmr);
        }
        // Every point is exact.
        for p in &det {
            assert_eq!((p.fmr, p.fnmr), (s.fmr(p.threshold), s.fnmr(p.threshold)));
        }
    }

    #[test]
    fn fnmr_at_fmr_equals_a_scan_of_every_threshold() {
        // Ties, repeated values and rates that are not multiples of 1/n.
        let genuine: Vec<f32> = (0..300).map(|i| ((i * 37) % 101) as f32 / 100.0).collect();
        let impostor: Vec<f32> = (0..700).map(|i| ((i * 53) % 89) as f32 / 100.0).collect();
        let s = ScoreSets::new(genuine, impostor);
        let mut ts: Vec<f32> = s.genuine().iter().chain(s.impostor()).copied().collect();
        ts.sort_by(f32::total_cmp);
        ts.dedup();
        ts.push(ts[ts.len() - 1].next_up());
        for target in [0.0, 1e-3, 0.01, 0.07, 0.29, 0.5, 0.999, 1.0] {
            let t = ts.iter().copied().find(|&t| s.fmr(t) <= target).unwrap();
            assert_eq!(s.fnmr_at_fmr(target).threshold, t, "target {target}");
        }
    }

    #[test]
    fn histogram_counts_every_score_once() {
        let h = Histogram::new(&[-2.0, 0.0, 0.1, 0.5, 0.99, 1.0, 3.0], 0.0, 1.0, 4);
        assert_eq!(h.counts, vec![3, 0, 1, 3]);
    }

    #[test]
    fn calibration_is_empirical_where_it_can_be_and_extrapolates_an_exponential_tail() {
        // Impostors with an exact exponential tail: P(S ≥ t) = e^{-t/0.05}.
        let n = 100_000;
        let impostor: Vec<f32> = (0..n)
            .map(|i| (-0.05 * (1.0 - (i as f64 + 0.5) / n as f64).ln()) as f32)
            .collect();
        let s = ScoreSets::new(vec![1.0], impostor);
        let c = s.calibrate(&[1e-2, 1e-4, 1e-6]);
        assert_eq!(c.len(), 3);
        assert!(!c[0].extrapolated && !c[1].extrapolated && c[2].extrapolated);
        for (at, fmr) in c.iter().zip([1e-2f64, 1e-4, 1e-6]) {
            let exact = -0.05 * fmr.ln();
            assert!(
                (at.threshold as f64 - exact).abs() < 0.01,
                "{at:?} vs {exact}"
            );
        }
        // Too few impostors to fit a tail: the rare target is left out.
        let s = ScoreSets::new(vec![1.0], vec![0.1; 20]);
        assert!(s.calibrate(&[1e-4]).is_empty());
    }
}
