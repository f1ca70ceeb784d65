//! The writable segment.
//!
//! Appended rows go to an append-only log (`vlog-SEQ.bmlog`, one record per
//! row: id, label and the prepared `f32` vector) and, encoded, into in-memory
//! blocks in the same layout as sealed segments, so searches scan both with
//! the same kernels. Full blocks are frozen behind `Arc`s; a snapshot shares
//! them and copies only the partial last block, so publishing costs a
//! pointer per block plus at most 127 rows.
//!
//! When the segment reaches `segment_rows`, the index writes it out as a
//! sealed segment and starts a new log.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::storage::format::{FieldReader, Fields, FileKind};
use crate::storage::log::{RecordLog, Replay};
use crate::storage::segment::{BlockRef, Codes};
use crate::vector::{BLOCK_ROWS, Dtype, f16, layout, quant};

use super::FlatConfig;
use super::snapshot::SegStats;

/// Name of the log of writable segment `seq`.
pub(crate) fn log_file_name(seq: u64) -> String {
    format!("vlog-{seq:010}.bmlog")
}

/// The sequence number in a log file name, if it is one.
pub(crate) fn parse_log_file_name(name: &str) -> Option<u64> {
    name.strip_prefix("vlog-")?
        .strip_suffix(".bmlog")?
        .parse()
        .ok()
}

/// A block's codes, owned.
#[derive(Clone, Debug)]
pub(crate) enum CodesBuf {
    F32(Vec<f32>),
    F16(Vec<f16>),
    I8(Vec<u8>),
}

/// Up to [`BLOCK_ROWS`] rows of the writable segment.
#[derive(Clone, Debug)]
pub(crate) struct GrowBlock {
    ids: Vec<u64>,
    labels: Vec<u64>,
    sqnorms: Vec<f32>,
    scales: Vec<f32>,
    codes: CodesBuf,
    originals: Vec<f32>,
}

impl GrowBlock {
    fn new(dtype: Dtype, dim: usize) -> GrowBlock {
        let codes = match dtype {
            Dtype::F32 => CodesBuf::F32(layout::new_block_f32(dim)),
            Dtype::F16 => CodesBuf::F16(layout::new_block_f16(dim)),
            Dtype::I8 => CodesBuf::I8(layout::new_block_i8(dim)),
        };
        GrowBlock {
            ids: Vec::with_capacity(BLOCK_ROWS),
            labels: Vec::with_capacity(BLOCK_ROWS),
            sqnorms: Vec::with_capacity(BLOCK_ROWS),
            scales: Vec::new(),
            codes,
            originals: Vec::new(),
        }
    }

    fn len(&self) -> usize {
        self.ids.len()
    }

    /// Encodes `v` (already validated and prepared) as the next row.
    fn push(&mut self, id: u64, label: u64, v: &[f32], scratch: &mut Scratch) {
        let r = self.ids.len();
        debug_assert!(r < BLOCK_ROWS);
        match &mut self.codes {
            CodesBuf::F32(block) => layout::set_row(block, r, v),
            CodesBuf::F16(block) => {
                quant::to_f16(v, &mut scratch.halves);
                layout::set_row(block, r, &scratch.halves);
                self.originals.extend_from_slice(v);
            }
            CodesBuf::I8(block) => {
                let scale = quant::quantize_i8(v, &mut scratch.codes);
                layout::set_row_i8(block, r, &scratch.codes);
                self.scales.push(scale);
                self.originals.extend_from_slice(v);
            }
        }
        self.ids.push(id);
        self.labels.push(label);
        self.sqnorms.push(v.iter().map(|x| x * x).sum());
    }

    pub(crate) fn as_block(&self) -> BlockRef<'_> {
        BlockRef {
            ids: &self.ids,
            labels: &self.labels,
            sqnorms: &self.sqnorms,
            scales: &self.scales,
            codes: match &self.codes {
                CodesBuf::F32(c) => Codes::F32(c),
                CodesBuf::F16(c) => Codes::F16(c),
                CodesBuf::I8(c) => Codes::I8(c),
            },
            originals: &self.originals,
        }
    }
}

/// Conversion buffers reused across rows.
#[derive(Debug)]
struct Scratch {
    halves: Vec<f16>,
    codes: Vec<i8>,
}

/// Rows encoded into blocks: the writable segment's, or a segment being
/// rebuilt or compacted.
#[derive(Debug)]
pub(crate) struct Rows {
    dtype: Dtype,
    dim: usize,
    full: Vec<Arc<GrowBlock>>,
    partial: GrowBlock,
    count: usize,
    stats: SegStats,
    scratch: Scratch,
}

impl Rows {
    /// A frozen view of the rows.
    pub(crate) fn view(&self) -> GrowingView {
        let mut blocks = self.full.clone();
        if self.partial.len() > 0 {
            blocks.push(Arc::new(self.partial.clone()));
        }
        GrowingView {
            blocks,
            rows: self.count,
            stats: self.stats,
        }
    }

    pub(crate) fn new(config: &FlatConfig) -> Rows {
        Rows {
            dtype: config.dtype,
            dim: config.dim,
            full: Vec::new(),
            partial: GrowBlock::new(config.dtype, config.dim),
            count: 0,
            stats: SegStats::default(),
            scratch: Scratch {
                halves: vec![f16::ZERO; config.dim],
                codes: vec![0; config.dim],
            },
        }
    }

    /// Encodes a validated, prepared row.
    pub(crate) fn push(&mut self, id: u64, label: u64, v: &[f32]) {
        self.partial.push(id, label, v, &mut self.scratch);
        self.count += 1;
        self.stats.add(
            *self.partial.sqnorms.last().expect("just pushed"),
            self.partial.scales.last().copied(),
        );
        if self.partial.len() == BLOCK_ROWS {
            let fresh = GrowBlock::new(self.dtype, self.dim);
            self.full
                .push(Arc::new(std::mem::replace(&mut self.partial, fresh)));
        }
    }

    pub(crate) fn last_id(&self) -> Option<u64> {
        self.partial
            .ids
            .last()
            .or_else(|| self.full.last().and_then(|b| b.ids.last()))
            .copied()
    }
}

/// The writable segment of an index: its rows and their log.
#[derive(Debug)]
pub(crate) struct Growing {
    pub(crate) seq: u64,
    log: RecordLog,
    rows: Rows,
    /// Encoding buffer for log records.
    record: Vec<u8>,
}

/// Bytes of a log record before the vector: id and label.
const RECORD_HEADER: usize = 16;

fn log_fields(config: &FlatConfig) -> [u8; crate::storage::format::FIELDS_LEN] {
    Fields::default()
        .u8(config.dtype.code())
        .u8(config.metric.code())
        .u8(0)
        .u8(0)
        .u32(config.dim as u32)
        .finish()
}

impl Growing {
    fn with(seq: u64, log: RecordLog, rows: Rows) -> Growing {
        let record = Vec::with_capacity(RECORD_HEADER + 4 * rows.dim);
        Growing {
            seq,
            log,
            rows,
            record,
        }
    }

    /// Starts writable segment `seq` with a new, empty log.
    pub(crate) fn create(dir: &Path, seq: u64, config: &FlatConfig) -> Result<Growing> {
        let path = dir.join(log_file_name(seq));
        let log = RecordLog::create(&path, FileKind::VectorLog, &log_fields(config))?;
        Ok(Growing::with(seq, log, Rows::new(config)))
    }

    /// Reopens writable segment `seq`, replaying its log. Every replayed id
    /// must be greater than `after` (the last sealed id) and increasing.
    pub(crate) fn open(
        dir: &Path,
        seq: u64,
        config: &FlatConfig,
        after: Option<u64>,
    ) -> Result<(Growing, Replay)> {
        let path = dir.join(log_file_name(seq));
        let dim = config.dim;
        let mut rows = Rows::new(config);
        let mut vector = vec![0.0f32; dim];
        let (log, fields, replay) = RecordLog::open(&path, FileKind::VectorLog, |payload| {
            if payload.len() != RECORD_HEADER + 4 * dim {
                return Err(Error::corrupted(
                    &path,
                    format!(
                        "record of {} bytes; rows of dimension {dim} take {}",
                        payload.len(),
                        RECORD_HEADER + 4 * dim
                    ),
                ));
            }
            let id = u64::from_le_bytes(payload[..8].try_into().expect("8 bytes"));
            let label = u64::from_le_bytes(payload[8..16].try_into().expect("8 bytes"));
            for (x, b) in vector
                .iter_mut()
                .zip(payload[RECORD_HEADER..].chunks_exact(4))
            {
                *x = f32::from_le_bytes(b.try_into().expect("4 bytes"));
            }
            let last = rows.last_id().or(after);
            if last.is_some_and(|l| id <= l) || vector.iter().any(|x| !x.is_finite()) {
                return Err(Error::corrupted(
                    &path,
                    format!(
                        "record for id {id} is out of order or not finite (previous id {last:?})"
                    ),
                ));
            }
            rows.push(id, label, &vector);
            Ok(())
        })?;
        let mut f = FieldReader::new(&fields);
        let (dtype, metric) = (f.u8(), f.u8());
        let (_, _) = (f.u8(), f.u8());
        let log_dim = f.u32() as usize;
        if (dtype, metric, log_dim) != (config.dtype.code(), config.metric.code(), dim) {
            return Err(Error::corrupted(
                &path,
                format!(
                    "log written for dtype {dtype}, metric {metric}, dim {log_dim}; index is {}, {}, {dim}",
                    config.dtype, config.metric
                ),
            ));
        }
        Ok((Growing::with(seq, log, rows), replay))
    }

    /// Appends a validated, prepared row: to the log (buffered) and to memory.
    pub(crate) fn append(&mut self, id: u64, label: u64, v: &[f32]) -> Result<()> {
        self.record.clear();
        self.record.extend_from_slice(&id.to_le_bytes());
        self.record.extend_from_slice(&label.to_le_bytes());
        for x in v {
            self.record.extend_from_slice(&x.to_le_bytes());
        }
        self.log.append(&self.record)?;
        self.rows.push(id, label, v);
        Ok(())
    }

    /// Rows in the segment.
    pub(crate) fn rows(&self) -> usize {
        self.rows.count
    }

    /// Largest id in the segment.
    pub(crate) fn last_id(&self) -> Option<u64> {
        self.rows.last_id()
    }

    /// A frozen view for snapshots.
    pub(crate) fn view(&self) -> GrowingView {
        self.rows.view()
    }

    /// Writes buffered log records to the OS.
    pub(crate) fn flush(&mut self) -> Result<()> {
        self.log.flush()
    }

    /// Makes appended rows durable.
    pub(crate) fn sync(&mut self) -> Result<()> {
        self.log.sync()
    }

    /// Path of the log.
    pub(crate) fn log_path(&self) -> PathBuf {
        self.log.path().to_path_buf()
    }
}

/// An immutable view of the writable segment at one moment.
#[derive(Debug)]
pub(crate) struct GrowingView {
    blocks: Vec<Arc<GrowBlock>>,
    rows: usize,
    pub(crate) stats: SegStats,
}

impl GrowingView {
    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    pub(crate) fn block_count(&self) -> usize {
        self.blocks.len()
    }

    pub(crate) fn block(&self, b: usize) -> BlockRef<'_> {
        self.blocks[b].as_block()
    }

    /// Row index of `id`, if present.
    pub(crate) fn locate(&self, id: u64) -> Option<usize> {
        let b = self
            .blocks
            .partition_point(|blk| blk.ids.last().is_some_and(|&l| l < id));
        let block = self.blocks.get(b)?;
        block
            .ids
            .binary_search(&id)
            .ok()
            .map(|r| b * BLOCK_ROWS + r)
    }
}
