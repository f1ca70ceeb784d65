//! `biomatch eval fvc` and `biomatch bench finger` end to end on the
//! FVC2002 records in `../shared/datasets` (missing data fails under
//! `CI=true`, skips otherwise).

use std::path::PathBuf;

use biomatch_tests::{biomatch, biomatch_json as json, repo_root, required};

fn fvc() -> Option<PathBuf> {
    let dir = repo_root().join("../shared/datasets/fvc2002");
    required(dir.join("DB1_B/101_1.iso"), "the FVC2002 records").map(|_| dir)
}

#[test]
fn eval_fvc_reports_the_protocol_per_set() {
    let Some(data) = fvc() else { return };
    let r = json(&["eval", "fvc", "--data", data.to_str().unwrap(), "--json"]);
    let sets = r["sets"].as_array().unwrap();
    assert_eq!(sets.len(), 4);
    for s in sets {
        assert_eq!(s["genuine"], 280, "{s}");
        assert_eq!(s["impostors"], 2880);
        assert_eq!(s["fvc_impostors"], 45);
        for field in ["eer", "eer_fvc", "fnmr_at_fmr_1pct", "fnmr_at_fmr_0_1pct"] {
            let v = s[field].as_f64().unwrap();
            assert!((0.0..0.2).contains(&v), "{field} = {v}");
        }
        assert!(s["comparisons_per_s"].as_f64().unwrap() > 1000.0);
    }
    // The matching issue's targets: mean EER ≤ 3.3 %, no set above 5 %
    // (measured: mean 1.89 %, sets 0.70–4.28 %).
    assert!(r["mean_eer"].as_f64().unwrap() <= 0.025, "{r}");
    assert!(sets.iter().all(|s| s["eer"].as_f64().unwrap() <= 0.05));
    // One set by name; an unknown one is an error.
    let one = json(&[
        "eval",
        "fvc",
        "--data",
        data.to_str().unwrap(),
        "--set",
        "DB3_B",
        "--json",
    ]);
    assert_eq!(one["sets"][0]["set"], "DB3_B");
    let out = biomatch()
        .args([
            "eval",
            "fvc",
            "--data",
            data.to_str().unwrap(),
            "--set",
            "DB9_Z",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("DB9_Z"));
}

#[test]
fn bench_finger_compares_two_stage_with_exhaustive() {
    let Some(data) = fvc() else { return };
    let r = json(&[
        "bench",
        "finger",
        "--data",
        data.to_str().unwrap(),
        "--distractors",
        "300",
        "--shortlist",
        "60",
        "--threads",
        "2",
        "--json",
    ]);
    assert_eq!(r["gallery"], 320);
    assert_eq!(r["mates"], 20);
    assert_eq!(r["probes"], 140);
    for field in ["shortlist_recall", "rank1_exhaustive", "rank1_two_stage"] {
        let v = r[field].as_f64().unwrap();
        assert!((0.5..=1.0).contains(&v), "{field} = {v}");
    }
    // Two-stage cannot find a mate the shortlist lost.
    assert!(r["rank1_two_stage"].as_f64() <= r["shortlist_recall"].as_f64());
    for field in [
        "comparisons_per_s",
        "exhaustive_ms",
        "two_stage_ms",
        "speedup",
    ] {
        assert!(r[field].as_f64().unwrap() > 0.0, "{field}");
    }
}

#[test]
fn eval_fvc_with_extracted_minutiae() {
    let Some(data) = fvc() else { return };
    let r = json(&[
        "eval",
        "fvc",
        "--data",
        data.to_str().unwrap(),
        "--minutiae",
        "extracted",
        "--json",
    ]);
    assert_eq!(r["minutiae"], "extracted");
    let sets = r["sets"].as_array().unwrap();
    assert_eq!(sets.len(), 4);
    for s in sets {
        assert_eq!(s["genuine"], 280, "{s}");
        assert_eq!(s["failed_extractions"], 0, "{s}");
        assert!(s["extract_ms_p50"].as_f64().unwrap() > 0.0, "{s}");
        // The extraction issue's target: no set above 4 % (measured:
        // 1.06–3.64 %, see the README).
        assert!(s["eer"].as_f64().unwrap() <= 0.04, "{s}");
    }
    // And a mean ≤ 2.5 % (measured: 2.37 %).
    assert!(r["mean_eer"].as_f64().unwrap() <= 0.025, "{r}");
}

#[test]
fn finger_extract_writes_an_iso_record_and_render_a_png() {
    let Some(data) = fvc() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let image = data.join("DB2_B/104_2.png");
    let iso = tmp.path().join("out.iso");
    let r = json(&[
        "finger",
        "extract",
        image.to_str().unwrap(),
        "--dpi",
        "569",
        "--iso",
        iso.to_str().unwrap(),
    ]);
    let record = std::fs::read(&iso).unwrap();
    assert_eq!(&record[..8], b"FMR\0 20\0");
    // Header: the image's own size (296 × 560) and resolution (569 dpi = 224 px/cm).
    assert_eq!(u16::from_be_bytes([record[14], record[15]]), 296);
    assert_eq!(u16::from_be_bytes([record[16], record[17]]), 560);
    assert_eq!(u16::from_be_bytes([record[18], record[19]]), 224);
    let n = r["minutiae"].as_array().unwrap().len();
    assert_eq!(record[27] as usize, n);
    assert!(n >= 10, "{r}");
    assert!(r["quality"]["score"].as_u64().unwrap() >= 20, "{r}");

    let png = tmp.path().join("render.png");
    let out = biomatch()
        .args(["finger", "render", image.to_str().unwrap(), "--dpi", "569"])
        .args(["--out", png.to_str().unwrap(), "--zoom", "2"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[1..4], b"PNG");
    // 2 × 296 wide, 2 × 560 high.
    assert_eq!(u32::from_be_bytes(bytes[16..20].try_into().unwrap()), 592);
    assert_eq!(u32::from_be_bytes(bytes[20..24].try_into().unwrap()), 1120);

    // A truncated image is refused with a clear message, not a panic.
    let cut = tmp.path().join("cut.png");
    let whole = std::fs::read(&image).unwrap();
    std::fs::write(&cut, &whole[..whole.len() / 2]).unwrap();
    let out = biomatch()
        .args(["finger", "extract", cut.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("invalid image"), "{err}");
}
