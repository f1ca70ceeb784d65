//! The HTTP server.
//!
//! Routes: `GET /health`, `/ready`, `/metrics`, `/openapi.json`, and the
//! `/v1` API ([`crate::api`]: subjects, verify, identify, compare,
//! templates, stats, de-duplication jobs) behind API-key authorization and admission limits.
//! Every error is rendered as `{"error": {"code", "message", "request_id"}}`.
//! [`serve`] loads the ONNX Runtime and the face models (`[embed]` settings;
//! a missing library or model file is a start-up error), opens the gallery
//! in `storage.data_dir` (catalog and indexes, reconciled), creates the face
//! collection of the loaded embedder, binds the socket, and on SIGINT or
//! SIGTERM lets in-flight requests finish, then makes the gallery's index
//! writes durable before exiting. [`app`] builds the router so tests can
//! drive it in-process.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use biomatch_engine::embed::RunOptions;
use biomatch_engine::face::{FaceConfig, FacePipeline};
use biomatch_engine::finger::{ExtractParams, Extractor};
use biomatch_engine::gallery::{
    CollectionSpec, Gallery, GalleryCounts, GalleryOptions, Modality, minutiae_collection,
};
use biomatch_engine::index::Dtype;
use biomatch_engine::vector::Metric;
use serde::Serialize;
use tower_http::limit::RequestBodyLimitLayer;

use crate::api::metrics::Metrics;
use crate::api::{Api, ApiError};
use crate::config::{AuthConfig, Config, EmbedConfig};
use crate::models::{FaceModels, load_face_pipeline};

/// Shared state of the HTTP handlers.
#[derive(Clone, Debug)]
pub struct AppState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    started: Instant,
    simd_backend: &'static str,
    gallery: Arc<Gallery>,
    api: Option<Api>,
    auth: Arc<crate::api::auth::Auth>,
    metrics: Arc<Metrics>,
}

impl AppState {
    /// State for a server on `gallery` using the given SIMD backend name,
    /// with the `/v1` API when the face models are loaded.
    pub fn new(
        gallery: Arc<Gallery>,
        simd_backend: &'static str,
        api: Option<Api>,
        auth: &AuthConfig,
    ) -> AppState {
        AppState {
            inner: Arc::new(Inner {
                started: Instant::now(),
                simd_backend,
                gallery,
                metrics: api
                    .as_ref()
                    .map_or_else(Default::default, |a| Arc::clone(&a.metrics)),
                api,
                auth: crate::api::auth::Auth::new(auth),
            }),
        }
    }
}

/// Largest request body: a 16 MiB image in base64 plus the JSON around it.
pub const BODY_LIMIT: usize = 24 << 20;

/// The router with every route.
pub fn app(state: AppState) -> Router {
    let api = state.inner.api.clone();
    let auth = Arc::clone(&state.inner.auth);
    let metrics = Arc::clone(&state.inner.metrics);
    let mut router = Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics_text))
        .route("/openapi.json", get(openapi))
        .with_state(state);
    if let Some(api) = api {
        router = router.nest("/v1", crate::api::router(api, auth));
    }
    router
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route") })
        // One limit for every body, refused from `Content-Length` before any
        // byte is read (axum's own limit is off: it would wait for the bytes).
        .layer(DefaultBodyLimit::disable())
        .layer(RequestBodyLimitLayer::new(BODY_LIMIT))
        .layer(axum::middleware::from_fn_with_state(
            metrics,
            crate::api::metrics::record,
        ))
        .layer(axum::middleware::from_fn(crate::api::error::render_errors))
}

/// Body of `GET /health`.
#[derive(Debug, Serialize)]
pub struct Health {
    /// Always `"ok"` while the process serves requests.
    pub status: &'static str,
    /// Server version.
    pub version: &'static str,
    /// SIMD backend the kernels run on.
    pub simd_backend: &'static str,
    /// Seconds since start.
    pub uptime_s: u64,
    /// Enrolled subjects and templates per collection.
    pub gallery: GalleryCounts,
    /// Face models loaded (absent when the server runs without them).
    pub face_models: Option<FaceModelsInfo>,
}

/// Which face models a server runs.
#[derive(Debug, Serialize)]
pub struct FaceModelsInfo {
    /// Detector id and version.
    pub detector: String,
    /// Embedder id and version.
    pub embedder: String,
    /// Embedding dimension.
    pub dim: usize,
    /// Whether the liveness ensemble is loaded.
    pub liveness: bool,
}

async fn health(State(state): State<AppState>) -> Json<Health> {
    Json(Health {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
        simd_backend: state.inner.simd_backend,
        uptime_s: state.inner.started.elapsed().as_secs(),
        gallery: state.inner.gallery.counts(),
        face_models: state
            .inner
            .api
            .as_ref()
            .map(|api| &api.face)
            .map(|f| FaceModelsInfo {
                detector: format!(
                    "{}@{}",
                    f.detector().manifest().id,
                    f.detector().manifest().version
                ),
                embedder: format!(
                    "{}@{}",
                    f.embedder().manifest().id,
                    f.embedder().manifest().version
                ),
                dim: f.embedder().dim(),
                liveness: f.has_liveness(),
            }),
    })
}

/// The OpenAPI 3.1 document of this server (`server/openapi.json`).
pub const OPENAPI: &str = include_str!("../openapi.json");

async fn openapi() -> ([(axum::http::HeaderName, &'static str); 1], &'static str) {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        OPENAPI,
    )
}

/// `GET /ready`: 200 once the gallery is open and the face models are
/// loaded (the server only listens after both), 503 otherwise.
async fn ready(State(state): State<AppState>) -> (StatusCode, Json<serde_json::Value>) {
    if state.inner.api.is_some() {
        (StatusCode::OK, Json(serde_json::json!({"ready": true})))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"ready": false, "reason": "face models not loaded"})),
        )
    }
}

/// `GET /metrics`: Prometheus text format.
async fn metrics_text(
    State(state): State<AppState>,
) -> ([(axum::http::HeaderName, &'static str); 1], String) {
    let inner = &state.inner;
    let counts = inner.gallery.counts();
    let mut gauges = vec![
        (
            "biomatch_gallery_subjects",
            "Enrolled subjects.",
            String::new(),
            counts.subjects as f64,
        ),
        (
            "biomatch_simd_backend_info",
            "SIMD backend of the similarity kernels.",
            format!("{{backend=\"{}\"}}", inner.simd_backend),
            1.0,
        ),
        (
            "biomatch_uptime_seconds",
            "Seconds since start.",
            String::new(),
            inner.started.elapsed().as_secs_f64(),
        ),
    ];
    for (collection, n) in &counts.templates {
        gauges.push((
            "biomatch_gallery_templates",
            "Templates per collection.",
            format!("{{collection=\"{collection}\"}}"),
            *n as f64,
        ));
    }
    if let Some(api) = &inner.api {
        gauges.push((
            "biomatch_requests_in_flight",
            "API requests being served.",
            String::new(),
            api.in_flight() as f64,
        ));
        gauges.push((
            "biomatch_model_queue_depth",
            "Requests waiting for a model session.",
            "{model=\"embedder\"}".to_string(),
            api.face.embedder().model().queue_len() as f64,
        ));
        gauges.push((
            "biomatch_model_queue_depth",
            "Requests waiting for a model session.",
            "{model=\"detector\"}".to_string(),
            api.face.detector().queue_len() as f64,
        ));
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        inner.metrics.render(&gauges),
    )
}

/// Runs the server until SIGINT or SIGTERM.
///
/// Prints `biomatch listening on http://ADDR` on standard output once the
/// socket is bound (with the real port when the configured port is 0).
pub async fn serve(config: Config) -> Result<()> {
    let kernels = biomatch_engine::vector::init().context("choosing the SIMD backend")?;
    let face = {
        let (embed, face) = (config.embed.clone(), config.face.clone());
        tokio::task::spawn_blocking(move || load_face(&embed, &face))
            .await
            .context("loading the face models")??
    };
    let data_dir = config.storage.data_dir.clone();
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("storage.data_dir: cannot create {}", data_dir.display()))?;
    let started = Instant::now();
    let gallery =
        tokio::task::spawn_blocking(move || Gallery::open(&data_dir, GalleryOptions::default()))
            .await
            .context("opening the gallery")?
            .with_context(|| {
                format!(
                    "storage.data_dir: cannot open the gallery in {}",
                    config.storage.data_dir.display()
                )
            })?;
    let gallery = Arc::new(gallery);
    tracing::info!(
        counts = ?gallery.counts(),
        seconds = started.elapsed().as_secs_f64(),
        "gallery open"
    );
    let api = face_api(&gallery, face, &config)?;
    let data_dir = &config.storage.data_dir;
    let listener = tokio::net::TcpListener::bind(config.server.listen)
        .await
        .with_context(|| format!("server.listen: cannot bind {}", config.server.listen))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    let shutdown = shutdown_signal()?;
    tracing::info!(%addr, simd = kernels.backend().name(), data_dir = %data_dir.display(), "serving");
    println!("biomatch listening on http://{addr}");
    axum::serve(
        listener,
        app(AppState::new(
            Arc::clone(&gallery),
            kernels.backend().name(),
            Some(api),
            &config.auth,
        )),
    )
    .with_graceful_shutdown(shutdown)
    .await
    .context("serving HTTP")?;
    tokio::task::spawn_blocking(move || gallery.sync())
        .await
        .context("closing the gallery")?
        .context("making the gallery durable")?;
    tracing::info!("shut down cleanly");
    Ok(())
}

/// Loads the ONNX Runtime and the face pipeline named by `[embed]`.
fn load_face(embed: &EmbedConfig, face: &FaceConfig) -> Result<Arc<FacePipeline>> {
    let library = biomatch_engine::embed::runtime::init(embed.onnxruntime.as_deref())
        .context("embed.onnxruntime")?;
    let options = RunOptions {
        sessions: embed.sessions,
        intra_threads: embed.intra_threads,
        max_batch: embed.max_batch,
        max_wait: Duration::from_secs_f64(embed.max_wait_ms / 1e3),
        spin: false,
    };
    let models = FaceModels {
        detector: embed.detector.clone(),
        embedder: embed.embedder.clone(),
        ..FaceModels::default()
    };
    let started = Instant::now();
    let face = load_face_pipeline(&embed.models_dir, &models, &options, face.clone())
        .with_context(|| {
            format!(
                "embed.models_dir: loading face models from {}",
                embed.models_dir.display()
            )
        })?;
    tracing::info!(
        onnxruntime = %library.display(),
        detector = %models.detector,
        embedder = %models.embedder,
        seconds = started.elapsed().as_secs_f64(),
        "face models loaded"
    );
    Ok(Arc::new(face))
}

/// The `/v1` API over the gallery: the face collection of the loaded
/// embedder and the minutiae collection `fingers` (created on first
/// start), the fingerprint extractor and the CPU pool.
fn face_api(gallery: &Arc<Gallery>, face: Arc<FacePipeline>, config: &Config) -> Result<Api> {
    let server = &config.server;
    let manifest = face.embedder().manifest();
    let spec = CollectionSpec {
        name: format!("face-{}", manifest.id),
        modality: Modality::Face,
        model_id: manifest.id.clone(),
        model_version: manifest.version.clone(),
        dim: face.embedder().dim(),
        metric: Metric::Cosine,
        dtype: Dtype::I8,
    };
    let collection = gallery.ensure_collection(&spec).with_context(|| {
        format!(
            "embed.embedder: the gallery's collection for `{}`",
            manifest.id
        )
    })?;
    let fingers = gallery
        .ensure_collection(&minutiae_collection(FINGER_COLLECTION))
        .context("the gallery's minutiae collection `fingers`")?;
    let extractor = Extractor::new(ExtractParams {
        min_quality: config.finger.min_quality,
        ..ExtractParams::default()
    });
    let pool = rayon::ThreadPoolBuilder::new()
        .thread_name(|i| format!("cpu-{i}"))
        .build()
        .context("starting the CPU pool")?;
    Ok(Api {
        gallery: Arc::clone(gallery),
        face,
        face_collection: collection.spec.name,
        extractor: Arc::new(extractor),
        finger_collection: fingers.spec.name,
        finger_threshold: config.finger.threshold,
        finger_shortlist: config.finger.shortlist,
        pool: Arc::new(pool),
        max_candidates: server.max_candidates,
        metrics: Arc::new(Metrics::default()),
        permits: Arc::new(tokio::sync::Semaphore::new(server.max_concurrent_requests)),
        max_concurrent: server.max_concurrent_requests,
        timeout: Duration::from_millis(server.request_timeout_ms),
        jobs: crate::api::jobs::Jobs::start(Arc::clone(gallery), None)
            .context("starting the job runner")?,
    })
}

/// Name of the minutiae collection fingers are enrolled in.
pub const FINGER_COLLECTION: &str = "fingers";

/// Resolves on SIGINT or SIGTERM. The handlers are installed here, before
/// the server announces its address: a signal arriving right after start-up
/// must still shut down gracefully, not kill the process.
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut interrupt = signal(SignalKind::interrupt()).context("listening for SIGINT")?;
        let mut terminate = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
        Ok(async move {
            tokio::select! {
                _ = interrupt.recv() => {},
                _ = terminate.recv() => {},
            }
            tracing::info!("shutdown requested; finishing in-flight requests");
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            if let Err(e) = tokio::signal::ctrl_c().await {
                tracing::error!(error = %e, "cannot listen for Ctrl-C");
                std::future::pending::<()>().await;
            }
            tracing::info!("shutdown requested; finishing in-flight requests");
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    fn state() -> (tempfile::TempDir, AppState) {
        let dir = tempfile::tempdir().unwrap();
        let gallery = Gallery::open(dir.path(), GalleryOptions::default()).unwrap();
        (
            dir,
            AppState::new(Arc::new(gallery), "scalar", None, &AuthConfig::default()),
        )
    }

    #[tokio::test]
    async fn health_reports_ok_and_the_backend() {
        let (_dir, state) = state();
        let response = app(state)
            .oneshot(Request::get("/health").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["status"], "ok");
        assert_eq!(v["simd_backend"], "scalar");
        assert_eq!(v["gallery"]["subjects"], 0);
    }

    #[test]
    fn openapi_documents_every_route_and_error_code() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        let paths = doc["paths"].as_object().unwrap();
        for route in [
            "/health",
            "/ready",
            "/metrics",
            "/openapi.json",
            "/v1/subjects",
            "/v1/subjects/{id}",
            "/v1/verify",
            "/v1/identify",
            "/v1/compare",
            "/v1/templates",
            "/v1/stats",
            "/v1/jobs/dedup",
            "/v1/jobs/{id}",
        ] {
            assert!(paths.contains_key(route), "{route} is not documented");
        }
        // Every error code the code can produce is in the document's enum.
        let codes = doc["components"]["schemas"]["Error"]["properties"]["error"]["properties"]["code"]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_string())
            .collect::<Vec<_>>();
        let sources = [
            include_str!("api/mod.rs"),
            include_str!("api/error.rs"),
            include_str!("api/auth.rs"),
            include_str!("api/jobs.rs"),
        ];
        let mut checked = 0;
        for source in sources {
            for (i, _) in source.match_indices("StatusCode::") {
                // `ApiError::new(StatusCode::X, "code", …)`: the literal after the status.
                let rest = &source[i..];
                let Some(q) = rest.find('"') else { continue };
                if rest[..q].contains(')') || rest[..q].contains(';') || q > 60 {
                    continue;
                }
                let code: String = rest[q + 1..].chars().take_while(|c| *c != '"').collect();
                if code.chars().all(|c| c.is_ascii_lowercase() || c == '_') && !code.is_empty() {
                    assert!(
                        codes.contains(&code),
                        "error code `{code}` is not in openapi.json"
                    );
                    checked += 1;
                }
            }
        }
        assert!(
            checked >= 15,
            "only {checked} error codes found in the sources"
        );
    }

    #[tokio::test]
    async fn unknown_routes_are_404() {
        let (_dir, state) = state();
        let response = app(state)
            .oneshot(Request::get("/nope").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
    }
}
