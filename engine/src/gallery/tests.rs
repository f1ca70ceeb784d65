//! Gallery tests: the API end to end on a real catalog and real indexes.

use std::path::Path;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

use super::*;
use crate::vector::{Dtype, Metric};

const FACE_DIM: usize = 16;
const FINGER_DIM: usize = 8;

fn face_spec() -> CollectionSpec {
    CollectionSpec {
        name: "face".into(),
        modality: Modality::Face,
        model_id: "test-face".into(),
        model_version: "1".into(),
        dim: FACE_DIM,
        metric: Metric::Cosine,
        dtype: Dtype::I8,
    }
}

fn finger_spec() -> CollectionSpec {
    CollectionSpec {
        name: "finger".into(),
        modality: Modality::Finger,
        model_id: "test-finger".into(),
        model_version: "1".into(),
        dim: FINGER_DIM,
        metric: Metric::Cosine,
        dtype: Dtype::F32,
    }
}

fn vector(seed: u64, dim: usize) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..dim).map(|_| StandardNormal.sample(&mut rng)).collect()
}

/// Subject `n`: a face and two fingers.
fn person(n: u64) -> Enrollment {
    Enrollment {
        subject: format!("{n:012}"),
        templates: vec![
            TemplateInput {
                collection: "face".into(),
                position: Position::Face,
                quality: Some(0.9),
                vector: vector(n * 10, FACE_DIM),
                record: None,
            },
            TemplateInput {
                collection: "finger".into(),
                position: Position::RightThumb,
                quality: None,
                vector: vector(n * 10 + 1, FINGER_DIM),
                record: None,
            },
            TemplateInput {
                collection: "finger".into(),
                position: Position::LeftIndex,
                quality: None,
                vector: vector(n * 10 + 2, FINGER_DIM),
                record: None,
            },
        ],
    }
}

fn options() -> GalleryOptions {
    GalleryOptions {
        segment_rows: 64,
        ..GalleryOptions::default()
    }
}

fn gallery(dir: &Path) -> Gallery {
    let g = Gallery::open(dir, options()).unwrap();
    g.ensure_collection(&face_spec()).unwrap();
    g.ensure_collection(&finger_spec()).unwrap();
    g
}

fn face_probe(n: u64) -> Probe {
    Probe {
        collection: "face".into(),
        vector: vector(n * 10, FACE_DIM),
    }
}

fn assert_consistent(g: &Gallery) {
    for check in g.check_consistency().unwrap() {
        assert!(check.agrees(), "{check:?}");
    }
}

/// Everything a restart must preserve, in comparable form.
fn catalog_dump(g: &Gallery, n: u64) -> Vec<Option<SubjectRecord>> {
    (0..n)
        .map(|i| g.get(&format!("{i:012}")).unwrap())
        .collect()
}

#[test]
fn enrolled_subjects_read_back_verify_and_identify() {
    let dir = tempfile::tempdir().unwrap();
    let g = gallery(dir.path());
    for n in 0..100 {
        g.enroll(&person(n), "test").unwrap();
    }
    assert_eq!(g.counts().subjects, 100);
    assert_eq!(
        g.counts().templates,
        vec![("face".into(), 100), ("finger".into(), 200)]
    );

    let rec = g.get("000000000042").unwrap().unwrap();
    assert_eq!(rec.templates.len(), 3);
    assert_eq!(
        rec.templates[0].vector,
        vector(420, FACE_DIM),
        "stored exactly as given"
    );

    let hits = g.identify(&face_probe(42), Search::TopK(5)).unwrap();
    assert_eq!(hits[0].subject, "000000000042");
    assert!((hits[0].score - 1.0).abs() < 1e-5);
    assert_eq!(hits.len(), 5);
    // Two finger templates per subject: five distinct subjects still.
    let finger = Probe {
        collection: "finger".into(),
        vector: vector(421, FINGER_DIM),
    };
    let hits = g.identify(&finger, Search::TopK(5)).unwrap();
    assert_eq!(hits.len(), 5);
    let distinct: std::collections::HashSet<_> = hits.iter().map(|h| &h.subject).collect();
    assert_eq!(distinct.len(), 5);
    assert_eq!(hits[0].subject, "000000000042");
    let above = g.identify(&finger, Search::Threshold(0.99)).unwrap();
    assert_eq!(above.len(), 1);

    let v = g.verify("000000000042", &[face_probe(42), finger]).unwrap();
    assert_eq!(v.templates.len(), 3);
    assert!((v.collections[0].best.unwrap() - 1.0).abs() < 1e-5);
    assert!((v.collections[1].best.unwrap() - 1.0).abs() < 1e-5);
    let v = g.verify("000000000007", &[face_probe(42)]).unwrap();
    assert!(
        v.collections[0].best.unwrap() < 0.9,
        "another person's face"
    );
    assert!(matches!(
        g.verify("nobody", &[face_probe(1)]),
        Err(Error::UnknownSubject { .. })
    ));
    assert_consistent(&g);
}

#[test]
fn invalid_enrollments_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let g = gallery(dir.path());
    g.enroll(&person(1), "test").unwrap();
    let try_enroll = |e: Enrollment| g.enroll(&e, "test").unwrap_err();

    assert!(matches!(try_enroll(person(1)), Error::SubjectExists { .. }));
    let mut e = person(2);
    e.subject = "has space".into();
    assert!(matches!(
        try_enroll(e),
        Error::InvalidArgument {
            name: "subject",
            ..
        }
    ));
    let mut e = person(2);
    e.templates.clear();
    assert!(matches!(
        try_enroll(e),
        Error::InvalidArgument {
            name: "templates",
            ..
        }
    ));
    let mut e = person(2);
    e.templates[0].collection = "iris".into();
    assert!(matches!(try_enroll(e), Error::UnknownCollection { .. }));
    let mut e = person(2);
    e.templates[0].position = Position::RightThumb;
    assert!(matches!(
        try_enroll(e),
        Error::InvalidArgument {
            name: "position",
            ..
        }
    ));
    let mut e = person(2);
    e.templates[2].position = Position::RightThumb;
    assert!(matches!(
        try_enroll(e),
        Error::InvalidArgument {
            name: "position",
            ..
        }
    ));
    let mut e = person(2);
    e.templates[1].vector[3] = f32::NAN;
    assert!(matches!(try_enroll(e), Error::NonFinite { index: 3, .. }));
    let mut e = person(2);
    e.templates[1].vector.pop();
    assert!(matches!(
        try_enroll(e),
        Error::DimensionMismatch {
            expected: 8,
            got: 7
        }
    ));
    let mut e = person(2);
    e.templates[0].vector = vec![0.0; FACE_DIM];
    assert!(matches!(try_enroll(e), Error::ZeroVector { .. }));
    // A batch fails whole when one member is taken.
    assert!(g.enroll_batch(&[person(3), person(1)], "test").is_err());

    assert_eq!(g.counts().subjects, 1);
    assert!(g.get("000000000002").unwrap().is_none());
    assert!(g.get("000000000003").unwrap().is_none());
    assert_eq!(
        g.counts().templates,
        vec![("face".into(), 1), ("finger".into(), 2)]
    );
    assert_consistent(&g);
}

#[test]
fn replace_and_delete_take_effect_at_once_and_compaction_reclaims() {
    let dir = tempfile::tempdir().unwrap();
    let g = gallery(dir.path());
    g.enroll_batch(&(0..200).map(person).collect::<Vec<_>>(), "test")
        .unwrap();

    // Replace subject 5's templates with subject 1005's vectors.
    let mut e = person(1005);
    e.subject = person(5).subject;
    let receipt = g.replace(&e, "test").unwrap();
    assert_eq!(receipt.subject, "000000000005");
    assert!(g.identify(&face_probe(5), Search::TopK(1)).unwrap()[0].subject != "000000000005");
    assert_eq!(
        g.identify(&face_probe(1005), Search::TopK(1)).unwrap()[0].subject,
        "000000000005"
    );
    assert!(matches!(
        g.replace(&person(999), "test"),
        Err(Error::UnknownSubject { .. })
    ));

    for n in 0..60 {
        g.delete(&format!("{n:012}"), "test").unwrap();
    }
    assert!(matches!(
        g.delete("000000000000", "test"),
        Err(Error::UnknownSubject { .. })
    ));
    assert_eq!(g.counts().subjects, 140);
    assert!(g.get("000000000010").unwrap().is_none());
    let hits = g.identify(&face_probe(10), Search::TopK(200)).unwrap();
    assert_eq!(hits.len(), 140);
    assert!(hits.iter().all(|h| h.subject != "000000000010"));
    assert_consistent(&g);

    let reports = g.compact(0.0).unwrap();
    assert!(reports.iter().map(|(_, r)| r.rows_removed).sum::<usize>() > 0);
    assert_eq!(
        g.identify(&face_probe(10), Search::TopK(200)).unwrap(),
        hits
    );
    assert_consistent(&g);

    let audit = g.audit_entries(1000).unwrap();
    let deletes = audit
        .iter()
        .filter(|a| a.entry.operation == "delete")
        .count();
    assert_eq!(deletes, 60);
    assert!(
        audit
            .iter()
            .any(|a| a.entry.operation == "replace" && a.entry.subjects == ["000000000005"])
    );
}

#[test]
fn a_reopened_gallery_is_the_same_gallery() {
    let dir = tempfile::tempdir().unwrap();
    let g = gallery(dir.path());
    g.enroll_batch(&(0..150).map(person).collect::<Vec<_>>(), "test")
        .unwrap();
    g.delete("000000000003", "test").unwrap();
    let before = catalog_dump(&g, 150);
    let hits = g.identify(&face_probe(77), Search::TopK(10)).unwrap();
    drop(g);

    let g = Gallery::open(dir.path(), options()).unwrap();
    for c in &g.open_report().collections {
        assert!(!c.changed_anything(), "{c:?}");
    }
    assert_eq!(catalog_dump(&g, 150), before);
    assert_eq!(g.identify(&face_probe(77), Search::TopK(10)).unwrap(), hits);
    assert_eq!(g.counts().subjects, 149);
    assert_consistent(&g);
    // Re-declaring a collection is a no-op; changing it is refused.
    g.ensure_collection(&face_spec()).unwrap();
    let mut other = face_spec();
    other.dim = 32;
    assert!(matches!(
        g.ensure_collection(&other),
        Err(Error::CollectionConflict { .. })
    ));
}

#[test]
fn lost_and_damaged_indexes_are_rebuilt_from_the_catalog() {
    let dir = tempfile::tempdir().unwrap();
    let g = gallery(dir.path());
    g.enroll_batch(&(0..300).map(person).collect::<Vec<_>>(), "test")
        .unwrap();
    for n in [2, 3, 200] {
        g.delete(&format!("{n:012}"), "test").unwrap();
    }
    g.sync().unwrap();
    let before = catalog_dump(&g, 300);
    let hits = g.identify(&face_probe(123), Search::TopK(20)).unwrap();
    drop(g);

    let face = dir.path().join("indexes/face");
    let finger = dir.path().join("indexes/finger");
    // Face: flip a bit in a sealed segment and truncate the writable log.
    let seg = face.join("seg-0000000001.bmseg");
    let mut bytes = std::fs::read(&seg).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x20;
    std::fs::write(&seg, &bytes).unwrap();
    let log = std::fs::read_dir(&face)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains("vlog-"))
        .unwrap();
    let len = std::fs::metadata(&log).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&log)
        .unwrap()
        .set_len(len - 7)
        .unwrap();
    // Finger: damage the manifest (needs a full rebuild).
    let manifest = finger.join("index.bmman");
    let mut bytes = std::fs::read(&manifest).unwrap();
    bytes[70] ^= 1;
    std::fs::write(&manifest, &bytes).unwrap();

    let g = Gallery::open(dir.path(), options()).unwrap();
    let report = &g.open_report().collections;
    assert_eq!(report[0].repaired.len(), 1, "{report:?}");
    assert!(
        report[0].repaired[0].reason.contains("checksum"),
        "{report:?}"
    );
    assert!(
        report[0].caught_up > 0,
        "the torn log's rows come back from the catalog"
    );
    assert!(
        report[1]
            .rebuilt
            .as_deref()
            .is_some_and(|r| r.contains("index.bmman")),
        "{report:?}"
    );
    assert_eq!(catalog_dump(&g, 300), before);
    assert_eq!(
        g.identify(&face_probe(123), Search::TopK(20)).unwrap(),
        hits
    );
    assert_consistent(&g);
    drop(g);

    // And a whole index directory gone.
    std::fs::remove_dir_all(&face).unwrap();
    let g = Gallery::open(dir.path(), options()).unwrap();
    assert_eq!(g.open_report().collections[0].caught_up, 297);
    assert_eq!(
        g.identify(&face_probe(123), Search::TopK(20)).unwrap(),
        hits
    );
    assert_consistent(&g);
}

#[test]
fn deletions_lost_by_an_index_are_reapplied_from_the_catalog() {
    let dir = tempfile::tempdir().unwrap();
    let g = gallery(dir.path());
    g.enroll_batch(&(0..50).map(person).collect::<Vec<_>>(), "test")
        .unwrap();
    g.sync().unwrap();
    let tombstones = dir.path().join("indexes/face/tombstones.bmlog");
    let clean = std::fs::read(&tombstones).unwrap();
    g.delete("000000000009", "test").unwrap();
    drop(g);
    // As if the process had died before the tombstone reached the disk.
    std::fs::write(&tombstones, &clean).unwrap();
    let g = Gallery::open(dir.path(), options()).unwrap();
    assert_eq!(g.open_report().pending_deletions, 3);
    assert_eq!(g.open_report().collections[0].deletions_applied, 1);
    let hits = g.identify(&face_probe(9), Search::TopK(50)).unwrap();
    assert!(hits.iter().all(|h| h.subject != "000000000009"));
    assert_consistent(&g);
    drop(g);
    // Still listed until compaction removes the rows: a second open
    // applies them again (nothing to do this time).
    let g = Gallery::open(dir.path(), options()).unwrap();
    assert_eq!(g.open_report().pending_deletions, 3);
    assert_eq!(g.open_report().collections[0].deletions_applied, 0);
    g.compact(0.0).unwrap();
    drop(g);
    // Compaction removed the two finger rows (in a sealed segment); the
    // face row is in the face index's writable segment (50 rows, below
    // segment_rows = 64), which compaction does not rewrite, so its
    // deletion stays listed.
    let g = Gallery::open(dir.path(), options()).unwrap();
    assert_eq!(g.open_report().pending_deletions, 1);
}

#[test]
fn searches_during_writes_never_see_part_of_a_subject() {
    let dir = tempfile::tempdir().unwrap();
    let g = gallery(dir.path());
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        let reader = scope.spawn(|| {
            let mut checks = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let snap = g.snapshot();
                let (_, face) = snap.collection("face").unwrap();
                let (_, finger) = snap.collection("finger").unwrap();
                let faces: std::collections::BTreeSet<u64> =
                    face.ids().filter_map(|id| face.label(id)).collect();
                let mut fingers: std::collections::BTreeMap<u64, usize> = Default::default();
                for id in finger.ids() {
                    *fingers.entry(finger.label(id).unwrap()).or_default() += 1;
                }
                assert_eq!(
                    faces.len(),
                    fingers.len(),
                    "same subjects in both collections"
                );
                assert!(
                    faces.iter().all(|s| fingers.get(s) == Some(&2)),
                    "every subject complete"
                );
                assert_eq!(snap.counts().subjects as usize, faces.len());
                checks += 1;
            }
            checks
        });
        for batch in 0..40u64 {
            let people: Vec<Enrollment> = (0..5).map(|i| person(batch * 5 + i)).collect();
            g.enroll_batch(&people, "test").unwrap();
            if batch % 4 == 3 {
                g.delete(&format!("{:012}", batch * 5), "test").unwrap();
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(reader.join().unwrap() > 0);
    });
}

#[test]
fn one_process_or_handle_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let g = Gallery::open(dir.path(), GalleryOptions::default()).unwrap();
    let err = Gallery::open(dir.path(), GalleryOptions::default()).unwrap_err();
    assert!(
        matches!(&err, Error::InvalidArgument { name: "gallery", reason } if reason.contains("in use")),
        "{err}"
    );
    drop(g);
    Gallery::open(dir.path(), GalleryOptions::default()).unwrap();
}
