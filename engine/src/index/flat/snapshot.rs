//! Immutable views of an index at one moment.
//!
//! A [`FlatSnapshot`] holds `Arc`s to sealed segments, a frozen view of the
//! writable segment and each segment's delete set. The writer builds a new
//! snapshot after every change and swaps it in with one atomic pointer
//! store; a search keeps the snapshot it started with, so it sees a
//! consistent set of rows however long it runs.

use std::sync::Arc;

use crate::index::Hit;
use crate::storage::segment::{BlockRef, SealedSegment};
use crate::vector::{BLOCK_ROWS, Kernels};

use super::FlatConfig;
use super::growing::GrowingView;

/// Bounds over a segment's rows that the search's error margins need.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct SegStats {
    /// Largest `‖original‖²` of any row.
    pub(crate) max_sqnorm: f32,
    /// Largest `i8` scale of any row (0 for other dtypes).
    pub(crate) max_scale: f32,
}

impl SegStats {
    pub(crate) fn add(&mut self, sqnorm: f32, scale: Option<f32>) {
        self.max_sqnorm = self.max_sqnorm.max(sqnorm);
        if let Some(s) = scale {
            self.max_scale = self.max_scale.max(s);
        }
    }

    pub(crate) fn of_sealed(segment: &SealedSegment) -> SegStats {
        let mut stats = SegStats::default();
        for &n in segment.sqnorms() {
            stats.add(n, None);
        }
        stats.max_scale = segment.scales().iter().fold(0.0, |m, &s| m.max(s));
        stats
    }
}

/// Deleted rows of one segment, as a bitset over row positions.
#[derive(Clone, Debug, Default)]
pub(crate) struct DeleteSet {
    words: Vec<u64>,
    count: usize,
}

impl DeleteSet {
    pub(crate) fn contains(&self, row: usize) -> bool {
        self.words
            .get(row / 64)
            .is_some_and(|w| w & (1 << (row % 64)) != 0)
    }

    /// Marks `row` deleted; returns whether it was live.
    pub(crate) fn insert(&mut self, row: usize) -> bool {
        if self.words.len() <= row / 64 {
            self.words.resize(row / 64 + 1, 0);
        }
        let w = &mut self.words[row / 64];
        let bit = 1 << (row % 64);
        let fresh = *w & bit == 0;
        *w |= bit;
        self.count += usize::from(fresh);
        fresh
    }

    pub(crate) fn count(&self) -> usize {
        self.count
    }

    /// Deleted row positions, increasing.
    pub(crate) fn rows(&self) -> impl Iterator<Item = usize> + '_ {
        self.words.iter().enumerate().flat_map(|(w, &bits)| {
            (0..64)
                .filter(move |b| bits & (1 << b) != 0)
                .map(move |b| w * 64 + b)
        })
    }
}

/// The rows of one segment in a snapshot.
#[derive(Clone, Debug)]
pub(crate) enum SegData {
    Sealed(Arc<SealedSegment>),
    Growing(Arc<GrowingView>),
}

impl SegData {
    pub(crate) fn rows(&self) -> usize {
        match self {
            SegData::Sealed(s) => s.meta().rows,
            SegData::Growing(g) => g.rows(),
        }
    }

    pub(crate) fn block_count(&self) -> usize {
        match self {
            SegData::Sealed(s) => s.block_count(),
            SegData::Growing(g) => g.block_count(),
        }
    }

    pub(crate) fn block(&self, b: usize) -> BlockRef<'_> {
        match self {
            SegData::Sealed(s) => s.block(b),
            SegData::Growing(g) => g.block(b),
        }
    }

    /// Row position of `id`, if the segment holds it.
    pub(crate) fn locate(&self, id: u64) -> Option<usize> {
        match self {
            SegData::Sealed(s) => s.ids().binary_search(&id).ok(),
            SegData::Growing(g) => g.locate(id),
        }
    }

    pub(crate) fn last_id(&self) -> Option<u64> {
        let blocks = self.block_count();
        (blocks > 0).then(|| {
            *self
                .block(blocks - 1)
                .ids
                .last()
                .expect("blocks are non-empty")
        })
    }
}

/// One segment of a snapshot: its rows, deletions and bounds.
#[derive(Clone, Debug)]
pub(crate) struct SnapSegment {
    pub(crate) data: SegData,
    pub(crate) deleted: Arc<DeleteSet>,
    pub(crate) stats: SegStats,
}

/// A consistent, immutable view of a flat index; cheap to clone (`Arc`).
///
/// Obtained from [`super::FlatIndex::snapshot`] or
/// [`super::FlatReader::snapshot`]; search methods are in `search.rs`.
#[derive(Debug)]
pub struct FlatSnapshot {
    pub(crate) config: FlatConfig,
    pub(crate) kernels: Kernels,
    pub(crate) segments: Vec<SnapSegment>,
}

impl FlatSnapshot {
    /// The index's settings.
    pub fn config(&self) -> &FlatConfig {
        &self.config
    }

    /// Live (not deleted) rows.
    pub fn len(&self) -> usize {
        self.segments
            .iter()
            .map(|s| s.data.rows() - s.deleted.count())
            .sum()
    }

    /// Whether the snapshot has no live rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Deleted rows still stored (reclaimed by compaction).
    pub fn deleted(&self) -> usize {
        self.segments.iter().map(|s| s.deleted.count()).sum()
    }

    /// Bytes a full scan reads (the scanned codes of every block).
    pub fn scan_bytes(&self) -> usize {
        let per_block = self.config.dtype.block_bytes(self.config.dim);
        self.segments
            .iter()
            .map(|s| s.data.block_count() * per_block)
            .sum()
    }

    /// Segment index and row position of a live `id`.
    pub(crate) fn locate(&self, id: u64) -> Option<(usize, usize)> {
        let s = self
            .segments
            .partition_point(|seg| seg.data.last_id().is_some_and(|l| l < id));
        let seg = self.segments.get(s)?;
        let row = seg.data.locate(id)?;
        (!seg.deleted.contains(row)).then_some((s, row))
    }

    /// Live row ids, increasing.
    pub fn ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.segments.iter().flat_map(|seg| {
            (0..seg.data.block_count()).flat_map(move |b| {
                let block = seg.data.block(b);
                (0..block.len())
                    .filter(move |&r| !seg.deleted.contains(b * BLOCK_ROWS + r))
                    .map(move |r| block.ids[r])
            })
        })
    }

    /// Whether the index stores row `id` at all, live or tombstoned (a
    /// tombstoned row is stored until compaction removes it).
    pub fn stores(&self, id: u64) -> bool {
        let s = self
            .segments
            .partition_point(|seg| seg.data.last_id().is_some_and(|l| l < id));
        self.segments
            .get(s)
            .is_some_and(|seg| seg.data.locate(id).is_some())
    }

    /// Whether `id` is a live row.
    pub fn contains(&self, id: u64) -> bool {
        self.locate(id).is_some()
    }

    /// The stored `f32` vector of a live row (normalised if the metric is cosine).
    pub fn get(&self, id: u64) -> Option<Vec<f32>> {
        let (s, row) = self.locate(id)?;
        let block = self.segments[s].data.block(row / BLOCK_ROWS);
        let mut out = vec![0.0; self.config.dim];
        block.original(row % BLOCK_ROWS, &mut out);
        Some(out)
    }

    /// The label of a live row.
    pub fn label(&self, id: u64) -> Option<u64> {
        let (s, row) = self.locate(id)?;
        Some(self.segments[s].data.block(row / BLOCK_ROWS).labels[row % BLOCK_ROWS])
    }

    /// Exact scores of `query` against live rows `ids`, as a search would
    /// report them; `None` for ids that are not live rows.
    pub fn score(&self, query: &[f32], ids: &[u64]) -> crate::Result<Vec<Option<Hit>>> {
        let prepared = super::search::Prepared::new(self, query, 1)?;
        let located: Vec<Option<(usize, usize)>> = ids.iter().map(|&id| self.locate(id)).collect();
        let rows: Vec<(usize, usize)> = located.iter().flatten().copied().collect();
        let mut keys = prepared.rescore(self, 0, &rows).into_iter();
        Ok(ids
            .iter()
            .zip(located)
            .map(|(&id, at)| {
                at.map(|(s, row)| Hit {
                    id,
                    label: self.segments[s].data.block(row / BLOCK_ROWS).labels[row % BLOCK_ROWS],
                    score: self
                        .config
                        .metric_key_to_score(keys.next().expect("one key per row")),
                })
            })
            .collect())
    }
}
