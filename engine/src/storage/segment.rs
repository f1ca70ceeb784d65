//! Sealed vector segments: immutable files of rows, memory-mapped for scans.
//!
//! # Format (kind `SEGM`, version 1)
//!
//! ```text
//! header fields (after the common 16 bytes, little-endian)
//!   dtype u8 | metric u8 | 0u16 | dim u32 | rows u64 | first_id u64 | last_id u64 | block_rows u32
//! sections, each starting at a multiple of 64 bytes
//!   ids        rows × u64, strictly increasing
//!   labels     rows × u64, an opaque value per row (the gallery's subject)
//!   sqnorms    rows × f32, ‖original‖² of each row
//!   scales     rows × f32, i8 only: the row's quantization scale
//!   blocks     ⌈rows / 128⌉ blocks in the vector::layout block layout of dtype
//!   originals  rows × dim × f32, row-major; f16 and i8 only (re-scoring copy)
//! footer (common: body end, xxh3-64 of everything before it, end magic)
//! ```
//!
//! Files are written with [`super::fs::AtomicFile`] and never modified.
//! Opening checks everything that can be checked without the data (header,
//! sizes, footer) and, with `verify`, the checksum and the id order.

use std::path::{Path, PathBuf};

use super::format::{self, Checksum, FOOTER_LEN, FieldReader, Fields, FileKind, HEADER_LEN};
use super::fs::AtomicFile;
use super::mmap::{MappedFile, section};
use crate::error::{Error, Result};
use crate::vector::{BLOCK_ROWS, Dtype, MAX_DIM, Metric, f16, layout};

/// What a segment holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentMeta {
    /// Storage type of the scanned codes.
    pub dtype: Dtype,
    /// Metric the rows were prepared for (cosine rows are normalised).
    pub metric: Metric,
    /// Vector dimension.
    pub dim: usize,
    /// Number of rows.
    pub rows: usize,
    /// Smallest row id (0 when empty).
    pub first_id: u64,
    /// Largest row id (0 when empty).
    pub last_id: u64,
}

/// One block's scanned codes.
#[derive(Clone, Copy, Debug)]
pub enum Codes<'a> {
    /// `f32` block.
    F32(&'a [f32]),
    /// `f16` block.
    F16(&'a [f16]),
    /// `i8` block (offset binary).
    I8(&'a [u8]),
}

impl<'a> Codes<'a> {
    fn bytes(&self) -> &'a [u8] {
        match *self {
            Codes::F32(c) => bytemuck::cast_slice(c),
            Codes::F16(c) => bytemuck::cast_slice(c),
            Codes::I8(c) => c,
        }
    }

    fn dtype(&self) -> Dtype {
        match self {
            Codes::F32(_) => Dtype::F32,
            Codes::F16(_) => Dtype::F16,
            Codes::I8(_) => Dtype::I8,
        }
    }
}

/// Up to [`BLOCK_ROWS`] rows: everything a scan and a re-score need.
#[derive(Clone, Copy, Debug)]
pub struct BlockRef<'a> {
    /// Row ids (1 to 128 of them).
    pub ids: &'a [u64],
    /// Row labels, one per id.
    pub labels: &'a [u64],
    /// `‖original‖²` per row.
    pub sqnorms: &'a [f32],
    /// Quantization scale per row (`i8` only, else empty).
    pub scales: &'a [f32],
    /// The whole block of codes (rows past `ids.len()` are padding).
    pub codes: Codes<'a>,
    /// Row-major `f32` originals, `ids.len() × dim` (`f16`/`i8` only, else empty).
    pub originals: &'a [f32],
}

impl BlockRef<'_> {
    /// Number of rows in the block.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether the block has no rows.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Copies row `r`'s original `f32` vector into `out` (`out.len()` = dim).
    pub fn original(&self, r: usize, out: &mut [f32]) {
        let dim = out.len();
        match self.codes {
            Codes::F32(block) => layout::get_row(block, r, out),
            _ => out.copy_from_slice(&self.originals[r * dim..(r + 1) * dim]),
        }
    }
}

/// Byte offsets of a segment's sections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Layout {
    ids: usize,
    labels: usize,
    sqnorms: usize,
    scales: usize,
    blocks: usize,
    originals: usize,
    /// Offset of the footer = end of the body.
    end: usize,
}

fn align64(n: usize) -> usize {
    n.div_ceil(64) * 64
}

impl Layout {
    fn of(dtype: Dtype, dim: usize, rows: usize) -> Option<Layout> {
        let blocks = rows.div_ceil(BLOCK_ROWS);
        let ids = HEADER_LEN;
        let labels = align64(ids.checked_add(rows.checked_mul(8)?)?);
        let sqnorms = align64(labels.checked_add(rows.checked_mul(8)?)?);
        let scales = align64(sqnorms.checked_add(rows.checked_mul(4)?)?);
        let scale_len = if dtype == Dtype::I8 { rows * 4 } else { 0 };
        let block_start = align64(scales.checked_add(scale_len)?);
        let originals =
            align64(block_start.checked_add(blocks.checked_mul(dtype.block_bytes(dim))?)?);
        let orig_len = if dtype == Dtype::F32 {
            0
        } else {
            rows.checked_mul(dim)?.checked_mul(4)?
        };
        Some(Layout {
            ids,
            labels,
            sqnorms,
            scales,
            blocks: block_start,
            originals,
            end: originals.checked_add(orig_len)?,
        })
    }
}

fn encode_fields(meta: &SegmentMeta) -> [u8; format::FIELDS_LEN] {
    Fields::default()
        .u8(meta.dtype.code())
        .u8(meta.metric.code())
        .u8(0)
        .u8(0)
        .u32(meta.dim as u32)
        .u64(meta.rows as u64)
        .u64(meta.first_id)
        .u64(meta.last_id)
        .u32(BLOCK_ROWS as u32)
        .finish()
}

/// Writes a sealed segment holding `blocks` to `path` atomically.
///
/// # Panics
/// If the blocks disagree with `meta` (row count, dtype, section lengths,
/// a non-final block with fewer than [`BLOCK_ROWS`] rows): these are
/// programming errors of the caller, not input errors.
pub fn write_segment(path: &Path, meta: &SegmentMeta, blocks: &[BlockRef<'_>]) -> Result<()> {
    let dim = meta.dim;
    let rows: usize = blocks.iter().map(BlockRef::len).sum();
    assert_eq!(rows, meta.rows, "row count");
    for (i, b) in blocks.iter().enumerate() {
        assert!(!b.is_empty(), "empty block");
        assert!(
            i + 1 == blocks.len() || b.len() == BLOCK_ROWS,
            "short block before the last"
        );
        assert_eq!(b.codes.dtype(), meta.dtype, "block dtype");
        assert_eq!(
            b.codes.bytes().len(),
            meta.dtype.block_bytes(dim),
            "block size"
        );
        assert_eq!(b.labels.len(), b.len(), "labels");
        assert_eq!(b.sqnorms.len(), b.len(), "sqnorms");
        let scales = if meta.dtype == Dtype::I8 { b.len() } else { 0 };
        assert_eq!(b.scales.len(), scales, "scales");
        let originals = if meta.dtype == Dtype::F32 {
            0
        } else {
            b.len() * dim
        };
        assert_eq!(b.originals.len(), originals, "originals");
    }
    let layout = Layout::of(meta.dtype, dim, rows).expect("segment size fits in memory");

    let mut out = SegmentWriter {
        file: AtomicFile::create(path)?,
        sum: Checksum::new(),
        at: 0,
    };
    out.put(&format::encode_header(
        FileKind::Segment,
        &encode_fields(meta),
    ))?;
    for b in blocks {
        out.put(bytemuck::cast_slice(b.ids))?;
    }
    out.pad_to(layout.labels)?;
    for b in blocks {
        out.put(bytemuck::cast_slice(b.labels))?;
    }
    out.pad_to(layout.sqnorms)?;
    for b in blocks {
        out.put(bytemuck::cast_slice(b.sqnorms))?;
    }
    out.pad_to(layout.scales)?;
    for b in blocks {
        out.put(bytemuck::cast_slice(b.scales))?;
    }
    out.pad_to(layout.blocks)?;
    for b in blocks {
        out.put(b.codes.bytes())?;
    }
    out.pad_to(layout.originals)?;
    for b in blocks {
        out.put(bytemuck::cast_slice(b.originals))?;
    }
    debug_assert_eq!(out.at, layout.end);
    let footer = format::encode_footer(out.at as u64, out.sum.finish());
    out.file.write_all(&footer)?;
    out.file.commit()
}

struct SegmentWriter {
    file: AtomicFile,
    sum: Checksum,
    at: usize,
}

impl SegmentWriter {
    fn put(&mut self, bytes: &[u8]) -> Result<()> {
        self.sum.update(bytes);
        self.at += bytes.len();
        self.file.write_all(bytes)
    }

    fn pad_to(&mut self, offset: usize) -> Result<()> {
        debug_assert!(offset >= self.at);
        const ZEROS: [u8; 64] = [0; 64];
        let n = offset - self.at;
        self.put(&ZEROS[..n])
    }
}

/// A sealed segment, memory-mapped.
#[derive(Debug)]
pub struct SealedSegment {
    file: MappedFile,
    meta: SegmentMeta,
    layout: Layout,
}

impl SealedSegment {
    /// Opens and validates a segment file. With `verify`, also checks the
    /// checksum (reading the whole file) and that ids strictly increase.
    pub fn open(path: &Path, verify: bool) -> Result<SealedSegment> {
        let file = MappedFile::open(path)?;
        let bytes = file.bytes();
        let fields = format::decode_header(bytes, FileKind::Segment, path)?;
        let mut f = FieldReader::new(&fields);
        let (dtype_code, metric_code) = (f.u8(), f.u8());
        let (_, _) = (f.u8(), f.u8());
        let dim = f.u32() as usize;
        let rows = f.u64();
        let (first_id, last_id) = (f.u64(), f.u64());
        let block_rows = f.u32() as usize;

        let incompatible = |reason: String| Error::IncompatibleFormat {
            path: path.to_path_buf(),
            reason,
        };
        let dtype = Dtype::from_code(dtype_code)
            .ok_or_else(|| incompatible(format!("unknown dtype code {dtype_code}")))?;
        let metric = Metric::from_code(metric_code)
            .ok_or_else(|| incompatible(format!("unknown metric code {metric_code}")))?;
        if block_rows != BLOCK_ROWS {
            return Err(incompatible(format!(
                "block of {block_rows} rows; this build uses {BLOCK_ROWS}"
            )));
        }
        if !(1..=MAX_DIM).contains(&dim) {
            return Err(Error::corrupted(
                path,
                format!("dimension {dim} out of range"),
            ));
        }
        let rows = usize::try_from(rows)
            .map_err(|_| Error::corrupted(path, format!("row count {rows} out of range")))?;
        let layout = Layout::of(dtype, dim, rows)
            .ok_or_else(|| Error::corrupted(path, format!("row count {rows} out of range")))?;
        let expected = layout.end + FOOTER_LEN;
        if bytes.len() != expected {
            return Err(Error::corrupted(
                path,
                format!(
                    "file is {} bytes, {rows} rows of {dtype} × {dim} need {expected} (truncated or extended)",
                    bytes.len()
                ),
            ));
        }
        format::check_footer(bytes, path, verify)?;

        let segment = SealedSegment {
            file,
            meta: SegmentMeta {
                dtype,
                metric,
                dim,
                rows,
                first_id,
                last_id,
            },
            layout,
        };
        segment.check_sections(verify)?;
        segment.file.advise_sequential();
        Ok(segment)
    }

    /// Validates section views and id bounds (all ids with `verify`).
    fn check_sections(&self, verify: bool) -> Result<()> {
        let path = self.path();
        let ids = self.try_ids()?;
        self.try_u64(self.layout.labels, "labels")?;
        let sqnorms = self.try_f32(self.layout.sqnorms, self.meta.rows, "sqnorms")?;
        self.try_f32(self.layout.scales, self.scale_count(), "scales")?;
        let (first, last) = (ids.first().copied(), ids.last().copied());
        let (want_first, want_last) = if ids.is_empty() {
            (None, None)
        } else {
            (Some(self.meta.first_id), Some(self.meta.last_id))
        };
        if (first, last) != (want_first, want_last) {
            return Err(Error::corrupted(
                path,
                format!(
                    "ids span {first:?}..{last:?}, header says {}..{}",
                    self.meta.first_id, self.meta.last_id
                ),
            ));
        }
        if verify {
            if let Some(w) = ids.windows(2).position(|w| w[0] >= w[1]) {
                return Err(Error::corrupted(
                    path,
                    format!(
                        "ids not increasing at row {}: {} then {}",
                        w + 1,
                        ids[w],
                        ids[w + 1]
                    ),
                ));
            }
            if let Some(r) = sqnorms.iter().position(|n| !n.is_finite()) {
                return Err(Error::corrupted(
                    path,
                    format!("non-finite norm at row {r}"),
                ));
            }
        }
        Ok(())
    }

    fn scale_count(&self) -> usize {
        if self.meta.dtype == Dtype::I8 {
            self.meta.rows
        } else {
            0
        }
    }

    fn try_ids(&self) -> Result<&[u64]> {
        self.try_u64(self.layout.ids, "ids")
    }

    fn try_u64(&self, offset: usize, what: &str) -> Result<&[u64]> {
        section(self.file.bytes(), offset, self.meta.rows, self.path(), what)
    }

    fn try_f32(&self, offset: usize, count: usize, what: &str) -> Result<&[f32]> {
        section(self.file.bytes(), offset, count, self.path(), what)
    }

    /// The segment's metadata.
    pub fn meta(&self) -> &SegmentMeta {
        &self.meta
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// All row ids, increasing.
    pub fn ids(&self) -> &[u64] {
        self.try_ids().expect("validated at open")
    }

    /// The label of every row.
    pub fn labels(&self) -> &[u64] {
        self.try_u64(self.layout.labels, "labels")
            .expect("validated at open")
    }

    /// `‖original‖²` of every row.
    pub fn sqnorms(&self) -> &[f32] {
        self.try_f32(self.layout.sqnorms, self.meta.rows, "sqnorms")
            .expect("validated at open")
    }

    /// Quantization scales (`i8` only, else empty).
    pub fn scales(&self) -> &[f32] {
        self.try_f32(self.layout.scales, self.scale_count(), "scales")
            .expect("validated at open")
    }

    /// Number of blocks.
    pub fn block_count(&self) -> usize {
        self.meta.rows.div_ceil(BLOCK_ROWS)
    }

    /// Block `b` (`b < block_count()`).
    ///
    /// # Panics
    /// If `b` is out of range.
    pub fn block(&self, b: usize) -> BlockRef<'_> {
        assert!(b < self.block_count(), "block {b} out of range");
        let (dim, rows) = (self.meta.dim, self.meta.rows);
        let lo = b * BLOCK_ROWS;
        let hi = (lo + BLOCK_ROWS).min(rows);
        let bytes = self.file.bytes();
        let block_bytes = self.meta.dtype.block_bytes(dim);
        let at = self.layout.blocks + b * block_bytes;
        let path = self.path();
        let codes = match self.meta.dtype {
            Dtype::F32 => {
                Codes::F32(section(bytes, at, block_bytes / 4, path, "block").expect("validated"))
            }
            Dtype::F16 => {
                Codes::F16(section(bytes, at, block_bytes / 2, path, "block").expect("validated"))
            }
            Dtype::I8 => {
                Codes::I8(section(bytes, at, block_bytes, path, "block").expect("validated"))
            }
        };
        let originals = if self.meta.dtype == Dtype::F32 {
            &[][..]
        } else {
            section(
                bytes,
                self.layout.originals + lo * dim * 4,
                (hi - lo) * dim,
                path,
                "originals",
            )
            .expect("validated at open")
        };
        let scales = self.scales();
        BlockRef {
            ids: &self.ids()[lo..hi],
            labels: &self.labels()[lo..hi],
            sqnorms: &self.sqnorms()[lo..hi],
            scales: if scales.is_empty() {
                scales
            } else {
                &scales[lo..hi]
            },
            codes,
            originals,
        }
    }
}

/// Name of the segment file with sequence number `seq`.
pub fn segment_file_name(seq: u64) -> String {
    format!("seg-{seq:010}.bmseg")
}

/// The sequence number in a segment file name, if it is one.
pub fn parse_segment_file_name(name: &str) -> Option<u64> {
    name.strip_prefix("seg-")?
        .strip_suffix(".bmseg")?
        .parse()
        .ok()
}

/// Path of segment `seq` in `dir`.
pub fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(segment_file_name(seq))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vector::quant;

    /// Owned data for one block, for building test segments.
    struct OwnedBlock {
        ids: Vec<u64>,
        labels: Vec<u64>,
        sqnorms: Vec<f32>,
        scales: Vec<f32>,
        f32s: Vec<f32>,
        f16s: Vec<f16>,
        i8s: Vec<u8>,
        originals: Vec<f32>,
    }

    fn owned_blocks(dtype: Dtype, dim: usize, rows: usize) -> Vec<OwnedBlock> {
        let mut blocks = Vec::new();
        for start in (0..rows).step_by(BLOCK_ROWS) {
            let n = (rows - start).min(BLOCK_ROWS);
            let ids: Vec<u64> = (start..start + n).map(|i| 10 + 3 * i as u64).collect();
            let originals: Vec<f32> = (0..n * dim)
                .map(|i| ((start * dim + i) as f32 * 0.37).sin())
                .collect();
            let sqnorms = originals
                .chunks(dim)
                .map(|v| v.iter().map(|x| x * x).sum())
                .collect();
            let mut scales = Vec::new();
            let mut codes = vec![0i8; n * dim];
            for (v, c) in originals.chunks(dim).zip(codes.chunks_mut(dim)) {
                scales.push(quant::quantize_i8(v, c));
            }
            let halves: Vec<f16> = originals.iter().map(|&x| f16::from_f32(x)).collect();
            blocks.push(OwnedBlock {
                labels: ids.iter().map(|i| i / 7).collect(),
                ids,
                sqnorms,
                scales: if dtype == Dtype::I8 {
                    scales
                } else {
                    Vec::new()
                },
                f32s: layout::pack_f32(&originals, dim),
                f16s: layout::pack_f16(&halves, dim),
                i8s: layout::pack_i8(&codes, dim),
                originals: if dtype == Dtype::F32 {
                    Vec::new()
                } else {
                    originals
                },
            });
        }
        blocks
    }

    fn refs(dtype: Dtype, blocks: &[OwnedBlock]) -> Vec<BlockRef<'_>> {
        blocks
            .iter()
            .map(|b| BlockRef {
                ids: &b.ids,
                labels: &b.labels,
                sqnorms: &b.sqnorms,
                scales: &b.scales,
                codes: match dtype {
                    Dtype::F32 => Codes::F32(&b.f32s),
                    Dtype::F16 => Codes::F16(&b.f16s),
                    Dtype::I8 => Codes::I8(&b.i8s),
                },
                originals: &b.originals,
            })
            .collect()
    }

    fn write(dir: &Path, dtype: Dtype, dim: usize, rows: usize) -> (PathBuf, Vec<OwnedBlock>) {
        let blocks = owned_blocks(dtype, dim, rows);
        let r = refs(dtype, &blocks);
        let meta = SegmentMeta {
            dtype,
            metric: Metric::L2,
            dim,
            rows,
            first_id: r.first().map_or(0, |b| b.ids[0]),
            last_id: r.last().map_or(0, |b| *b.ids.last().unwrap()),
        };
        let path = segment_path(dir, 7);
        write_segment(&path, &meta, &r).unwrap();
        (path, blocks)
    }

    #[test]
    fn every_dtype_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        for dtype in Dtype::ALL {
            for (dim, rows) in [(1, 1), (5, 127), (13, 128), (64, 300), (3, 0)] {
                let (path, blocks) = write(dir.path(), dtype, dim, rows);
                let seg = SealedSegment::open(&path, true).unwrap();
                assert_eq!(seg.meta().rows, rows);
                assert_eq!(seg.block_count(), blocks.len());
                let mut got = vec![0.0f32; dim];
                for (b, owned) in blocks.iter().enumerate() {
                    let view = seg.block(b);
                    assert_eq!(view.ids, &owned.ids[..]);
                    assert_eq!(view.labels, &owned.labels[..]);
                    assert_eq!(view.sqnorms, &owned.sqnorms[..]);
                    assert_eq!(view.scales, &owned.scales[..]);
                    match view.codes {
                        Codes::F32(c) => assert_eq!(c, &owned.f32s[..]),
                        Codes::F16(c) => assert_eq!(c, &owned.f16s[..]),
                        Codes::I8(c) => assert_eq!(c, &owned.i8s[..]),
                    }
                    for r in 0..view.len() {
                        view.original(r, &mut got);
                        let mut want = vec![0.0f32; dim];
                        layout::get_row(&owned.f32s, r, &mut want);
                        assert_eq!(got, want, "{dtype} dim {dim} block {b} row {r}");
                    }
                }
            }
        }
    }

    #[test]
    fn truncation_anywhere_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _) = write(dir.path(), Dtype::I8, 24, 200);
        let full = std::fs::read(&path).unwrap();
        for keep in [
            0,
            10,
            64,
            100,
            1000,
            full.len() / 2,
            full.len() - 33,
            full.len() - 1,
        ] {
            std::fs::write(&path, &full[..keep]).unwrap();
            let err = SealedSegment::open(&path, false).unwrap_err();
            assert!(matches!(err, Error::Corrupted { .. }), "keep {keep}: {err}");
        }
    }

    #[test]
    fn bit_flips_are_detected_by_the_checksum() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _) = write(dir.path(), Dtype::F16, 24, 200);
        let full = std::fs::read(&path).unwrap();
        let len = full.len();
        // Header fields, ids, norms, blocks, originals, footer checksum.
        for at in [20, 70, 2000, len / 2, len - 100, len - 20] {
            let mut bad = full.clone();
            bad[at] ^= 0x10;
            std::fs::write(&path, &bad).unwrap();
            assert!(
                SealedSegment::open(&path, true).is_err(),
                "flip at {at} undetected"
            );
        }
    }

    #[test]
    fn wrong_magic_and_future_versions_are_incompatible() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _) = write(dir.path(), Dtype::F32, 8, 10);
        let full = std::fs::read(&path).unwrap();
        let mut bad = full.clone();
        bad[12] = 2;
        std::fs::write(&path, &bad).unwrap();
        let err = SealedSegment::open(&path, true).unwrap_err();
        assert!(matches!(err, Error::IncompatibleFormat { .. }), "{err}");
        let mut bad = full;
        bad[..8].copy_from_slice(b"NOTOURS!");
        std::fs::write(&path, &bad).unwrap();
        let err = SealedSegment::open(&path, true).unwrap_err();
        assert!(matches!(err, Error::IncompatibleFormat { .. }), "{err}");
    }

    #[test]
    fn file_names_round_trip() {
        assert_eq!(parse_segment_file_name(&segment_file_name(42)), Some(42));
        assert_eq!(parse_segment_file_name("seg-x.bmseg"), None);
        assert_eq!(parse_segment_file_name("seg-0000000001.bmseg.tmp"), None);
    }
}
