//! Damaged index files: seeded rounds truncate or bit-flip a random file
//! of a random collection index (segments, logs, manifests, tombstones).
//! After each, the gallery must open, report what it found, and answer
//! exactly as before: same subjects with the same templates and vectors,
//! same identifications, indexes agreeing with the catalog. The catalog
//! itself is never touched by the repair.
//!
//! `BIOMATCH_CORRUPTION_SEED` (default 1) changes the run.

use std::path::{Path, PathBuf};

use biomatch_engine::gallery::{
    Enrollment, Gallery, GalleryOptions, Probe, Search, SubjectHit, SubjectRecord,
};
use biomatch_tests::crash::{FACE_DIM, collections, person, vector};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

const SUBJECTS: u64 = 400;
const ROUNDS: usize = 16;

fn options() -> GalleryOptions {
    GalleryOptions {
        segment_rows: 256,
        ..GalleryOptions::default()
    }
}

/// Everything the repair must preserve.
#[derive(Debug, PartialEq)]
struct State {
    subjects: Vec<Option<SubjectRecord>>,
    identified: Vec<Vec<SubjectHit>>,
    counts: biomatch_engine::gallery::GalleryCounts,
}

fn state(g: &Gallery) -> State {
    State {
        subjects: (0..SUBJECTS)
            .map(|n| g.get(&person(n).subject).unwrap())
            .collect(),
        identified: (0..SUBJECTS)
            .step_by(17)
            .map(|n| {
                let probe = Probe {
                    collection: "face".into(),
                    vector: vector(3 * n, FACE_DIM),
                };
                g.identify(&probe, Search::TopK(5)).unwrap()
            })
            .collect(),
        counts: g.counts(),
    }
}

fn index_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for collection in ["face", "finger"] {
        for entry in std::fs::read_dir(dir.join("indexes").join(collection)).unwrap() {
            files.push(entry.unwrap().path());
        }
    }
    files.sort();
    files
}

#[test]
fn damaged_index_files_are_detected_and_rebuilt_from_an_untouched_catalog() {
    let seed = std::env::var("BIOMATCH_CORRUPTION_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1u64);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    {
        let g = Gallery::open(dir.path(), options()).unwrap();
        for spec in collections() {
            g.ensure_collection(&spec).unwrap();
        }
        g.enroll_batch(&(0..SUBJECTS).map(person).collect::<Vec<_>>(), "test")
            .unwrap();
        for n in (0..SUBJECTS).step_by(13) {
            g.delete(&person(n).subject, "test").unwrap();
        }
        // Replaced subjects: their old templates are tombstoned rows that
        // must never come back.
        for n in (5..SUBJECTS).step_by(29).filter(|n| n % 13 != 0) {
            let mut e: Enrollment = person(n + 10_000);
            e.subject = person(n).subject;
            g.replace(&e, "test").unwrap();
        }
        g.sync().unwrap();
    }
    let want = state(&Gallery::open(dir.path(), options()).unwrap());
    let catalog = |dir: &Path| {
        let g = Gallery::open(dir, options()).unwrap();
        (
            state(&g).subjects,
            g.audit_entries(usize::MAX).unwrap().len(),
        )
    };
    let catalog_before = catalog(dir.path());

    let mut detected = 0;
    for round in 0..ROUNDS {
        let files = index_files(dir.path());
        let file = &files[rng.random_range(0..files.len())];
        let mut bytes = std::fs::read(file).unwrap();
        let name = file.strip_prefix(dir.path()).unwrap().display().to_string();
        let is_log = name.ends_with(".bmlog");
        let truncate = bytes.len() < 2 || rng.random_bool(0.5);
        let damage = if truncate {
            let keep = rng.random_range(0..bytes.len());
            bytes.truncate(keep);
            format!("{name} truncated to {keep} bytes")
        } else {
            let bit = rng.random_range(0..bytes.len() * 8);
            bytes[bit / 8] ^= 1 << (bit % 8);
            format!("{name}: bit {bit} flipped")
        };
        std::fs::write(file, &bytes).unwrap();

        let g = Gallery::open(dir.path(), options()).unwrap();
        let noticed = g
            .open_report()
            .collections
            .iter()
            .any(|c| c.changed_anything());
        // Every damage is noticed, except a log cut exactly at a record
        // boundary, which is indistinguishable from a shorter clean log
        // (and then harmless: the catalog fills in what it lacks).
        assert!(
            noticed || (is_log && truncate),
            "round {round}: {damage} went unnoticed"
        );
        detected += usize::from(noticed);
        assert_eq!(state(&g), want, "round {round}: {damage}");
        for check in g.check_consistency().unwrap() {
            assert!(check.agrees(), "round {round}: {damage}: {check:?}");
        }
        eprintln!(
            "round {round}: {damage}: {}",
            if noticed {
                "detected, repaired"
            } else {
                "harmless"
            }
        );
    }
    assert_eq!(
        catalog(dir.path()),
        catalog_before,
        "the catalog is never changed by repairs"
    );
    eprintln!("corruption test (seed {seed}): {ROUNDS} rounds, {detected} detected");
}
