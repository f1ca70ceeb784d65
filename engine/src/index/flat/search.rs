//! Exact search over a snapshot: top-k and threshold, one query or a batch.
//!
//! # How a search runs
//!
//! 1. Queries are validated and prepared (normalised for cosine; for `i8`
//!    indexes also quantized).
//! 2. Every block of every segment is a unit of work; rayon spreads chunks of
//!    blocks over the pool's threads. Each thread scores all queries
//!    against its blocks with one batched kernel call per block and keeps
//!    per-query state (a top-k heap and/or a candidate list); the states are
//!    merged at the end.
//! 3. Scores are compared as *keys*, higher is better: the score for cosine
//!    and inner product, the negated distance for L2.
//!
//! # Exact results from compact storage
//!
//! An `f32` index's scan scores are final. `f16` and `i8` scans produce
//! approximate keys. For each query and segment we compute a margin `m`
//! on `|approximate key − exact key|` for every row (see [`margin`]). With
//! `A` the k-th best approximate key, any row of the true top-k has an
//! approximate key ≥ `A − 2m`, so the scan keeps exactly those rows as
//! candidates, re-scores them from the stored `f32` originals with the
//! arithmetic of the `f32` block kernels (one FMA chain per row, see
//! [`crate::vector::Kernels::rows_dot_f32`]), and ranks the exact keys.
//! Threshold searches keep rows with approximate key ≥ `t − m`. Results are
//! the same rows, with bit-identical scores, as an `f32` index over the
//! same vectors:
//!
//! * `f16`: guaranteed — the margin is a worst-case bound;
//! * `i8`: except with probability below 10⁻¹⁷ per row — the margin treats
//!   quantization errors as independent and bounded (the probabilistic
//!   rounding model of Higham & Mary, SIAM J. Sci. Comput. 2019), because
//!   the worst case, every error aligned with the query, is √d times larger
//!   and would make a fixed fraction of all rows candidates.
//!
//! The tests compare both with `f32` on random and clustered data.

use std::sync::atomic::{AtomicU32, Ordering};

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::index::Hit;
use crate::index::topk::{Scored, TopK};
use crate::storage::segment::{BlockRef, Codes};
use crate::vector::quant::{F16_SUBNORMAL_ERROR, F16_UNIT_ROUNDOFF, I8_CODE_ERROR};
use crate::vector::{BLOCK_ROWS, Dtype, Metric, layout, quant};

use super::FlatConfig;
use super::snapshot::{FlatSnapshot, SegStats};

/// Fewest blocks per unit of parallel work (1024 rows).
const MIN_BLOCKS_PER_TASK: usize = 8;

/// Units of parallel work per thread: enough for work stealing to even out
/// the load, few enough that per-task set-up (each task starts with an
/// empty heap and its own scratch) stays negligible.
const TASKS_PER_THREAD: usize = 4;

/// Unit round-off of `f32`.
const U: f64 = 1.0 / 16_777_216.0;

fn gamma(k: f64) -> f64 {
    k * U / (1.0 - k * U)
}

/// Deviations (λ) allowed to a sum of `i8` rounding errors: Hoeffding's
/// inequality bounds `|Σ aᵢeᵢ| > λ·E·‖a‖₂` by `2·exp(−λ²/2)` < 10⁻¹⁷.
const I8_DEVIATIONS: f64 = 9.0;

/// Margin on `|approximate key − exact key|` for any row of a segment with
/// bounds `stats`, for a query of norm `qn` (and, for `i8`, quantization
/// scale `q_scale`). Zero for `f32`, whose scan keys are exact.
///
/// Notation: `d` the dimension, `u = 2⁻²⁴`, `γ = (d+2)u / (1 − (d+2)u)`
/// (Higham's bound for an `f32` sum of `d` products, any order, FMA or not),
/// `R ≥ ‖r‖` and `S ≥ s_r` over the segment's rows.
///
/// * `f16` rows (a worst-case bound): `‖r̃ − r‖ ≤ δ = u₁₆·R + 2⁻²⁵·√d`
///   (round-to-nearest, with the subnormal floor). Inner product:
///   `|q·r̃ − q·r| ≤ ‖q‖δ`, plus the `f32` errors of both scans,
///   `γ‖q‖(2R + δ)`. L2: `|‖q−r̃‖² − ‖q−r‖²| ≤ δ(2(‖q‖+R) + δ)` plus
///   `γ((‖q‖+R+δ)² + (‖q‖+R)²)`.
/// * `i8`: `q = s_q(c_q + e_q)`, `r = s_r(c_r + e_r)` with `|e| ≤ E`
///   ([`I8_CODE_ERROR`]), so `q·r − s_q s_r c_q·c_r = s_q s_r (c_q·e_r +
///   e_q·c_r + e_q·e_r)`. The first two sums are bounded by `E·w·‖c‖₂` with
///   `w = min(√d, λ)`: `√d` is the worst case (Cauchy–Schwarz), `λ`
///   ([`I8_DEVIATIONS`]) the probabilistic bound. That gives
///   `E·w·(S‖q‖ + s_q R) + 3E²d·s_q S` (the last term, worst case, also
///   absorbs `‖c‖₂ ≤ ‖x‖/s + E√d`); add the `f32` exact-scan error `γ‖q‖R`
///   and the three roundings of `s_q·s_r·I`. L2 keys are
///   `‖q‖² + ‖r‖² − 2·dot`: twice the dot margin plus the norms' and the
///   exact scan's rounding, `4γ(‖q‖+R)²`.
pub(crate) fn margin(config: &FlatConfig, qn: f64, q_scale: f64, stats: &SegStats) -> f64 {
    let d = config.dim as f64;
    let g = gamma(d + 2.0);
    // The stored ‖r‖² is an f32 sum with relative error ≤ γ.
    let r = (f64::from(stats.max_sqnorm) * (1.0 + 2.0 * g)).sqrt();
    let l2 = config.metric == Metric::L2;
    let m = match config.dtype {
        Dtype::F32 => return 0.0,
        Dtype::F16 => {
            let delta =
                f64::from(F16_UNIT_ROUNDOFF) * r + f64::from(F16_SUBNORMAL_ERROR) * d.sqrt();
            if l2 {
                delta * (2.0 * (qn + r) + delta) + g * ((qn + r + delta).powi(2) + (qn + r).powi(2))
            } else {
                qn * delta + g * qn * (2.0 * r + delta)
            }
        }
        Dtype::I8 => {
            let e = f64::from(I8_CODE_ERROR);
            let s = f64::from(stats.max_scale);
            let w = d.sqrt().min(I8_DEVIATIONS);
            let quant = e * w * (s * qn + q_scale * r) + 3.0 * e * e * d * q_scale * s;
            let dot = quant + g * qn * r + 4.0 * U * (qn * r + quant);
            if l2 {
                2.0 * dot + 4.0 * g * (qn + r).powi(2) + 12.0 * U * (qn * r + quant)
            } else {
                dot
            }
        }
    };
    m * (1.0 + 1e-6)
}

/// What a scan collects per query.
#[derive(Clone, Copy, Debug)]
enum Mode {
    /// The best `k` rows.
    TopK(usize),
    /// Every row whose key is at least this.
    Threshold(f32),
}

/// Validated, prepared queries plus what the scan needs per query.
pub(crate) struct Prepared {
    nq: usize,
    dim: usize,
    /// Prepared `f32` queries, row-major (normalised for cosine).
    queries: Vec<f32>,
    /// `i8` indexes: padded codes, row-major.
    codes: Vec<i8>,
    /// `i8` indexes: per-query quantization scale.
    scales: Vec<f32>,
    /// `‖q‖²` as an `f32` sum (the L2 keys of `i8` scans use it).
    sqnorms: Vec<f32>,
    /// Per-query margin: the largest over the snapshot's segments.
    margins: Vec<f32>,
}

impl Prepared {
    pub(crate) fn new(snap: &FlatSnapshot, queries: &[f32], nq: usize) -> Result<Prepared> {
        let config = &snap.config;
        let dim = config.dim;
        let mut prepared = Prepared {
            nq,
            dim,
            queries: Vec::with_capacity(nq * dim),
            codes: Vec::new(),
            scales: Vec::new(),
            sqnorms: Vec::with_capacity(nq),
            margins: Vec::with_capacity(nq),
        };
        let pdim = layout::padded_dim_i8(dim);
        let mut buf = Vec::with_capacity(dim);
        let mut codes = vec![0i8; dim];
        for q in queries.chunks_exact(dim) {
            super::prepare(config, q, &mut buf, false)?;
            let qn = buf
                .iter()
                .map(|&x| f64::from(x) * f64::from(x))
                .sum::<f64>()
                .sqrt();
            let mut q_scale = 0.0;
            if config.dtype == Dtype::I8 {
                q_scale = quant::quantize_i8(&buf, &mut codes);
                prepared.codes.extend_from_slice(&codes);
                prepared.codes.resize(prepared.codes.len() + pdim - dim, 0);
                prepared.scales.push(q_scale);
            }
            let m = snap
                .segments
                .iter()
                .filter(|s| s.data.rows() > 0)
                .map(|s| margin(config, qn, f64::from(q_scale), &s.stats))
                .fold(0.0, f64::max);
            // Rounding the bound to f32 must not shrink it.
            prepared.margins.push((m as f32).next_up());
            prepared.sqnorms.push(buf.iter().map(|x| x * x).sum());
            prepared.queries.extend_from_slice(&buf);
        }
        Ok(prepared)
    }

    fn query(&self, q: usize) -> &[f32] {
        &self.queries[q * self.dim..(q + 1) * self.dim]
    }

    /// Exact keys of query `q` against `rows` (segment, row position),
    /// bit-identical to what an `f32` index's scan computes for them.
    pub(crate) fn rescore(
        &self,
        snap: &FlatSnapshot,
        q: usize,
        rows: &[(usize, usize)],
    ) -> Vec<f32> {
        let dim = self.dim;
        let l2 = snap.config.metric == Metric::L2;
        let blocks: Vec<BlockRef<'_>> = rows
            .iter()
            .map(|&(s, row)| snap.segments[s].data.block(row / BLOCK_ROWS))
            .collect();
        // f32 segments keep no row-major copy: gather those rows first.
        let mut gathered = Vec::new();
        for (block, &(_, row)) in blocks.iter().zip(rows) {
            if let Codes::F32(_) = block.codes {
                let at = gathered.len();
                gathered.resize(at + dim, 0.0);
                block.original(row % BLOCK_ROWS, &mut gathered[at..]);
            }
        }
        let mut gathered_rows = gathered.chunks_exact(dim);
        let refs: Vec<&[f32]> = blocks
            .iter()
            .zip(rows)
            .map(|(block, &(_, row))| match block.codes {
                Codes::F32(_) => gathered_rows.next().expect("gathered above"),
                _ => {
                    let r = row % BLOCK_ROWS;
                    &block.originals[r * dim..(r + 1) * dim]
                }
            })
            .collect();
        let mut keys = vec![0.0f32; rows.len()];
        if l2 {
            snap.kernels.rows_l2sq_f32(self.query(q), &refs, &mut keys);
            keys.iter_mut().for_each(|k| *k = -*k);
        } else {
            snap.kernels.rows_dot_f32(self.query(q), &refs, &mut keys);
        }
        keys
    }
}

/// Per-query lower bounds on the final k-th best key, shared by all scan
/// tasks: each task's own k-th best key is one (the final top k is at
/// least as good), so a task that has not seen many rows yet can already
/// skip rows that another task's heap has ruled out.
struct SharedFloors(Vec<AtomicU32>);

impl SharedFloors {
    fn new(nq: usize) -> SharedFloors {
        SharedFloors(
            (0..nq)
                .map(|_| AtomicU32::new(order_bits(f32::NEG_INFINITY)))
                .collect(),
        )
    }

    fn get(&self, q: usize) -> f32 {
        from_order_bits(self.0[q].load(Ordering::Relaxed))
    }

    fn raise(&self, q: usize, floor: f32) {
        self.0[q].fetch_max(order_bits(floor), Ordering::Relaxed);
    }
}

/// Maps an `f32` to a `u32` whose unsigned order is the float's total order.
fn order_bits(x: f32) -> u32 {
    let b = x.to_bits();
    if b >> 31 == 1 { !b } else { b | 1 << 31 }
}

fn from_order_bits(b: u32) -> f32 {
    f32::from_bits(if b >> 31 == 1 { b & !(1 << 31) } else { !b })
}

/// A row the scan kept for a query.
#[derive(Clone, Copy, Debug)]
struct Candidate {
    key: f32,
    id: u64,
    label: u64,
    seg: u32,
    row: u32,
}

impl Candidate {
    fn scored(&self) -> Scored {
        Scored {
            key: self.key,
            id: self.id,
            label: self.label,
        }
    }
}

/// One query's state during a scan.
#[derive(Clone, Debug)]
struct QueryState {
    /// Top-k mode: the best keys seen (approximate keys for compact dtypes).
    top: TopK,
    /// Compact dtypes (top-k) and threshold mode: kept rows.
    candidates: Vec<Candidate>,
    /// Candidate count at which to prune again.
    prune_at: usize,
}

/// Per-thread scan state for all queries, plus kernel scratch space.
struct Collector {
    mode: Mode,
    exact: bool,
    states: Vec<QueryState>,
    /// Keys of every query against the current block (`nq × BLOCK_ROWS`).
    keys: Vec<f32>,
    /// `i8` kernel output before scaling.
    ints: Vec<i32>,
}

/// Candidate count below which a query's list is never pruned.
const MIN_PRUNE: usize = 64;

impl Collector {
    fn new(nq: usize, mode: Mode, exact: bool, dtype: Dtype) -> Collector {
        let k = match mode {
            Mode::TopK(k) => k,
            Mode::Threshold(_) => 0,
        };
        let state = QueryState {
            top: TopK::new(k),
            candidates: Vec::new(),
            prune_at: MIN_PRUNE.max(4 * k),
        };
        Collector {
            mode,
            exact,
            states: vec![state; nq],
            keys: vec![0.0; nq * BLOCK_ROWS],
            ints: vec![
                0;
                if dtype == Dtype::I8 {
                    nq * BLOCK_ROWS
                } else {
                    0
                }
            ],
        }
    }

    /// Lowest key that can still matter for query `q`: a row below the
    /// k-th best key seen by any task (minus twice the margin for
    /// approximate keys) cannot enter the top k.
    fn admit(&self, q: usize, shared: &SharedFloors, margin: f32) -> f32 {
        match self.mode {
            Mode::TopK(_) => {
                let floor = match self.states[q].top.floor() {
                    Some(local) => local.max(shared.get(q)),
                    None => shared.get(q),
                };
                if self.exact || floor == f32::NEG_INFINITY {
                    floor
                } else {
                    floor - slack(floor, 2.0 * margin)
                }
            }
            Mode::Threshold(t) if self.exact => t,
            Mode::Threshold(t) => t - slack(t, margin),
        }
    }

    /// Fills `self.keys` with every query's keys against the block's 128
    /// lanes (lanes past the block's rows hold garbage and are never read
    /// as rows). Written over fixed-size lanes so that it vectorises.
    fn block_keys(&mut self, snap: &FlatSnapshot, p: &Prepared, block: &BlockRef<'_>) {
        let l2 = snap.config.metric == Metric::L2;
        let k = &snap.kernels;
        let dim = p.dim;
        match block.codes {
            Codes::F32(c) if l2 => k.block_l2sq_f32(&p.queries, dim, c, &mut self.keys),
            Codes::F32(c) => k.block_dot_f32(&p.queries, dim, c, &mut self.keys),
            Codes::F16(c) if l2 => k.block_l2sq_f16(&p.queries, dim, c, &mut self.keys),
            Codes::F16(c) => k.block_dot_f16(&p.queries, dim, c, &mut self.keys),
            Codes::I8(c) => {
                k.block_dot_i8(&p.codes, dim, c, &mut self.ints);
                let fill = block.len();
                let mut scales = [0.0f32; BLOCK_ROWS];
                scales[..fill].copy_from_slice(block.scales);
                let (keys, _) = self.keys.as_chunks_mut::<BLOCK_ROWS>();
                let (ints, _) = self.ints.as_chunks::<BLOCK_ROWS>();
                for (q, (keys, ints)) in keys.iter_mut().zip(ints).enumerate() {
                    let sq = p.scales[q];
                    for ((key, &i), &s) in keys.iter_mut().zip(ints).zip(&scales) {
                        *key = i as f32 * s * sq;
                    }
                }
                if l2 {
                    let mut sqnorms = [0.0f32; BLOCK_ROWS];
                    sqnorms[..fill].copy_from_slice(block.sqnorms);
                    for (keys, &qn2) in keys.iter_mut().zip(&p.sqnorms) {
                        for (key, &rn2) in keys.iter_mut().zip(&sqnorms) {
                            *key = -(qn2 + rn2 - 2.0 * *key);
                        }
                    }
                }
                return;
            }
        }
        if l2 {
            self.keys.iter_mut().for_each(|k| *k = -*k);
        }
    }

    fn scan_block(
        &mut self,
        snap: &FlatSnapshot,
        p: &Prepared,
        shared: &SharedFloors,
        s: usize,
        b: usize,
    ) {
        let seg = &snap.segments[s];
        let block = seg.data.block(b);
        self.block_keys(snap, p, &block);
        let fill = block.len();
        let rows = if fill == BLOCK_ROWS {
            u128::MAX
        } else {
            (1u128 << fill) - 1
        };
        for q in 0..p.nq {
            let admit = self.admit(q, shared, p.margins[q]);
            let keys: &[f32; BLOCK_ROWS] = self.keys[q * BLOCK_ROWS..(q + 1) * BLOCK_ROWS]
                .try_into()
                .expect("one block of keys");
            let mut hits = snap.kernels.mask_ge(keys, admit) & rows;
            while hits != 0 {
                let r = hits.trailing_zeros() as usize;
                hits &= hits - 1;
                if seg.deleted.contains(b * BLOCK_ROWS + r) {
                    continue;
                }
                let c = Candidate {
                    key: self.keys[q * BLOCK_ROWS + r],
                    id: block.ids[r],
                    label: block.labels[r],
                    seg: s as u32,
                    row: (b * BLOCK_ROWS + r) as u32,
                };
                self.offer(q, c, p.margins[q]);
            }
            if let Some(floor) = self.states[q].top.floor()
                && floor > shared.get(q)
            {
                shared.raise(q, floor);
            }
        }
    }

    fn offer(&mut self, q: usize, c: Candidate, margin: f32) {
        let exact = self.exact;
        let state = &mut self.states[q];
        match self.mode {
            Mode::TopK(_) => {
                state.top.push(c.scored());
                if !exact {
                    state.candidates.push(c);
                    if state.candidates.len() >= state.prune_at {
                        prune(state, margin);
                    }
                }
            }
            Mode::Threshold(_) => state.candidates.push(c),
        }
    }

    fn merge(mut self, other: Collector) -> Collector {
        for (mine, theirs) in self.states.iter_mut().zip(other.states) {
            mine.top.merge(theirs.top);
            mine.candidates.extend(theirs.candidates);
        }
        self
    }
}

/// `2m` (or `m`) widened by the rounding of subtracting it from `key` in `f32`.
fn slack(key: f32, m: f32) -> f32 {
    m + 4.0 * f32::EPSILON * key.abs()
}

/// Drops candidates that can no longer reach the top k.
fn prune(state: &mut QueryState, margin: f32) {
    if let Some(floor) = state.top.floor() {
        let admit = floor - slack(floor, 2.0 * margin);
        state.candidates.retain(|c| c.key >= admit);
    }
    state.prune_at = MIN_PRUNE.max(2 * state.candidates.len());
}

fn ranked(candidates: &mut [Candidate]) {
    candidates.sort_by(|a, b| a.scored().rank_cmp(&b.scored()));
}

impl FlatSnapshot {
    /// The `k` rows most similar to `query`, best first (ties by lower id).
    ///
    /// Runs on the current rayon pool. Errors on a wrong dimension, NaN/Inf,
    /// or a zero vector under cosine / inner product.
    pub fn search(&self, query: &[f32], k: usize) -> Result<Vec<Hit>> {
        self.check_single(query)?;
        Ok(self.run(query, Mode::TopK(k))?.pop().unwrap_or_default())
    }

    /// [`FlatSnapshot::search`] for many queries (row-major, `dim` each) in one
    /// pass over the data: every block is loaded once for all queries.
    pub fn search_batch(&self, queries: &[f32], k: usize) -> Result<Vec<Vec<Hit>>> {
        self.run(queries, Mode::TopK(k))
    }

    /// Every row whose score reaches `threshold` (similarity ≥ threshold for
    /// cosine and inner product, distance ≤ threshold for L2), best first.
    pub fn search_threshold(&self, query: &[f32], threshold: f32) -> Result<Vec<Hit>> {
        self.check_single(query)?;
        let key = self.threshold_key(threshold)?;
        Ok(self
            .run(query, Mode::Threshold(key))?
            .pop()
            .unwrap_or_default())
    }

    /// [`FlatSnapshot::search_threshold`] for many queries in one pass.
    pub fn search_threshold_batch(&self, queries: &[f32], threshold: f32) -> Result<Vec<Vec<Hit>>> {
        let key = self.threshold_key(threshold)?;
        self.run(queries, Mode::Threshold(key))
    }

    fn check_single(&self, query: &[f32]) -> Result<()> {
        if query.len() != self.config.dim {
            return Err(Error::DimensionMismatch {
                expected: self.config.dim,
                got: query.len(),
            });
        }
        Ok(())
    }

    fn threshold_key(&self, threshold: f32) -> Result<f32> {
        if !threshold.is_finite() {
            return Err(Error::invalid(
                "threshold",
                format!("{threshold} is not a finite number"),
            ));
        }
        Ok(if self.config.metric == Metric::L2 {
            -threshold
        } else {
            threshold
        })
    }

    /// Validates and prepares a batch of queries (row-major, `dim` each).
    fn prepare_batch(&self, queries: &[f32]) -> Result<Prepared> {
        let dim = self.config.dim;
        if queries.is_empty() || !queries.len().is_multiple_of(dim) {
            return Err(Error::DimensionMismatch {
                expected: dim,
                got: if queries.is_empty() {
                    0
                } else {
                    queries.len() % dim
                },
            });
        }
        Prepared::new(self, queries, queries.len() / dim)
    }

    /// [`FlatSnapshot::search_threshold_batch`] over the blocks `units`
    /// (segment, block) only, on the calling thread: the building block of
    /// the N:N self-join, which runs many of these in parallel.
    pub(crate) fn search_threshold_units(
        &self,
        queries: &[f32],
        threshold: f32,
        units: &[(usize, usize)],
    ) -> Result<Vec<Vec<Hit>>> {
        let mode = Mode::Threshold(self.threshold_key(threshold)?);
        let p = self.prepare_batch(queries)?;
        let exact = self.config.dtype == Dtype::F32;
        let shared = SharedFloors::new(p.nq);
        let mut collector = Collector::new(p.nq, mode, exact, self.config.dtype);
        for &(s, b) in units {
            collector.scan_block(self, &p, &shared, s, b);
        }
        Ok(self.finish_all(&p, collector, mode, exact))
    }

    fn run(&self, queries: &[f32], mode: Mode) -> Result<Vec<Vec<Hit>>> {
        let p = self.prepare_batch(queries)?;
        let nq = p.nq;
        let exact = self.config.dtype == Dtype::F32;
        let dtype = self.config.dtype;
        let units: Vec<(usize, usize)> = self
            .segments
            .iter()
            .enumerate()
            .flat_map(|(s, seg)| (0..seg.data.block_count()).map(move |b| (s, b)))
            .collect();
        let per_task = MIN_BLOCKS_PER_TASK.max(
            units
                .len()
                .div_ceil(TASKS_PER_THREAD * rayon::current_num_threads()),
        );
        let shared = SharedFloors::new(nq);
        let collector = units
            .par_chunks(per_task)
            .fold(
                || Collector::new(nq, mode, exact, dtype),
                |mut c, chunk| {
                    for &(s, b) in chunk {
                        c.scan_block(self, &p, &shared, s, b);
                    }
                    c
                },
            )
            .reduce_with(Collector::merge)
            .unwrap_or_else(|| Collector::new(nq, mode, exact, dtype));
        Ok(self.finish_all(&p, collector, mode, exact))
    }

    /// Every query's hits from a finished scan.
    fn finish_all(&self, p: &Prepared, c: Collector, mode: Mode, exact: bool) -> Vec<Vec<Hit>> {
        c.states
            .into_iter()
            .enumerate()
            .map(|(q, state)| self.finish(p, q, state, mode, exact))
            .collect()
    }

    /// Turns one query's merged state into hits with exact scores.
    fn finish(
        &self,
        p: &Prepared,
        q: usize,
        state: QueryState,
        mode: Mode,
        exact: bool,
    ) -> Vec<Hit> {
        let hit = |s: Scored| Hit {
            id: s.id,
            label: s.label,
            score: self.config.metric_key_to_score(s.key),
        };
        let mut candidates = state.candidates;
        match mode {
            Mode::TopK(_) if exact => state.top.into_sorted().into_iter().map(hit).collect(),
            Mode::TopK(k) => {
                if let Some(floor) = state.top.floor() {
                    let admit = floor - slack(floor, 2.0 * p.margins[q]);
                    candidates.retain(|c| c.key >= admit);
                }
                self.rescore_candidates(p, q, &mut candidates);
                let mut top = TopK::new(k);
                for c in &candidates {
                    top.push(c.scored());
                }
                top.into_sorted().into_iter().map(hit).collect()
            }
            Mode::Threshold(t) => {
                if !exact {
                    self.rescore_candidates(p, q, &mut candidates);
                    candidates.retain(|c| c.key >= t);
                }
                ranked(&mut candidates);
                candidates.iter().map(|c| hit(c.scored())).collect()
            }
        }
    }

    /// Replaces the candidates' approximate keys by exact ones.
    fn rescore_candidates(&self, p: &Prepared, q: usize, candidates: &mut [Candidate]) {
        let rows: Vec<(usize, usize)> = candidates
            .iter()
            .map(|c| (c.seg as usize, c.row as usize))
            .collect();
        for (c, key) in candidates.iter_mut().zip(p.rescore(self, q, &rows)) {
            c.key = key;
        }
    }
}

impl FlatConfig {
    /// Converts an internal key (higher is better) to the metric's score.
    pub(crate) fn metric_key_to_score(&self, key: f32) -> f32 {
        if self.metric == Metric::L2 { -key } else { key }
    }
}

#[cfg(test)]
impl Prepared {
    /// The margin used for query `q`.
    pub(crate) fn margin(&self, q: usize) -> f32 {
        self.margins[q]
    }

    /// Approximate keys of query `q` against block `b` of segment `s`,
    /// computed exactly as the scan computes them.
    pub(crate) fn approximate_keys(
        &self,
        snap: &FlatSnapshot,
        q: usize,
        s: usize,
        b: usize,
    ) -> Vec<f32> {
        let mut c = Collector::new(
            self.nq,
            Mode::Threshold(f32::NEG_INFINITY),
            false,
            snap.config.dtype,
        );
        let block = snap.segments[s].data.block(b);
        c.block_keys(snap, self, &block);
        c.keys[q * BLOCK_ROWS..q * BLOCK_ROWS + block.len()].to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_bits_preserve_the_float_order() {
        let xs = [
            f32::NEG_INFINITY,
            -1e30,
            -2.5,
            -0.0,
            0.0,
            1e-40,
            0.5,
            3.0,
            f32::INFINITY,
        ];
        for w in xs.windows(2) {
            assert!(order_bits(w[0]) <= order_bits(w[1]), "{} {}", w[0], w[1]);
        }
        for &x in &xs {
            assert_eq!(from_order_bits(order_bits(x)).to_bits(), x.to_bits());
        }
    }
}
