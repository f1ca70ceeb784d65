//! Writes the on-disk compatibility fixtures under
//! `engine/tests/fixtures/flat-v1/` (one small index per dtype).
//!
//! Run only when a format version is added: checked-in fixtures are what
//! older releases wrote, and `index::flat` tests must keep reading them.
//!
//! ```text
//! cargo run -p biomatch-engine --example generate_fixtures
//! ```

use std::path::Path;

use biomatch_engine::index::flat::{FlatConfig, FlatIndex};
use biomatch_engine::index::{Dtype, Metric};

/// Rows, dimension, ids and deletions of every fixture (also in the test).
const ROWS: usize = 300;
const DIM: usize = 12;
const SEGMENT_ROWS: usize = 200;

fn value(row: usize, k: usize) -> f32 {
    ((row * 31 + k * 17) % 97) as f32 / 48.5 - 1.0 + 0.01
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/flat-v1");
    for (dtype, metric) in [
        (Dtype::F32, Metric::Cosine),
        (Dtype::F16, Metric::L2),
        (Dtype::I8, Metric::InnerProduct),
    ] {
        let dir = root.join(dtype.name());
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        let config = FlatConfig::new(DIM, dtype, metric).with_segment_rows(SEGMENT_ROWS);
        let mut index = FlatIndex::create(&dir, config)?;
        let ids: Vec<u64> = (0..ROWS as u64).map(|i| 1000 + 3 * i).collect();
        let data: Vec<f32> = (0..ROWS)
            .flat_map(|r| (0..DIM).map(move |k| value(r, k)))
            .collect();
        let labels: Vec<u64> = ids.iter().map(|id| id / 7).collect();
        index.append_labeled(&ids, &labels, &data)?;
        // One deletion in the sealed segment, one in the writable segment.
        index.delete(1000 + 3 * 5)?;
        index.delete(1000 + 3 * 250)?;
        index.sync()?;
        println!("wrote {}", dir.display());
    }
    Ok(())
}
