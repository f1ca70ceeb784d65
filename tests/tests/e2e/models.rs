//! Model files and the face runtime end to end: `biomatch models install`
//! (copy, verify, refuse a bad digest), start-up errors when ONNX Runtime
//! is missing, the models a running server reports, and `bench embed`.

use biomatch_tests::{Server, biomatch, repo_root};

/// A models folder holding the tiny generated model's manifest, and a
/// mirror holding its file.
fn tiny_setup() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let (models, mirror) = (tmp.path().join("models"), tmp.path().join("mirror"));
    std::fs::create_dir_all(&models).unwrap();
    std::fs::create_dir_all(&mirror).unwrap();
    let testdata = repo_root().join("models/testdata");
    std::fs::copy(
        testdata.join("tiny-finger-embed.toml"),
        models.join("tiny-finger-embed.toml"),
    )
    .unwrap();
    std::fs::copy(
        testdata.join("tiny_finger_embed.onnx"),
        mirror.join("tiny_finger_embed.onnx"),
    )
    .unwrap();
    (tmp, models, mirror)
}

fn install(models: &std::path::Path, mirror: &std::path::Path) -> std::process::Output {
    biomatch()
        .args(["models", "install", "--models"])
        .arg(models)
        .arg("--mirror")
        .arg(mirror)
        .output()
        .unwrap()
}

#[test]
fn models_install_copies_verifies_and_refuses_a_bad_digest() {
    let (_tmp, models, mirror) = tiny_setup();
    let out = install(&models, &mirror);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "tiny-finger-embed: Copied"
    );
    let out = install(&models, &mirror);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "tiny-finger-embed: Present"
    );

    // A tampered mirror file is refused and nothing is installed.
    std::fs::remove_file(models.join("tiny_finger_embed.onnx")).unwrap();
    let mut bytes = std::fs::read(mirror.join("tiny_finger_embed.onnx")).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xFF;
    std::fs::write(mirror.join("tiny_finger_embed.onnx"), bytes).unwrap();
    let out = install(&models, &mirror);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("checksum mismatch"), "{stderr}");
    let left: Vec<_> = std::fs::read_dir(&models)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        left,
        vec![std::ffi::OsString::from("tiny-finger-embed.toml")],
        "no partial file left"
    );

    // An empty mirror names the mirror and the way out.
    std::fs::remove_file(mirror.join("tiny_finger_embed.onnx")).unwrap();
    let out = install(&models, &mirror);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("not in the mirror") && stderr.contains("BIOMATCH_MODEL_MIRROR"),
        "{stderr}"
    );
}

#[test]
fn serve_without_onnxruntime_fails_at_start_naming_both_settings() {
    let data = tempfile::tempdir().unwrap();
    // Neither setting.
    let out = biomatch()
        .arg("serve")
        .env_remove("ORT_DYLIB_PATH")
        .env("BIOMATCH__SERVER__LISTEN", "127.0.0.1:0")
        .env("BIOMATCH__STORAGE__DATA_DIR", data.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("embed.onnxruntime") && stderr.contains("ORT_DYLIB_PATH"),
        "{stderr}"
    );
    // A path that does not exist.
    let out = biomatch()
        .arg("serve")
        .env(
            "BIOMATCH__EMBED__ONNXRUNTIME",
            "/nonexistent/libonnxruntime.so",
        )
        .env("BIOMATCH__SERVER__LISTEN", "127.0.0.1:0")
        .env("BIOMATCH__STORAGE__DATA_DIR", data.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("/nonexistent/libonnxruntime.so") && stderr.contains("ORT_DYLIB_PATH"),
        "{stderr}"
    );
}

#[test]
fn health_reports_the_face_models() {
    let server = Server::start(&[]).unwrap();
    let (status, body) = server.get("/health").unwrap();
    assert_eq!(status, 200);
    let face = &body["face_models"];
    assert!(
        face["detector"].as_str().unwrap().starts_with("yunet@"),
        "{body}"
    );
    assert!(
        face["embedder"]
            .as_str()
            .unwrap()
            .starts_with("mobilefacenet@"),
        "{body}"
    );
    assert_eq!(face["dim"], 128);
    assert_eq!(face["liveness"], true);
}

#[test]
fn bench_embed_prints_stages_and_throughput() {
    let data = repo_root().join("../shared/datasets/lfw");
    let out = biomatch()
        .args([
            "bench",
            "embed",
            "--images",
            "6",
            "--concurrency",
            "2",
            "--intra-threads",
            "1",
            "--json",
        ])
        .arg("--data")
        .arg(&data)
        .arg("--models")
        .arg(repo_root().join("models"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for stage in ["decode", "detect", "align", "embed", "embed_raw_ort"] {
        assert!(r[stage]["p50_ms"].as_f64().unwrap() > 0.0, "{stage}: {r}");
    }
    assert!(r["embed_overhead_ratio"].as_f64().unwrap().is_finite());
    assert!(r["embed_batched"]["per_second"].as_f64().unwrap() > 0.0);
    assert_eq!(r["images"], 6);
}
