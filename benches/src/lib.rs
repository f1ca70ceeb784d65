//! Shared set-up for biomatch's criterion benches: where on-disk fixtures
//! live and how big the flat-index benches are.
//!
//! Fixtures are generated once under `target/bench-fixtures/` and reused;
//! `BIOMATCH_BENCH_N` shrinks the flat-index benches (default 1 000 000
//! rows) for a quick run.

#![deny(missing_docs)]

use std::path::PathBuf;

/// Directory for cached benchmark fixtures (`target/bench-fixtures`).
pub fn fixture_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("bench-fixtures")
}

/// Rows in the flat-index benches: `BIOMATCH_BENCH_N` or 1 000 000.
///
/// # Panics
/// If `BIOMATCH_BENCH_N` is set but not a positive integer.
pub fn flat_rows() -> usize {
    match std::env::var("BIOMATCH_BENCH_N") {
        Ok(v) => v
            .parse()
            .ok()
            .filter(|&n| n > 0)
            .unwrap_or_else(|| panic!("BIOMATCH_BENCH_N={v} is not a positive integer")),
        Err(_) => 1_000_000,
    }
}
