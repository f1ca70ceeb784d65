//! Crash safety of the gallery: a child process writes continuously and is
//! killed with SIGKILL at seeded random moments (every third kill right
//! after it starts a compaction). After every kill the gallery is opened
//! and must hold every acknowledged write exactly: acknowledged subjects
//! present with their exact vectors and found by identify, acknowledged
//! deletions gone, no subject with only some of its templates, and every
//! index agreeing with the catalog template by template.
//!
//! `BIOMATCH_CRASH_SEED` (default 1) and `BIOMATCH_CRASH_KILLS` (default
//! 24) change the run.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use biomatch_engine::gallery::{Gallery, GalleryOptions, Probe, Search};
use biomatch_tests::built_bin;
use biomatch_tests::crash::{FACE_DIM, person, vector};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// What the parent learned from the child's output.
#[derive(Default)]
struct Acknowledged {
    enrolled: BTreeSet<u64>,
    /// Deletions acknowledged: the subject must be gone.
    deleted: BTreeSet<u64>,
    /// Deletions started but not acknowledged: either outcome is right.
    maybe_deleted: BTreeSet<u64>,
}

impl Acknowledged {
    fn record(&mut self, line: &str) {
        let mut words = line.split_whitespace();
        let (Some(word), Some(n)) = (
            words.next(),
            words.next().and_then(|n| n.parse::<u64>().ok()),
        ) else {
            return;
        };
        match word {
            "ack" => {
                self.enrolled.insert(n);
            }
            "del-start" => {
                self.maybe_deleted.insert(n);
            }
            "del" => {
                self.maybe_deleted.remove(&n);
                self.deleted.insert(n);
            }
            _ => {}
        }
    }
}

#[test]
fn acknowledged_writes_survive_sigkill_at_any_moment() {
    let seed = env_u64("BIOMATCH_CRASH_SEED", 1);
    let kills = env_u64("BIOMATCH_CRASH_KILLS", 24);
    let child_bin = built_bin("gallery-crash-child");
    let dir = tempfile::tempdir().unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut acked = Acknowledged::default();
    let mut during_compaction = 0;

    for launch in 0..kills {
        let start = (launch + 1) * 1_000_000;
        let mut child = Command::new(&child_bin)
            .arg(dir.path())
            .arg(start.to_string())
            .arg(seed.to_string())
            .env("BIOMATCH_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });

        let deadline = Instant::now() + Duration::from_secs(60);
        let wait_for = |rx: &mpsc::Receiver<String>, acked: &mut Acknowledged, word: &str| loop {
            let line = rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .unwrap_or_else(|_| panic!("launch {launch}: no `{word}` from the child"));
            acked.record(&line);
            if line == word {
                break;
            }
        };
        wait_for(&rx, &mut acked, "ready");
        if launch % 3 == 2 {
            // Kill inside a compaction: right after it starts, at a random depth.
            wait_for(&rx, &mut acked, "compact-start");
            std::thread::sleep(Duration::from_micros(rng.random_range(0..20_000)));
            during_compaction += 1;
        } else {
            std::thread::sleep(Duration::from_millis(rng.random_range(20..400)));
        }
        child.kill().unwrap();
        let status = child.wait().unwrap();
        assert!(!status.success(), "the child only stops when killed");
        reader.join().unwrap();
        for line in rx.try_iter() {
            acked.record(&line);
        }
        check(dir.path(), &acked, launch);
    }
    assert!(during_compaction >= kills / 3);
    eprintln!(
        "crash test (seed {seed}): {kills} kills ({during_compaction} during compaction), {} subjects acknowledged, {} deletions acknowledged",
        acked.enrolled.len(),
        acked.deleted.len()
    );
}

/// Opens the gallery the child left and checks every acknowledged write.
fn check(dir: &std::path::Path, acked: &Acknowledged, launch: u64) {
    let gallery = Gallery::open(dir, GalleryOptions::default()).unwrap();
    for n in &acked.enrolled {
        if acked.maybe_deleted.contains(n) {
            continue;
        }
        let want = person(*n);
        let got = gallery.get(&want.subject).unwrap();
        if acked.deleted.contains(n) {
            assert!(
                got.is_none(),
                "launch {launch}: deleted subject {n} is back"
            );
            continue;
        }
        let got = got.unwrap_or_else(|| panic!("launch {launch}: acknowledged subject {n} lost"));
        assert_eq!(got.templates.len(), 3, "launch {launch}: subject {n}");
        for (t, w) in got.templates.iter().zip(&want.templates) {
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(
                bits(&t.vector),
                bits(&w.vector),
                "launch {launch}: subject {n} vector changed"
            );
        }
        let probe = Probe {
            collection: "face".into(),
            vector: vector(3 * n, FACE_DIM),
        };
        let hit = &gallery.identify(&probe, Search::TopK(1)).unwrap()[0];
        assert_eq!(
            hit.subject, want.subject,
            "launch {launch}: identify misses subject {n}"
        );
    }
    // No partial subject: every subject in the indexes has its face and
    // both fingers, in one snapshot.
    let snap = gallery.snapshot();
    let (_, face) = snap.collection("face").unwrap();
    let (_, finger) = snap.collection("finger").unwrap();
    let faces: BTreeSet<u64> = face.ids().filter_map(|id| face.label(id)).collect();
    let mut fingers = std::collections::BTreeMap::<u64, usize>::new();
    for id in finger.ids() {
        *fingers.entry(finger.label(id).unwrap()).or_default() += 1;
    }
    assert_eq!(
        faces.len(),
        fingers.len(),
        "launch {launch}: subjects differ between collections"
    );
    assert!(
        fingers.values().all(|&c| c == 2),
        "launch {launch}: a subject lacks a finger"
    );
    assert_eq!(
        snap.counts().subjects as usize,
        faces.len(),
        "launch {launch}: catalog and index subject counts"
    );
    for check in gallery.check_consistency().unwrap() {
        assert!(check.agrees(), "launch {launch}: {check:?}");
    }
}
