//! `biomatch eval fvc`: the FVC verification protocol on each set of an
//! FVC-style folder (FVC2002 B: 10 fingers × 8 impressions per set), with
//! the minutiae records as given and biomatch's matcher.
//!
//! Per set it reports the FVC equal error rate twice: `eer` with every
//! cross-finger impostor pair (2 880 for 10 × 8; less sampling noise) and
//! `eer_fvc` with the FVC's 45 first-impression pairs; FNMR at FMR 1 % and
//! 0.1 % (with all impostor pairs); and comparisons per second on one core
//! (the fastest of three passes over all pairs).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use biomatch_datasets::errors::{AtFmr, Eer, ScoreSets};
use biomatch_datasets::fvc::FvcSet;
use biomatch_engine::finger::{Encoder, Matcher, Params, Template};
use rayon::prelude::*;
use serde::Serialize;

/// `biomatch eval fvc` arguments.
#[derive(Debug, clap::Args)]
pub struct FvcArgs {
    /// Folder with the sets (`DB1_B`, … with `F_I.iso` records).
    #[arg(long, default_value = "../shared/datasets/fvc2002")]
    pub data: PathBuf,
    /// Only these sets (folder names); default: all.
    #[arg(long = "set")]
    pub sets: Vec<String>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// One set's results.
#[derive(Debug, Serialize)]
pub struct SetReport {
    /// Set name.
    pub set: String,
    /// Impressions (templates).
    pub templates: usize,
    /// Median minutiae per record.
    pub minutiae_median: usize,
    /// Genuine comparisons.
    pub genuine: usize,
    /// Cross-finger impostor comparisons.
    pub impostors: usize,
    /// FVC first-impression impostor comparisons.
    pub fvc_impostors: usize,
    /// EER with every cross-finger impostor pair.
    pub eer: f64,
    /// Its bracket and threshold.
    pub eer_detail: Eer,
    /// EER with the FVC's first-impression impostor pairs.
    pub eer_fvc: f64,
    /// FNMR at FMR 1 % (all impostor pairs).
    pub fnmr_at_fmr_1pct: f64,
    /// FNMR at FMR 0.1 % (all impostor pairs).
    pub fnmr_at_fmr_0_1pct: f64,
    /// Details of the two operating points.
    pub operating_points: [AtFmr; 2],
    /// Mean genuine and impostor score.
    pub mean_scores: [f64; 2],
    /// Comparisons per second on one core (templates prepared beforehand).
    pub comparisons_per_s: f64,
    /// Mean time to parse and prepare one record, milliseconds.
    pub encode_ms: f64,
}

/// What `eval fvc` reports.
#[derive(Debug, Serialize)]
pub struct FvcReport {
    /// Where the minutiae came from.
    pub minutiae: &'static str,
    /// Per set.
    pub sets: Vec<SetReport>,
    /// Mean of the sets' `eer`.
    pub mean_eer: f64,
    /// Mean of the sets' `eer_fvc`.
    pub mean_eer_fvc: f64,
}

/// Runs the protocol on every set.
pub fn run_fvc(args: &FvcArgs) -> Result<FvcReport> {
    let mut sets = FvcSet::load_all(&args.data)?;
    if !args.sets.is_empty() {
        sets.retain(|s| args.sets.contains(&s.name));
        anyhow::ensure!(
            !sets.is_empty(),
            "no set named {:?} in {}",
            args.sets,
            args.data.display()
        );
    }
    let params = Params::default();
    let encoder = Encoder::new(params);
    let mut reports = Vec::new();
    for set in &sets {
        let started = Instant::now();
        let templates: Vec<Template> = set
            .impressions
            .par_iter()
            .map(|imp| Ok(encoder.encode(&imp.first_view()?)))
            .collect::<Result<_>>()?;
        let encode_ms = started.elapsed().as_secs_f64() * 1e3 / templates.len() as f64
            * rayon::current_num_threads() as f64;
        reports.push(evaluate(set, &templates, params, encode_ms));
    }
    let mean = |f: fn(&SetReport) -> f64| reports.iter().map(f).sum::<f64>() / reports.len() as f64;
    Ok(FvcReport {
        minutiae: "provided",
        mean_eer: mean(|r| r.eer),
        mean_eer_fvc: mean(|r| r.eer_fvc),
        sets: reports,
    })
}

/// Scores every distinct pair on this thread (`scores[a · n + b]`, `a <
/// b`); the fastest of three passes gives comparisons per second on one
/// core (the machine is shared).
pub fn score_all_pairs(templates: &[&Template], params: Params) -> (Vec<f32>, f64) {
    let mut matcher = Matcher::new(params);
    let n = templates.len();
    let mut scores = vec![0f32; n * n];
    let mut fastest = f64::INFINITY;
    for _ in 0..3 {
        let started = Instant::now();
        for a in 0..n {
            for b in a + 1..n {
                scores[a * n + b] = matcher.score(templates[a], templates[b]);
            }
        }
        fastest = fastest.min(started.elapsed().as_secs_f64());
    }
    (scores, (n * n.saturating_sub(1) / 2) as f64 / fastest)
}

fn evaluate(set: &FvcSet, templates: &[Template], params: Params, encode_ms: f64) -> SetReport {
    let protocol = set.protocol();
    let n = templates.len();
    let refs: Vec<&Template> = templates.iter().collect();
    let (scores, comparisons_per_s) = score_all_pairs(&refs, params);
    let pick = |pairs: &[(usize, usize)]| -> Vec<f32> {
        pairs.iter().map(|&(a, b)| scores[a * n + b]).collect()
    };
    let genuine = pick(&protocol.genuine);
    let all = ScoreSets::new(genuine.clone(), pick(&protocol.all_impostors));
    let fvc = ScoreSets::new(genuine.clone(), pick(&protocol.fvc_impostors));
    let eer = all.eer();
    let points = [all.fnmr_at_fmr(0.01), all.fnmr_at_fmr(0.001)];
    let mean = |v: &[f32]| v.iter().map(|&s| s as f64).sum::<f64>() / v.len().max(1) as f64;
    let mut counts: Vec<usize> = templates.iter().map(Template::len).collect();
    counts.sort_unstable();
    SetReport {
        set: set.name.clone(),
        templates: n,
        minutiae_median: counts[counts.len() / 2],
        genuine: protocol.genuine.len(),
        impostors: protocol.all_impostors.len(),
        fvc_impostors: protocol.fvc_impostors.len(),
        eer: eer.eer,
        eer_detail: eer,
        eer_fvc: fvc.eer().eer,
        fnmr_at_fmr_1pct: points[0].fnmr,
        fnmr_at_fmr_0_1pct: points[1].fnmr,
        operating_points: points,
        mean_scores: [mean(all.genuine()), mean(all.impostor())],
        comparisons_per_s,
        encode_ms,
    }
}

/// Prints the report as a table.
pub fn print_fvc(r: &FvcReport) {
    println!(
        "FVC protocol, minutiae {}, biomatch MCC matcher",
        r.minutiae
    );
    println!(
        "{:8} {:>5} {:>6} {:>7} {:>8} {:>9} {:>10} {:>10} {:>9}",
        "set", "n", "min.", "EER %", "EER45 %", "FNMR@1%", "FNMR@0.1%", "cmp/s", "enc ms"
    );
    for s in &r.sets {
        println!(
            "{:8} {:>5} {:>6} {:>7.2} {:>8.2} {:>9.2} {:>10.2} {:>10.0} {:>9.3}",
            s.set,
            s.templates,
            s.minutiae_median,
            s.eer * 100.0,
            s.eer_fvc * 100.0,
            s.fnmr_at_fmr_1pct * 100.0,
            s.fnmr_at_fmr_0_1pct * 100.0,
            s.comparisons_per_s,
            s.encode_ms
        );
    }
    println!(
        "mean EER {:.2} % (all cross-finger impostors), {:.2} % (FVC 45)",
        r.mean_eer * 100.0,
        r.mean_eer_fvc * 100.0
    );
}
