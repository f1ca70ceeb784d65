//! N:N de-duplication end to end: `biomatch datasets synth` then
//! `biomatch dedup` against the planted pairs and a brute-force reference,
//! a SIGKILLed job resumed to an identical report, and the `/v1/jobs` API.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use biomatch_engine::gallery::{Gallery, GalleryOptions};
use biomatch_engine::storage::catalog::Catalog;
use biomatch_tests::{Server, biomatch};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use serde_json::{Value, json};

fn run(args: &[&str]) -> Value {
    let out = biomatch().args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn synth(dir: &Path, subjects: usize, dim: usize, duplicates: f64) -> Value {
    run(&[
        "datasets",
        "synth",
        "--subjects",
        &subjects.to_string(),
        "--dim",
        &dim.to_string(),
        "--duplicates",
        &duplicates.to_string(),
        "--seed",
        "5",
        "--out",
        dir.to_str().unwrap(),
    ])
}

fn pair_set(path: &Path, a: &str, b: &str) -> BTreeSet<(String, String)> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            let (x, y) = (
                v[a].as_str().unwrap().to_string(),
                v[b].as_str().unwrap().to_string(),
            );
            (x.clone().min(y.clone()), x.max(y))
        })
        .collect()
}

#[test]
fn synth_then_dedup_finds_every_planted_pair_and_equals_brute_force() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, out) = (tmp.path().join("g"), tmp.path().join("out"));
    let report = synth(&data, 3000, 128, 0.02);
    assert_eq!(
        (&report["enrolled"], &report["planted"]),
        (&json!(3060), &json!(60))
    );
    let s = run(&[
        "dedup",
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--threshold",
        "0.45",
        "--tile-rows",
        "512",
        "--json",
    ]);
    let found = pair_set(&out.join("pairs.jsonl"), "a", "b");
    let truth = pair_set(&data.join("truth.jsonl"), "a", "b");
    assert_eq!(truth.len(), 60);
    assert!(
        found.is_superset(&truth),
        "missed {:?}",
        truth.difference(&found).collect::<Vec<_>>()
    );
    assert_eq!(s["pairs"], found.len());
    assert_eq!(s["comparisons"], 3060 * 3059 / 2);
    assert!(s["comparisons_per_s"].as_f64().unwrap() > 0.0);
    assert_eq!(s["collections"][0]["threshold"], 0.45);

    // Brute force over the stored vectors (normalised, as the cosine index).
    let g = Gallery::open(&data, GalleryOptions::default()).unwrap();
    let mut rows = Vec::new();
    for i in 1..=3000 {
        rows.push(format!("syn-{i:07}"));
    }
    for i in 1..=60 {
        rows.push(format!("dup-{i:07}"));
    }
    let vectors: Vec<(String, Vec<f32>)> = rows
        .into_iter()
        .map(|s| {
            let v = g.get(&s).unwrap().unwrap().templates[0].vector.clone();
            let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            (s, v.into_iter().map(|x| x / n).collect())
        })
        .collect();
    let (mut sure, mut borderline) = (BTreeSet::new(), 0);
    for i in 0..vectors.len() {
        for j in i + 1..vectors.len() {
            let cos: f32 = vectors[i]
                .1
                .iter()
                .zip(&vectors[j].1)
                .map(|(a, b)| a * b)
                .sum();
            let key = (
                vectors[i].0.clone().min(vectors[j].0.clone()),
                vectors[i].0.clone().max(vectors[j].0.clone()),
            );
            if (cos - 0.45).abs() < 1e-4 {
                borderline += 1;
            } else if cos > 0.45 {
                sure.insert(key);
            }
        }
    }
    assert!(
        found.is_superset(&sure),
        "missed {:?}",
        sure.difference(&found).take(5).collect::<Vec<_>>()
    );
    assert!(
        found.len() <= sure.len() + borderline,
        "{} found, {} + {borderline} expected",
        found.len(),
        sure.len()
    );

    drop(g); // the CLI below opens the directory itself

    // Bad input: no gallery, both decisions, an unknown collection.
    let bad = |args: &[&str], needle: &str| {
        let out = biomatch().args(args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(needle),
            "{args:?}: {err}"
        );
    };
    let o = out.to_str().unwrap();
    bad(
        &[
            "dedup",
            "--data",
            tmp.path().join("none").to_str().unwrap(),
            "--out",
            o,
        ],
        "no gallery",
    );
    bad(
        &[
            "dedup",
            "--data",
            data.to_str().unwrap(),
            "--out",
            o,
            "--fmr",
            "1e-5",
            "--threshold",
            "0.5",
        ],
        "cannot be used with",
    );
    bad(
        &[
            "dedup",
            "--data",
            data.to_str().unwrap(),
            "--out",
            o,
            "--collections",
            "iris",
            "--threshold",
            "0.5",
        ],
        "unknown collection",
    );
    bad(
        &[
            "dedup",
            "--data",
            data.to_str().unwrap(),
            "--out",
            o,
            "--fmr",
            "2",
        ],
        "not in (0, 1)",
    );
    bad(
        &[
            "datasets",
            "synth",
            "--subjects",
            "10",
            "--out",
            data.to_str().unwrap(),
        ],
        "already holds a gallery",
    );
}

fn done_tiles(data: &Path) -> usize {
    Catalog::open_read_only(&data.join("catalog.sqlite"))
        .and_then(|c| c.done_tiles(1))
        .map_or(0, |t| t.len())
}

#[test]
fn a_sigkilled_dedup_resumes_to_the_same_report() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("g");
    synth(&data, 20_000, 64, 0.01);
    let copy = tmp.path().join("copy");
    let status = Command::new("cp")
        .arg("-r")
        .arg(&data)
        .arg(&copy)
        .status()
        .unwrap();
    assert!(status.success());
    let args = |data: &Path, out: &Path| -> Vec<String> {
        [
            "dedup",
            "--data",
            data.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--fmr",
            "1e-4",
            "--tile-rows",
            "256",
            "--json",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    // 79 tiles, 3160 tile pairs, each one durable transaction: kill it
    // once a few dozen are checkpointed.
    let out = tmp.path().join("out");
    let mut child = biomatch()
        .args(args(&data, &out))
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while done_tiles(&data) < 40 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "finished before it could be killed"
        );
        assert!(start.elapsed() < Duration::from_secs(120), "no progress");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let killed_at = done_tiles(&data);
    assert!(killed_at < 3160, "{killed_at}");
    assert!(!out.join("pairs.jsonl").exists());

    let resumed = run(&args(&data, &out)
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>());
    let whole_out = tmp.path().join("whole");
    let whole = run(&args(&copy, &whole_out)
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>());
    assert_eq!(resumed["job"], 1, "the same job resumed");
    let resumed_tiles = resumed["tiles_resumed"].as_u64().unwrap();
    assert!(
        resumed_tiles >= killed_at as u64 && resumed_tiles < 3160,
        "{resumed}"
    );
    assert_eq!(whole["tiles_resumed"], 0);
    assert_eq!(resumed["comparisons"], whole["comparisons"]);
    assert!(resumed["comparisons_this_run"].as_u64() < whole["comparisons_this_run"].as_u64());
    for f in ["pairs.jsonl", "clusters.jsonl"] {
        let (a, b) = (
            std::fs::read(out.join(f)).unwrap(),
            std::fs::read(whole_out.join(f)).unwrap(),
        );
        assert!(!a.is_empty());
        assert!(a == b, "{f} differs after resuming");
    }
}

fn unit(rng: &mut ChaCha8Rng, dim: usize) -> Vec<f32> {
    let v: Vec<f32> = (0..dim).map(|_| StandardNormal.sample(&mut *rng)).collect();
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.into_iter().map(|x| x / n).collect()
}

#[test]
fn dedup_jobs_over_the_api() {
    let server = Server::start(&[]).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(77);
    let mut planted = BTreeSet::new();
    for i in 0..200 {
        let v = unit(&mut rng, 128);
        let (s, b) = server
            .json(
                "POST",
                "/v1/subjects",
                &json!({"subject_id": format!("c{i:04}"), "face": {"template": v}}),
            )
            .unwrap();
        assert_eq!(s, 201, "{b}");
        if i % 50 == 0 {
            let e = unit(&mut rng, 128);
            let w: Vec<f32> = v.iter().zip(&e).map(|(a, b)| a + 0.2 * b).collect();
            let (s, b) = server
                .json(
                    "POST",
                    "/v1/subjects",
                    &json!({"subject_id": format!("x{i:04}"), "face": {"template": w}}),
                )
                .unwrap();
            assert_eq!(s, 201, "{b}");
            planted.insert((format!("c{i:04}"), format!("x{i:04}")));
        }
    }
    let (s, job) = server
        .json("POST", "/v1/jobs/dedup", &json!({"threshold": 0.8}))
        .unwrap();
    assert_eq!(s, 202, "{job}");
    let id = job["id"].as_u64().unwrap();
    assert!(
        ["queued", "running", "done"].contains(&job["state"].as_str().unwrap()),
        "{job}"
    );
    let start = Instant::now();
    let job = loop {
        let (s, job) = server.get(&format!("/v1/jobs/{id}")).unwrap();
        assert_eq!(s, 200, "{job}");
        if job["state"] == "done" {
            break job;
        }
        assert!(
            ["queued", "running"].contains(&job["state"].as_str().unwrap()),
            "{job}"
        );
        assert!(start.elapsed() < Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(job["progress"], 1.0);
    let result = &job["result"];
    assert_eq!(result["pairs"], 4, "{job}");
    let pairs_file = Path::new(result["pairs_file"].as_str().unwrap());
    assert!(pairs_file.starts_with(&server.data_dir), "{job}");
    assert_eq!(pair_set(pairs_file, "a", "b"), planted);
    assert!(Path::new(result["summary_file"].as_str().unwrap()).exists());

    // A finished job cannot be cancelled; unknown jobs and bad requests are typed errors.
    let (s, b) = server
        .send("DELETE", &format!("/v1/jobs/{id}"), b"")
        .unwrap();
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (409, Some("job_finished")),
        "{b}"
    );
    let (s, b) = server.get("/v1/jobs/999").unwrap();
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (404, Some("unknown_job")),
        "{b}"
    );
    for (body, status, code) in [
        (
            json!({"threshold": 0.5, "fmr": 1e-5}),
            422,
            "invalid_argument",
        ),
        (json!({"fmr": 0.0}), 422, "invalid_argument"),
        (
            json!({"threshold": 0.5, "collections": ["nope"]}),
            404,
            "unknown_collection",
        ),
        (
            json!({"threshold": 0.5, "finger_threshold": "x"}),
            422,
            "invalid_request",
        ),
        (
            json!({"threshold": 0.5, "tile_rows": 0}),
            422,
            "invalid_argument",
        ),
        (json!({"threshold": "high"}), 422, "invalid_request"),
        (
            json!({"threshold": 0.5, "extra": 1}),
            422,
            "invalid_request",
        ),
    ] {
        let (s, b) = server.json("POST", "/v1/jobs/dedup", &body).unwrap();
        assert_eq!(
            (s, b["error"]["code"].as_str()),
            (status, Some(code)),
            "{body}: {b}"
        );
    }
}

#[test]
fn a_server_killed_mid_job_resumes_it_at_start() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("g");
    synth(&data, 20_000, 64, 0.01);
    let copy = tmp.path().join("copy");
    assert!(
        Command::new("cp")
            .arg("-r")
            .arg(&data)
            .arg(&copy)
            .status()
            .unwrap()
            .success()
    );
    let body = json!({"threshold": 0.5, "collections": ["face"], "tile_rows": 512});

    let server = Server::start_in(&data, &[]).unwrap();
    // The CLI refuses a directory a server has open.
    let out = biomatch()
        .args([
            "dedup",
            "--data",
            data.to_str().unwrap(),
            "--out",
            tmp.path().join("x").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("in use by another process"),
        "{err}"
    );
    let (s, job) = server.json("POST", "/v1/jobs/dedup", &body).unwrap();
    assert_eq!(s, 202, "{job}");
    let id = job["id"].as_u64().unwrap();
    let start = Instant::now();
    while done_tiles(&data) < 40 {
        assert!(start.elapsed() < Duration::from_secs(120), "no progress");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (_, running) = server.get(&format!("/v1/jobs/{id}")).unwrap();
    assert_eq!(running["state"], "running", "{running}");
    assert!(running["eta_s"].as_f64().is_some(), "{running}");
    drop(server); // SIGKILL
    let killed_at = done_tiles(&data);
    assert!(killed_at < 820, "{killed_at}");

    let server = Server::start_in(&data, &[]).unwrap();
    let start = Instant::now();
    let job = loop {
        let (_, job) = server.get(&format!("/v1/jobs/{id}")).unwrap();
        if job["state"] == "done" {
            break job;
        }
        assert!(start.elapsed() < Duration::from_secs(300), "{job}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let summary: Value = serde_json::from_str(
        &std::fs::read_to_string(job["result"]["summary_file"].as_str().unwrap()).unwrap(),
    )
    .unwrap();
    assert!(
        summary["tiles_resumed"].as_u64().unwrap() >= killed_at as u64,
        "{summary}"
    );

    // The same request on an untouched copy, uninterrupted, by the CLI.
    let whole = tmp.path().join("whole");
    run(&[
        "dedup",
        "--data",
        copy.to_str().unwrap(),
        "--out",
        whole.to_str().unwrap(),
        "--threshold",
        "0.5",
        "--collections",
        "face",
        "--tile-rows",
        "512",
        "--json",
    ]);
    let resumed = Path::new(job["result"]["out"].as_str().unwrap());
    for f in ["pairs.jsonl", "clusters.jsonl"] {
        let (a, b) = (
            std::fs::read(resumed.join(f)).unwrap(),
            std::fs::read(whole.join(f)).unwrap(),
        );
        assert!(
            !a.is_empty() && a == b,
            "{f} differs after the server resumed the job"
        );
    }
}
