//! ONNX Runtime: one environment per process, a pool of sessions per model,
//! and dynamic batching.
//!
//! The shared library is loaded at run time (`ort`'s `load-dynamic`): from
//! the path given to [`init`] (the server's `embed.onnxruntime` setting) or
//! else `ORT_DYLIB_PATH`. `scripts/setup-onnxruntime` unpacks it from the
//! `onnxruntime` wheel.
//!
//! A [`Model`] owns `sessions` worker threads, each with its own ORT
//! session (ORT sessions are not shared between concurrent runs here, so a
//! worker never waits on another's lock). Callers block in [`Model::run`];
//! their requests go to one queue. A worker takes the first waiting request
//! and, when the model's batch axis is dynamic, keeps taking requests of the
//! same sample shape until it has `max_batch` samples or `max_wait` has
//! passed since the first arrived — concurrent requests become one batch,
//! a lone request waits at most `max_wait`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use ndarray::{ArrayD, Axis, IxDyn};
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::TensorRef;

use crate::error::{Error, Result};

use super::manifest::ModelManifest;

static ENVIRONMENT: OnceLock<ort::environment::Environment> = OnceLock::new();
static INIT: Mutex<Option<PathBuf>> = Mutex::new(None);

/// Loads the ONNX Runtime library and creates the process's environment.
///
/// `library` wins over `ORT_DYLIB_PATH`. Calling it again is a no-op that
/// returns the path loaded first.
pub fn init(library: Option<&Path>) -> Result<PathBuf> {
    let mut loaded = INIT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(path) = loaded.as_ref() {
        return Ok(path.clone());
    }
    let from_env = std::env::var_os("ORT_DYLIB_PATH").filter(|v| !v.is_empty());
    let path = match (library, from_env) {
        (Some(path), _) => path.to_path_buf(),
        (None, Some(env)) => PathBuf::from(env),
        (None, None) => {
            return Err(Error::OnnxRuntimeUnavailable {
                reason: "no library given: set `embed.onnxruntime` (BIOMATCH__EMBED__ONNXRUNTIME) \
                         or ORT_DYLIB_PATH to libonnxruntime.so \
                         (scripts/setup-onnxruntime fetches it from the onnxruntime wheel)"
                    .into(),
            });
        }
    };
    if !path.is_file() {
        return Err(Error::OnnxRuntimeUnavailable {
            reason: format!(
                "{} does not exist (from `embed.onnxruntime` or ORT_DYLIB_PATH); \
                 scripts/setup-onnxruntime fetches it from the onnxruntime wheel",
                path.display()
            ),
        });
    }
    let builder = ort::init_from(&path).map_err(|e| Error::OnnxRuntimeUnavailable {
        reason: format!("loading {}: {e}", path.display()),
    })?;
    let environment =
        builder
            .with_name("biomatch")
            .build()
            .map_err(|e| Error::OnnxRuntimeUnavailable {
                reason: format!("creating the environment: {e}"),
            })?;
    // Only this function sets it, under INIT's lock.
    let _ = ENVIRONMENT.set(environment);
    *loaded = Some(path.clone());
    Ok(path)
}

fn environment() -> Result<&'static ort::environment::Environment> {
    ENVIRONMENT
        .get()
        .ok_or_else(|| Error::OnnxRuntimeUnavailable {
            reason: "embed::runtime::init was not called".into(),
        })
}

/// How a model is run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Sessions (worker threads) in the pool.
    pub sessions: usize,
    /// ORT intra-op threads per session.
    pub intra_threads: usize,
    /// Largest merged batch (samples); 1 disables batching.
    pub max_batch: usize,
    /// Longest a request waits for others to join its batch.
    pub max_wait: Duration,
    /// Let ORT's intra-op threads spin between runs. Off by default: a
    /// server runs several models (detector, embedder, liveness) and the
    /// index scan on the same cores, and spinning threads of one model
    /// steal them from the next stage.
    pub spin: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            sessions: 1,
            intra_threads: 1,
            max_batch: 16,
            max_wait: Duration::from_millis(2),
            spin: false,
        }
    }
}

impl RunOptions {
    fn validate(&self) -> Result<()> {
        if self.sessions == 0 || self.sessions > 256 {
            return Err(Error::invalid("sessions", "must be 1..=256"));
        }
        if self.intra_threads == 0 || self.intra_threads > 1024 {
            return Err(Error::invalid("intra_threads", "must be 1..=1024"));
        }
        if self.max_batch == 0 || self.max_batch > 4096 {
            return Err(Error::invalid("max_batch", "must be 1..=4096"));
        }
        Ok(())
    }
}

/// Counters of a model's batching.
#[derive(Debug, Default)]
pub struct BatchStats {
    /// Session runs.
    pub runs: AtomicU64,
    /// Samples across all runs.
    pub samples: AtomicU64,
    /// Requests across all runs.
    pub requests: AtomicU64,
}

type Outputs = Vec<ArrayD<f32>>;

struct Job {
    input: ArrayD<f32>,
    reply: Sender<Result<Outputs>>,
}

/// A loaded model: a pool of sessions behind one request queue.
pub struct Model {
    id: String,
    input_dims: Vec<Option<usize>>,
    output_names: Vec<String>,
    batch_dynamic: bool,
    queue: Option<Sender<Job>>,
    workers: Vec<JoinHandle<()>>,
    stats: Arc<BatchStats>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("id", &self.id)
            .field("input_dims", &self.input_dims)
            .field("outputs", &self.output_names)
            .field("sessions", &self.workers.len())
            .finish()
    }
}

impl Model {
    /// Loads the manifest's file (checking its sha256 first) into a pool.
    pub fn load(manifest: &ModelManifest, options: &RunOptions) -> Result<Model> {
        let path = manifest.path();
        if !path.is_file() {
            return Err(Error::model(
                &manifest.id,
                format!(
                    "{} is missing; run `biomatch models install`",
                    path.display()
                ),
            ));
        }
        // Read once: the digest is checked on the very bytes the sessions load.
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        super::manifest::verify_bytes(manifest, &path, &bytes)?;
        Self::load_bytes(&manifest.id, &bytes, options)
    }

    fn load_bytes(id: &str, bytes: &[u8], options: &RunOptions) -> Result<Model> {
        options.validate()?;
        let mut sessions = Vec::with_capacity(options.sessions);
        for _ in 0..options.sessions {
            sessions.push(new_session(id, bytes, options)?);
        }
        let first = &sessions[0];
        if first.inputs().len() != 1 {
            return Err(Error::model(
                id,
                format!(
                    "has {} inputs; one image tensor is supported",
                    first.inputs().len()
                ),
            ));
        }
        let input_dims: Vec<Option<usize>> = first.inputs()[0]
            .dtype()
            .tensor_shape()
            .ok_or_else(|| Error::model(id, "input is not a tensor"))?
            .iter()
            .map(|&d| usize::try_from(d).ok().filter(|&d| d > 0))
            .collect();
        let output_names: Vec<String> = first
            .outputs()
            .iter()
            .map(|o| o.name().to_string())
            .collect();
        let batch_dynamic = input_dims.first().is_some_and(|d| d.is_none());

        let (tx, rx) = crossbeam_channel::unbounded::<Job>();
        let stats = Arc::new(BatchStats::default());
        let max_batch = if batch_dynamic { options.max_batch } else { 1 };
        let workers = sessions
            .into_iter()
            .enumerate()
            .map(|(i, session)| {
                let rx = rx.clone();
                let stats = Arc::clone(&stats);
                let max_wait = options.max_wait;
                let model_id = id.to_string();
                std::thread::Builder::new()
                    .name(format!("ort-{id}-{i}"))
                    .spawn(move || worker(&model_id, session, rx, max_batch, max_wait, &stats))
                    .map_err(|e| Error::model(id, format!("spawning a worker: {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Model {
            id: id.to_string(),
            input_dims,
            output_names,
            batch_dynamic,
            queue: Some(tx),
            workers,
            stats,
        })
    }

    /// Model id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Input shape; `None` for dynamic axes.
    pub fn input_dims(&self) -> &[Option<usize>] {
        &self.input_dims
    }

    /// Output names, in the model's order (the order of [`Model::run`]'s result).
    pub fn output_names(&self) -> &[String] {
        &self.output_names
    }

    /// Whether concurrent requests can be merged into one batch.
    pub fn batch_dynamic(&self) -> bool {
        self.batch_dynamic
    }

    /// Requests waiting for a worker.
    pub fn queue_len(&self) -> usize {
        self.queue.as_ref().map_or(0, Sender::len)
    }

    /// Batching counters.
    pub fn stats(&self) -> &BatchStats {
        &self.stats
    }

    /// Runs the model on `input` (leading axis = samples) and returns every
    /// output, each with the same leading axis. Blocks; concurrent calls are
    /// batched together.
    pub fn run(&self, input: ArrayD<f32>) -> Result<Outputs> {
        self.check_input(&input)?;
        let (reply, result) = crossbeam_channel::bounded(1);
        self.queue
            .as_ref()
            .expect("queue lives until drop")
            .send(Job { input, reply })
            .map_err(|_| Error::model(&self.id, "all workers have stopped"))?;
        result
            .recv()
            .map_err(|_| Error::model(&self.id, "worker stopped before answering"))?
    }

    fn check_input(&self, input: &ArrayD<f32>) -> Result<()> {
        let shape = input.shape();
        let expected = || {
            self.input_dims
                .iter()
                .map(|d| d.map_or("?".to_string(), |d| d.to_string()))
                .collect::<Vec<_>>()
                .join("×")
        };
        if shape.len() != self.input_dims.len() {
            return Err(Error::invalid(
                "input",
                format!(
                    "{} expects a {} tensor, got shape {shape:?}",
                    self.id,
                    expected()
                ),
            ));
        }
        for (&got, want) in shape.iter().zip(&self.input_dims) {
            let ok = match want {
                Some(w) => got == *w,
                None => got > 0,
            };
            if !ok {
                return Err(Error::invalid(
                    "input",
                    format!(
                        "{} expects a {} tensor, got shape {shape:?}",
                        self.id,
                        expected()
                    ),
                ));
            }
        }
        if let Some((i, v)) = input.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(Error::NonFinite {
                index: i,
                value: *v,
            });
        }
        Ok(())
    }
}

impl Drop for Model {
    fn drop(&mut self) {
        self.queue.take();
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

fn new_session(id: &str, bytes: &[u8], options: &RunOptions) -> Result<Session> {
    let err = |e: ort::Error| Error::model(id, e);
    Session::builder(environment()?)
        .map_err(err)?
        .with_optimization_level(GraphOptimizationLevel::Level3)
        .map_err(|e| Error::model(id, e))?
        .with_intra_threads(options.intra_threads)
        .map_err(|e| Error::model(id, e))?
        .with_intra_op_spinning(options.spin)
        .map_err(|e| Error::model(id, e))?
        .with_inter_threads(1)
        .map_err(|e| Error::model(id, e))?
        .commit_from_memory(bytes)
        .map_err(err)
}

fn worker(
    id: &str,
    mut session: Session,
    queue: Receiver<Job>,
    max_batch: usize,
    max_wait: Duration,
    stats: &BatchStats,
) {
    let mut carry: Option<Job> = None;
    loop {
        let first = match carry.take() {
            Some(job) => job,
            None => match queue.recv() {
                Ok(job) => job,
                Err(_) => return,
            },
        };
        let mut jobs = vec![first];
        let mut samples = jobs[0].input.shape()[0];
        let deadline = Instant::now() + max_wait;
        while samples < max_batch {
            match queue.recv_deadline(deadline) {
                Ok(job) => {
                    let same_shape = job.input.shape()[1..] == jobs[0].input.shape()[1..];
                    if same_shape && samples + job.input.shape()[0] <= max_batch {
                        samples += job.input.shape()[0];
                        jobs.push(job);
                    } else {
                        carry = Some(job);
                        break;
                    }
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
            }
        }
        stats.runs.fetch_add(1, Ordering::Relaxed);
        stats.samples.fetch_add(samples as u64, Ordering::Relaxed);
        stats
            .requests
            .fetch_add(jobs.len() as u64, Ordering::Relaxed);
        run_batch(id, &mut session, jobs, samples);
    }
}

/// Runs merged jobs as one batch (or one by one when the model's batch is
/// fixed) and answers each with its slice of every output.
fn run_batch(id: &str, session: &mut Session, jobs: Vec<Job>, samples: usize) {
    if jobs.len() == 1 {
        let job = jobs.into_iter().next().expect("one job");
        let result = infer(id, session, job.input.view());
        let _ = job.reply.send(result);
        return;
    }
    let views: Vec<_> = jobs.iter().map(|j| j.input.view()).collect();
    let result = ndarray::concatenate(Axis(0), &views)
        .map_err(|e| Error::invalid("input", e.to_string()))
        .and_then(|batch| infer(id, session, batch.view()));
    match result {
        Ok(outputs) => {
            let mut start = 0;
            for job in jobs {
                let n = job.input.shape()[0];
                let mine = outputs
                    .iter()
                    .map(|o| {
                        if o.shape().first() == Some(&samples) {
                            Ok(o.slice_axis(Axis(0), (start..start + n).into()).to_owned())
                        } else {
                            Err(Error::model(
                                id,
                                format!("output of shape {:?} has no batch axis", o.shape()),
                            ))
                        }
                    })
                    .collect();
                start += n;
                let _ = job.reply.send(mine);
            }
        }
        Err(e) => {
            let message = e.to_string();
            for job in jobs {
                let _ = job
                    .reply
                    .send(Err(Error::invalid("input", message.clone())));
            }
        }
    }
}

fn infer(id: &str, session: &mut Session, input: ndarray::ArrayViewD<'_, f32>) -> Result<Outputs> {
    let input = input.as_standard_layout();
    let tensor = TensorRef::from_array_view(&input).map_err(|e| Error::model(id, e))?;
    let outputs = session
        .run(ort::inputs![tensor])
        .map_err(|e| Error::model(id, e))?;
    outputs
        .values()
        .map(|value| {
            let (shape, data) = value
                .try_extract_tensor::<f32>()
                .map_err(|e| Error::model(id, e))?;
            let dims: Vec<usize> = shape.iter().map(|&d| d.max(0) as usize).collect();
            ArrayD::from_shape_vec(IxDyn(&dims), data.to_vec()).map_err(|e| Error::model(id, e))
        })
        .collect()
}

/// One ORT session used directly, without queue or batching: the baseline
/// that `biomatch bench embed` compares [`Model`] against.
pub struct RawSession {
    id: String,
    session: Session,
}

impl RawSession {
    /// Opens a model file in a session with the same settings a [`Model`]'s
    /// sessions get from `options` (threads, spinning).
    pub fn open(path: &Path, options: &RunOptions) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let id = path
            .file_name()
            .map_or("model".into(), |n| n.to_string_lossy().to_string());
        let session = new_session(&id, &bytes, options)?;
        Ok(RawSession { id, session })
    }

    /// `Session::run` on one input tensor; every output as f32.
    pub fn run(&mut self, input: ndarray::ArrayViewD<'_, f32>) -> Result<Outputs> {
        infer(&self.id, &mut self.session, input)
    }
}
