//! Runtime tests against models: the generated `finger-embed` model
//! (committed in `models/testdata`) compared with Python onnxruntime's
//! outputs, batching, and typed errors. They need the ONNX Runtime
//! library (`ORT_DYLIB_PATH`, set by scripts/test); without it they fail
//! under `CI=true` and are reported as skipped otherwise.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::Error;
use crate::imaging::GreyImage;

pub(crate) fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// Initialises the runtime, or explains why the test cannot run.
pub(crate) fn require_onnxruntime(test: &str) -> bool {
    match runtime::init(None) {
        Ok(_) => true,
        Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("{test}: CI=true and {e}")
        }
        Err(e) => {
            eprintln!("SKIPPED {test}: {e}");
            false
        }
    }
}

struct Fixture {
    manifest: ModelManifest,
    images: Vec<GreyImage>,
    outputs: Vec<Vec<f32>>,
}

fn fixture() -> Fixture {
    let dir = repo_root().join("models/testdata");
    let manifest = ModelManifest::load(&dir.join("tiny-finger-embed.toml")).unwrap();
    let text = std::fs::read_to_string(dir.join("tiny_finger_embed.expected.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let images = json["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|img| {
            let bytes: Vec<u8> = img
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as u8)
                .collect();
            GreyImage::from_raw(16, 16, bytes).unwrap()
        })
        .collect();
    let outputs = json["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            row.as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
                .collect()
        })
        .collect();
    Fixture {
        manifest,
        images,
        outputs,
    }
}

fn assert_close(got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= tol, "component {i}: {g} vs {w}");
    }
}

#[test]
fn generated_model_matches_python_onnxruntime() {
    if !require_onnxruntime("generated_model_matches_python_onnxruntime") {
        return;
    }
    let f = fixture();
    let model = Model::load(&f.manifest, &RunOptions::default()).unwrap();
    assert!(model.batch_dynamic());
    // One batch of four, then one by one: both equal Python's outputs within 1e-5.
    let refs: Vec<&GreyImage> = f.images.iter().collect();
    let input = preprocess::tensor_from_grey(&refs, &f.manifest.input).unwrap();
    let out = model.run(input).unwrap().swap_remove(0);
    assert_eq!(out.shape(), &[4, 32]);
    for (row, want) in out.outer_iter().zip(&f.outputs) {
        assert_close(row.as_slice().unwrap(), want, 1e-5);
    }
    for (image, want) in f.images.iter().zip(&f.outputs) {
        let input = preprocess::tensor_from_grey(&[image], &f.manifest.input).unwrap();
        let out = model.run(input).unwrap().swap_remove(0);
        assert_close(out.as_slice().unwrap(), want, 1e-5);
        // The L2-normalised embedding is Python's output, normalised.
        let mut emb = out.as_slice().unwrap().to_vec();
        l2_normalize(&mut emb).unwrap();
        let norm = want.iter().map(|x| x * x).sum::<f32>().sqrt();
        let want_unit: Vec<f32> = want.iter().map(|x| x / norm).collect();
        assert_close(&emb, &want_unit, 1e-5);
    }
}

#[test]
fn concurrent_requests_are_merged_into_batches() {
    if !require_onnxruntime("concurrent_requests_are_merged_into_batches") {
        return;
    }
    let f = fixture();
    let options = RunOptions {
        sessions: 1,
        intra_threads: 1,
        max_batch: 8,
        max_wait: Duration::from_millis(200),
        spin: false,
    };
    let model = Arc::new(Model::load(&f.manifest, &options).unwrap());
    let f = Arc::new(f);
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let (model, f) = (Arc::clone(&model), Arc::clone(&f));
            std::thread::spawn(move || {
                let k = i % 4;
                let input =
                    preprocess::tensor_from_grey(&[&f.images[k]], &f.manifest.input).unwrap();
                let out = model.run(input).unwrap().swap_remove(0);
                assert_close(out.as_slice().unwrap(), &f.outputs[k], 1e-5);
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let stats = model.stats();
    let runs = stats.runs.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(stats.requests.load(std::sync::atomic::Ordering::Relaxed), 8);
    // With a 200 ms window, 8 threads started together share far fewer than 8 runs.
    assert!(runs < 8, "{runs} runs for 8 concurrent requests");
}

#[test]
fn bad_inputs_get_typed_errors() {
    if !require_onnxruntime("bad_inputs_get_typed_errors") {
        return;
    }
    let f = fixture();
    let model = Model::load(&f.manifest, &RunOptions::default()).unwrap();
    let wrong = ndarray::ArrayD::<f32>::zeros(ndarray::IxDyn(&[1, 1, 8, 16]));
    assert!(matches!(
        model.run(wrong),
        Err(Error::InvalidArgument { .. })
    ));
    let mut nan = ndarray::ArrayD::<f32>::zeros(ndarray::IxDyn(&[1, 1, 16, 16]));
    nan[[0, 0, 3, 3]] = f32::NAN;
    assert!(matches!(model.run(nan), Err(Error::NonFinite { .. })));
    // A manifest whose digest does not match the file is refused.
    let mut tampered = f.manifest.clone();
    tampered.sha256 = "0".repeat(64);
    assert!(matches!(
        Model::load(&tampered, &RunOptions::default()),
        Err(Error::ChecksumMismatch { .. })
    ));
    let mut missing = f.manifest.clone();
    missing.file = "absent.onnx".into();
    assert!(matches!(
        Model::load(&missing, &RunOptions::default()),
        Err(Error::Model { .. })
    ));
}
