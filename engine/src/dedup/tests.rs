//! De-duplication against a brute-force reference, resumption after an
//! interruption, fusion and bad requests.

use std::collections::BTreeSet;
use std::path::Path;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

use super::*;
use crate::gallery::{
    CollectionSpec, Enrollment, GalleryOptions, Modality, Position, TemplateInput,
};
use crate::vector::{Dtype, Metric};

const PEOPLE: usize = 1200;

fn unit(rng: &mut ChaCha8Rng, dim: usize) -> Vec<f32> {
    let v: Vec<f32> = (0..dim).map(|_| StandardNormal.sample(&mut *rng)).collect();
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.into_iter().map(|x| x / n).collect()
}

fn near(rng: &mut ChaCha8Rng, v: &[f32], noise: f32) -> Vec<f32> {
    let e = unit(rng, v.len());
    v.iter().zip(e).map(|(a, b)| a + noise * b).collect()
}

/// People `p0…`, each with a face (32-d, i8) and an "iris" (16-d, f32);
/// every 40th person is enrolled again as `d…` with new captures, and
/// person 1 has two faces.
fn gallery(dir: &Path) -> Gallery {
    let g = Gallery::open(
        dir,
        GalleryOptions {
            verify_checksums: true,
            segment_rows: 500,
        },
    )
    .unwrap();
    for (name, dim, dtype) in [("face", 32, Dtype::I8), ("iris", 16, Dtype::F32)] {
        g.ensure_collection(&CollectionSpec {
            name: name.into(),
            modality: Modality::Face,
            model_id: format!("test-{name}"),
            model_version: "1".into(),
            dim,
            metric: Metric::Cosine,
            dtype,
        })
        .unwrap();
    }
    let mut rng = ChaCha8Rng::seed_from_u64(31);
    let t = |collection: &str, vector: Vec<f32>| TemplateInput {
        collection: collection.into(),
        position: Position::Face,
        quality: None,
        vector,
        record: None,
    };
    let mut batch = Vec::new();
    for p in 0..PEOPLE {
        let (face, iris) = (unit(&mut rng, 32), unit(&mut rng, 16));
        let mut templates = vec![
            t("face", near(&mut rng, &face, 0.3)),
            t("iris", near(&mut rng, &iris, 0.3)),
        ];
        if p == 1 {
            templates.push(t("face", near(&mut rng, &face, 0.3)));
        }
        batch.push(Enrollment {
            subject: format!("p{p:05}"),
            templates,
        });
        if p % 40 == 0 {
            batch.push(Enrollment {
                subject: format!("d{p:05}"),
                templates: vec![
                    t("face", near(&mut rng, &face, 0.3)),
                    t("iris", near(&mut rng, &iris, 0.3)),
                ],
            });
        }
    }
    g.enroll_batch(&batch, "test").unwrap();
    g
}

fn request(out: &Path) -> DedupRequest {
    DedupRequest {
        collections: vec!["face".into()],
        threshold: Some(0.75),
        fmr: None,
        finger_threshold: None,
        tile_rows: Some(256),
        out: out.to_path_buf(),
    }
}

/// Subject pairs with some template pair of `collection` at or above `t`,
/// by brute force.
fn brute_force(g: &Gallery, collection: &str, t: f32) -> BTreeSet<(String, String)> {
    let mut faces = Vec::new();
    for p in 0..PEOPLE {
        for s in [format!("p{p:05}"), format!("d{p:05}")] {
            if let Some(r) = g.get(&s).unwrap() {
                for tpl in r.templates.iter().filter(|x| x.collection == collection) {
                    // As enrolled; the cosine index compares them normalised.
                    let n = tpl.vector.iter().map(|x| x * x).sum::<f32>().sqrt();
                    faces.push((
                        s.clone(),
                        tpl.vector.iter().map(|x| x / n).collect::<Vec<f32>>(),
                    ));
                }
            }
        }
    }
    let mut out = BTreeSet::new();
    for i in 0..faces.len() {
        for j in i + 1..faces.len() {
            let (a, b) = (&faces[i], &faces[j]);
            let cos: f32 = a.1.iter().zip(&b.1).map(|(x, y)| x * y).sum();
            // Stay clear of the threshold: f32 rounding could go either way.
            if a.0 != b.0 && cos >= t + 1e-4 {
                out.insert((a.0.clone().min(b.0.clone()), a.0.clone().max(b.0.clone())));
            }
        }
    }
    out
}

fn read_pairs(out: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(out.join("pairs.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn a_job_finds_exactly_the_brute_force_pairs_and_fuses_collections() {
    let dir = tempfile::tempdir().unwrap();
    let g = gallery(&dir.path().join("g"));
    let out = dir.path().join("out");
    let mut r = request(&out);
    r.collections.clear();
    let id = create(&g, &r).unwrap();
    let summary = run(&g, id, &CancelFlag::default()).unwrap();
    let pairs = read_pairs(&out);
    let got: BTreeSet<(String, String)> = pairs
        .iter()
        .map(|p| {
            (
                p["a"].as_str().unwrap().to_string(),
                p["b"].as_str().unwrap().to_string(),
            )
        })
        .map(|(a, b)| (a.clone().min(b.clone()), a.max(b)))
        .collect();
    let face = brute_force(&g, "face", 0.75);
    let want: BTreeSet<_> = face
        .union(&brute_force(&g, "iris", 0.75))
        .cloned()
        .collect();
    assert!(
        face.len() >= 30,
        "every planted pair and then some: {}",
        face.len()
    );
    assert!(
        got.is_superset(&want),
        "missing {:?}",
        want.difference(&got).collect::<Vec<_>>()
    );
    assert!(
        got.len() <= want.len() + 2,
        "only threshold ties may differ"
    );
    // Every planted duplicate is found.
    for p in (0..PEOPLE).step_by(40) {
        assert!(
            got.contains(&(format!("d{p:05}"), format!("p{p:05}"))),
            "planted pair {p}"
        );
    }
    // Both collections are in every pair, and the fused score is Stouffer's.
    let mut last = f64::INFINITY;
    for p in &pairs {
        let m = p["modalities"].as_object().unwrap();
        assert_eq!(m.len(), 2, "{p}");
        let (a, b) = (p["a"].as_str().unwrap(), p["b"].as_str().unwrap());
        let key = (a.min(b).to_string(), a.max(b).to_string());
        assert_eq!(m["face"]["match"], face.contains(&key), "{p}");
        assert!(
            m["face"]["match"] == true || m["iris"]["match"] == true,
            "{p}"
        );
        let z: f64 = m.values().map(|v| v["z"].as_f64().unwrap()).sum();
        let fused = p["score"].as_f64().unwrap();
        assert!((fused - z / 2f64.sqrt()).abs() < 1e-9);
        assert!(fused <= last, "sorted by fused score");
        last = fused;
    }
    assert_eq!(summary.pairs, pairs.len());
    let snap = g.snapshot();
    let pairs_in = |c: &str| {
        let n = snap.collection(c).unwrap().1.len() as u64;
        n * (n - 1) / 2
    };
    assert_eq!(summary.comparisons, pairs_in("face") + pairs_in("iris"));
    assert_eq!(summary.tiles, 2 * 5 * 6 / 2, "five tiles per collection");
    let clusters = std::fs::read_to_string(out.join("clusters.jsonl")).unwrap();
    assert_eq!(clusters.lines().count(), summary.clusters);
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(s["pairs"], pairs.len());
    assert_eq!(s["collections"][0]["method"], "given");
    for c in s["collections"].as_array().unwrap() {
        let total = |b: &serde_json::Value| {
            b["counts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n.as_u64().unwrap())
                .sum::<u64>()
        };
        assert_eq!(
            total(&c["histogram"]["impostor"]),
            c["impostor"]["samples"].as_u64().unwrap()
        );
        assert_eq!(
            total(&c["histogram"]["kept"]),
            c["kept_template_pairs"].as_u64().unwrap()
        );
    }
    let job = job(&g, id).unwrap().unwrap().0;
    assert_eq!((job.state, job.progress), (JobState::Done, 1.0));
    // A finished job does not run again; the same request is a new job.
    assert!(run(&g, id, &CancelFlag::default()).is_err());
    assert_eq!(find_unfinished(&g, &request(&out)).unwrap(), None);
}

/// Panics (as a killed process stops) after `after` tile pairs.
struct Crash {
    after: usize,
    seen: std::sync::atomic::AtomicUsize,
}

impl Observer for Crash {
    fn progress(&self, p: &Progress) {
        if p.tiles_done > p.tiles_total / 3
            && self.seen.fetch_add(1, Ordering::Relaxed) >= self.after
        {
            panic!("simulated crash");
        }
    }
}

#[test]
fn an_interrupted_job_resumes_and_writes_the_same_report() {
    let dir = tempfile::tempdir().unwrap();
    let g = gallery(&dir.path().join("g"));
    let whole = dir.path().join("whole");
    let id = create(&g, &request(&whole)).unwrap();
    run(&g, id, &CancelFlag::default()).unwrap();

    let resumed = dir.path().join("resumed");
    let id = create(&g, &request(&resumed)).unwrap();
    let crash = Crash {
        after: 2,
        seen: Default::default(),
    };
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&g, id, &crash)));
    assert!(r.is_err());
    let (crashed, _) = job(&g, id).unwrap().unwrap();
    assert_eq!(
        crashed.state,
        JobState::Running,
        "a crashed job stays running"
    );
    assert!(
        crashed.progress > 0.3 && crashed.progress < 1.0,
        "{}",
        crashed.progress
    );
    assert!(!resumed.join("pairs.jsonl").exists());
    assert_eq!(find_unfinished(&g, &request(&resumed)).unwrap(), Some(id));
    assert_eq!(unfinished(&g).unwrap(), vec![id]);
    // Enrolled after the job was planned: not part of it, even though it
    // would match p00007's face.
    let face = g.get("p00007").unwrap().unwrap().templates[0]
        .vector
        .clone();
    g.enroll(
        &Enrollment {
            subject: "late".into(),
            templates: vec![TemplateInput {
                collection: "face".into(),
                position: Position::Face,
                quality: None,
                vector: face,
                record: None,
            }],
        },
        "test",
    )
    .unwrap();
    let summary = run(&g, id, &CancelFlag::default()).unwrap();
    assert!(summary.tiles_resumed > 0 && summary.tiles_resumed < summary.tiles);
    for f in ["pairs.jsonl", "clusters.jsonl"] {
        assert_eq!(
            std::fs::read(whole.join(f)).unwrap(),
            std::fs::read(resumed.join(f)).unwrap(),
            "{f}"
        );
    }

    // Cancelling stops at the next tile pair and is final.
    let id = create(&g, &request(&dir.path().join("c"))).unwrap();
    let flag = CancelFlag::default();
    flag.0.store(true, Ordering::Relaxed);
    assert!(matches!(run(&g, id, &flag), Err(Error::Cancelled { job }) if job == id));
    assert_eq!(job(&g, id).unwrap().unwrap().0.state, JobState::Cancelled);
    assert!(run(&g, id, &CancelFlag::default()).is_err());
}

#[test]
fn fmr_thresholds_are_estimated_and_bad_requests_refused() {
    let dir = tempfile::tempdir().unwrap();
    let g = gallery(&dir.path().join("g"));
    let out = dir.path().join("out");
    let mut r = request(&out);
    r.threshold = None;
    r.fmr = Some(1e-4);
    r.collections.clear();
    let id = create(&g, &r).unwrap();
    let (_, params) = job(&g, id).unwrap().unwrap();
    assert_eq!(params.plan.len(), 2, "every vector collection");
    for plan in &params.plan {
        assert_eq!(plan.method, ThresholdMethod::SampledQuantile);
        assert_eq!(plan.impostor.samples, 500_000);
        // Random unit vectors: impostor cosines have sd ≈ 1/√d; an FMR of
        // 1e-4 lies about 3.7 sd above the mean for a normal distribution,
        // less for these bounded ones (16 and 32 dimensions).
        let dim = if plan.name == "face" { 32.0 } else { 16.0f64 };
        assert!(
            (plan.impostor.sd - 1.0 / dim.sqrt()).abs() < 0.02,
            "{plan:?}"
        );
        let z = (f64::from(plan.threshold) - plan.impostor.mean) / plan.impostor.sd;
        assert!(z > 2.8 && z < 4.0, "{z} {plan:?}");
    }
    run(&g, id, &CancelFlag::default()).unwrap();
    assert!(!read_pairs(&out).is_empty());

    let bad = |f: &dyn Fn(&mut DedupRequest)| {
        let mut r = request(&out);
        f(&mut r);
        create(&g, &r).unwrap_err()
    };
    assert!(matches!(
        bad(&|r| r.fmr = Some(1e-3)),
        Error::InvalidArgument {
            name: "threshold",
            ..
        }
    ));
    assert!(matches!(
        bad(&|r| r.threshold = None),
        Error::InvalidArgument {
            name: "threshold",
            ..
        }
    ));
    assert!(matches!(
        bad(&|r| {
            r.threshold = None;
            r.fmr = Some(1.5)
        }),
        Error::InvalidArgument { name: "fmr", .. }
    ));
    assert!(matches!(
        bad(&|r| r.threshold = Some(f32::NAN)),
        Error::InvalidArgument { .. }
    ));
    assert!(matches!(
        bad(&|r| r.tile_rows = Some(0)),
        Error::InvalidArgument {
            name: "tile_rows",
            ..
        }
    ));
    assert!(matches!(
        bad(&|r| r.collections = vec!["nope".into()]),
        Error::UnknownCollection { .. }
    ));
    assert!(matches!(
        run(&g, 999, &CancelFlag::default()),
        Err(Error::InvalidArgument { .. })
    ));
}

#[test]
fn fingers_are_scored_and_fused_for_the_pairs_faces_report() {
    use crate::finger::tests::fvc_record;
    use crate::gallery::minutiae_collection;
    let dir = tempfile::tempdir().unwrap();
    let g = Gallery::open(dir.path(), GalleryOptions::default()).unwrap();
    g.ensure_collection(&CollectionSpec {
        name: "face".into(),
        modality: Modality::Face,
        model_id: "test-face".into(),
        model_version: "1".into(),
        dim: 32,
        metric: Metric::Cosine,
        dtype: Dtype::I8,
    })
    .unwrap();
    g.ensure_collection(&minutiae_collection("fingers"))
        .unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let person = |name: String, face: Vec<f32>, finger: u32, imp: u32| -> Option<Enrollment> {
        Some(Enrollment {
            subject: name,
            templates: vec![
                TemplateInput {
                    collection: "face".into(),
                    position: Position::Face,
                    quality: None,
                    vector: face,
                    record: None,
                },
                TemplateInput {
                    collection: "fingers".into(),
                    position: Position::RightIndex,
                    quality: None,
                    vector: Vec::new(),
                    record: Some(fvc_record(1, finger, imp)?),
                },
            ],
        })
    };
    let faces: Vec<Vec<f32>> = (0..10).map(|_| unit(&mut rng, 32)).collect();
    let mut batch = Vec::new();
    for (i, f) in faces.iter().enumerate() {
        let Some(p) = person(format!("p{i}"), f.clone(), 101 + i as u32, 1) else {
            return; // no FVC data (fvc_record fails instead under CI=true)
        };
        batch.push(p);
    }
    // p3 enrolled again with another impression of the same finger; p5's
    // face enrolled again with somebody else's finger.
    batch.extend(person("d3".into(), near(&mut rng, &faces[3], 0.1), 104, 2));
    batch.extend(person("d5".into(), near(&mut rng, &faces[5], 0.1), 107, 3));
    // p8 enrolled again with another face: only the finger tells.
    batch.extend(person("f8".into(), unit(&mut rng, 32), 109, 2));
    g.enroll_batch(&batch, "test").unwrap();
    let out = dir.path().join("out");
    let mut r = request(&out);
    r.threshold = Some(0.9);
    let id = create(&g, &r).unwrap();
    run(&g, id, &CancelFlag::default()).unwrap();
    let pairs = read_pairs(&out);
    assert_eq!(pairs.len(), 2, "{pairs:?}");
    let get = |a: &str| pairs.iter().find(|p| p["a"] == a || p["b"] == a).unwrap();
    let (same, other) = (get("d3"), get("d5"));
    for p in [same, other] {
        let m = p["modalities"].as_object().unwrap();
        assert_eq!(m.len(), 2, "{p}");
        assert!(
            m["fingers"].get("match").is_none(),
            "fingers are scored, not scanned"
        );
        let z: f64 = m.values().map(|v| v["z"].as_f64().unwrap()).sum();
        assert!((p["score"].as_f64().unwrap() - z / 2f64.sqrt()).abs() < 1e-9);
    }
    let z = |p: &serde_json::Value| p["modalities"]["fingers"]["z"].as_f64().unwrap();
    assert!(z(same) > 3.0 && z(same) > z(other) + 2.0, "{same} {other}");
    assert_eq!(pairs[0], *same, "agreeing fingers rank the pair first");
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(s["collections"][1]["name"], "fingers");
    assert!(s["collections"][1]["impostor"]["samples"].as_u64().unwrap() > 1000);

    // Scanning the fingers too (two stages: vectors, then the matcher)
    // finds the finger-only duplicate; its face is scored and does not match.
    let out = dir.path().join("all");
    let mut r = request(&out);
    r.collections.clear();
    r.threshold = Some(0.9);
    r.finger_threshold = Some(0.05);
    let id = create(&g, &r).unwrap();
    let (_, params) = job(&g, id).unwrap().unwrap();
    let fingers = params.plan.iter().find(|p| p.name == "fingers").unwrap();
    assert_eq!(
        (fingers.threshold, fingers.method),
        (0.05, ThresholdMethod::Given)
    );
    assert!(fingers.prefilter.is_some());
    run(&g, id, &CancelFlag::default()).unwrap();
    let pairs = read_pairs(&out);
    // d5 carries p6's finger (107): that pair is found too.
    assert_eq!(pairs.len(), 4, "{pairs:?}");
    let get = |a: &str, b: &str| {
        pairs
            .iter()
            .find(|p| (p["a"] == a && p["b"] == b) || (p["a"] == b && p["b"] == a))
            .unwrap_or_else(|| panic!("{a}-{b} not reported: {pairs:?}"))
    };
    for (a, b, face, finger) in [
        ("p3", "d3", true, true),
        ("p5", "d5", true, false),
        ("p6", "d5", false, true),
        ("p8", "f8", false, true),
    ] {
        let m = &get(a, b)["modalities"];
        assert_eq!(
            (m["face"]["match"] == true, m["fingers"]["match"] == true),
            (face, finger),
            "{a}-{b}: {m}"
        );
    }
    let clusters = std::fs::read_to_string(out.join("clusters.jsonl")).unwrap();
    let first: serde_json::Value = serde_json::from_str(clusters.lines().next().unwrap()).unwrap();
    assert_eq!(first["subjects"], serde_json::json!(["d5", "p5", "p6"]));
}
