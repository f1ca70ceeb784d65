//! Child process of the gallery crash test (`tests/tests/e2e/crash.rs`).
//!
//! `gallery-crash-child DIR START SEED` opens the gallery in DIR and writes
//! until killed: single and batched enrollments of subjects START,
//! START + 1, …, deletions and compactions, chosen by SEED. It prints a
//! line once each write has returned (so is durable):
//!
//! ```text
//! ready                 the gallery is open
//! ack N                 subject N is enrolled
//! del-start N / del N   deleting subject N / done
//! compact-start / compact-end
//! ```

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use biomatch_engine::gallery::{Enrollment, Gallery, GalleryOptions};
use biomatch_tests::crash::{collections, person};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().context("DIR")?);
    let start: u64 = args.next().context("START")?.parse()?;
    let seed: u64 = args.next().context("SEED")?.parse()?;
    let options = GalleryOptions {
        segment_rows: 256,
        ..GalleryOptions::default()
    };
    let gallery = Gallery::open(&dir, options)?;
    for spec in collections() {
        gallery.ensure_collection(&spec)?;
    }
    let mut out = std::io::stdout().lock();
    let mut say = |line: String| -> Result<()> {
        writeln!(out, "{line}")?;
        out.flush()?;
        Ok(())
    };
    say("ready".into())?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ start);
    let mut next = start;
    let mut mine: Vec<u64> = Vec::new();
    loop {
        match rng.random_range(0..100) {
            0..70 => {
                gallery.enroll(&person(next), "crash-test")?;
                say(format!("ack {next}"))?;
                mine.push(next);
                next += 1;
            }
            70..85 => {
                let batch: Vec<Enrollment> = (next..next + 3).map(person).collect();
                gallery.enroll_batch(&batch, "crash-test")?;
                for n in next..next + 3 {
                    say(format!("ack {n}"))?;
                    mine.push(n);
                }
                next += 3;
            }
            85..95 if !mine.is_empty() => {
                let n = mine.swap_remove(rng.random_range(0..mine.len()));
                say(format!("del-start {n}"))?;
                gallery.delete(&person(n).subject, "crash-test")?;
                say(format!("del {n}"))?;
            }
            _ => {
                say("compact-start".into())?;
                gallery.compact(0.0)?;
                say("compact-end".into())?;
            }
        }
    }
}
