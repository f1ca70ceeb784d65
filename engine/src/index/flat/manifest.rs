//! The index manifest: settings and the list of sealed segments.
//!
//! Format (kind `MANI`, version 1): the common envelope around a JSON body,
//! so an operator can read it (`tail -c +65 index.bmman | head -c -32`)
//! while damage is still caught by the checksum. Replaced atomically.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::FlatConfig;
use crate::error::{Error, IoContext, Result};
use crate::storage::format::{self, FileKind, HEADER_LEN};
use crate::storage::fs::write_atomic;
use crate::vector::{Dtype, Metric};

/// File name of the manifest inside an index directory.
pub(crate) const MANIFEST_FILE: &str = "index.bmman";

/// Persistent index state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Manifest {
    pub(crate) dim: usize,
    pub(crate) dtype: Dtype,
    pub(crate) metric: Metric,
    pub(crate) segment_rows: usize,
    /// Sequence number of the writable segment's log (`vlog-{seq}`).
    pub(crate) growing_seq: u64,
    /// Next unused sequence number, for new segment files and logs.
    pub(crate) next_seq: u64,
    /// Sealed segments, in id order.
    pub(crate) segments: Vec<SegmentEntry>,
}

/// One sealed segment as recorded in the manifest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SegmentEntry {
    pub(crate) seq: u64,
    pub(crate) rows: usize,
    pub(crate) first_id: u64,
    pub(crate) last_id: u64,
}

impl Manifest {
    pub(crate) fn new(config: &FlatConfig) -> Manifest {
        Manifest {
            dim: config.dim,
            dtype: config.dtype,
            metric: config.metric,
            segment_rows: config.segment_rows,
            growing_seq: 1,
            next_seq: 2,
            segments: Vec::new(),
        }
    }

    pub(crate) fn config(&self) -> FlatConfig {
        FlatConfig {
            dim: self.dim,
            dtype: self.dtype,
            metric: self.metric,
            segment_rows: self.segment_rows,
        }
    }

    /// Takes the next unused sequence number.
    pub(crate) fn allocate_seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    pub(crate) fn path(dir: &Path) -> PathBuf {
        dir.join(MANIFEST_FILE)
    }

    pub(crate) fn read(dir: &Path) -> Result<Manifest> {
        let path = Manifest::path(dir);
        let bytes = std::fs::read(&path).at(&path)?;
        let body = format::check_footer(&bytes, &path, true)?;
        format::decode_header(body, FileKind::Manifest, &path)?;
        let manifest: Manifest = serde_json::from_slice(&body[HEADER_LEN..])
            .map_err(|e| Error::corrupted(&path, format!("manifest body: {e}")))?;
        manifest.validate(&path)?;
        Ok(manifest)
    }

    fn validate(&self, path: &Path) -> Result<()> {
        let bad = |reason: String| Err(Error::corrupted(path, reason));
        if self.dim == 0 || self.dim > crate::vector::MAX_DIM || self.segment_rows == 0 {
            return bad(format!(
                "dim {} / segment_rows {}",
                self.dim, self.segment_rows
            ));
        }
        if self.growing_seq >= self.next_seq {
            return bad(format!(
                "writable segment {} is not below next_seq {}",
                self.growing_seq, self.next_seq
            ));
        }
        let mut last: Option<u64> = None;
        for s in &self.segments {
            if s.rows == 0 || s.first_id > s.last_id || last.is_some_and(|l| s.first_id <= l) {
                return bad(format!("segment {} is out of order or empty", s.seq));
            }
            if s.seq >= self.next_seq || s.seq == self.growing_seq {
                return bad(format!(
                    "segment {} is not below next_seq {}",
                    s.seq, self.next_seq
                ));
            }
            last = Some(s.last_id);
        }
        Ok(())
    }

    pub(crate) fn write(&self, dir: &Path) -> Result<()> {
        let mut bytes =
            format::encode_header(FileKind::Manifest, &[0; format::FIELDS_LEN]).to_vec();
        let body = serde_json::to_vec_pretty(self).expect("manifest serialises");
        bytes.extend_from_slice(&body);
        let sum = format::checksum(&bytes);
        bytes.extend_from_slice(&format::encode_footer(bytes.len() as u64, sum));
        write_atomic(&Manifest::path(dir), &bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_damage() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = Manifest::new(&FlatConfig::new(8, Dtype::I8, Metric::Cosine));
        m.segments.push(SegmentEntry {
            seq: 1,
            rows: 3,
            first_id: 5,
            last_id: 9,
        });
        m.growing_seq = 2;
        m.next_seq = 3;
        m.write(dir.path()).unwrap();
        assert_eq!(Manifest::read(dir.path()).unwrap(), m);

        let path = Manifest::path(dir.path());
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[HEADER_LEN + 3] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let err = Manifest::read(dir.path()).unwrap_err();
        assert!(matches!(err, Error::Corrupted { .. }), "{err}");
    }
}
