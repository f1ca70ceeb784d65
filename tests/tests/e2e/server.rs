//! `biomatch serve` as a process: start-up, `/health`, configuration
//! errors, SIMD backend selection, graceful shutdown.

use std::time::Duration;

use biomatch_tests::{Server, biomatch};

#[test]
fn serve_answers_health_and_stops_cleanly_on_sigterm() {
    let server = Server::start(&[]).unwrap();
    let (status, body) = server.get("/health").unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ok");
    assert!(
        body["simd_backend"].as_str().is_some_and(|b| !b.is_empty()),
        "{body}"
    );
    assert!(server.data_dir.is_dir(), "the data directory is created");
    let (status, _) = server.get("/no-such-route").unwrap();
    assert_eq!(status, 404);
    let exit = server.terminate(Duration::from_secs(10)).unwrap();
    assert!(exit.success(), "graceful shutdown exits 0, got {exit}");
}

#[test]
fn forced_simd_backend_is_used_and_reported() {
    let server = Server::start(&[("BIOMATCH_SIMD", "scalar")]).unwrap();
    let (_, body) = server.get("/health").unwrap();
    assert_eq!(body["simd_backend"], "scalar");
}

#[test]
fn unknown_simd_backend_is_a_clear_startup_error() {
    let out = biomatch()
        .args(["serve"])
        .env("BIOMATCH_SIMD", "neon")
        .env("BIOMATCH__SERVER__LISTEN", "127.0.0.1:0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("unknown backend") && stderr.contains("avx2"),
        "{stderr}"
    );
}

#[test]
fn bad_configuration_names_the_key() {
    let out = biomatch()
        .args(["serve"])
        .env("BIOMATCH__SERVER__LISTEN", "not-an-address")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("BIOMATCH__SERVER__LISTEN"), "{stderr}");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"").unwrap();
    let out = biomatch()
        .args(["serve"])
        .env("BIOMATCH__SERVER__LISTEN", "127.0.0.1:0")
        .env("BIOMATCH__STORAGE__DATA_DIR", &file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("storage.data_dir"), "{stderr}");
}

#[test]
fn a_taken_port_is_a_clear_startup_error() {
    let server = Server::start(&[]).unwrap();
    let addr = server.url.trim_start_matches("http://").to_string();
    let dir = tempfile::tempdir().unwrap();
    let out = biomatch()
        .args(["serve", "--listen", &addr, "--data-dir"])
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot bind") && stderr.contains(&addr),
        "{stderr}"
    );
}

#[test]
fn serve_opens_the_gallery_in_its_data_directory() {
    use biomatch_engine::gallery::{Gallery, GalleryOptions};
    use biomatch_tests::crash::{collections, person};

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    {
        let g = Gallery::open(&data, GalleryOptions::default()).unwrap();
        for spec in collections() {
            g.ensure_collection(&spec).unwrap();
        }
        g.enroll_batch(&(0..3).map(person).collect::<Vec<_>>(), "test")
            .unwrap();
    }
    let server = Server::start_in(&data, &[]).unwrap();
    let (_, body) = server.get("/health").unwrap();
    assert_eq!(body["gallery"]["subjects"], 3, "{body}");
    assert_eq!(
        body["gallery"]["templates"],
        serde_json::json!([
            ["face", 3],
            ["finger", 6],
            ["face-mobilefacenet", 0],
            ["fingers", 0]
        ]),
        "the server adds the collections of its face model and of minutiae next to the existing ones"
    );
    assert!(server.terminate(Duration::from_secs(10)).unwrap().success());
    assert!(data.join("catalog.sqlite").exists());
}
