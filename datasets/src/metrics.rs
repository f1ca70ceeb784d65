//! Verification metrics: k-fold accuracy with the threshold chosen on the
//! other folds (the LFW protocol) and TAR at a fixed FAR.

/// A scored comparison.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scored {
    /// Similarity (higher = more alike).
    pub score: f32,
    /// Same identity?
    pub genuine: bool,
    /// Fold (0-based).
    pub fold: usize,
}

/// Accuracy of `threshold` (accept when `score >= threshold`).
fn accuracy(pairs: &[&Scored], threshold: f32) -> f64 {
    let correct = pairs
        .iter()
        .filter(|p| (p.score >= threshold) == p.genuine)
        .count();
    correct as f64 / pairs.len().max(1) as f64
}

/// The threshold with the best accuracy on `pairs`: candidates are the
/// midpoints between consecutive distinct scores (and the extremes); ties
/// go to the midpoint of the best run.
pub fn best_threshold(pairs: &[&Scored]) -> f32 {
    let mut sorted: Vec<&Scored> = pairs.to_vec();
    sorted.sort_by(|a, b| a.score.total_cmp(&b.score));
    // Start with every pair accepted; walk thresholds upwards.
    let mut correct = sorted.iter().filter(|p| p.genuine).count() as i64;
    let mut best = (correct, f32::NEG_INFINITY, f32::NEG_INFINITY);
    let mut i = 0;
    while i < sorted.len() {
        let s = sorted[i].score;
        while i < sorted.len() && sorted[i].score == s {
            // Threshold moves above s: this pair becomes rejected.
            correct += if sorted[i].genuine { -1 } else { 1 };
            i += 1;
        }
        let next = sorted.get(i).map_or(s + 1e-3, |p| p.score);
        let threshold = (s + next) / 2.0;
        if correct > best.0 {
            best = (correct, threshold, threshold);
        } else if correct == best.0 {
            best.2 = threshold;
        }
    }
    if best.1 == f32::NEG_INFINITY {
        return sorted.first().map_or(0.0, |p| p.score);
    }
    (best.1 + best.2) / 2.0
}

/// Result of [`kfold_accuracy`].
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct KFold {
    /// Test accuracy of each fold.
    pub fold_accuracy: Vec<f64>,
    /// Threshold chosen for each fold (on the other folds).
    pub fold_threshold: Vec<f32>,
    /// Mean of the fold accuracies.
    pub mean: f64,
    /// Standard deviation of the fold accuracies (population, as the LFW literature reports).
    pub std: f64,
}

/// For each fold: choose the best threshold on the other folds, measure accuracy on it.
pub fn kfold_accuracy(scored: &[Scored], folds: usize) -> KFold {
    let mut fold_accuracy = Vec::with_capacity(folds);
    let mut fold_threshold = Vec::with_capacity(folds);
    for k in 0..folds {
        let train: Vec<&Scored> = scored.iter().filter(|p| p.fold != k).collect();
        let test: Vec<&Scored> = scored.iter().filter(|p| p.fold == k).collect();
        let threshold = best_threshold(&train);
        fold_threshold.push(threshold);
        fold_accuracy.push(accuracy(&test, threshold));
    }
    let mean = fold_accuracy.iter().sum::<f64>() / folds as f64;
    let var = fold_accuracy
        .iter()
        .map(|a| (a - mean).powi(2))
        .sum::<f64>()
        / folds as f64;
    KFold {
        fold_accuracy,
        fold_threshold,
        mean,
        std: var.sqrt(),
    }
}

/// True-accept rate at the threshold where at most `far` of the impostor
/// scores are accepted; returns (TAR, threshold).
pub fn tar_at_far(scored: &[Scored], far: f64) -> (f64, f32) {
    let mut impostor: Vec<f32> = scored
        .iter()
        .filter(|p| !p.genuine)
        .map(|p| p.score)
        .collect();
    impostor.sort_by(|a, b| b.total_cmp(a));
    let allowed = (far * impostor.len() as f64).floor() as usize;
    // Accept scores strictly above the (allowed+1)-th highest impostor score.
    let threshold = impostor
        .get(allowed)
        .copied()
        .map_or(f32::NEG_INFINITY, |s| s.next_up_approx());
    let genuine: Vec<f32> = scored
        .iter()
        .filter(|p| p.genuine)
        .map(|p| p.score)
        .collect();
    let accepted = genuine.iter().filter(|&&s| s >= threshold).count();
    (accepted as f64 / genuine.len().max(1) as f64, threshold)
}

trait NextUp {
    fn next_up_approx(self) -> f32;
}

impl NextUp for f32 {
    /// The smallest float above `self` (for finite values).
    fn next_up_approx(self) -> f32 {
        if self.is_nan() || self == f32::INFINITY {
            return self;
        }
        let bits = self.to_bits();
        let next = if self == 0.0 {
            1
        } else if self > 0.0 {
            bits + 1
        } else {
            bits - 1
        };
        f32::from_bits(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(score: f32, genuine: bool, fold: usize) -> Scored {
        Scored {
            score,
            genuine,
            fold,
        }
    }

    #[test]
    fn separable_scores_give_full_accuracy() {
        let scored: Vec<Scored> = (0..10)
            .flat_map(|f| {
                [
                    s(0.8 + f as f32 * 0.01, true, f),
                    s(0.1 + f as f32 * 0.01, false, f),
                ]
            })
            .collect();
        let k = kfold_accuracy(&scored, 10);
        assert_eq!(k.mean, 1.0);
        assert!(k.fold_threshold.iter().all(|&t| t > 0.2 && t < 0.8));
        let (tar, _) = tar_at_far(&scored, 1e-3);
        assert_eq!(tar, 1.0);
    }

    #[test]
    fn best_threshold_counts_errors_exactly() {
        let pairs = [
            s(0.9, true, 0),
            s(0.6, false, 0),
            s(0.7, true, 0),
            s(0.2, false, 0),
            s(0.65, true, 0),
        ];
        let refs: Vec<&Scored> = pairs.iter().collect();
        let t = best_threshold(&refs);
        // Best: accept ≥ 0.625 → all correct.
        assert!(t > 0.6 && t < 0.65, "{t}");
        assert_eq!(accuracy(&refs, t), 1.0);
    }

    #[test]
    fn tar_at_far_allows_the_stated_fraction() {
        // 1000 impostors 0.000..0.999, genuine 0.9955 and 0.5.
        let mut scored: Vec<Scored> = (0..1000).map(|i| s(i as f32 / 1000.0, false, 0)).collect();
        scored.push(s(0.9985, true, 0));
        scored.push(s(0.5, true, 0));
        // FAR 1e-3 allows one impostor (0.999) above the threshold: threshold just above 0.998.
        let (tar, threshold) = tar_at_far(&scored, 1e-3);
        assert!(threshold > 0.998 && threshold < 0.9985);
        assert_eq!(tar, 0.5);
    }
}
