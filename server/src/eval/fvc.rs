//! `biomatch eval fvc`: the FVC verification protocol on each set of an
//! FVC-style folder (FVC2002 B: 10 fingers × 8 impressions per set), with
//! the minutiae records as given and biomatch's matcher.
//!
//! Per set it reports the FVC equal error rate twice: `eer` with every
//! cross-finger impostor pair (2 880 for 10 × 8; less sampling noise) and
//! `eer_fvc` with the FVC's 45 first-impression pairs; FNMR at FMR 1 % and
//! 0.1 % (with all impostor pairs); and comparisons per second on one core
//! (the fastest of three passes over all pairs).
//!
//! `--minutiae provided` (the default) uses the `.iso` records as given;
//! `--minutiae extracted` runs biomatch's extractor on the images (at the
//! set's resolution: 569 dpi for DB2, 500 otherwise) and reports the
//! extraction time per image. An image the extractor refuses (no
//! fingerprint found) still takes part, as an empty template scoring 0,
//! and is counted in `failed_extractions`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use biomatch_datasets::errors::{AtFmr, Eer, ScoreSets};
use biomatch_datasets::fvc::{FvcSet, Impression};
use biomatch_engine::finger::{
    Encoder, ExtractParams, Extractor, FingerView, Matcher, Params, Template,
};
use biomatch_engine::imaging::{DecodeLimits, decode_grey};
use rayon::prelude::*;
use serde::Serialize;

use super::report::{Report, ReportArgs, Verification};

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
    /// Where the minutiae come from.
    #[arg(long, value_enum, default_value_t = MinutiaeSource::Provided)]
    pub minutiae: MinutiaeSource,
    /// Report folder (`--calibrate` is refused: the matcher has no manifest yet).
    #[command(flatten)]
    pub output: ReportArgs,
}

/// Source of the minutiae `eval fvc` matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MinutiaeSource {
    /// The `.iso` records beside the images.
    Provided,
    /// biomatch's extractor on the images.
    Extracted,
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
    /// Extraction time per image, milliseconds (median and 90th percentile;
    /// `--minutiae extracted` only).
    pub extract_ms_p50: Option<f64>,
    /// See `extract_ms_p50`.
    pub extract_ms_p90: Option<f64>,
    /// Images the extractor refused (`--minutiae extracted` only).
    pub failed_extractions: usize,
}

/// What `eval fvc` reports.
#[derive(Debug, Serialize)]
pub struct FvcReport {
    /// Where the minutiae came from.
    pub minutiae: MinutiaeSource,
    /// Per set.
    pub sets: Vec<SetReport>,
    /// Mean of the sets' `eer`.
    pub mean_eer: f64,
    /// Mean of the sets' `eer_fvc`.
    pub mean_eer_fvc: f64,
}

/// `biomatch eval fvc`: runs the protocol, prints it, writes the report.
pub fn eval_fvc(args: &FvcArgs) -> Result<()> {
    anyhow::ensure!(
        !args.output.calibrate,
        "--calibrate: finger scores have no model manifest to calibrate; give the server a \
         raw `threshold` (see the FNMR at FMR operating points of this report)"
    );
    let (report, scores) = run_fvc(args)?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_fvc(&report);
    }
    if let Some(dir) = &args.output.report {
        let mut out = Report {
            protocol: "fvc".into(),
            dataset: format!(
                "FVC protocol, {} (minutiae {})",
                args.data.display(),
                serde_json::to_value(args.minutiae)?
                    .as_str()
                    .unwrap_or_default()
            ),
            models: vec!["biomatch-mcc".into()],
            verification: scores
                .iter()
                .map(|(name, s)| Verification::new(name, s, None))
                .collect(),
            identification: vec![],
            calibration: None,
            details: serde_json::to_value(&report)?,
            plots: vec![],
        };
        out.save(dir)?;
    }
    Ok(())
}

/// Runs the protocol on every set; also returns each set's genuine and
/// (all cross-finger) impostor scores.
pub fn run_fvc(args: &FvcArgs) -> Result<(FvcReport, Vec<(String, ScoreSets)>)> {
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
    let extractor = Extractor::new(ExtractParams {
        min_quality: 0,
        ..ExtractParams::default()
    });
    let mut reports = Vec::new();
    let mut scores = Vec::new();
    for set in &sets {
        let views: Vec<(Option<FingerView>, f64)> = match args.minutiae {
            MinutiaeSource::Provided => set
                .impressions
                .iter()
                .map(|imp| Ok((Some(imp.first_view()?), 0.0)))
                .collect::<Result<_>>()?,
            MinutiaeSource::Extracted => set
                .impressions
                .par_iter()
                .map(|imp| extract(&extractor, imp, set.dpi()))
                .collect::<Result<_>>()?,
        };
        let started = Instant::now();
        let empty = FingerView {
            position: 0,
            view_number: 0,
            impression_type: 0,
            quality: 0,
            minutiae: Vec::new(),
            extended: Vec::new(),
        };
        let templates: Vec<Template> = views
            .par_iter()
            .map(|(v, _)| encoder.encode(v.as_ref().unwrap_or(&empty)))
            .collect();
        let encode_ms = started.elapsed().as_secs_f64() * 1e3 / templates.len() as f64
            * rayon::current_num_threads() as f64;
        let (mut report, set_scores) = evaluate(set, &templates, params, encode_ms);
        scores.push((set.name.clone(), set_scores));
        if args.minutiae == MinutiaeSource::Extracted {
            let mut times: Vec<f64> = views.iter().map(|(_, t)| *t).collect();
            times.sort_by(f64::total_cmp);
            report.extract_ms_p50 = Some(times[times.len() / 2]);
            report.extract_ms_p90 = Some(times[times.len() * 9 / 10]);
            report.failed_extractions = views.iter().filter(|(v, _)| v.is_none()).count();
        }
        reports.push(report);
    }
    let mean = |f: fn(&SetReport) -> f64| reports.iter().map(f).sum::<f64>() / reports.len() as f64;
    let report = FvcReport {
        minutiae: args.minutiae,
        mean_eer: mean(|r| r.eer),
        mean_eer_fvc: mean(|r| r.eer_fvc),
        sets: reports,
    };
    Ok((report, scores))
}

/// Extracts one impression's minutiae (at 500 dpi) and the time it took
/// (decoding excluded); `None` when the extractor finds no fingerprint.
fn extract(extractor: &Extractor, imp: &Impression, dpi: f32) -> Result<(Option<FingerView>, f64)> {
    let path = imp
        .image
        .as_ref()
        .with_context(|| format!("{}: no image beside the record", imp.record.display()))?;
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let image = decode_grey(&bytes, &DecodeLimits::default())
        .with_context(|| path.display().to_string())?;
    let started = Instant::now();
    let extraction = extractor.extract(&image, dpi);
    let ms = started.elapsed().as_secs_f64() * 1e3;
    match extraction {
        Ok(e) => Ok((e.record.view_at_500dpi(0), ms)),
        Err(biomatch_engine::Error::NoFinger { reason }) => {
            tracing::warn!(image = %path.display(), %reason, "no fingerprint found");
            Ok((None, ms))
        }
        Err(e) => Err(anyhow::Error::new(e).context(path.display().to_string())),
    }
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

fn evaluate(
    set: &FvcSet,
    templates: &[Template],
    params: Params,
    encode_ms: f64,
) -> (SetReport, ScoreSets) {
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
    let report = SetReport {
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
        extract_ms_p50: None,
        extract_ms_p90: None,
        failed_extractions: 0,
    };
    (report, all)
}

/// Prints the report as a table.
pub fn print_fvc(r: &FvcReport) {
    println!(
        "FVC protocol, minutiae {}, biomatch MCC matcher",
        match r.minutiae {
            MinutiaeSource::Provided => "as provided",
            MinutiaeSource::Extracted => "extracted by biomatch",
        }
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
        if let (Some(p50), Some(p90)) = (s.extract_ms_p50, s.extract_ms_p90) {
            println!(
                "{:8} extraction per image: p50 {p50:.1} ms, p90 {p90:.1} ms; refused {}",
                "", s.failed_extractions
            );
        }
    }
    println!(
        "mean EER {:.2} % (all cross-finger impostors), {:.2} % (FVC 45)",
        r.mean_eer * 100.0,
        r.mean_eer_fvc * 100.0
    );
}
