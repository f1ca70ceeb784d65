//! The one report every `biomatch eval` protocol writes with `--report
//! DIR`: `report.json` (error rates, curves, histograms, the protocol's own
//! details) and charts as SVG and PNG — `det` (FNMR against FMR per score
//! set), `hist_<name>` (genuine and impostor score densities), and for 1:N
//! protocols `cmc` and `fnir_fpir`.
//!
//! `--calibrate` turns a report's largest impostor score set into decision
//! thresholds for FMR 10⁻² … 10⁻⁶ (and its non-mated searches into FPIR
//! thresholds) and writes them into the model manifest ([`calibrate`]).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use biomatch_datasets::errors::{
    AtFmr, Calibrated, DetPoint, Eer, Histogram, MIN_TAIL, ScoreSets, TAIL_METHOD,
};
use biomatch_datasets::identification::{AtFpir, IdentPoint, Identification};
use biomatch_datasets::metrics::KFold;
use serde::Serialize;

use super::plot::{Axis, Chart, Series, density_steps};
use crate::models::ModelArgs;

/// Target rates of the operating points reported and calibrated.
pub const RATES: [f64; 5] = [1e-2, 1e-3, 1e-4, 1e-5, 1e-6];

/// Rank limit of the reported FNIR (NIST reports rank 1 for investigation
/// and a short candidate list for identification).
pub const CANDIDATES: usize = 20;

const DET_POINTS: usize = 400;
const BINS: usize = 60;

/// Command-line options shared by every protocol.
#[derive(Debug, Clone, clap::Args)]
pub struct ReportArgs {
    /// Write report.json and the charts (SVG and PNG) into this folder.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Write thresholds for FMR 1e-2 … 1e-6 (and FPIR where the protocol
    /// has non-mated searches) into the model manifest.
    #[arg(long)]
    pub calibrate: bool,
}

/// Genuine/impostor histograms over one range.
#[derive(Debug, Clone, Serialize)]
pub struct Histograms {
    /// Genuine (mated) scores.
    pub genuine: Histogram,
    /// Impostor (non-mated) scores.
    pub impostor: Histogram,
}

/// Verification (1:1) results of one score set.
#[derive(Debug, Clone, Serialize)]
pub struct Verification {
    /// Name of the score set (a model id, an FVC set, …).
    pub name: String,
    /// Genuine comparisons.
    pub genuine: usize,
    /// Impostor comparisons.
    pub impostor: usize,
    /// FVC equal error rate.
    pub eer: Eer,
    /// FNMR at FMR 1e-2 … 1e-6 where at least one impostor score can
    /// separate the rate (`fmr_target · impostors ≥ 1`); TAR = 1 − FNMR.
    pub fnmr_at_fmr: Vec<AtFmr>,
    /// 10-fold accuracy, for protocols with folds.
    pub kfold: Option<KFold>,
    /// The DET curve (thinned).
    pub det: Vec<DetPoint>,
    /// Score densities.
    pub histograms: Histograms,
}

impl Verification {
    /// Measures a score set.
    pub fn new(name: &str, scores: &ScoreSets, kfold: Option<KFold>) -> Verification {
        let (g, i) = (scores.genuine(), scores.impostor());
        let lo = g
            .first()
            .into_iter()
            .chain(i.first())
            .fold(f32::INFINITY, |a, &b| a.min(b));
        let hi = g
            .last()
            .into_iter()
            .chain(i.last())
            .fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        let (lo, hi) = if lo < hi { (lo, hi) } else { (0.0, 1.0) };
        Verification {
            name: name.to_string(),
            genuine: g.len(),
            impostor: i.len(),
            eer: scores.eer(),
            fnmr_at_fmr: RATES
                .iter()
                .filter(|&&r| r * i.len() as f64 >= 1.0)
                .map(|&r| scores.fnmr_at_fmr(r))
                .collect(),
            kfold,
            det: scores.det(DET_POINTS),
            histograms: Histograms {
                genuine: Histogram::new(g, lo, hi, BINS),
                impostor: Histogram::new(i, lo, hi, BINS),
            },
        }
    }
}

/// Open-set identification (1:N) results.
#[derive(Debug, Clone, Serialize)]
pub struct IdentificationReport {
    /// Name of the search set.
    pub name: String,
    /// Enrolled templates.
    pub gallery: usize,
    /// Mated searches.
    pub mated: usize,
    /// Non-mated searches.
    pub nonmated: usize,
    /// Fraction of mated searches with the mate first.
    pub rank1: f64,
    /// CMC at ranks 1 ..= [`CANDIDATES`].
    pub cmc: Vec<f64>,
    /// FNIR (rank 1) at FPIR 1e-1 … where the non-mated searches reach it.
    pub fnir_at_fpir_rank1: Vec<AtFpir>,
    /// FNIR with the mate anywhere in the first [`CANDIDATES`].
    pub fnir_at_fpir: Vec<AtFpir>,
    /// FNIR (rank 1) against FPIR (thinned).
    pub curve: Vec<IdentPoint>,
    /// Mate scores and best non-mated scores.
    pub histograms: Histograms,
}

impl IdentificationReport {
    /// Measures a set of searches against a gallery of `gallery` templates.
    pub fn new(name: &str, gallery: usize, id: &Identification) -> IdentificationReport {
        let rates: Vec<f64> = [1e-1]
            .iter()
            .chain(&RATES)
            .copied()
            .filter(|&r| r * id.nonmated().len() as f64 >= 1.0)
            .collect();
        let (genuine, impostor) = id.histograms(BINS);
        IdentificationReport {
            name: name.to_string(),
            gallery,
            mated: id.mated().len(),
            nonmated: id.nonmated().len(),
            rank1: id.rank1(),
            cmc: id.cmc(CANDIDATES),
            fnir_at_fpir_rank1: rates.iter().map(|&r| id.fnir_at_fpir(r, 1)).collect(),
            fnir_at_fpir: rates
                .iter()
                .map(|&r| id.fnir_at_fpir(r, CANDIDATES))
                .collect(),
            curve: id.curve(1, DET_POINTS),
            histograms: Histograms { genuine, impostor },
        }
    }
}

/// Thresholds written (or that would be written) into a manifest.
#[derive(Debug, Clone, Serialize)]
pub struct CalibrationReport {
    /// The manifest written, if any.
    pub manifest: Option<PathBuf>,
    /// Thresholds for FMR targets.
    pub fmr: Vec<Calibrated>,
    /// Thresholds for FPIR targets (measured only).
    pub fpir: Vec<AtFpir>,
    /// Gallery size the FPIR thresholds hold for.
    pub fpir_gallery_size: usize,
}

/// What `biomatch eval … --report DIR` writes as `report.json`.
#[derive(Debug, Serialize)]
pub struct Report {
    /// Protocol (`lfw`, `lfw-1n`, `fvc`, `synthetic`).
    pub protocol: String,
    /// Dataset folder, or the generator's parameters.
    pub dataset: String,
    /// Models by manifest id (or the matcher's name).
    pub models: Vec<String>,
    /// Verification results per score set.
    pub verification: Vec<Verification>,
    /// Identification results, for 1:N protocols.
    pub identification: Vec<IdentificationReport>,
    /// Thresholds derived with `--calibrate`.
    pub calibration: Option<CalibrationReport>,
    /// The protocol's own measurements (the JSON its `--json` prints).
    pub details: serde_json::Value,
    /// Charts written beside report.json.
    pub plots: Vec<PathBuf>,
}

impl Report {
    /// Writes the charts and `report.json` into `dir` (created).
    pub fn write(&mut self, dir: &Path) -> Result<PathBuf> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        self.plots = self.charts(dir)?;
        let path = dir.join("report.json");
        let tmp = dir.join("report.json.tmp");
        let json = serde_json::to_vec_pretty(self)?;
        std::fs::write(&tmp, json).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }

    /// [`Report::write`], then says where on stderr.
    pub fn save(&mut self, dir: &Path) -> Result<()> {
        let path = self.write(dir)?;
        eprintln!(
            "eval {}: report written to {} ({} charts)",
            self.protocol,
            path.display(),
            self.plots.len()
        );
        Ok(())
    }

    fn charts(&self, dir: &Path) -> Result<Vec<PathBuf>> {
        let mut written = Vec::new();
        if !self.verification.is_empty() {
            // Each axis reaches the rarest rate the largest set measures.
            let fx = log_floor(self.verification.iter().map(|v| v.impostor));
            let fy = log_floor(self.verification.iter().map(|v| v.genuine));
            let det = Chart {
                title: format!("DET — {}", self.protocol),
                x_label: "false match rate (FMR)".into(),
                y_label: "false non-match rate (FNMR)".into(),
                x: Axis::log(fx, 1.0),
                y: Axis::log(fy, 1.0),
                series: self
                    .verification
                    .iter()
                    .map(|v| Series {
                        label: format!("{} (EER {:.2} %)", v.name, v.eer.eer * 100.0),
                        points: v
                            .det
                            .iter()
                            .map(|p| (p.fmr.max(fx), p.fnmr.max(fy)))
                            .collect(),
                    })
                    .collect(),
                legend_low: false,
            };
            written.extend(det.write(dir, "det")?);
            for v in &self.verification {
                written.extend(
                    histogram_chart(
                        &format!("scores — {} {}", self.protocol, v.name),
                        &v.histograms,
                        ["genuine", "impostor"],
                    )
                    .write(dir, &format!("hist_{}", file_stem(&v.name)))?,
                );
            }
        }
        if !self.identification.is_empty() {
            let cmc = Chart {
                title: format!("CMC — {}", self.protocol),
                x_label: "rank".into(),
                y_label: "identification rate".into(),
                x: Axis::linear(1.0, CANDIDATES as f64),
                y: Axis::linear(
                    self.identification
                        .iter()
                        .map(|i| i.cmc[0])
                        .fold(1.0, f64::min)
                        .min(0.98)
                        - 0.02,
                    1.0,
                ),
                series: self
                    .identification
                    .iter()
                    .map(|i| Series {
                        label: format!("{} (rank-1 {:.2} %)", i.name, i.rank1 * 100.0),
                        points: i
                            .cmc
                            .iter()
                            .enumerate()
                            .map(|(r, &c)| ((r + 1) as f64, c))
                            .collect(),
                    })
                    .collect(),
                legend_low: true,
            };
            written.extend(cmc.write(dir, "cmc")?);
            let fx = log_floor(self.identification.iter().map(|i| i.nonmated));
            let fy = log_floor(self.identification.iter().map(|i| i.mated));
            let curve = Chart {
                title: format!("FNIR against FPIR (rank 1) — {}", self.protocol),
                x_label: "false positive identification rate (FPIR)".into(),
                y_label: "false negative identification rate (FNIR)".into(),
                x: Axis::log(fx, 1.0),
                y: Axis::log(fy, 1.0),
                series: self
                    .identification
                    .iter()
                    .map(|i| Series {
                        label: i.name.clone(),
                        points: i
                            .curve
                            .iter()
                            .map(|p| (p.fpir.max(fx), p.fnir.max(fy)))
                            .collect(),
                    })
                    .collect(),
                legend_low: false,
            };
            written.extend(curve.write(dir, "fnir_fpir")?);
            for i in &self.identification {
                written.extend(
                    histogram_chart(
                        &format!("searches — {} {}", self.protocol, i.name),
                        &i.histograms,
                        ["mate", "best non-mate"],
                    )
                    .write(dir, &format!("hist_search_{}", file_stem(&i.name)))?,
                );
            }
        }
        Ok(written)
    }
}

/// The decade below the rarest rate `counts` samples can show (a rate of 0 is drawn there).
fn log_floor(counts: impl Iterator<Item = usize>) -> f64 {
    let most = counts.max().unwrap_or(1).max(1);
    10f64.powf((0.5 / most as f64).log10().floor())
}

fn histogram_chart(title: &str, h: &Histograms, labels: [&str; 2]) -> Chart {
    let steps = [density_steps(&h.genuine), density_steps(&h.impostor)];
    let top = steps
        .iter()
        .flatten()
        .map(|p| p.1)
        .fold(0.0, f64::max)
        .max(1e-9);
    Chart {
        title: title.to_string(),
        x_label: "score".into(),
        y_label: "density".into(),
        x: Axis::linear(h.genuine.lo as f64, h.genuine.hi as f64),
        y: Axis::linear(0.0, top * 1.05),
        series: labels
            .iter()
            .zip(steps)
            .map(|(l, points)| Series {
                label: l.to_string(),
                points,
            })
            .collect(),
        legend_low: false,
    }
}

/// A name made safe for a file name.
fn file_stem(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Thresholds from an impostor score set (and optionally non-mated searches).
pub fn thresholds(
    scores: &ScoreSets,
    searches: Option<(&Identification, usize)>,
) -> CalibrationReport {
    let (fpir, gallery) = match searches {
        Some((id, gallery)) => (
            [1e-1, 1e-2, 1e-3, 1e-4]
                .iter()
                .filter(|&&r| r * id.nonmated().len() as f64 >= MIN_TAIL as f64)
                .map(|&r| id.fnir_at_fpir(r, 1))
                .collect(),
            gallery,
        ),
        None => (Vec::new(), 0),
    };
    CalibrationReport {
        manifest: None,
        fmr: scores.calibrate(&RATES),
        fpir,
        fpir_gallery_size: gallery,
    }
}

/// Writes `calibration`'s thresholds into `manifest` (a model manifest
/// TOML file), keeping its comments: the `fmr_`/`fpir_` keys of
/// `[thresholds]` are replaced, `[calibration]` says where they come from.
pub fn calibrate(
    manifest: &Path,
    calibration: &CalibrationReport,
    dataset: &str,
    command: &str,
    impostor_scores: usize,
    nonmated_searches: usize,
) -> Result<()> {
    use toml_edit::{Array, DocumentMut, Item, Table, value};
    if calibration.fmr.is_empty() {
        bail!("too few impostor scores to calibrate any FMR threshold");
    }
    let text = std::fs::read_to_string(manifest)
        .with_context(|| format!("reading {}", manifest.display()))?;
    let mut doc: DocumentMut = text
        .parse()
        .with_context(|| format!("parsing {}", manifest.display()))?;
    let thresholds = doc
        .entry("thresholds")
        .or_insert(Item::Table(Table::new()))
        .as_table_mut()
        .with_context(|| format!("{}: `thresholds` is not a table", manifest.display()))?;
    let stale: Vec<String> = thresholds
        .iter()
        .map(|(k, _)| k.to_string())
        .filter(|k| k.starts_with("fmr_") || k.starts_with("fpir_"))
        .collect();
    for k in stale {
        thresholds.remove(&k);
    }
    // The comment above the table described the old values.
    thresholds.decor_mut().set_prefix(
        "\n# Calibrated by `biomatch eval --calibrate`: see [calibration] for the data,\n\
         # the method and which values are extrapolated.\n",
    );
    let round = |t: f32| (f64::from(t) * 1e5).round() / 1e5;
    let mut extrapolated = Array::new();
    for c in &calibration.fmr {
        let key = format!("fmr_{:e}", c.fmr);
        thresholds.insert(&key, value(round(c.threshold)));
        if c.extrapolated {
            extrapolated.push(key);
        }
    }
    for f in &calibration.fpir {
        thresholds.insert(
            &format!("fpir_{:e}", f.fpir_target),
            value(round(f.threshold)),
        );
    }
    let mut table = Table::new();
    table.insert("dataset", value(dataset));
    table.insert("command", value(command));
    table.insert(
        "method",
        value(format!(
            "fmr_: the lowest threshold whose impostor FMR is at most the target where at \
             least {MIN_TAIL} impostor scores reach it, else {TAIL_METHOD}; fpir_: the same \
             over the best scores of non-mated searches (measured only)"
        )),
    );
    table.insert("impostor_scores", value(impostor_scores as i64));
    table.insert("nonmated_searches", value(nonmated_searches as i64));
    table.insert(
        "fpir_gallery_size",
        value(calibration.fpir_gallery_size as i64),
    );
    table.insert("extrapolated", value(extrapolated));
    doc.insert("calibration", Item::Table(table));
    let out = doc.to_string();
    // Check the result still parses as a manifest before replacing the file.
    biomatch_engine::embed::ModelManifest::parse(&out, manifest.parent().unwrap_or(Path::new(".")))
        .with_context(|| format!("calibrated {} would not parse", manifest.display()))?;
    let tmp = manifest.with_extension("toml.tmp");
    std::fs::write(&tmp, out).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, manifest).with_context(|| format!("writing {}", manifest.display()))?;
    Ok(())
}

/// Calibrates (when asked) and writes the report (when asked).
pub fn finish(
    report: &mut Report,
    output: &ReportArgs,
    model: &ModelArgs,
    sets: &ScoreSets,
    searches: Option<(&Identification, usize)>,
) -> Result<()> {
    if output.calibrate {
        let mut calibration = thresholds(sets, searches);
        let path = manifest_path(&model.models, &model.embedder)?;
        calibrate(
            &path,
            &calibration,
            &report.dataset,
            &format!("biomatch eval {} --calibrate", report.protocol),
            sets.impostor().len(),
            searches.map_or(0, |(id, _)| id.nonmated().len()),
        )?;
        eprintln!(
            "eval {}: calibrated thresholds written into {} ({})",
            report.protocol,
            path.display(),
            model.embedder
        );
        for c in &calibration.fmr {
            eprintln!(
                "  FMR {:e}: cosine ≥ {:.4}{}",
                c.fmr,
                c.threshold,
                if c.extrapolated {
                    " (extrapolated)"
                } else {
                    ""
                }
            );
        }
        for f in &calibration.fpir {
            eprintln!(
                "  FPIR {:e} (gallery of {}): cosine ≥ {:.4}",
                f.fpir_target, calibration.fpir_gallery_size, f.threshold
            );
        }
        calibration.manifest = Some(path);
        report.calibration = Some(calibration);
    }
    if let Some(dir) = &output.report {
        report.save(dir)?;
    }
    Ok(())
}

/// The file of the manifest with this id in `dir`.
fn manifest_path(dir: &Path, id: &str) -> Result<PathBuf> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "toml")
            && biomatch_engine::embed::ModelManifest::load(&path).is_ok_and(|m| m.id == id)
        {
            return Ok(path);
        }
    }
    anyhow::bail!("no manifest with id `{id}` in {}", dir.display())
}

#[cfg(test)]
mod tests {
    use super::*;
    use biomatch_datasets::identification::MatedSearch;

    fn scores() -> ScoreSets {
        let impostor: Vec<f32> = (0..20_000).map(|i| (i as f32 / 20_000.0) * 0.6).collect();
        let genuine: Vec<f32> = (0..500).map(|i| 0.4 + i as f32 / 1000.0).collect();
        ScoreSets::new(genuine, impostor)
    }

    #[test]
    fn a_report_writes_json_and_every_chart() {
        let dir = tempfile::tempdir().unwrap();
        let s = scores();
        let id = Identification::new(
            (0..100)
                .map(|i| MatedSearch {
                    mate_score: 0.5 + i as f32 / 400.0,
                    rank: 1 + i % 3,
                })
                .collect(),
            (0..100).map(|i| i as f32 / 200.0).collect(),
        );
        let mut report = Report {
            protocol: "test".into(),
            dataset: "unit".into(),
            models: vec!["m".into()],
            verification: vec![Verification::new("a b", &s, None)],
            identification: vec![IdentificationReport::new("m", 1000, &id)],
            calibration: Some(thresholds(&s, Some((&id, 1000)))),
            details: serde_json::json!({}),
            plots: vec![],
        };
        let path = report.write(dir.path()).unwrap();
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        let names: Vec<String> = dir
            .path()
            .read_dir()
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        for stem in ["det", "hist_a_b", "cmc", "fnir_fpir", "hist_search_m"] {
            for ext in ["svg", "png"] {
                assert!(
                    names.contains(&format!("{stem}.{ext}")),
                    "{stem}.{ext} in {names:?}"
                );
            }
        }
        assert_eq!(json["plots"].as_array().unwrap().len(), 10);
        let v = &json["verification"][0];
        // 20 000 impostors: FMR 1e-2 … 1e-4 are reported, rarer are not.
        assert_eq!(v["fnmr_at_fmr"].as_array().unwrap().len(), 3);
        assert_eq!(
            json["identification"][0]["cmc"].as_array().unwrap().len(),
            CANDIDATES
        );
        // FPIR thresholds need ≥ 10 non-mated searches above: 1e-1 only.
        assert_eq!(json["calibration"]["fpir"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn calibration_rewrites_the_manifest_thresholds_and_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.toml");
        let original = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/mobilefacenet.toml"),
        )
        .unwrap();
        std::fs::write(&path, &original).unwrap();
        let s = scores();
        let c = thresholds(&s, None);
        calibrate(
            &path,
            &c,
            "unit scores",
            "biomatch eval test --calibrate",
            20_000,
            0,
        )
        .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        // Comments survive, but not the one describing the old values;
        // the old provisional key is gone.
        assert!(text.contains("# MobileFaceNet face embedder"));
        assert!(!text.contains("Provisional") && text.contains("# Calibrated by"));
        assert!(!text.contains("\"fmr_0.001\""));
        let m = biomatch_engine::embed::ModelManifest::parse(&text, dir.path()).unwrap();
        assert_eq!(m.thresholds.len(), 5);
        let cal = m.calibration.unwrap();
        // 20 000 impostors measure 1e-2 and 1e-3; 1e-4 … 1e-6 are extrapolated.
        assert_eq!(cal.extrapolated, vec!["fmr_1e-4", "fmr_1e-5", "fmr_1e-6"]);
        assert_eq!(cal.impostor_scores, 20_000);
        let t3 = m.thresholds["fmr_1e-3"];
        assert!((t3 - 0.5994).abs() < 1e-3, "{t3}");
        assert!(m.thresholds["fmr_1e-6"] > m.thresholds["fmr_1e-5"]);
        // A second calibration replaces, not duplicates.
        calibrate(&path, &c, "again", "again", 20_000, 0).unwrap();
        let m = biomatch_engine::embed::ModelManifest::load(&path).unwrap();
        assert_eq!(m.thresholds.len(), 5);
        assert_eq!(m.calibration.unwrap().dataset, "again");
    }
}
