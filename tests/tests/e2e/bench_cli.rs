//! `biomatch bench flat` end to end: it runs on generated data and prints
//! the documented JSON object.

use biomatch_tests::biomatch;

#[test]
fn bench_flat_prints_the_documented_json() {
    let dir = tempfile::tempdir().unwrap();
    for dtype in ["f32", "i8"] {
        let data = dir.path().join(dtype);
        let out = biomatch()
            .args([
                "bench", "flat", "--n", "3000", "--dim", "64", "--dtype", dtype,
            ])
            .args([
                "--queries",
                "20",
                "--batch",
                "8",
                "--rounds",
                "2",
                "--threads",
                "2",
            ])
            .args(["--bandwidth-mib", "16", "--json", "--data-dir"])
            .arg(&data)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
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
        let out = biomatch()
            .args([
                "bench", "flat", "--n", "3000", "--dim", "64", "--dtype", dtype,
            ])
            .args([
                "--queries",
                "5",
                "--batch",
                "4",
                "--rounds",
                "1",
                "--bandwidth-mib",
                "16",
                "--json",
                "--data-dir",
            ])
            .arg(&data)
            .output()
            .unwrap();
        assert!(out.status.success());
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
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
    let out = biomatch()
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
        .arg(dir.path().join("gallery"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
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
    let out = biomatch()
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
        .arg(biomatch_tests::repo_root().join("../shared/datasets/lfw"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
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
