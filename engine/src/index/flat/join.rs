//! Self-join of a snapshot: every pair of rows scoring at least a threshold.
//!
//! The rows are split into *tiles*, runs of whole blocks named by the id of
//! their first row ([`FlatSnapshot::tile_starts`]); N:N de-duplication
//! ([`crate::dedup`]) joins every tile pair `(A, B)`, `A ≤ B`, once.
//! [`FlatSnapshot::join`] scores one tile pair: the rows of `A` are taken
//! [`QUERY_BLOCKS`] blocks at a time as a batch of queries (their stored
//! `f32` originals) and scanned against the blocks of `B` by the same
//! batched kernels, margins and exact re-scoring as a threshold search
//! ([`super::search`]), so a pair's score is bit-identical to what
//! `search_threshold` reports when given the stored vector of `a`. Batches run in parallel on the rayon
//! pool; a diagonal tile (`A = B`) scans each batch only against blocks from
//! its own onwards and keeps pairs `a < b`, so every unordered pair is
//! scored once.
//!
//! Memory is bounded by the batch: per task, one batch of queries and its
//! `batch × 128` key buffer; kept pairs are the output.

use std::ops::RangeInclusive;

use rayon::prelude::*;

use crate::error::Result;
use crate::rng::SplitMix;
use crate::vector::{BLOCK_ROWS, Metric};

use super::FlatSnapshot;

/// Blocks of tile `A` scored together as one batch of queries (256 rows:
/// the `i8` kernel's query tiles fill up, and the batch's codes stay in L2).
pub const QUERY_BLOCKS: usize = 2;

/// A pair of rows [`FlatSnapshot::join`] kept.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct JoinPair {
    /// Lower row id.
    pub a: u64,
    /// Its label.
    pub a_label: u64,
    /// Higher row id.
    pub b: u64,
    /// Its label.
    pub b_label: u64,
    /// Exact score (similarity, or distance for L2).
    pub score: f32,
}

/// What [`FlatSnapshot::join`] found.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Join {
    /// Pairs reaching the threshold, in no particular order.
    pub pairs: Vec<JoinPair>,
    /// Distinct row pairs compared (`a < b`, both live and in range).
    pub comparisons: u64,
}

impl FlatSnapshot {
    /// Splits the stored rows into tiles of about `tile_rows` rows (rounded
    /// up to whole blocks) and returns the id of each tile's first row, in
    /// increasing order; tile `t` holds ids from `starts[t]` up to the next
    /// start (the last tile: every later id). Empty for an empty snapshot.
    pub fn tile_starts(&self, tile_rows: usize) -> Vec<u64> {
        let per_tile = tile_rows.div_ceil(BLOCK_ROWS).max(1);
        let mut starts = Vec::new();
        let mut n = 0usize;
        for seg in &self.segments {
            for b in 0..seg.data.block_count() {
                if n.is_multiple_of(per_tile) {
                    starts.push(seg.data.block(b).ids[0]);
                }
                n += 1;
            }
        }
        starts
    }

    /// Blocks (segment, block) holding any id in `range`, in order.
    fn units_between(&self, range: &RangeInclusive<u64>) -> Vec<(usize, usize)> {
        let (lo, hi) = (*range.start(), *range.end());
        let first_seg = self
            .segments
            .partition_point(|seg| seg.data.last_id().is_some_and(|l| l < lo));
        let mut units = Vec::new();
        for (s, seg) in self.segments.iter().enumerate().skip(first_seg) {
            let blocks = seg.data.block_count();
            if blocks == 0 {
                continue;
            }
            if seg.data.block(0).ids[0] > hi {
                break;
            }
            // First block whose last id reaches `lo`.
            let last_id = |b: usize| *seg.data.block(b).ids.last().expect("non-empty block");
            let (mut first, mut end) = (0, blocks);
            while first < end {
                let mid = (first + end) / 2;
                if last_id(mid) < lo {
                    first = mid + 1;
                } else {
                    end = mid;
                }
            }
            for b in first..blocks {
                if seg.data.block(b).ids[0] > hi {
                    break;
                }
                units.push((s, b));
            }
        }
        units
    }

    /// Live rows with ids in `range`.
    fn live_rows_between(&self, units: &[(usize, usize)], range: &RangeInclusive<u64>) -> u64 {
        units
            .iter()
            .map(|&(s, b)| {
                let seg = &self.segments[s];
                let block = seg.data.block(b);
                (0..block.len())
                    .filter(|&r| {
                        range.contains(&block.ids[r]) && !seg.deleted.contains(b * BLOCK_ROWS + r)
                    })
                    .count() as u64
            })
            .sum()
    }

    /// Live rows with ids in `range` (a tile's size, for progress totals).
    pub fn live_rows_in(&self, range: RangeInclusive<u64>) -> u64 {
        self.live_rows_between(&self.units_between(&range), &range)
    }

    /// The largest row id stored (live or deleted), if any.
    pub fn last_id(&self) -> Option<u64> {
        self.segments.iter().rev().find_map(|s| s.data.last_id())
    }

    /// Distinct pairs [`FlatSnapshot::join`] compares for these tiles.
    pub fn join_comparisons(
        &self,
        tile_a: RangeInclusive<u64>,
        tile_b: RangeInclusive<u64>,
    ) -> u64 {
        let na = self.live_rows_in(tile_a.clone());
        if tile_a == tile_b {
            na * na.saturating_sub(1) / 2
        } else {
            na * self.live_rows_in(tile_b)
        }
    }

    /// Every pair of live rows `a ∈ tile_a`, `b ∈ tile_b`, `a < b`, whose
    /// score reaches `threshold` (similarity ≥ threshold; distance ≤
    /// threshold for L2). The ranges must be equal or disjoint with
    /// `tile_a` below `tile_b`. Runs on the current rayon pool.
    pub fn join(
        &self,
        tile_a: RangeInclusive<u64>,
        tile_b: RangeInclusive<u64>,
        threshold: f32,
    ) -> Result<Join> {
        let diagonal = tile_a == tile_b;
        debug_assert!(diagonal || tile_a.end() < tile_b.start(), "tiles overlap");
        let ua = self.units_between(&tile_a);
        let ub = self.units_between(&tile_b);
        let comparisons = self.join_comparisons(tile_a.clone(), tile_b.clone());
        let dim = self.config.dim;
        let batches: Vec<Vec<JoinPair>> = ua
            .par_chunks(QUERY_BLOCKS)
            .map(|chunk| -> Result<Vec<JoinPair>> {
                let (mut ids, mut labels, mut queries) = (Vec::new(), Vec::new(), Vec::new());
                for &(s, b) in chunk {
                    let seg = &self.segments[s];
                    let block = seg.data.block(b);
                    for r in 0..block.len() {
                        if !tile_a.contains(&block.ids[r])
                            || seg.deleted.contains(b * BLOCK_ROWS + r)
                        {
                            continue;
                        }
                        ids.push(block.ids[r]);
                        labels.push(block.labels[r]);
                        let at = queries.len();
                        queries.resize(at + dim, 0.0);
                        block.original(r, &mut queries[at..]);
                    }
                }
                let Some(&first) = ids.first() else {
                    return Ok(Vec::new());
                };
                // On the diagonal, blocks wholly below this batch hold no b > a.
                let units = if diagonal {
                    let skip = ub.partition_point(|&(s, b)| {
                        *self.segments[s]
                            .data
                            .block(b)
                            .ids
                            .last()
                            .expect("non-empty block")
                            <= first
                    });
                    &ub[skip..]
                } else {
                    &ub[..]
                };
                let hits = self.search_threshold_units(&queries, threshold, units)?;
                let mut pairs = Vec::new();
                for (q, hits) in hits.into_iter().enumerate() {
                    for h in hits {
                        if tile_b.contains(&h.id) && h.id > ids[q] {
                            pairs.push(JoinPair {
                                a: ids[q],
                                a_label: labels[q],
                                b: h.id,
                                b_label: h.label,
                                score: h.score,
                            });
                        }
                    }
                }
                Ok(pairs)
            })
            .collect::<Result<_>>()?;
        Ok(Join {
            pairs: batches.into_iter().flatten().collect(),
            comparisons,
        })
    }

    /// Exact scores of `count` random pairs of live rows with different
    /// labels (different subjects, in a gallery): a sample of the impostor
    /// score distribution when duplicates are rare. Seeded; the same
    /// snapshot and seed give the same scores. Empty if fewer than two
    /// labels are present (gives up after `64 · count` draws).
    pub fn sample_pair_scores(&self, count: usize, seed: u64) -> Vec<f32> {
        let stored: Vec<usize> = self.segments.iter().map(|s| s.data.rows()).collect();
        let total: usize = stored.iter().sum();
        if total < 2 {
            return Vec::new();
        }
        let locate = |mut row: usize| {
            for (s, &n) in stored.iter().enumerate() {
                if row < n {
                    return (s, row);
                }
                row -= n;
            }
            unreachable!("row below the total")
        };
        let dim = self.config.dim;
        let mut rng = SplitMix::new(seed);
        let (mut x, mut y) = (vec![0.0f32; dim], vec![0.0f32; dim]);
        let mut out = Vec::with_capacity(count);
        let mut draws = 0usize;
        while out.len() < count && draws < 64 * count {
            draws += 1;
            let (sa, ra) = locate(rng.below(total as u64) as usize);
            let (sb, rb) = locate(rng.below(total as u64) as usize);
            let (ga, gb) = (&self.segments[sa], &self.segments[sb]);
            if ga.deleted.contains(ra) || gb.deleted.contains(rb) {
                continue;
            }
            let (ba, bb) = (
                ga.data.block(ra / BLOCK_ROWS),
                gb.data.block(rb / BLOCK_ROWS),
            );
            if ba.labels[ra % BLOCK_ROWS] == bb.labels[rb % BLOCK_ROWS] {
                continue;
            }
            ba.original(ra % BLOCK_ROWS, &mut x);
            bb.original(rb % BLOCK_ROWS, &mut y);
            out.push(match self.config.metric {
                Metric::L2 => self.kernels.l2sq_f32(&x, &y),
                Metric::Cosine | Metric::InnerProduct => self.kernels.dot_f32(&x, &y),
            });
        }
        out
    }
}
