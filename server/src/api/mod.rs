//! `/v1`: enroll, verify (1:1), identify (1:N), compare, templates,
//! subjects, and N:N de-duplication jobs ([`jobs`]).
//!
//! Requests and answers are JSON. Images travel as base64; templates as
//! base64 of little-endian `f32` or as JSON arrays. A probe or an
//! enrollment gives a face as `{"image": …}` (run through the face
//! pipeline: decode, detect, align, quality gates, embed) or as
//! `{"template": …}` (an embedding of the server's face model). Fingers
//! come as `fingers: [{"position", "image", "dpi"} | {"position",
//! "record"}]` ([`fingers`]): images go through the extractor and its
//! quality gate, records are parsed; enrollment stores the record in the
//! minutiae collection `fingers`. A request scores one modality: a probe
//! gives `face` or `fingers` (fusing both is not implemented yet).
//!
//! Decisions use a threshold: the request's raw `threshold`, else the
//! face model's calibrated threshold for the requested `fmr` (manifest
//! `thresholds`, keys `fmr_<value>`, written by `biomatch eval --calibrate`),
//! else the one for FMR 10⁻³; `fpir` likewise from the `fpir_<value>` keys.
//! Image decoding, inference and searches run on the server's rayon pool,
//! never on the async workers.

pub mod auth;
pub mod error;
pub mod fingers;
pub mod jobs;
pub mod metrics;

use std::sync::Arc;

use axum::extract::{Extension, FromRequest, Path, Request, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use biomatch_engine::face::{FacePipeline, Quality};
use biomatch_engine::gallery::{
    Actor, Enrollment, Gallery, Position, Probe, Search, TemplateInput,
};
use biomatch_engine::storage::catalog::Audit;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub use auth::Ctx;
pub use error::{ApiError, RequestId};
pub use fingers::FingerInput;
use fingers::{
    FingerTemplate, compare_fingers, finger_match_json, finger_templates, finger_threshold,
    fingers_json,
};

/// What the `/v1` handlers share.
#[derive(Clone)]
pub struct Api {
    /// The gallery.
    pub gallery: Arc<Gallery>,
    /// The face pipeline.
    pub face: Arc<FacePipeline>,
    /// Name of the face collection (one per embedding model).
    pub face_collection: String,
    /// The fingerprint extractor (with the enrollment quality gate).
    pub extractor: Arc<biomatch_engine::finger::Extractor>,
    /// Name of the minutiae collection.
    pub finger_collection: String,
    /// Default finger decision threshold (`finger.threshold`).
    pub finger_threshold: f32,
    /// Shortlist per probe finger in 1:N finger searches.
    pub finger_shortlist: usize,
    /// CPU pool for decoding, inference and search.
    pub pool: Arc<rayon::ThreadPool>,
    /// Largest `max_candidates` a request may ask for.
    pub max_candidates: usize,
    /// Metrics registry.
    pub metrics: Arc<metrics::Metrics>,
    /// Admission: one permit per `/v1` request in flight.
    pub permits: Arc<tokio::sync::Semaphore>,
    /// Permits in total (`server.max_concurrent_requests`).
    pub max_concurrent: usize,
    /// `server.request_timeout_ms`.
    pub timeout: std::time::Duration,
    /// Background jobs (N:N de-duplication).
    pub jobs: Arc<jobs::Jobs>,
}

impl Api {
    /// `/v1` requests being served now.
    pub fn in_flight(&self) -> usize {
        self.max_concurrent - self.permits.available_permits()
    }
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api")
            .field("face_collection", &self.face_collection)
            .finish()
    }
}

/// The `/v1` routes, behind API-key authorization.
pub fn router(api: Api, auth: Arc<auth::Auth>) -> Router {
    Router::new()
        .route("/subjects", post(enroll))
        .route(
            "/subjects/{id}",
            get(get_subject).put(replace).delete(delete_subject),
        )
        .route("/verify", post(verify))
        .route("/identify", post(identify))
        .route("/compare", post(compare))
        .route("/templates", post(templates))
        .route("/stats", get(stats))
        .merge(jobs::router())
        .route_layer(axum::middleware::from_fn_with_state(api.clone(), limit))
        .route_layer(axum::middleware::from_fn_with_state(auth, auth::authorize))
        .with_state(api)
}

/// Middleware: admission (503 `overloaded` with `Retry-After` when every
/// permit is taken) and the request timeout (503 `timeout`; CPU work
/// already started finishes in the background, its result discarded).
async fn limit(
    State(api): State<Api>,
    request: Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let retry = |mut r: axum::response::Response| {
        r.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            axum::http::HeaderValue::from_static("1"),
        );
        r
    };
    let Ok(_permit) = Arc::clone(&api.permits).try_acquire_owned() else {
        return retry(
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                format!(
                    "{} requests are in flight (server.max_concurrent_requests); retry shortly",
                    api.max_concurrent
                ),
            )
            .into_response(),
        );
    };
    match tokio::time::timeout(api.timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => retry(
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "timeout",
                format!(
                    "the request took longer than {} ms (server.request_timeout_ms)",
                    api.timeout.as_millis()
                ),
            )
            .into_response(),
        ),
    }
}

async fn stats(State(api): State<Api>) -> Json<Value> {
    let manifest = api.face.embedder().manifest();
    Json(json!({
        "gallery": api.gallery.counts(),
        "face_collection": api.face_collection,
        "face_model": format!("{}@{}", manifest.id, manifest.version),
        "requests_in_flight": api.in_flight(),
        "embed_queue": api.face.embedder().model().queue_len(),
        "detect_queue": api.face.detector().queue_len(),
    }))
}

/// `axum::Json` whose rejections are API errors with the parser's message.
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(ApiJson(v)),
            Err(rejection) => {
                let status = rejection.status();
                let code = match status {
                    StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
                    StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
                    _ => "invalid_request",
                };
                Err(ApiError::new(status, code, rejection.body_text()))
            }
        }
    }
}

/// Runs CPU work on the pool and awaits it.
async fn cpu<T: Send + 'static>(
    api: &Api,
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    api.pool.spawn(move || {
        let _ = tx.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)));
    });
    match rx.await {
        Ok(Ok(result)) => result,
        Ok(Err(_)) => Err(ApiError::internal("a CPU task panicked")),
        Err(_) => Err(ApiError::internal("a CPU task was dropped")),
    }
}

/// A template as JSON: base64 of little-endian f32, or an array.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum TemplateValue {
    /// Base64 of `dim × 4` bytes.
    Base64(String),
    /// Plain numbers.
    Array(Vec<f32>),
}

impl TemplateValue {
    fn decode(&self, field: &str) -> Result<Vec<f32>, ApiError> {
        match self {
            TemplateValue::Array(v) => Ok(v.clone()),
            TemplateValue::Base64(s) => {
                let bytes = BASE64.decode(s.trim()).map_err(|e| {
                    ApiError::bad_request(format!("`{field}`: invalid base64: {e}"))
                })?;
                if bytes.len() % 4 != 0 {
                    return Err(ApiError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "invalid_template",
                        format!(
                            "`{field}`: {} bytes is not a whole number of f32 values",
                            bytes.len()
                        ),
                    ));
                }
                Ok(bytes
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect())
            }
        }
    }
}

/// Base64 of little-endian f32.
fn encode_template(v: &[f32]) -> String {
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    BASE64.encode(bytes)
}

/// A face given as an image or as a template.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaceInput {
    /// Base64 image bytes (JPEG, PNG, BMP, TIFF).
    #[serde(default)]
    pub image: Option<String>,
    /// An embedding of the server's face model.
    #[serde(default)]
    pub template: Option<TemplateValue>,
}

/// A probe: the modalities of one person.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeInput {
    /// The face.
    #[serde(default)]
    pub face: Option<FaceInput>,
    /// The fingers.
    #[serde(default)]
    pub fingers: Vec<FingerInput>,
}

/// A face turned into a template.
#[derive(Debug, Clone, Serialize)]
struct FaceTemplateOut {
    #[serde(skip)]
    vector: Vec<f32>,
    /// Quality measures (absent when a template was given).
    quality: Option<Quality>,
    /// Faces the detector found.
    faces_found: Option<usize>,
    /// Probability of a live face, when asked for.
    liveness: Option<f32>,
}

/// Which modality a probe scores: its face, or its fingers.
fn one_modality(probe: &ProbeInput, field: &str) -> Result<bool, ApiError> {
    match (&probe.face, probe.fingers.is_empty()) {
        (Some(_), false) => Err(ApiError::not_supported(
            field,
            "give `face` or `fingers`, not both: fusing modalities in one decision is not implemented yet",
        )),
        (None, true) => Err(ApiError::invalid(format!(
            "`{field}`: give `face` or `fingers`"
        ))),
        (face, _) => Ok(face.is_some()),
    }
}

/// Image or template → embedding (on the CPU pool).
fn face_template(
    api: &Api,
    face: &FaceInput,
    field: &str,
    liveness: bool,
) -> Result<FaceTemplateOut, ApiError> {
    match (&face.image, &face.template) {
        (Some(_), Some(_)) => Err(ApiError::invalid(format!(
            "`{field}`: give `image` or `template`, not both"
        ))),
        (None, None) => Err(ApiError::invalid(format!(
            "`{field}`: give `image` or `template`"
        ))),
        (None, Some(t)) => {
            if liveness {
                return Err(ApiError::invalid("liveness needs an image, not a template"));
            }
            let vector = t.decode(&format!("{field}.template"))?;
            let dim = api.face.embedder().dim();
            if vector.len() != dim {
                return Err(biomatch_engine::Error::DimensionMismatch {
                    expected: dim,
                    got: vector.len(),
                }
                .into());
            }
            if let Some((index, &value)) = vector.iter().enumerate().find(|(_, v)| !v.is_finite()) {
                return Err(biomatch_engine::Error::NonFinite { index, value }.into());
            }
            Ok(FaceTemplateOut {
                vector,
                quality: None,
                faces_found: None,
                liveness: None,
            })
        }
        (Some(image), None) => {
            let bytes = BASE64.decode(image.trim()).map_err(|e| {
                ApiError::bad_request(format!("`{field}.image`: invalid base64: {e}"))
            })?;
            let t = api.face.process(&bytes, liveness)?;
            for (stage, d) in [
                ("decode", t.times.decode),
                ("detect", t.times.detect),
                ("align", t.times.align),
                ("embed", t.times.embed),
                ("liveness", t.times.liveness),
            ] {
                api.metrics.inference(stage, d);
            }
            Ok(FaceTemplateOut {
                vector: t.embedding,
                quality: Some(t.aligned.quality),
                faces_found: Some(t.aligned.faces_found),
                liveness: t.liveness,
            })
        }
    }
}

/// The threshold for a decision: raw, or calibrated for `key_prefix` (`fmr`/`fpir`).
fn threshold(
    api: &Api,
    raw: Option<f32>,
    rate: Option<f64>,
    key_prefix: &str,
) -> Result<f32, ApiError> {
    if let Some(t) = raw {
        if !t.is_finite() {
            return Err(ApiError::invalid("`threshold` must be a finite number"));
        }
        if rate.is_some() {
            return Err(ApiError::invalid(format!(
                "give `threshold` or `{key_prefix}`, not both"
            )));
        }
        return Ok(t);
    }
    let manifest = api.face.embedder().manifest();
    let calibrated: Vec<(f64, f32)> = manifest
        .thresholds
        .iter()
        .filter_map(|(k, &v)| {
            Some((
                k.strip_prefix(&format!("{key_prefix}_"))?
                    .parse::<f64>()
                    .ok()?,
                v,
            ))
        })
        .collect();
    let wanted = rate.unwrap_or(1e-3);
    if !(wanted > 0.0 && wanted < 1.0) {
        return Err(ApiError::invalid(format!(
            "`{key_prefix}` must be in (0, 1)"
        )));
    }
    // The calibrated point with the largest rate not above the one asked for.
    calibrated
        .iter()
        .filter(|(r, _)| *r <= wanted * (1.0 + 1e-9))
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|&(_, t)| t)
        .ok_or_else(|| {
            let known: Vec<String> = calibrated.iter().map(|(r, _)| format!("{r:e}")).collect();
            ApiError::invalid(format!(
                "model `{}` has no calibrated threshold at {key_prefix} ≤ {wanted:e} (calibrated: {}); give `threshold`",
                manifest.id,
                if known.is_empty() { "none".to_string() } else { known.join(", ") }
            ))
        })
}

/// Writes an audit row for a read (verify, identify) or a refused write:
/// who, what, which subjects, the decision, the request id; never images
/// or vectors.
fn audit(
    api: &Api,
    rid: &Ctx,
    operation: &str,
    subjects: Vec<String>,
    outcome: &str,
) -> Result<(), ApiError> {
    api.gallery.audit(&Audit {
        actor: rid.caller.clone(),
        operation: operation.to_string(),
        subjects,
        outcome: outcome.to_string(),
        request_id: Some(rid.request_id.clone()),
    })?;
    Ok(())
}

/// Body of `POST /v1/subjects` and `PUT /v1/subjects/{id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    /// External subject id (PUT: must equal the path's, or be absent).
    #[serde(default)]
    pub subject_id: Option<String>,
    /// The face.
    #[serde(default)]
    pub face: Option<FaceInput>,
    /// The fingers (each position at most once).
    #[serde(default)]
    pub fingers: Vec<FingerInput>,
    /// De-duplication against the gallery before enrolling (on the face,
    /// or on the fingers when there is no face).
    #[serde(default)]
    pub dedup: Option<DedupRequest>,
}

/// `dedup` of an enrollment.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DedupRequest {
    /// Raw score threshold for a duplicate.
    #[serde(default)]
    pub threshold: Option<f32>,
    /// False-positive identification rate (mapped to a calibrated threshold).
    #[serde(default)]
    pub fpir: Option<f64>,
    /// `reject` (409 with the candidates) or `flag` (enroll, report them).
    pub policy: DedupPolicy,
}

/// What to do with duplicates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DedupPolicy {
    /// Refuse the enrollment.
    Reject,
    /// Enroll and report.
    Flag,
}

fn candidates_json(hits: &[biomatch_engine::gallery::SubjectHit]) -> Vec<Value> {
    hits.iter()
        .map(|h| json!({"subject_id": h.subject, "score": h.score, "modalities": ["face"]}))
        .collect()
}

async fn enroll(
    State(api): State<Api>,
    Extension(rid): Extension<Ctx>,
    ApiJson(body): ApiJson<EnrollRequest>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let subject = body
        .subject_id
        .clone()
        .ok_or_else(|| ApiError::invalid("`subject_id` is required"))?;
    let out = cpu(&api.clone(), move || {
        store(&api, &rid, subject, body, false)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(out)))
}

async fn replace(
    State(api): State<Api>,
    Extension(rid): Extension<Ctx>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<EnrollRequest>,
) -> Result<Json<Value>, ApiError> {
    if body.subject_id.as_ref().is_some_and(|s| *s != id) {
        return Err(ApiError::invalid(
            "`subject_id` differs from the id in the path",
        ));
    }
    let out = cpu(&api.clone(), move || store(&api, &rid, id, body, true)).await?;
    Ok(Json(out))
}

/// Enroll or replace: embed / extract, de-duplicate, store.
fn store(
    api: &Api,
    rid: &Ctx,
    subject: String,
    body: EnrollRequest,
    replace: bool,
) -> Result<Value, ApiError> {
    biomatch_engine::gallery::validate_subject(&subject)?;
    if body.face.is_none() && body.fingers.is_empty() {
        return Err(ApiError::invalid("give `face`, `fingers` or both"));
    }
    let mut seen = std::collections::HashSet::new();
    for (i, f) in body.fingers.iter().enumerate() {
        if f.position != Position::UnknownFinger && !seen.insert(f.position) {
            return Err(ApiError::invalid(format!(
                "`fingers[{i}].position`: {} is given twice",
                f.position
            )));
        }
    }
    let face = match &body.face {
        Some(face) => Some(face_template(api, face, "face", false)?),
        None => None,
    };
    let fingers = finger_templates(api, &body.fingers, "fingers")?;
    let mut duplicates: Vec<(String, f32, &'static str)> = Vec::new();
    if let Some(dedup) = &body.dedup {
        let started = std::time::Instant::now();
        let (t, hits) = if let Some(face) = &face {
            let t = threshold(api, dedup.threshold, dedup.fpir, "fpir")?;
            let probe = Probe {
                collection: api.face_collection.clone(),
                vector: face.vector.clone(),
            };
            let hits = api.gallery.identify(&probe, Search::Threshold(t))?;
            (
                t,
                hits.into_iter()
                    .map(|h| (h.subject, h.score, "face"))
                    .collect::<Vec<_>>(),
            )
        } else {
            let t = finger_threshold(api, dedup.threshold, dedup.fpir, "fpir")?;
            let probes: Vec<_> = fingers.iter().map(|f| f.prepared.clone()).collect();
            let hits = api.gallery.identify_fingers(
                &api.finger_collection,
                &probes,
                api.finger_shortlist,
                Search::Threshold(t),
            )?;
            (
                t,
                hits.into_iter()
                    .map(|h| (h.subject, h.score, "finger"))
                    .collect(),
            )
        };
        api.metrics.search("dedup", started.elapsed());
        duplicates = hits
            .into_iter()
            .filter(|h| h.0 != subject)
            .take(api.max_candidates)
            .collect();
        if dedup.policy == DedupPolicy::Reject && !duplicates.is_empty() {
            let mut subjects = vec![subject.clone()];
            subjects.extend(duplicates.iter().map(|h| h.0.clone()));
            audit(
                api,
                rid,
                if replace { "replace" } else { "enroll" },
                subjects,
                "rejected: duplicate",
            )?;
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "duplicate",
                format!(
                    "{} enrolled subject(s) match at threshold {t}: {}",
                    duplicates.len(),
                    duplicates
                        .iter()
                        .map(|h| format!("{} ({:.4})", h.0, h.1))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
    }
    let mut templates = Vec::new();
    if let Some(face) = &face {
        templates.push(TemplateInput {
            collection: api.face_collection.clone(),
            position: Position::Face,
            quality: face.quality.map(|q| q.detector_score),
            vector: face.vector.clone(),
            record: None,
        });
    }
    for f in &fingers {
        templates.push(TemplateInput {
            collection: api.finger_collection.clone(),
            position: f.prepared.position,
            quality: f.quality.map(|q| q.score as f32 / 100.0),
            vector: Vec::new(),
            record: Some(f.record.clone()),
        });
    }
    let enrollment = Enrollment {
        subject: subject.clone(),
        templates,
    };
    let actor = Actor {
        name: &rid.caller,
        request_id: Some(&rid.request_id),
    };
    let receipt = if replace {
        api.gallery.replace(&enrollment, actor)?
    } else {
        api.gallery.enroll(&enrollment, actor)?
    };
    let mut out = Vec::new();
    let mut ids = receipt.template_ids.iter();
    if let Some(face) = &face {
        out.push(json!({
            "template_id": ids.next(),
            "modality": "face",
            "position": "face",
            "quality": face.quality,
            "faces_found": face.faces_found,
        }));
    }
    for (mut v, id) in fingers_json(&fingers).into_iter().zip(ids) {
        v["template_id"] = json!(id);
        out.push(v);
    }
    Ok(json!({
        "subject_id": receipt.subject,
        "templates": out,
        "duplicates": duplicates
            .iter()
            .map(|(s, score, m)| json!({"subject_id": s, "score": score, "modalities": [m]}))
            .collect::<Vec<_>>(),
    }))
}

async fn get_subject(
    State(api): State<Api>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let gallery = Arc::clone(&api.gallery);
    let record = cpu(&api, move || {
        Ok(gallery
            .get(&id)?
            .ok_or(biomatch_engine::Error::UnknownSubject { subject: id })?)
    })
    .await?;
    Ok(Json(json!({
        "subject_id": record.subject,
        "created_ms": record.created_ms,
        "updated_ms": record.updated_ms,
        "templates": record.templates.iter().map(|t| json!({
            "template_id": t.id,
            "collection": t.collection,
            "position": t.position,
            "quality": t.quality,
        })).collect::<Vec<_>>(),
    })))
}

async fn delete_subject(
    State(api): State<Api>,
    Extension(rid): Extension<Ctx>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let gallery = Arc::clone(&api.gallery);
    cpu(&api, move || {
        let actor = Actor {
            name: &rid.caller,
            request_id: Some(&rid.request_id),
        };
        Ok(gallery.delete(&id, actor)?)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Body of `POST /v1/verify`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    /// Who the probe claims to be.
    pub subject_id: String,
    /// The probe.
    pub probe: ProbeInput,
    /// Target false-match rate (default 1e-3).
    #[serde(default)]
    pub fmr: Option<f64>,
    /// Raw threshold instead of `fmr`.
    #[serde(default)]
    pub threshold: Option<f32>,
    /// Also score liveness (image probes only).
    #[serde(default)]
    pub liveness: bool,
}

async fn verify(
    State(api): State<Api>,
    Extension(rid): Extension<Ctx>,
    ApiJson(body): ApiJson<VerifyRequest>,
) -> Result<Json<Value>, ApiError> {
    let out = cpu(&api.clone(), move || {
        if !one_modality(&body.probe, "probe")? {
            return verify_fingers(&api, &rid, &body);
        }
        let threshold = threshold(&api, body.threshold, body.fmr, "fmr")?;
        let face = body
            .probe
            .face
            .as_ref()
            .ok_or_else(|| ApiError::invalid("`probe.face` is required"))?;
        let t = face_template(&api, face, "probe.face", body.liveness)?;
        let probe = Probe {
            collection: api.face_collection.clone(),
            vector: t.vector.clone(),
        };
        let started = std::time::Instant::now();
        let v = api.gallery.verify(&body.subject_id, &[probe])?;
        api.metrics.search("verify", started.elapsed());
        let score = v.collections.iter().find_map(|c| c.best).ok_or_else(|| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "no_template",
                format!("subject `{}` has no face template", body.subject_id),
            )
        })?;
        let decision = if score >= threshold {
            "match"
        } else {
            "no match"
        };
        audit(
            &api,
            &rid,
            "verify",
            vec![body.subject_id.clone()],
            decision,
        )?;
        Ok(json!({
            "subject_id": body.subject_id,
            "match": score >= threshold,
            "score": score,
            "threshold": threshold,
            "modalities": [{"modality": "face", "score": score}],
            "quality": t.quality,
            "liveness": t.liveness,
        }))
    })
    .await?;
    Ok(Json(out))
}

fn verify_fingers(api: &Api, rid: &Ctx, body: &VerifyRequest) -> Result<Value, ApiError> {
    if body.liveness {
        return Err(ApiError::invalid("liveness is scored on face images only"));
    }
    let threshold = finger_threshold(api, body.threshold, body.fmr, "fmr")?;
    let fingers = finger_templates(api, &body.probe.fingers, "probe.fingers")?;
    let probes: Vec<_> = fingers.iter().map(|f| f.prepared.clone()).collect();
    let started = std::time::Instant::now();
    let m = api
        .gallery
        .verify_fingers(&body.subject_id, &api.finger_collection, &probes)?;
    api.metrics.search("verify", started.elapsed());
    if m.fingers.iter().all(|f| f.score.is_none()) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "no_template",
            format!(
                "subject `{}` has no finger template at the probe's positions",
                body.subject_id
            ),
        ));
    }
    let matched = m.score >= threshold;
    audit(
        api,
        rid,
        "verify",
        vec![body.subject_id.clone()],
        if matched { "match" } else { "no match" },
    )?;
    Ok(json!({
        "subject_id": body.subject_id,
        "match": matched,
        "score": m.score,
        "threshold": threshold,
        "modalities": [{"modality": "finger", "score": m.score, "fingers": m.fingers}],
        "fingers": fingers_json(&fingers),
    }))
}

/// Body of `POST /v1/identify`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentifyRequest {
    /// The probe.
    pub probe: ProbeInput,
    /// Most candidates to return (default 10).
    #[serde(default)]
    pub max_candidates: Option<usize>,
    /// Target false-positive identification rate: only candidates above its threshold.
    #[serde(default)]
    pub fpir: Option<f64>,
    /// Raw threshold: only candidates at or above it.
    #[serde(default)]
    pub threshold: Option<f32>,
}

async fn identify(
    State(api): State<Api>,
    Extension(rid): Extension<Ctx>,
    ApiJson(body): ApiJson<IdentifyRequest>,
) -> Result<Json<Value>, ApiError> {
    let out = cpu(&api.clone(), move || {
        let face_probe = one_modality(&body.probe, "probe")?;
        let k = body.max_candidates.unwrap_or(10);
        if k == 0 || k > api.max_candidates {
            return Err(ApiError::invalid(format!("`max_candidates` must be 1..={}", api.max_candidates)));
        }
        if !face_probe {
            return identify_fingers(&api, &rid, &body, k);
        }
        let min_score = if body.threshold.is_some() || body.fpir.is_some() {
            Some(threshold(&api, body.threshold, body.fpir, "fpir")?)
        } else {
            None
        };
        let face = body.probe.face.as_ref().ok_or_else(|| ApiError::invalid("`probe.face` is required"))?;
        let t = face_template(&api, face, "probe.face", false)?;
        let probe = Probe { collection: api.face_collection.clone(), vector: t.vector };
        let started = std::time::Instant::now();
        let mut hits = match min_score {
            Some(s) => api.gallery.identify(&probe, Search::Threshold(s))?,
            None => api.gallery.identify(&probe, Search::TopK(k))?,
        };
        api.metrics.search("identify", started.elapsed());
        hits.truncate(k);
        let subjects = hits.iter().map(|h| h.subject.clone()).collect();
        audit(&api, &rid, "identify", subjects, &format!("{} candidate(s)", hits.len()))?;
        Ok(json!({"candidates": candidates_json(&hits), "threshold": min_score, "quality": t.quality}))
    })
    .await?;
    Ok(Json(out))
}

fn identify_fingers(
    api: &Api,
    rid: &Ctx,
    body: &IdentifyRequest,
    k: usize,
) -> Result<Value, ApiError> {
    let min_score = if body.threshold.is_some() || body.fpir.is_some() {
        Some(finger_threshold(api, body.threshold, body.fpir, "fpir")?)
    } else {
        None
    };
    let fingers = finger_templates(api, &body.probe.fingers, "probe.fingers")?;
    let probes: Vec<_> = fingers.iter().map(|f| f.prepared.clone()).collect();
    let started = std::time::Instant::now();
    let search = min_score.map_or(Search::TopK(k), Search::Threshold);
    let mut hits = api.gallery.identify_fingers(
        &api.finger_collection,
        &probes,
        api.finger_shortlist,
        search,
    )?;
    api.metrics.search("identify", started.elapsed());
    hits.truncate(k);
    let subjects = hits.iter().map(|h| h.subject.clone()).collect();
    audit(
        api,
        rid,
        "identify",
        subjects,
        &format!("{} candidate(s)", hits.len()),
    )?;
    Ok(json!({
        "candidates": hits.iter().map(finger_match_json).collect::<Vec<_>>(),
        "threshold": min_score,
        "fingers": fingers_json(&fingers),
    }))
}

/// Body of `POST /v1/compare`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompareRequest {
    /// First probe.
    pub a: ProbeInput,
    /// Second probe.
    pub b: ProbeInput,
    /// Target false-match rate (default 1e-3).
    #[serde(default)]
    pub fmr: Option<f64>,
    /// Raw threshold instead of `fmr`.
    #[serde(default)]
    pub threshold: Option<f32>,
}

async fn compare(
    State(api): State<Api>,
    ApiJson(body): ApiJson<CompareRequest>,
) -> Result<Json<Value>, ApiError> {
    let out = cpu(&api.clone(), move || {
        let face_a = one_modality(&body.a, "a")?;
        if one_modality(&body.b, "b")? != face_a {
            return Err(ApiError::invalid("`a` and `b` must give the same modality"));
        }
        if !face_a {
            let threshold = finger_threshold(&api, body.threshold, body.fmr, "fmr")?;
            let a: Vec<FingerTemplate> = finger_templates(&api, &body.a.fingers, "a.fingers")?;
            let b = finger_templates(&api, &body.b.fingers, "b.fingers")?;
            let score = compare_fingers(&a, &b);
            return Ok(
                json!({"match": score >= threshold, "score": score, "threshold": threshold}),
            );
        }
        let threshold = threshold(&api, body.threshold, body.fmr, "fmr")?;
        let fa = body
            .a
            .face
            .as_ref()
            .ok_or_else(|| ApiError::invalid("`a.face` is required"))?;
        let fb = body
            .b
            .face
            .as_ref()
            .ok_or_else(|| ApiError::invalid("`b.face` is required"))?;
        let mut ta = face_template(&api, fa, "a.face", false)?;
        let mut tb = face_template(&api, fb, "b.face", false)?;
        biomatch_engine::embed::l2_normalize(&mut ta.vector)?;
        biomatch_engine::embed::l2_normalize(&mut tb.vector)?;
        let score: f32 = ta.vector.iter().zip(&tb.vector).map(|(x, y)| x * y).sum();
        Ok(json!({"match": score >= threshold, "score": score, "threshold": threshold}))
    })
    .await?;
    Ok(Json(out))
}

/// Body of `POST /v1/templates`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplatesRequest {
    /// The face image.
    #[serde(default)]
    pub face: Option<FaceInput>,
    /// Finger images (or records) to turn into minutiae records.
    #[serde(default)]
    pub fingers: Vec<FingerInput>,
    /// Also score liveness.
    #[serde(default)]
    pub liveness: bool,
    /// `base64` (default) or `array`.
    #[serde(default)]
    pub encoding: Option<String>,
}

async fn templates(
    State(api): State<Api>,
    ApiJson(body): ApiJson<TemplatesRequest>,
) -> Result<Json<Value>, ApiError> {
    let out = cpu(&api.clone(), move || {
        if !body.fingers.is_empty() {
            if body.face.is_some() {
                return Err(ApiError::not_supported(
                    "fingers",
                    "give `face` or `fingers`, not both",
                ));
            }
            let fingers = finger_templates(&api, &body.fingers, "fingers")?;
            let out: Vec<Value> = fingers_json(&fingers)
                .into_iter()
                .zip(&fingers)
                .map(|(mut v, f)| {
                    v["format"] = json!(if f.quality.is_some() {
                        "iso19794-2:2005"
                    } else {
                        "as given"
                    });
                    v["template"] = json!(BASE64.encode(&f.record));
                    v
                })
                .collect();
            return Ok(json!({"templates": out}));
        }
        let face = body
            .face
            .as_ref()
            .ok_or_else(|| ApiError::invalid("`face` or `fingers` is required"))?;
        if face.image.is_none() {
            return Err(ApiError::invalid("`face.image` is required"));
        }
        let t = face_template(&api, face, "face", body.liveness)?;
        let template = match body.encoding.as_deref() {
            None | Some("base64") => Value::String(encode_template(&t.vector)),
            Some("array") => json!(t.vector),
            Some(other) => {
                return Err(ApiError::invalid(format!(
                    "`encoding` `{other}`: use base64 or array"
                )));
            }
        };
        let manifest = api.face.embedder().manifest();
        Ok(json!({"templates": [{
            "modality": "face",
            "model": format!("{}@{}", manifest.id, manifest.version),
            "dim": t.vector.len(),
            "template": template,
            "quality": t.quality,
            "faces_found": t.faces_found,
            "liveness": t.liveness,
        }]}))
    })
    .await?;
    Ok(Json(out))
}
