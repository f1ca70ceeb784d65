//! The exact (brute-force) index over memory-mapped segments.
//!
//! # Layout of an index directory
//!
//! ```text
//! index.bmman              manifest: settings + sealed segments (atomic replace)
//! seg-0000000001.bmseg     sealed segments (immutable, memory-mapped)
//! vlog-0000000004.bmlog    log of the writable segment (append-only)
//! tombstones.bmlog         ids deleted (append-only)
//! ```
//!
//! # Writes
//!
//! One writer ([`FlatIndex`], `&mut self`) appends rows with caller-chosen,
//! strictly increasing `u64` ids and tombstones them. Rows land in the
//! writable segment; at `segment_rows` rows it is sealed: written as a
//! segment file (temp, fsync, rename), recorded in the manifest, and its log
//! replaced. Writes are buffered; [`FlatIndex::sync`] makes them durable.
//! A crash at any point leaves a state [`FlatIndex::open`] recovers: stray
//! temporaries and unrecorded segment files are removed, the writable
//! segment is replayed from its log up to the last intact record.
//!
//! # Reads
//!
//! After every write the writer publishes a new [`FlatSnapshot`] with one
//! atomic pointer swap. Any number of threads search through
//! [`FlatReader::snapshot`]; a search never blocks the writer and never sees
//! half a batch.

mod growing;
mod join;
mod manifest;
mod search;
mod snapshot;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::error::{Error, Result};
use crate::storage::format::{Fields, FileKind};
use crate::storage::fs::{remove_durably, remove_stale_temps};
use crate::storage::log::{RecordLog, Replay};
use crate::storage::segment::{self, SealedSegment, SegmentMeta};
use crate::vector::{self, BLOCK_ROWS, Dtype, Kernels, MAX_DIM, Metric, quant::F16_MAX};

pub use join::{Join, JoinPair, QUERY_BLOCKS};
pub use snapshot::FlatSnapshot;

use growing::Growing;
use manifest::{Manifest, SegmentEntry};
use snapshot::{DeleteSet, SegData, SegStats, SnapSegment};

/// File name of the deleted-id log.
const TOMBSTONES_FILE: &str = "tombstones.bmlog";

/// Default rows per sealed segment: 256 Ki rows (512 MiB of `f32` at d = 512).
pub const DEFAULT_SEGMENT_ROWS: usize = 1 << 18;

/// Settings fixed when an index is created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlatConfig {
    /// Vector dimension, 1 to [`MAX_DIM`].
    pub dim: usize,
    /// Storage type of the scanned codes.
    pub dtype: Dtype,
    /// Comparison metric.
    pub metric: Metric,
    /// Rows per sealed segment (a multiple of the block size is best).
    pub segment_rows: usize,
}

impl FlatConfig {
    /// A configuration with [`DEFAULT_SEGMENT_ROWS`].
    pub fn new(dim: usize, dtype: Dtype, metric: Metric) -> FlatConfig {
        FlatConfig {
            dim,
            dtype,
            metric,
            segment_rows: DEFAULT_SEGMENT_ROWS,
        }
    }

    /// Same settings with another segment size.
    pub fn with_segment_rows(self, segment_rows: usize) -> FlatConfig {
        FlatConfig {
            segment_rows,
            ..self
        }
    }

    fn validate(&self) -> Result<()> {
        if !(1..=MAX_DIM).contains(&self.dim) {
            return Err(Error::invalid(
                "dim",
                format!("{} is outside 1..={MAX_DIM}", self.dim),
            ));
        }
        if self.segment_rows == 0 || self.segment_rows > u32::MAX as usize {
            return Err(Error::invalid(
                "segment_rows",
                format!("{} is outside 1..={}", self.segment_rows, u32::MAX),
            ));
        }
        Ok(())
    }
}

/// Options for [`FlatIndex::open`].
#[derive(Clone, Copy, Debug)]
pub struct OpenOptions {
    /// Read every sealed segment completely to check its checksum and id
    /// order (slower open, catches silent corruption). Header, sizes and
    /// footers are always checked.
    pub verify_checksums: bool,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            verify_checksums: true,
        }
    }
}

/// What [`FlatIndex::open`] found and repaired.
#[derive(Clone, Debug, Default)]
pub struct OpenReport {
    /// Sealed segments opened.
    pub segments: usize,
    /// Rows replayed into the writable segment.
    pub replayed_rows: u64,
    /// Replay of the writable segment's log (a torn tail is dropped).
    pub vector_log: Replay,
    /// Replay of the tombstone log.
    pub tombstone_log: Replay,
    /// Tombstones for ids that are not in the index (lost with a dropped tail).
    pub unknown_tombstones: u64,
    /// Files removed: stray temporaries, segments the manifest does not
    /// list, logs of already sealed segments.
    pub removed_files: Vec<PathBuf>,
    /// Files rebuilt by [`FlatIndex::open_with_repair`].
    pub repaired: Vec<Repair>,
}

/// What [`FlatIndex::compact`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompactReport {
    /// Segments rewritten without their deleted rows.
    pub segments_rewritten: usize,
    /// Segments removed because every row was deleted.
    pub segments_dropped: usize,
    /// Deleted rows whose space was reclaimed.
    pub rows_removed: usize,
}

/// A file [`FlatIndex::open_with_repair`] rebuilt, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Repair {
    /// The damaged file.
    pub path: PathBuf,
    /// The error opening it gave.
    pub reason: String,
}

/// Receives one row from a [`RowSource`]: id, label, vector.
pub type RowSink<'a> = dyn FnMut(u64, u64, &[f32]) -> Result<()> + 'a;

/// Where [`FlatIndex::open_with_repair`] gets rows to rebuild damaged files
/// from (the gallery's catalog).
pub trait RowSource {
    /// Calls `row(id, label, vector)` for every live row whose id lies in
    /// `first..=last`, in increasing id order, with the vector as it was
    /// appended.
    fn rows(&mut self, first: u64, last: u64, row: &mut RowSink<'_>) -> Result<()>;
}

/// The writer of a flat index. See the module docs.
pub struct FlatIndex {
    dir: PathBuf,
    manifest: Manifest,
    sealed: Vec<(Arc<SealedSegment>, SegStats)>,
    /// One delete set per sealed segment, then one for the writable segment.
    deleted: Vec<Arc<DeleteSet>>,
    growing: Growing,
    tombstones: RecordLog,
    kernels: Kernels,
    published: Arc<ArcSwap<FlatSnapshot>>,
    /// Set when a write failed half-way; further writes are refused.
    failed: Option<String>,
    report: OpenReport,
}

impl std::fmt::Debug for FlatIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlatIndex")
            .field("dir", &self.dir)
            .field("config", &self.manifest.config())
            .field("segments", &self.sealed.len())
            .field("growing_rows", &self.growing.rows())
            .finish_non_exhaustive()
    }
}

/// A cloneable, thread-safe handle for searching an index while its writer
/// keeps writing.
#[derive(Clone, Debug)]
pub struct FlatReader {
    published: Arc<ArcSwap<FlatSnapshot>>,
}

impl FlatReader {
    /// The latest published snapshot.
    pub fn snapshot(&self) -> Arc<FlatSnapshot> {
        self.published.load_full()
    }
}

/// Validates `v` for `config` and writes the vector to store or search with
/// into `out`: normalised for cosine.
pub(crate) fn prepare(
    config: &FlatConfig,
    v: &[f32],
    out: &mut Vec<f32>,
    storing: bool,
) -> Result<()> {
    if v.len() != config.dim {
        return Err(Error::DimensionMismatch {
            expected: config.dim,
            got: v.len(),
        });
    }
    if let Some(index) = v.iter().position(|x| !x.is_finite()) {
        return Err(Error::NonFinite {
            index,
            value: v[index],
        });
    }
    let norm = v
        .iter()
        .map(|&x| f64::from(x) * f64::from(x))
        .sum::<f64>()
        .sqrt();
    if norm == 0.0 && config.metric != Metric::L2 {
        return Err(Error::ZeroVector {
            metric: config.metric.name(),
        });
    }
    out.clear();
    if config.metric == Metric::Cosine {
        let inv = (1.0 / norm) as f32;
        out.extend(v.iter().map(|&x| x * inv));
    } else {
        out.extend_from_slice(v);
    }
    if storing
        && config.dtype == Dtype::F16
        && let Some(index) = out.iter().position(|x| x.abs() > F16_MAX)
    {
        return Err(Error::invalid(
            "vector",
            format!(
                "component {index} = {} exceeds the f16 range (±{F16_MAX}); use dtype f32",
                out[index]
            ),
        ));
    }
    Ok(())
}

impl FlatIndex {
    /// Creates a new index in `dir` (created if missing; must not hold an index).
    pub fn create(dir: &Path, config: FlatConfig) -> Result<FlatIndex> {
        config.validate()?;
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        if Manifest::path(dir).exists() {
            return Err(Error::invalid(
                "dir",
                format!("{} already holds an index; open it instead", dir.display()),
            ));
        }
        let manifest = Manifest::new(&config);
        let growing = Growing::create(dir, manifest.growing_seq, &config)?;
        let tombstones = RecordLog::create(
            &dir.join(TOMBSTONES_FILE),
            FileKind::Tombstones,
            &Fields::default().finish(),
        )?;
        // The manifest goes last: a directory without one is not an index,
        // so a crash before this point leaves nothing half-created.
        manifest.write(dir)?;
        Ok(FlatIndex::assemble(
            dir,
            manifest,
            Vec::new(),
            growing,
            tombstones,
            OpenReport::default(),
        ))
    }

    /// Whether `dir` holds an index (its manifest exists).
    pub fn exists(dir: &Path) -> bool {
        Manifest::path(dir).exists()
    }

    /// Opens the index in `dir`, recovering from any crash (module docs).
    pub fn open(dir: &Path, options: OpenOptions) -> Result<FlatIndex> {
        FlatIndex::open_inner(dir, options, None)
    }

    /// [`FlatIndex::open`], rebuilding what is damaged from `source`: a
    /// sealed segment that is missing, fails its checks or is not the one
    /// the manifest recorded is rewritten from the source's rows in its id
    /// range; an unreadable writable-segment log is replaced by an empty
    /// one (the caller catches up rows above [`FlatIndex::last_id`]). Each
    /// repair is logged and listed in [`OpenReport::repaired`]. A damaged
    /// manifest or tombstone log cannot be repaired this way: the error is
    /// returned and the caller rebuilds the whole index.
    pub fn open_with_repair(
        dir: &Path,
        options: OpenOptions,
        source: &mut dyn RowSource,
    ) -> Result<FlatIndex> {
        FlatIndex::open_inner(dir, options, Some(source))
    }

    fn open_inner(
        dir: &Path,
        options: OpenOptions,
        mut source: Option<&mut dyn RowSource>,
    ) -> Result<FlatIndex> {
        let mut report = OpenReport {
            removed_files: remove_stale_temps(dir)?,
            ..OpenReport::default()
        };
        let mut manifest = Manifest::read(dir)?;
        let config = manifest.config();

        let mut sealed = Vec::with_capacity(manifest.segments.len());
        let mut entries = Vec::with_capacity(manifest.segments.len());
        for entry in manifest.segments.clone() {
            let path = segment::segment_path(dir, entry.seq);
            let opened = SealedSegment::open(&path, options.verify_checksums)
                .and_then(|seg| check_segment(&path, seg.meta(), &entry, &config).map(|()| seg));
            let (seg, entry) = match (opened, source.as_deref_mut()) {
                (Ok(seg), _) => (seg, entry),
                (Err(e), Some(source)) => {
                    tracing::warn!(path = %path.display(), reason = %e, "rebuilding segment from its source");
                    report.repaired.push(Repair {
                        path: path.clone(),
                        reason: e.to_string(),
                    });
                    match rebuild_segment(dir, &config, &entry, source)? {
                        Some(rebuilt) => rebuilt,
                        None => {
                            remove_durably(&path)?;
                            continue;
                        }
                    }
                }
                (Err(e), None) => return Err(e),
            };
            let stats = SegStats::of_sealed(&seg);
            sealed.push((Arc::new(seg), stats));
            entries.push(entry);
        }
        if entries != manifest.segments {
            manifest.segments = entries;
            manifest.write(dir)?;
        }
        report.segments = sealed.len();
        report
            .removed_files
            .extend(remove_unlisted(dir, &manifest)?);

        let last_sealed = manifest.segments.last().map(|s| s.last_id);
        let seq = manifest.growing_seq;
        let log_path = dir.join(growing::log_file_name(seq));
        let growing = if !log_path.exists() {
            // Crash between recording a sealed segment and starting its successor's log.
            Growing::create(dir, seq, &config)?
        } else {
            match (
                Growing::open(dir, seq, &config, last_sealed),
                source.is_some(),
            ) {
                (Ok((g, replay)), _) => {
                    report.replayed_rows = replay.records;
                    report.vector_log = replay;
                    g
                }
                (Err(e), true) => {
                    tracing::warn!(path = %log_path.display(), reason = %e, "replacing an unreadable log");
                    report.repaired.push(Repair {
                        path: log_path.clone(),
                        reason: e.to_string(),
                    });
                    remove_durably(&log_path)?;
                    Growing::create(dir, seq, &config)?
                }
                (Err(e), false) => return Err(e),
            }
        };

        let mut ids = Vec::new();
        let tomb_path = dir.join(TOMBSTONES_FILE);
        let (tombstones, _, replay) = RecordLog::open(&tomb_path, FileKind::Tombstones, |p| {
            ids.push(tombstone_id(&tomb_path, p)?);
            Ok(())
        })?;
        report.tombstone_log = replay;

        let mut index = FlatIndex::assemble(dir, manifest, sealed, growing, tombstones, report);
        for id in ids {
            if !index.mark_deleted(id) {
                index.report.unknown_tombstones += 1;
            }
        }
        index.publish();
        Ok(index)
    }

    /// Opens the index in `dir`, or creates it with `config` if `dir` holds
    /// none. An existing index must have been created with the same settings.
    pub fn open_or_create(
        dir: &Path,
        config: FlatConfig,
        options: OpenOptions,
    ) -> Result<FlatIndex> {
        if !Manifest::path(dir).exists() {
            return FlatIndex::create(dir, config);
        }
        let index = FlatIndex::open(dir, options)?;
        let stored = index.config();
        let mismatch = |field, stored: String, requested: String| {
            Err(Error::ConfigMismatch {
                path: dir.to_path_buf(),
                field,
                stored,
                requested,
            })
        };
        if stored.dim != config.dim {
            return mismatch("dim", stored.dim.to_string(), config.dim.to_string());
        }
        if stored.dtype != config.dtype {
            return mismatch("dtype", stored.dtype.to_string(), config.dtype.to_string());
        }
        if stored.metric != config.metric {
            return mismatch(
                "metric",
                stored.metric.to_string(),
                config.metric.to_string(),
            );
        }
        Ok(index)
    }

    fn assemble(
        dir: &Path,
        manifest: Manifest,
        sealed: Vec<(Arc<SealedSegment>, SegStats)>,
        growing: Growing,
        tombstones: RecordLog,
        report: OpenReport,
    ) -> FlatIndex {
        let deleted = (0..=sealed.len())
            .map(|_| Arc::new(DeleteSet::default()))
            .collect();
        let kernels = vector::kernels();
        let empty = FlatSnapshot {
            config: manifest.config(),
            kernels,
            segments: Vec::new(),
        };
        let mut index = FlatIndex {
            dir: dir.to_path_buf(),
            manifest,
            sealed,
            deleted,
            growing,
            tombstones,
            kernels,
            published: Arc::new(ArcSwap::from_pointee(empty)),
            failed: None,
            report,
        };
        index.publish();
        index
    }

    /// The index's settings.
    pub fn config(&self) -> FlatConfig {
        self.manifest.config()
    }

    /// The index directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What [`FlatIndex::open`] found and repaired.
    pub fn open_report(&self) -> &OpenReport {
        &self.report
    }

    /// The largest id ever appended (deleted rows included), if any.
    pub fn last_id(&self) -> Option<u64> {
        self.growing
            .last_id()
            .or_else(|| self.manifest.segments.last().map(|s| s.last_id))
    }

    /// The latest snapshot.
    pub fn snapshot(&self) -> Arc<FlatSnapshot> {
        self.published.load_full()
    }

    /// A handle other threads can search through while this writer writes.
    pub fn reader(&self) -> FlatReader {
        FlatReader {
            published: Arc::clone(&self.published),
        }
    }

    /// Appends one row labelled with its own id. See [`FlatIndex::append_labeled`].
    pub fn append(&mut self, id: u64, vector: &[f32]) -> Result<()> {
        self.append_labeled(&[id], &[id], vector)
    }

    /// Appends rows labelled with their own ids. See [`FlatIndex::append_labeled`].
    pub fn append_batch(&mut self, ids: &[u64], vectors: &[f32]) -> Result<()> {
        self.append_labeled(ids, ids, vectors)
    }

    /// Appends rows `ids[i]` → `vectors[i*dim..(i+1)*dim]` with `labels[i]`,
    /// all or nothing. The label is an opaque value stored with the row and
    /// returned in its hits (the gallery stores the row's subject).
    ///
    /// Ids must be strictly increasing and above [`FlatIndex::last_id`].
    /// Vectors must have the index's dimension and be finite; cosine and
    /// inner-product indexes refuse zero vectors; `f16` indexes refuse
    /// components beyond ±65504. Nothing is written unless every row is
    /// valid. Buffered: call [`FlatIndex::sync`] for durability.
    pub fn append_labeled(&mut self, ids: &[u64], labels: &[u64], vectors: &[f32]) -> Result<()> {
        self.check_writable()?;
        let config = self.config();
        if labels.len() != ids.len() {
            return Err(Error::invalid(
                "labels",
                format!("{} labels for {} ids", labels.len(), ids.len()),
            ));
        }
        if vectors.len() != ids.len() * config.dim {
            return Err(Error::DimensionMismatch {
                expected: config.dim,
                got: if ids.is_empty() {
                    vectors.len()
                } else {
                    vectors.len() / ids.len()
                },
            });
        }
        let mut last = self.last_id();
        let mut prepared = Vec::with_capacity(vectors.len());
        let mut buf = Vec::with_capacity(config.dim);
        for (&id, v) in ids.iter().zip(vectors.chunks_exact(config.dim)) {
            if let Some(l) = last
                && id <= l
            {
                return Err(Error::IdNotIncreasing { id, last: l });
            }
            prepare(&config, v, &mut buf, true)?;
            prepared.extend_from_slice(&buf);
            last = Some(id);
        }
        let result = self.append_prepared(ids, labels, &prepared);
        self.publish();
        result
    }

    fn append_prepared(&mut self, ids: &[u64], labels: &[u64], prepared: &[f32]) -> Result<()> {
        let dim = self.config().dim;
        for ((&id, &label), v) in ids.iter().zip(labels).zip(prepared.chunks_exact(dim)) {
            if let Err(e) = self.growing.append(id, label, v) {
                return Err(self.fail(e));
            }
            if self.growing.rows() >= self.manifest.segment_rows
                && let Err(e) = self.seal_growing()
            {
                return Err(self.fail(e));
            }
        }
        self.growing.flush().map_err(|e| self.fail(e))
    }

    /// Tombstones row `id`: searches stop returning it at once; the space is
    /// reclaimed by compaction. Errors with [`Error::UnknownId`] if the id is
    /// not a live row.
    pub fn delete(&mut self, id: u64) -> Result<()> {
        self.check_writable()?;
        if !self.snapshot().contains(id) {
            return Err(Error::UnknownId { id });
        }
        if let Err(e) = self
            .tombstones
            .append(&id.to_le_bytes())
            .and_then(|()| self.tombstones.flush())
        {
            return Err(self.fail(e));
        }
        self.mark_deleted(id);
        self.publish();
        Ok(())
    }

    /// Sets the delete bit of `id`; false if the id is not in the index.
    fn mark_deleted(&mut self, id: u64) -> bool {
        let snap = self.snapshot();
        let s = snap
            .segments
            .partition_point(|seg| seg.data.last_id().is_some_and(|l| l < id));
        let Some(row) = snap.segments.get(s).and_then(|seg| seg.data.locate(id)) else {
            return false;
        };
        Arc::make_mut(&mut self.deleted[s]).insert(row);
        true
    }

    /// Rewrites every sealed segment whose deleted rows make up at least
    /// `min_deleted_fraction` of it (0: any deletion at all) without those
    /// rows, reclaiming their space.
    ///
    /// Steps, each crash-safe: new segment files (unlisted until 2), the
    /// manifest that swaps them in, a tombstone log holding only ids still
    /// stored, removal of the old files. Searches keep running on their
    /// snapshots; writes wait for the compaction to finish.
    pub fn compact(&mut self, min_deleted_fraction: f64) -> Result<CompactReport> {
        self.check_writable()?;
        let result = self.compact_inner(min_deleted_fraction);
        match result {
            Ok(report) => Ok(report),
            Err(e) => Err(self.fail(e)),
        }
    }

    fn compact_inner(&mut self, min_deleted_fraction: f64) -> Result<CompactReport> {
        let config = self.config();
        let mut manifest = self.manifest.clone();
        let mut report = CompactReport::default();
        let mut sealed = Vec::with_capacity(self.sealed.len());
        let mut deleted = Vec::with_capacity(self.deleted.len());
        let mut entries = Vec::with_capacity(self.sealed.len());
        let mut retired = Vec::new();
        let mut original = vec![0.0f32; config.dim];
        for (i, ((seg, stats), dead)) in self.sealed.iter().zip(&self.deleted).enumerate() {
            let entry = self.manifest.segments[i];
            let rows = seg.meta().rows;
            if dead.count() == 0 || (dead.count() as f64) < min_deleted_fraction * rows as f64 {
                sealed.push((Arc::clone(seg), *stats));
                deleted.push(Arc::clone(dead));
                entries.push(entry);
                continue;
            }
            let mut live = growing::Rows::new(&config);
            for b in 0..seg.block_count() {
                let block = seg.block(b);
                for r in 0..block.len() {
                    if !dead.contains(b * BLOCK_ROWS + r) {
                        // Stored vectors are already prepared: re-encoding
                        // them reproduces the same codes.
                        block.original(r, &mut original);
                        live.push(block.ids[r], block.labels[r], &original);
                    }
                }
            }
            report.rows_removed += dead.count();
            retired.push(segment::segment_path(&self.dir, entry.seq));
            if live.last_id().is_none() {
                report.segments_dropped += 1;
                continue;
            }
            let view = live.view();
            let (seg, entry) = write_sealed(&self.dir, manifest.allocate_seq(), &config, &view)?;
            sealed.push((Arc::new(seg), view.stats));
            deleted.push(Arc::new(DeleteSet::default()));
            entries.push(entry);
            report.segments_rewritten += 1;
        }
        if retired.is_empty() {
            return Ok(report);
        }
        manifest.segments = entries;
        manifest.write(&self.dir)?;
        self.manifest = manifest;

        // Tombstones still needed: deleted rows of the kept segments and of
        // the writable segment.
        deleted.push(Arc::clone(
            self.deleted.last().expect("writable segment's set"),
        ));
        self.sealed = sealed;
        self.deleted = deleted;
        self.publish();
        let snap = self.snapshot();
        let mut ids = Vec::new();
        for seg in &snap.segments {
            for row in seg.deleted.rows() {
                ids.push(seg.data.block(row / BLOCK_ROWS).ids[row % BLOCK_ROWS].to_le_bytes());
            }
        }
        let path = self.dir.join(TOMBSTONES_FILE);
        self.tombstones = RecordLog::rewrite(
            &path,
            FileKind::Tombstones,
            &Fields::default().finish(),
            ids.iter().map(|id| &id[..]),
        )?;
        for path in retired {
            remove_durably(&path)?;
        }
        Ok(report)
    }

    /// Seals the writable segment now if it holds any rows.
    pub fn seal(&mut self) -> Result<()> {
        self.check_writable()?;
        if self.growing.rows() > 0 {
            self.seal_growing().map_err(|e| self.fail(e))?;
            self.publish();
        }
        Ok(())
    }

    /// Makes every write so far durable (fsyncs the logs).
    pub fn sync(&mut self) -> Result<()> {
        self.check_writable()?;
        let r = self.growing.sync().and_then(|()| self.tombstones.sync());
        r.map_err(|e| self.fail(e))
    }

    /// Number of live rows.
    pub fn len(&self) -> usize {
        self.snapshot().len()
    }

    /// Whether the index has no live rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn check_writable(&self) -> Result<()> {
        match &self.failed {
            None => Ok(()),
            Some(why) => Err(Error::invalid(
                "index",
                format!("a previous write failed ({why}); reopen the index to recover"),
            )),
        }
    }

    /// Records that the in-memory state may have diverged from disk.
    fn fail(&mut self, e: Error) -> Error {
        self.failed = Some(e.to_string());
        e
    }

    /// Writes the writable segment as a sealed segment and starts the next.
    fn seal_growing(&mut self) -> Result<()> {
        let config = self.config();
        let seq = self.growing.seq;
        let view = self.growing.view();
        // 1. the segment file, 2. the manifest that lists it, 3. the next
        // log, 4. the old log. A crash between any two steps is repaired by
        // open(): an unlisted segment file is removed and the old log replayed;
        // a listed one makes the old log stale.
        let (seg, entry) = write_sealed(&self.dir, seq, &config, &view)?;
        let mut manifest = self.manifest.clone();
        manifest.segments.push(entry);
        manifest.growing_seq = manifest.allocate_seq();
        manifest.write(&self.dir)?;
        let next = Growing::create(&self.dir, manifest.growing_seq, &config)?;
        self.manifest = manifest;
        let old = std::mem::replace(&mut self.growing, next);
        remove_durably(&old.log_path())?;
        let stats = view.stats;
        self.sealed.push((Arc::new(seg), stats));
        // The writable segment's deletions now belong to the sealed one.
        self.deleted.push(Arc::new(DeleteSet::default()));
        Ok(())
    }

    /// Builds and swaps in a snapshot of the current state.
    fn publish(&mut self) {
        let mut segments: Vec<SnapSegment> = self
            .sealed
            .iter()
            .zip(&self.deleted)
            .map(|((seg, stats), deleted)| SnapSegment {
                data: SegData::Sealed(Arc::clone(seg)),
                deleted: Arc::clone(deleted),
                stats: *stats,
            })
            .collect();
        let view = self.growing.view();
        if view.rows() > 0 {
            segments.push(SnapSegment {
                stats: view.stats,
                data: SegData::Growing(Arc::new(view)),
                deleted: Arc::clone(self.deleted.last().expect("writable segment's set")),
            });
        }
        self.published.store(Arc::new(FlatSnapshot {
            config: self.manifest.config(),
            kernels: self.kernels,
            segments,
        }));
    }
}

/// Checks that a sealed segment is the one the manifest recorded.
fn check_segment(
    path: &Path,
    meta: &SegmentMeta,
    entry: &SegmentEntry,
    config: &FlatConfig,
) -> Result<()> {
    let found = (
        meta.rows,
        meta.first_id,
        meta.last_id,
        meta.dim,
        meta.dtype,
        meta.metric,
    );
    let want = (
        entry.rows,
        entry.first_id,
        entry.last_id,
        config.dim,
        config.dtype,
        config.metric,
    );
    if found != want {
        return Err(Error::corrupted(
            path,
            format!(
                "segment holds (rows, first id, last id, dim, dtype, metric) = {found:?}, manifest says {want:?}"
            ),
        ));
    }
    Ok(())
}

/// Removes what an interrupted seal or compaction leaves: segment files
/// the manifest does not list (whatever their number: a compaction
/// allocates numbers before the manifest records them) and logs of sealed
/// segments. A log numbered above the writable segment's cannot come from
/// a crash and is reported as corruption.
fn remove_unlisted(dir: &Path, manifest: &Manifest) -> Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let stale = if let Some(seq) = segment::parse_segment_file_name(name) {
            !manifest.segments.iter().any(|s| s.seq == seq)
        } else if let Some(seq) = growing::parse_log_file_name(name) {
            if seq > manifest.growing_seq {
                return Err(Error::corrupted(
                    &path,
                    format!(
                        "log {seq} is newer than the writable segment's ({})",
                        manifest.growing_seq
                    ),
                ));
            }
            seq < manifest.growing_seq
        } else {
            false
        };
        if stale {
            tracing::info!(path = %path.display(), "removing a file left by an interrupted seal or compaction");
            remove_durably(&path)?;
            removed.push(path);
        }
    }
    Ok(removed)
}

/// Decodes a tombstone record (the deleted id).
fn tombstone_id(path: &Path, payload: &[u8]) -> Result<u64> {
    let id: [u8; 8] = payload
        .try_into()
        .map_err(|_| Error::corrupted(path, format!("tombstone of {} bytes", payload.len())))?;
    Ok(u64::from_le_bytes(id))
}

/// Rewrites segment `entry` from `source`: the source's rows in the entry's
/// id range, prepared again. `None` if the source has no such rows.
fn rebuild_segment(
    dir: &Path,
    config: &FlatConfig,
    entry: &SegmentEntry,
    source: &mut dyn RowSource,
) -> Result<Option<(SealedSegment, SegmentEntry)>> {
    let mut rows = growing::Rows::new(config);
    let mut buf = Vec::with_capacity(config.dim);
    source.rows(entry.first_id, entry.last_id, &mut |id, label, v| {
        if rows.last_id().is_some_and(|l| id <= l)
            || !(entry.first_id..=entry.last_id).contains(&id)
        {
            return Err(Error::invalid(
                "source",
                format!("row {id} out of order or outside the requested range"),
            ));
        }
        prepare(config, v, &mut buf, true)?;
        rows.push(id, label, &buf);
        Ok(())
    })?;
    if rows.last_id().is_none() {
        return Ok(None);
    }
    write_sealed(dir, entry.seq, config, &rows.view()).map(Some)
}

/// Writes `rows` (at least one) as sealed segment `seq` of the index in
/// `dir`, opens it, and returns it with its manifest entry.
fn write_sealed(
    dir: &Path,
    seq: u64,
    config: &FlatConfig,
    rows: &growing::GrowingView,
) -> Result<(SealedSegment, SegmentEntry)> {
    let blocks: Vec<_> = (0..rows.block_count()).map(|b| rows.block(b)).collect();
    let first_id = blocks[0].ids[0];
    let last_id = *blocks
        .last()
        .and_then(|b| b.ids.last())
        .expect("at least one row");
    let meta = SegmentMeta {
        dtype: config.dtype,
        metric: config.metric,
        dim: config.dim,
        rows: rows.rows(),
        first_id,
        last_id,
    };
    let path = segment::segment_path(dir, seq);
    segment::write_segment(&path, &meta, &blocks)?;
    let seg = SealedSegment::open(&path, false)?;
    let entry = SegmentEntry {
        seq,
        rows: meta.rows,
        first_id,
        last_id,
    };
    Ok((seg, entry))
}

#[cfg(test)]
mod tests;
