//! `biomatch eval … --report/--calibrate` end to end: the synthetic
//! protocol's report and charts, and LFW 1:N on a slice of LFW calibrating
//! a copy of the models folder whose thresholds a server then uses
//! (missing LFW fails under `CI=true`, skips otherwise).

use std::path::{Path, PathBuf};

use biomatch_tests::{Server, biomatch, biomatch_json, repo_root, required};
use serde_json::{Value, json};

fn run(args: &[&str]) -> std::process::Output {
    biomatch().args(args).output().unwrap()
}

fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = dir
        .read_dir()
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn eval_synthetic_writes_report_json_and_charts() {
    let tmp = tempfile::tempdir().unwrap();
    let report = tmp.path().join("report");
    let args = |dtype: &'static str, dir: &Path| -> Vec<String> {
        [
            "eval",
            "synthetic",
            "--gallery",
            "4000",
            "--probes",
            "400",
            "--dim",
            "64",
            "--dtype",
            dtype,
            "--json",
            "--report",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([dir.to_string_lossy().into_owned()])
        .collect()
    };
    let a = args("i8", &report);
    let r = biomatch_json(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let rank1 = r["rank1"].as_f64().unwrap();
    assert!((0.8..=1.0).contains(&rank1), "{r}");
    let cmc: Vec<f64> = r["cmc"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(cmc.len(), 20);
    assert!(cmc.windows(2).all(|w| w[0] <= w[1]) && cmc[0] == rank1);
    assert_eq!(
        files(&report),
        [
            "cmc.png",
            "cmc.svg",
            "det.png",
            "det.svg",
            "fnir_fpir.png",
            "fnir_fpir.svg",
            "hist_search_synthetic-64d-i8.png",
            "hist_search_synthetic-64d-i8.svg",
            "hist_synthetic-64d-i8.png",
            "hist_synthetic-64d-i8.svg",
            "report.json",
        ]
    );
    let json: Value =
        serde_json::from_slice(&std::fs::read(report.join("report.json")).unwrap()).unwrap();
    assert_eq!(json["protocol"], "synthetic");
    assert_eq!(json["identification"][0]["mated"], 400);
    assert_eq!(json["identification"][0]["nonmated"], 400);
    assert_eq!(json["verification"][0]["genuine"], 400);
    assert_eq!(json["verification"][0]["impostor"], 40_000);
    assert_eq!(json["identification"][0]["rank1"], r["rank1"]);
    let png = std::fs::read(report.join("det.png")).unwrap();
    assert_eq!(&png[1..4], b"PNG");

    // Seeded: f32 storage gives the same vectors; i8 search with exact
    // re-scoring finds the same ranks here.
    let again = biomatch_json(
        &args("f32", &tmp.path().join("f32"))
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert_eq!(again["eer"], r["eer"]);
    assert_eq!(again["cmc"], r["cmc"]);

    // Clear refusals.
    let out = run(&["eval", "synthetic", "--calibrate"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no manifest")
            || String::from_utf8_lossy(&out.stderr).contains("have none")
    );
    let out = run(&["eval", "synthetic", "--gallery", "10", "--probes", "20"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--probes"));
}

/// A slice of LFW: the first `people` identities (by name) as symlinks.
fn lfw_slice(root: &Path, people: usize) -> Option<PathBuf> {
    let lfw = required(repo_root().join("../shared/datasets/lfw/images"), "LFW")?;
    let mut names: Vec<PathBuf> = lfw.read_dir().unwrap().map(|e| e.unwrap().path()).collect();
    names.sort();
    let images = root.join("lfw/images");
    std::fs::create_dir_all(&images).unwrap();
    for dir in names.iter().take(people) {
        std::os::unix::fs::symlink(dir, images.join(dir.file_name().unwrap())).unwrap();
    }
    Some(root.join("lfw"))
}

/// The repository's manifests copied, model files linked.
fn models_copy(root: &Path) -> PathBuf {
    let models = root.join("models");
    std::fs::create_dir_all(&models).unwrap();
    for entry in repo_root().join("models").read_dir().unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap();
        match path.extension().and_then(|e| e.to_str()) {
            Some("toml") => {
                std::fs::copy(&path, models.join(name)).unwrap();
            }
            Some("onnx") => std::os::unix::fs::symlink(&path, models.join(name)).unwrap(),
            _ => {}
        }
    }
    models
}

#[test]
fn eval_lfw_1n_calibrates_the_manifest_and_the_server_uses_it() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(data) = lfw_slice(tmp.path(), 120) else {
        return;
    };
    let models = models_copy(tmp.path());
    let report = tmp.path().join("report");
    let r = biomatch_json(&[
        "eval",
        "lfw-1n",
        "--data",
        data.to_str().unwrap(),
        "--models",
        models.to_str().unwrap(),
        "--threads",
        "2",
        "--json",
        "--calibrate",
        "--report",
        report.to_str().unwrap(),
    ]);
    let details = &r["details"];
    let (gallery, probes) = (
        details["gallery"].as_u64().unwrap(),
        details["probes"].as_u64().unwrap(),
    );
    assert_eq!(gallery, 120);
    assert!(probes > 20, "{r}");
    assert!(r["rank1"].as_f64().unwrap() > 0.8, "{r}");
    let json: Value =
        serde_json::from_slice(&std::fs::read(report.join("report.json")).unwrap()).unwrap();
    // Every probe against every non-mate: the calibration's impostor set.
    assert_eq!(
        json["verification"][0]["impostor"].as_u64().unwrap(),
        probes * (gallery - 1)
    );
    assert!(files(&report).contains(&"cmc.svg".to_string()));

    // The manifest now holds calibrated thresholds with their provenance.
    let text = std::fs::read_to_string(models.join("mobilefacenet.toml")).unwrap();
    let manifest: toml::Table = text.parse().unwrap();
    let thresholds = manifest["thresholds"].as_table().unwrap();
    for key in ["fmr_1e-2", "fmr_1e-3", "fmr_1e-4", "fmr_1e-5", "fmr_1e-6"] {
        assert!(thresholds[key].as_float().is_some(), "{key}: {text}");
    }
    let calibration = manifest["calibration"].as_table().unwrap();
    assert_eq!(
        calibration["impostor_scores"].as_integer().unwrap() as u64,
        probes * (gallery - 1)
    );
    let extrapolated = calibration["extrapolated"].as_array().unwrap();
    assert!(
        extrapolated.iter().any(|k| k.as_str() == Some("fmr_1e-6")),
        "{text}"
    );
    let t6 = thresholds["fmr_1e-6"].as_float().unwrap();
    let t2 = thresholds["fmr_1e-2"].as_float().unwrap();
    assert!(t6 > t2, "{text}");

    // A server on that models folder decides with them.
    let server =
        Server::start(&[("BIOMATCH__EMBED__MODELS_DIR", models.to_str().unwrap())]).unwrap();
    let mut a = vec![0.0f32; 128];
    let mut b = vec![0.0f32; 128];
    a[0] = 1.0;
    b[1] = 1.0;
    for (fmr, expected) in [(1e-6, t6), (1e-2, t2)] {
        let (s, body) = server
            .json(
                "POST",
                "/v1/compare",
                &json!({"a": {"face": {"template": a}}, "b": {"face": {"template": b}}, "fmr": fmr}),
            )
            .unwrap();
        assert_eq!(s, 200, "{body}");
        let got = body["threshold"].as_f64().unwrap();
        assert!(
            (got - expected).abs() < 1e-5,
            "fmr {fmr}: {got} vs {expected}"
        );
    }
    // Below the rarest calibrated rate: a clear 422.
    let (s, body) = server
        .json(
            "POST",
            "/v1/compare",
            &json!({"a": {"face": {"template": a}}, "b": {"face": {"template": b}}, "fmr": 1e-9}),
        )
        .unwrap();
    assert_eq!(s, 422, "{body}");
}

#[test]
fn eval_fvc_reports_each_set_as_a_score_set() {
    let data = repo_root().join("../shared/datasets/fvc2002");
    if required(data.join("DB1_B/101_1.iso"), "FVC2002").is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let report = tmp.path().join("fvc");
    let r = biomatch_json(&[
        "eval",
        "fvc",
        "--data",
        data.to_str().unwrap(),
        "--set",
        "DB1_B",
        "--set",
        "DB3_B",
        "--json",
        "--report",
        report.to_str().unwrap(),
    ]);
    let json: Value =
        serde_json::from_slice(&std::fs::read(report.join("report.json")).unwrap()).unwrap();
    let sets = json["verification"].as_array().unwrap();
    assert_eq!(sets.len(), 2);
    for (set, detail) in sets.iter().zip(r["sets"].as_array().unwrap()) {
        assert_eq!(set["name"], detail["set"]);
        assert_eq!(set["genuine"], 280);
        assert_eq!(set["impostor"], 2880);
        // The same EER as the protocol's own table.
        assert_eq!(set["eer"]["eer"], detail["eer"]);
    }
    for name in ["det.svg", "det.png", "hist_DB1_B.svg", "hist_DB3_B.png"] {
        assert!(report.join(name).is_file(), "{name}");
    }
    // Finger scores have no manifest to calibrate: refused, clearly.
    let out = run(&[
        "eval",
        "fvc",
        "--data",
        data.to_str().unwrap(),
        "--calibrate",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no model manifest"));
}
