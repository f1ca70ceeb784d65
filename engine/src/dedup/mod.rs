//! N:N de-duplication: every pair of subjects in the gallery scored, the
//! likely duplicates reported, resumably.
//!
//! # How a job runs
//!
//! 1. **Plan** (once, when the job is created; stored with it): for every
//!    vector collection, tiles of about `tile_rows` templates at block
//!    boundaries ([`crate::index::flat::FlatSnapshot::tile_starts`]) and a
//!    threshold — given, or for a target FMR estimated from a seeded sample
//!    of random template pairs of different subjects (duplicates are rare,
//!    so the sample is an impostor sample; see [`plan`]).
//! 2. **Scan**: every tile pair `(A, B)`, `A ≤ B`, is joined by the batched
//!    SIMD kernels (`i8` scan with exact re-scoring of kept pairs for `i8`
//!    collections; see [`crate::index::flat::FlatSnapshot::join`]). Template
//!    pairs of different subjects at or beyond the threshold are kept
//!    (minutiae collections: see below).
//! 3. **Checkpoint**: a finished tile pair and its kept pairs commit to the
//!    catalog in one transaction ([`crate::storage::jobs`]). A killed job,
//!    run again, skips finished tile pairs and ends with exactly the pairs
//!    of an uninterrupted run.
//! 4. **Report** ([`report`]): per subject pair, the best score in each
//!    collection; pairs that match in any collection are scored in every
//!    other collection both subjects have templates in, and fused;
//!    union-find groups them into clusters. `pairs.jsonl`,
//!    `clusters.jsonl` and `summary.json` are written atomically.
//!
//! # Fusion rule
//!
//! Scores of different models live on different scales. Each collection's
//! score is turned into an impostor z-score, `z = (s − μ) / σ` with `μ`,
//! `σ` the mean and standard deviation of its sampled impostor scores
//! (sign flipped for distances), and the fused score is Stouffer's
//! `Σ z / √M` over the `M` collections in which both subjects have
//! templates. Under the impostor hypothesis each `z` is about standard
//! normal and so is the fused score; agreement of independent modalities
//! adds up. A pair is reported when it matches in at least one collection
//! (no duplicate is hidden by a modality that disagrees: the per-collection
//! scores are in the report for a person to weigh).
//!
//! # Minutiae collections
//!
//! Fingers are scanned in two stages, as 1:N finger search is: the join
//! runs on the fingers' fixed-length vectors with a loose threshold (the
//! cosine that [`plan::PREFILTER_FMR`] of sampled impostor pairs reach),
//! and every pair of different subjects passing it is scored by the
//! minutiae matcher (compatible positions only); pairs at or above the
//! finger threshold (`finger_threshold`, else estimated for the FMR from
//! sampled impostor template pairs) are kept. The vector stage misses some
//! true mates (it keeps 93 % of mates in the best 5 % in `biomatch bench
//! finger`), and the matcher's cost grows with the square of the gallery:
//! this suits galleries of up to some 10⁵ fingers on this hardware.
//!
//! Memory is bounded by the tile and batch sizes, not by the gallery: the
//! scan reads memory-mapped segments, and only kept pairs are held.

mod plan;
mod report;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use rayon::prelude::*;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::gallery::Gallery;
use crate::storage::catalog::Catalog;
use crate::storage::jobs::{JobRecord, JobState, KeptPair, TilePair};

pub use plan::{Bins, CollectionPlan, ImpostorStats, PREFILTER_FMR, ThresholdMethod};
pub use report::{CollectionSummary, Histogram, ModalityScore, SubjectPair, Summary};

/// Job kind in the catalog.
pub const JOB_KIND: &str = "dedup";

/// Default templates per tile. A tile pair is the unit of checkpointing;
/// [`DedupRequest::default_tile_rows`] grows tiles with the gallery so that
/// the number of tile pairs stays manageable.
pub const DEFAULT_TILE_ROWS: usize = 16_384;

/// What to de-duplicate and how.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DedupRequest {
    /// Collections to scan (empty: every collection).
    pub collections: Vec<String>,
    /// Match threshold, applied in every collection.
    pub threshold: Option<f32>,
    /// Target false match rate per template pair: each collection's
    /// threshold is estimated from its sampled impostor scores.
    pub fmr: Option<f64>,
    /// Minutiae score threshold for minutiae collections (default: the
    /// one estimated for `fmr`, or for 1e-5 when `threshold` is given).
    #[serde(default)]
    pub finger_threshold: Option<f32>,
    /// Templates per tile (default: [`DedupRequest::default_tile_rows`] of
    /// each collection's size).
    pub tile_rows: Option<usize>,
    /// Output directory.
    pub out: PathBuf,
}

impl DedupRequest {
    /// Tile size for a collection of `templates`: at least
    /// [`DEFAULT_TILE_ROWS`], and large enough for at most 256 tiles
    /// (32 896 tile pairs).
    pub fn default_tile_rows(templates: usize) -> usize {
        DEFAULT_TILE_ROWS.max(templates.div_ceil(256))
    }

    /// Checks the request's own values.
    pub fn validate(&self) -> Result<()> {
        match (self.threshold, self.fmr) {
            (Some(t), None) if t.is_finite() => {}
            (None, Some(f)) if f > 0.0 && f < 1.0 => {}
            (Some(t), None) => {
                return Err(Error::invalid(
                    "threshold",
                    format!("{t} is not a finite number"),
                ));
            }
            (None, Some(f)) => {
                return Err(Error::invalid("fmr", format!("{f} is not in (0, 1)")));
            }
            _ => {
                return Err(Error::invalid(
                    "threshold",
                    "give exactly one of threshold and fmr",
                ));
            }
        }
        if let Some(t) = self.finger_threshold
            && !t.is_finite()
        {
            return Err(Error::invalid(
                "finger_threshold",
                format!("{t} is not a finite number"),
            ));
        }
        if self.tile_rows == Some(0) {
            return Err(Error::invalid("tile_rows", "must be positive"));
        }
        Ok(())
    }
}

/// A job's stored parameters: the request and the plan made for it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobParams {
    /// As asked.
    pub request: DedupRequest,
    /// As planned at creation.
    pub plan: Vec<CollectionPlan>,
}

/// Progress of a running job.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Progress {
    /// Job id.
    pub job: u64,
    /// Tile pairs finished (including those of earlier runs).
    pub tiles_done: usize,
    /// Tile pairs in the job.
    pub tiles_total: usize,
    /// Template pairs compared so far (including earlier runs).
    pub comparisons_done: u64,
    /// Template pairs to compare in all.
    pub comparisons_total: u64,
    /// Seconds this run has been scanning.
    pub elapsed_s: f64,
    /// Comparisons per second in this run.
    pub comparisons_per_s: f64,
    /// Estimated seconds left.
    pub eta_s: Option<f64>,
}

impl Progress {
    /// Fraction done, 0 to 1.
    pub fn fraction(&self) -> f64 {
        if self.comparisons_total == 0 {
            if self.tiles_total == 0 {
                1.0
            } else {
                self.tiles_done as f64 / self.tiles_total as f64
            }
        } else {
            self.comparisons_done as f64 / self.comparisons_total as f64
        }
    }
}

/// Watches a running job: receives progress after every tile pair and can
/// ask it to stop.
pub trait Observer: Sync {
    /// Called at the start and after every finished tile pair.
    fn progress(&self, _progress: &Progress) {}
    /// Whether the job should stop (checked between tile pairs).
    fn cancelled(&self) -> bool {
        false
    }
}

/// An observer that ignores progress and stops when its flag is set.
#[derive(Debug, Default)]
pub struct CancelFlag(pub AtomicBool);

impl Observer for CancelFlag {
    fn cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

fn catalog_of(gallery: &Gallery) -> Result<Catalog> {
    Catalog::open(&gallery.dir().join("catalog.sqlite"))
}

fn params_of(job: &JobRecord) -> Result<JobParams> {
    serde_json::from_str(&job.params)
        .map_err(|e| Error::invalid("job", format!("job {}: unreadable parameters: {e}", job.id)))
}

/// Creates a job for `request`: plans it on the gallery's current snapshot
/// and stores it, queued. Returns the job id.
pub fn create(gallery: &Gallery, request: &DedupRequest) -> Result<u64> {
    request.validate()?;
    let plan = plan::plan(gallery, &gallery.snapshot(), request)?;
    let params = JobParams {
        request: request.clone(),
        plan,
    };
    let json = serde_json::to_string(&params)
        .map_err(|e| Error::invalid("job", format!("cannot encode parameters: {e}")))?;
    catalog_of(gallery)?.create_job(JOB_KIND, &json)
}

/// The newest unfinished job (queued or running) made for exactly
/// `request`, if any: running the same command again resumes it.
pub fn find_unfinished(gallery: &Gallery, request: &DedupRequest) -> Result<Option<u64>> {
    let catalog = catalog_of(gallery)?;
    let mut found = None;
    for job in catalog.jobs(JOB_KIND)? {
        if !job.state.is_final() && params_of(&job)?.request == *request {
            found = Some(job.id);
        }
    }
    Ok(found)
}

/// Unfinished jobs (queued or running): the server resumes them at start.
pub fn unfinished(gallery: &Gallery) -> Result<Vec<u64>> {
    Ok(catalog_of(gallery)?
        .jobs(JOB_KIND)?
        .into_iter()
        .filter(|j| !j.state.is_final())
        .map(|j| j.id)
        .collect())
}

/// A job and its parameters.
pub fn job(gallery: &Gallery, id: u64) -> Result<Option<(JobRecord, JobParams)>> {
    let catalog = catalog_of(gallery)?;
    match catalog.job(id)? {
        Some(job) if job.kind == JOB_KIND => {
            let params = params_of(&job)?;
            Ok(Some((job, params)))
        }
        _ => Ok(None),
    }
}

/// Marks a job cancelled (a running job also stops at its next tile pair
/// when its observer says so).
pub fn mark_cancelled(gallery: &Gallery, id: u64) -> Result<()> {
    let mut catalog = catalog_of(gallery)?;
    let job = catalog
        .job(id)?
        .ok_or_else(|| Error::invalid("job", format!("no job {id}")))?;
    if !job.state.is_final() {
        catalog.set_job_state(id, JobState::Cancelled, job.progress, None)?;
    }
    Ok(())
}

/// Runs (or resumes) job `id` to the end on the current rayon pool and
/// writes its report. Returns the summary; [`Error::Cancelled`] if the
/// observer stopped it (finished tile pairs stay checkpointed).
pub fn run(gallery: &Gallery, id: u64, observer: &dyn Observer) -> Result<Summary> {
    let mut catalog = catalog_of(gallery)?;
    let job = catalog
        .job(id)?
        .filter(|j| j.kind == JOB_KIND)
        .ok_or_else(|| Error::invalid("job", format!("no de-duplication job {id}")))?;
    if job.state.is_final() {
        return Err(Error::invalid(
            "job",
            format!("job {id} is {} and cannot run again", job.state.name()),
        ));
    }
    let params = params_of(&job)?;
    let result = scan(gallery, &mut catalog, id, &params, observer)
        .and_then(|scan| report::finish(gallery, &catalog, id, &params, &scan));
    match &result {
        Ok(summary) => {
            let json = serde_json::to_string(&summary.result())
                .map_err(|e| Error::invalid("job", format!("cannot encode result: {e}")))?;
            catalog.set_job_state(id, JobState::Done, 1.0, Some(&json))?;
        }
        Err(Error::Cancelled { .. }) => {
            let progress = catalog.job(id)?.map_or(0.0, |j| j.progress);
            catalog.set_job_state(id, JobState::Cancelled, progress, None)?;
        }
        Err(e) => {
            let progress = catalog.job(id)?.map_or(0.0, |j| j.progress);
            catalog.set_job_state(id, JobState::Failed, progress, Some(&e.to_string()))?;
        }
    }
    result
}

/// What the scan did in this run.
#[derive(Clone, Debug, Default)]
pub(crate) struct ScanStats {
    pub(crate) tiles_total: usize,
    pub(crate) tiles_resumed: usize,
    pub(crate) comparisons_total: u64,
    /// Comparisons made by this run, and the seconds it scanned.
    pub(crate) comparisons_run: u64,
    pub(crate) scan_s: f64,
}

fn scan(
    gallery: &Gallery,
    catalog: &mut Catalog,
    id: u64,
    params: &JobParams,
    observer: &dyn Observer,
) -> Result<ScanStats> {
    catalog.set_job_state(
        id,
        JobState::Running,
        catalog.job(id)?.map_or(0.0, |j| j.progress),
        None,
    )?;
    let snapshot = gallery.snapshot();
    let done: std::collections::HashMap<TilePair, u64> =
        catalog.done_tiles(id)?.into_iter().collect();
    let mut work = Vec::new();
    let mut progress = Progress {
        job: id,
        ..Progress::default()
    };
    for plan in &params.plan {
        let (_, index) = snapshot.collection(&plan.name)?;
        // Live templates per tile, counted once (not once per tile pair).
        let sizes: Vec<u64> = (0..plan.tile_starts.len() as u32)
            .map(|t| index.live_rows_in(plan.tile_range(t)))
            .collect();
        for (a, b) in plan.tile_pairs() {
            let tile = TilePair {
                collection_id: plan.id,
                tile_a: a,
                tile_b: b,
            };
            progress.tiles_total += 1;
            match done.get(&tile) {
                Some(&n) => {
                    progress.tiles_done += 1;
                    progress.comparisons_done += n;
                    progress.comparisons_total += n;
                }
                None => {
                    let (na, nb) = (sizes[a as usize], sizes[b as usize]);
                    progress.comparisons_total += if a == b {
                        na * na.saturating_sub(1) / 2
                    } else {
                        na * nb
                    };
                    work.push((plan, tile));
                }
            }
        }
    }
    let mut stats = ScanStats {
        tiles_total: progress.tiles_total,
        tiles_resumed: progress.tiles_done,
        comparisons_total: progress.comparisons_total,
        ..ScanStats::default()
    };
    if progress.tiles_done > 0 {
        tracing::info!(
            job = id,
            done = progress.tiles_done,
            total = progress.tiles_total,
            "resuming de-duplication job"
        );
    }
    observer.progress(&progress);
    let started = Instant::now();
    for (plan, tile) in work {
        if observer.cancelled() {
            return Err(Error::Cancelled { job: id });
        }
        let (_, index) = snapshot.collection(&plan.name)?;
        let join = index.join(
            plan.tile_range(tile.tile_a),
            plan.tile_range(tile.tile_b),
            plan.prefilter.unwrap_or(plan.threshold),
        )?;
        let candidates = join
            .pairs
            .into_par_iter()
            .filter(|p| p.a_label != p.b_label);
        let kept: Vec<KeptPair> = match plan.prefilter {
            // Vector collections: the join's exact scores decide.
            None => candidates
                .map(|p| Ok(Some((p, p.score))))
                .collect::<Result<Vec<_>>>(),
            // Minutiae collections: the vectors shortlist, the matcher decides.
            Some(_) => candidates
                .map(|p| {
                    Ok(gallery
                        .finger_template_score(&plan.name, p.a, p.b)?
                        .filter(|&s| plan.matches(s))
                        .map(|s| (p, s)))
                })
                .collect::<Result<Vec<_>>>(),
        }?
        .into_iter()
        .flatten()
        .map(|(p, score)| KeptPair {
            collection_id: plan.id,
            template_a: p.a,
            template_b: p.b,
            subject_a: p.a_label,
            subject_b: p.b_label,
            score,
        })
        .collect();
        catalog.record_tile(id, tile, join.comparisons, &kept)?;
        progress.tiles_done += 1;
        progress.comparisons_done += join.comparisons;
        stats.comparisons_run += join.comparisons;
        progress.elapsed_s = started.elapsed().as_secs_f64();
        progress.comparisons_per_s = stats.comparisons_run as f64 / progress.elapsed_s.max(1e-9);
        progress.eta_s = (progress.comparisons_per_s > 0.0).then(|| {
            (progress.comparisons_total - progress.comparisons_done) as f64
                / progress.comparisons_per_s
        });
        catalog.set_job_state(id, JobState::Running, progress.fraction(), None)?;
        observer.progress(&progress);
    }
    stats.scan_s = started.elapsed().as_secs_f64();
    Ok(stats)
}

#[cfg(test)]
mod tests;
