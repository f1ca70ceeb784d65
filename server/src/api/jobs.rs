//! `/v1/jobs`: N:N de-duplication as a background job.
//!
//! * `POST /v1/jobs/dedup` `{"fmr" | "threshold", "finger_threshold"?,
//!   "collections"?, "tile_rows"?}` plans the job (thresholds, tiles; invalid requests are
//!   422 here) and queues it: 202 with the job.
//! * `GET /v1/jobs/{id}`: state (`queued`, `running`, `done`, `failed`,
//!   `cancelled`), progress, ETA, and when done where the report is
//!   (`<data_dir>/jobs/dedup-<id>/`) with its headline counts.
//! * `DELETE /v1/jobs/{id}`: cancels; a running job stops after its current
//!   tile pair (202, state `cancelling`), a queued one at once.
//!
//! One job runs at a time, on its own thread pool, in submission order.
//! Jobs are durable in the catalog: a server that stops (or is killed)
//! with jobs queued or running resumes them at its next start, redoing no
//! finished tile pair.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use biomatch_engine::dedup::{self, DedupRequest, Observer, Progress};
use biomatch_engine::gallery::Gallery;
use biomatch_engine::storage::jobs::JobState;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Api, ApiError, ApiJson};

/// Body of `POST /v1/jobs/dedup`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DedupBody {
    /// Target false match rate per template pair (default 1e-5 when no
    /// threshold is given).
    pub fmr: Option<f64>,
    /// Score threshold in every collection.
    pub threshold: Option<f32>,
    /// Minutiae score threshold for finger collections.
    pub finger_threshold: Option<f32>,
    /// Collections to scan (default: every collection with templates).
    #[serde(default)]
    pub collections: Vec<String>,
    /// Templates per tile.
    pub tile_rows: Option<usize>,
}

/// A job being run: its cancel flag and latest progress.
#[derive(Debug, Default)]
struct Live {
    cancel: AtomicBool,
    progress: Mutex<Option<Progress>>,
}

impl Observer for Live {
    fn progress(&self, p: &Progress) {
        *self.progress.lock().unwrap_or_else(|e| e.into_inner()) = Some(p.clone());
    }

    fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }
}

/// The job runner: a queue, one worker thread, live state per job.
pub struct Jobs {
    gallery: Arc<Gallery>,
    out_root: PathBuf,
    pool: Arc<rayon::ThreadPool>,
    queue: crossbeam_channel::Sender<u64>,
    live: Mutex<HashMap<u64, Arc<Live>>>,
}

impl std::fmt::Debug for Jobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jobs")
            .field("out_root", &self.out_root)
            .finish_non_exhaustive()
    }
}

impl Jobs {
    /// Starts the worker and queues the gallery's unfinished jobs.
    pub fn start(gallery: Arc<Gallery>, threads: Option<usize>) -> anyhow::Result<Arc<Jobs>> {
        use anyhow::Context;
        let mut builder = rayon::ThreadPoolBuilder::new().thread_name(|i| format!("job-{i}"));
        if let Some(n) = threads {
            builder = builder.num_threads(n);
        }
        let pool = builder.build().context("starting the job threads")?;
        let (tx, rx) = crossbeam_channel::unbounded::<u64>();
        let jobs = Arc::new(Jobs {
            // Absolute, so that results name the files wherever the client is.
            out_root: std::path::absolute(gallery.dir().join("jobs"))
                .context("resolving the jobs directory")?,
            gallery,
            pool: Arc::new(pool),
            queue: tx,
            live: Mutex::new(HashMap::new()),
        });
        let unfinished = dedup::unfinished(&jobs.gallery).context("reading the catalog's jobs")?;
        for id in unfinished {
            tracing::info!(job = id, "resuming an unfinished de-duplication job");
            jobs.submit(id);
        }
        let worker = Arc::downgrade(&jobs);
        std::thread::Builder::new()
            .name("jobs".into())
            .spawn(move || {
                for id in rx {
                    let Some(jobs) = worker.upgrade() else { return };
                    jobs.execute(id);
                }
            })
            .context("starting the job worker")?;
        Ok(jobs)
    }

    fn live(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Live>>> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn submit(&self, id: u64) {
        self.live().insert(id, Arc::new(Live::default()));
        // The worker holds the receiver for the process's life.
        let _ = self.queue.send(id);
    }

    fn execute(&self, id: u64) {
        let Some(live) = self.live().get(&id).cloned() else {
            return;
        };
        if live.cancelled() {
            if let Err(e) = dedup::mark_cancelled(&self.gallery, id) {
                tracing::error!(job = id, error = %e, "cannot record the cancellation");
            }
        } else {
            match self
                .pool
                .install(|| dedup::run(&self.gallery, id, live.as_ref()))
            {
                Ok(s) => tracing::info!(
                    job = id,
                    pairs = s.pairs,
                    comparisons_per_s = s.comparisons_per_s,
                    "de-duplication job done"
                ),
                Err(e) => tracing::warn!(job = id, error = %e, "de-duplication job ended"),
            }
        }
        self.live().remove(&id);
    }

    /// Plans and queues a job (blocking: sampling takes a moment).
    fn create(&self, body: &DedupBody) -> Result<u64, ApiError> {
        let (threshold, fmr) = match (body.threshold, body.fmr) {
            (None, None) => (None, Some(1e-5)),
            (t, f) => (t, f),
        };
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let request = DedupRequest {
            collections: body.collections.clone(),
            threshold,
            fmr,
            finger_threshold: body.finger_threshold,
            tile_rows: body.tile_rows,
            out: self.out_root.join(format!("dedup-{stamp}")),
        };
        let id = self
            .pool
            .install(|| dedup::create(&self.gallery, &request))?;
        self.submit(id);
        Ok(id)
    }

    fn describe(&self, id: u64) -> Result<Value, ApiError> {
        let (job, _) = dedup::job(&self.gallery, id)?.ok_or_else(|| unknown(id))?;
        let live = self.live().get(&id).cloned();
        let progress = live
            .as_ref()
            .and_then(|l| l.progress.lock().unwrap_or_else(|e| e.into_inner()).clone());
        let cancelling = live.as_ref().is_some_and(|l| l.cancelled()) && !job.state.is_final();
        let mut out = json!({
            "id": job.id,
            "kind": job.kind,
            "state": if cancelling { "cancelling" } else { job.state.name() },
            "progress": job.progress,
            "created_ms": job.created_ms,
            "updated_ms": job.updated_ms,
        });
        if let Some(p) = progress.filter(|_| !job.state.is_final()) {
            out["progress"] = json!(p.fraction());
            out["eta_s"] = json!(p.eta_s);
            out["comparisons_done"] = json!(p.comparisons_done);
            out["comparisons_total"] = json!(p.comparisons_total);
            out["comparisons_per_s"] = json!(p.comparisons_per_s);
            out["tiles_done"] = json!(p.tiles_done);
            out["tiles_total"] = json!(p.tiles_total);
        }
        match (job.state, job.result) {
            (JobState::Done, Some(r)) => {
                out["result"] = serde_json::from_str(&r).unwrap_or(Value::String(r));
            }
            (JobState::Failed, Some(r)) => out["error"] = Value::String(r),
            _ => {}
        }
        Ok(out)
    }

    fn cancel(&self, id: u64) -> Result<(StatusCode, Value), ApiError> {
        let (job, _) = dedup::job(&self.gallery, id)?.ok_or_else(|| unknown(id))?;
        if job.state.is_final() {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "job_finished",
                format!("job {id} is already {}", job.state.name()),
            ));
        }
        match self.live().get(&id) {
            Some(live) => live.cancel.store(true, Ordering::Relaxed),
            None => dedup::mark_cancelled(&self.gallery, id)?,
        }
        Ok((StatusCode::ACCEPTED, self.describe(id)?))
    }
}

fn unknown(id: u64) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "unknown_job",
        format!("no de-duplication job {id}"),
    )
}

/// The `/v1/jobs` routes.
pub fn router() -> Router<Api> {
    Router::new()
        .route("/jobs/dedup", post(create))
        .route("/jobs/{id}", get(describe).delete(cancel))
}

async fn create(
    State(api): State<Api>,
    ApiJson(body): ApiJson<DedupBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let jobs = Arc::clone(&api.jobs);
    let job = tokio::task::spawn_blocking(move || {
        let id = jobs.create(&body)?;
        jobs.describe(id)
    })
    .await
    .map_err(ApiError::internal)??;
    Ok((StatusCode::ACCEPTED, Json(job)))
}

async fn describe(State(api): State<Api>, Path(id): Path<u64>) -> Result<Json<Value>, ApiError> {
    let jobs = Arc::clone(&api.jobs);
    tokio::task::spawn_blocking(move || jobs.describe(id))
        .await
        .map_err(ApiError::internal)?
        .map(Json)
}

async fn cancel(
    State(api): State<Api>,
    Path(id): Path<u64>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let jobs = Arc::clone(&api.jobs);
    let (status, body) = tokio::task::spawn_blocking(move || jobs.cancel(id))
        .await
        .map_err(ApiError::internal)??;
    Ok((status, Json(body)))
}
