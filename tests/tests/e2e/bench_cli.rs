//! `biomatch bench …` end to end: flat, gallery and http run on generated
//! data and print the documented JSON objects; compare agrees with faiss
//! where both sides are exact.

use biomatch_tests::{biomatch, json_stdout, repo_root, required};

#[test]
fn bench_flat_prints_the_documented_json() {
    let dir = tempfile::tempdir().unwrap();
    for dtype in ["f32", "i8"] {
        let data = dir.path().join(dtype);
        // The same data set each time (3 000 × 64 of `dtype` in `data`).
        let run = |options: &[&str]| {
            json_stdout(
                biomatch()
                    .args(["bench", "flat", "--n", "3000", "--dim", "64"])
                    .args(["--dtype", dtype, "--bandwidth-mib", "16", "--json"])
                    .args(options)
                    .arg("--data-dir")
                    .arg(&data),
            )
        };
        let report = run(&[
            "--queries",
            "20",
            "--batch",
            "8",
            "--rounds",
            "2",
            "--threads",
            "2",
        ]);
        for field in [
            "single_query_ms_p50",
            "scan_gbps",
            "mem_read_gbps",
            "batch_queries_per_s",
            "int8_peak_gmacs",
            "f32_peak_gflops",
            "scan_fraction_of_mem_read",
        ] {
            let v = report[field]
                .as_f64()
                .unwrap_or_else(|| panic!("{field} missing: {report}"));
            assert!(v > 0.0 && v.is_finite(), "{field} = {v}");
        }
        assert!(report["backend"].as_str().is_some());
        assert_eq!(report["n"], 3000);
        // 24 blocks of 128 rows: f32 rows are 64 × 4 bytes, i8 rows 64 code
        // bytes plus a 4-byte code sum.
        let row_bytes = if dtype == "i8" { 68 } else { 256 };
        assert_eq!(report["scan_bytes"], 24 * 128 * row_bytes);
        let fraction = if dtype == "i8" {
            "batch_fraction_of_int8_peak"
        } else {
            "batch_fraction_of_f32_peak"
        };
        assert!(
            report[fraction].as_f64().is_some(),
            "{fraction} missing: {report}"
        );
        assert!(
            report["build_s"].as_f64().is_some(),
            "first run builds the data"
        );

        // The second run reuses the data on disk.
        let report = run(&["--queries", "5", "--batch", "4", "--rounds", "1"]);
        assert!(
            report["build_s"].is_null(),
            "reused data reports no build time: {report}"
        );
    }
}

#[test]
fn bench_flat_rejects_bad_arguments() {
    let out = biomatch()
        .args(["bench", "flat", "--n", "10", "--dim", "8", "--dtype", "f64"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected f32, f16 or i8"));
}

#[test]
fn bench_gallery_prints_the_documented_json() {
    let dir = tempfile::tempdir().unwrap();
    let report = json_stdout(
        biomatch()
            .args([
                "bench", "gallery", "--n", "2000", "--dim", "32", "--batch", "64",
            ])
            .args([
                "--single",
                "20",
                "--queries",
                "10",
                "--threads",
                "2",
                "--json",
                "--data-dir",
            ])
            .arg(dir.path().join("gallery")),
    );
    for field in [
        "single_enroll_per_s",
        "batch_enroll_per_s",
        "open_warm_s",
        "open_cold_s",
        "cold_rebuild_rows_per_s",
        "identify_ms_p50_idle",
        "identify_ms_p50_writing",
        "catalog_bytes",
        "index_bytes",
    ] {
        let v = report[field]
            .as_f64()
            .unwrap_or_else(|| panic!("{field} missing: {report}"));
        assert!(v > 0.0 && v.is_finite(), "{field} = {v}");
    }
    assert_eq!(report["n"], 2000);
}

#[test]
fn bench_http_loads_a_running_server() {
    let server = biomatch_tests::Server::start(&[]).unwrap();
    let r = json_stdout(
        biomatch()
            .args([
                "bench",
                "http",
                "--subjects",
                "300",
                "--concurrency",
                "2",
                "--requests",
                "10",
                "--json",
            ])
            .arg("--url")
            .arg(&server.url)
            .arg("--data")
            .arg(biomatch_tests::repo_root().join("../shared/datasets/lfw")),
    );
    assert_eq!(r["gallery_subjects"], 305, "{r}");
    let workloads = r["workloads"].as_array().unwrap();
    assert_eq!(workloads.len(), 4);
    for w in workloads {
        assert_eq!(w["errors"], 0, "{w}");
        assert!(
            w["per_second"].as_f64().unwrap() > 0.0
                && w["p99_ms"].as_f64().unwrap() >= w["p50_ms"].as_f64().unwrap()
        );
    }
}

/// `bench compare` on a small set: the harness's own correctness — exact
/// configurations agree with faiss's ground truth, IVF scanning every
/// list is exact, and both threshold searches find the same hits.
/// Needs faiss (`scripts/setup-faiss`, which `scripts/test` runs): fails
/// under `CI=true` without it, skips otherwise.
#[test]
fn bench_compare_agrees_with_faiss_on_exact_configurations() {
    let python = std::env::var_os("BIOMATCH_PYTHON")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".tools/py/bin/python"));
    let Some(python) = required(python, "faiss python (scripts/setup-faiss)") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let r = json_stdout(
        biomatch()
            .current_dir(repo_root())
            .args([
                "bench",
                "compare",
                "--n",
                "5000",
                "--dims",
                "32",
                "--queries",
                "64",
                "--single-queries",
                "8",
                "--rounds",
                "1",
                "--nlist",
                "16",
                "--nprobe",
                "16",
                "--ef",
                "64",
                "--threshold",
                "0.45",
                "--json",
                "--data",
            ])
            .arg(tmp.path())
            .arg("--python")
            .arg(&python),
    );
    let rows = r["rows"].as_array().unwrap();
    // 3 pairs × (single, batch64, batch1024) + f32 threshold + HNSW + IVF.
    assert_eq!(rows.len(), 12, "{r}");
    for row in rows {
        assert!(row["biomatch_qps"].as_f64().unwrap() > 0.0, "{row}");
        assert!(row["faiss_qps"].as_f64().unwrap() > 0.0, "{row}");
        if let Some(recall) = row["biomatch_recall"].as_f64() {
            assert!(recall >= 0.99, "biomatch is exact: {row}");
        }
        match row["faiss"].as_str().unwrap() {
            "Flat" | "IVF16 nprobe=16" => {
                if let Some(recall) = row["faiss_recall"].as_f64() {
                    assert!(recall >= 0.99, "{row}");
                }
            }
            _ => {}
        }
        if let Some(hits) = row["hits"].as_array() {
            // Same threshold, same hits, but for scores within float
            // rounding of it (the two sides sum in different orders).
            let (a, b) = (hits[0].as_i64().unwrap(), hits[1].as_i64().unwrap());
            assert!((a - b).abs() <= 2, "{row}");
            assert!(hits[0].as_u64().unwrap() > 0, "{row}");
        }
    }
    assert!(r["machine"]["bandwidth_gbps"].as_f64().unwrap() > 0.0);
}
