//! Finger inputs of the `/v1` API: `{"position": …, "image": base64,
//! "dpi": 500}` (run through the extractor, quality gate included) or
//! `{"position": …, "record": base64}` (an ISO/IEC 19794-2 or ANSI 378
//! minutiae record), prepared for the gallery's minutiae collection.
//!
//! Finger scores are the minutiae matcher's, in `[0, 1]`; there is no
//! calibration per false-match rate yet, so decisions use the request's
//! raw `threshold` or the server's `finger.threshold`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use biomatch_engine::finger::{FingerQuality, Matcher, Params};
use biomatch_engine::gallery::{FingerMatch, Position, PreparedFinger};
use biomatch_engine::imaging::{DecodeLimits, decode_grey};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Api, ApiError};

/// Most fingers in one request.
pub const MAX_FINGERS: usize = 10;

/// One finger given as an image or as a minutiae record.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FingerInput {
    /// Finger position (`right_index`, …; default `unknown_finger`).
    #[serde(default = "unknown_finger")]
    pub position: Position,
    /// Base64 image bytes (PNG, BMP, TIFF, JPEG), a grey finger scan.
    #[serde(default)]
    pub image: Option<String>,
    /// The image's resolution in dots per inch (default 500).
    #[serde(default)]
    pub dpi: Option<f32>,
    /// Base64 minutiae record (ISO/IEC 19794-2:2005 or ANSI INCITS 378-2004).
    #[serde(default)]
    pub record: Option<String>,
}

fn unknown_finger() -> Position {
    Position::UnknownFinger
}

/// A finger ready for the gallery.
pub struct FingerTemplate {
    /// The prepared matcher template.
    pub prepared: PreparedFinger,
    /// The record stored on enrollment (as given, or as extracted).
    pub record: Vec<u8>,
    /// Image quality (images only).
    pub quality: Option<FingerQuality>,
    /// Minutiae in the record's view.
    pub minutiae: usize,
}

/// Prepares the fingers of a request (`field` names them in errors).
pub fn finger_templates(
    api: &Api,
    fingers: &[FingerInput],
    field: &str,
) -> Result<Vec<FingerTemplate>, ApiError> {
    if fingers.len() > MAX_FINGERS {
        return Err(ApiError::invalid(format!(
            "`{field}`: at most {MAX_FINGERS} fingers"
        )));
    }
    fingers
        .iter()
        .enumerate()
        .map(|(i, f)| finger_template(api, f, &format!("{field}[{i}]")))
        .collect()
}

fn finger_template(api: &Api, f: &FingerInput, field: &str) -> Result<FingerTemplate, ApiError> {
    if f.position == Position::Face {
        return Err(ApiError::invalid(format!(
            "`{field}.position`: `face` is not a finger"
        )));
    }
    let base64 = |text: &str, what: &str| {
        BASE64
            .decode(text.trim())
            .map_err(|e| ApiError::bad_request(format!("`{field}.{what}`: invalid base64: {e}")))
    };
    let (record, quality) = match (&f.image, &f.record) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid(format!(
                "`{field}`: give `image` or `record`, not both"
            )));
        }
        (None, None) => {
            return Err(ApiError::invalid(format!(
                "`{field}`: give `image` or `record`"
            )));
        }
        (None, Some(record)) => {
            if f.dpi.is_some() {
                return Err(ApiError::invalid(format!(
                    "`{field}.dpi` goes with `image`; a record carries its own resolution"
                )));
            }
            (base64(record, "record")?, None)
        }
        (Some(image), None) => {
            let bytes = base64(image, "image")?;
            let started = std::time::Instant::now();
            let grey = decode_grey(&bytes, &DecodeLimits::default())?;
            let mut extraction = api.extractor.extract(&grey, f.dpi.unwrap_or(500.0))?;
            api.metrics.inference("finger_extract", started.elapsed());
            let view = &mut extraction.record.views[0];
            view.position = f.position.iso_code().unwrap_or(0);
            (extraction.record.to_bytes()?, Some(extraction.quality))
        }
    };
    let prepared = api.gallery.prepare_finger(&record, f.position)?;
    Ok(FingerTemplate {
        minutiae: prepared.template.len(),
        prepared,
        record,
        quality,
    })
}

/// The threshold for a finger decision: the request's raw value, else the
/// server's `finger.threshold`; a rate (`fmr`/`fpir`) has no calibration yet.
pub fn finger_threshold(
    api: &Api,
    raw: Option<f32>,
    rate: Option<f64>,
    key: &str,
) -> Result<f32, ApiError> {
    match (raw, rate) {
        (Some(_), Some(_)) => Err(ApiError::invalid(format!(
            "give `threshold` or `{key}`, not both"
        ))),
        (Some(t), None) if t.is_finite() => Ok(t),
        (Some(_), None) => Err(ApiError::invalid("`threshold` must be a finite number")),
        (None, Some(_)) => Err(ApiError::invalid(format!(
            "finger scores have no calibrated `{key}` thresholds yet; give `threshold` (the server's default is {})",
            api.finger_threshold
        ))),
        (None, None) => Ok(api.finger_threshold),
    }
}

/// A finger result as JSON (candidate or verification).
pub fn finger_match_json(m: &FingerMatch) -> Value {
    json!({
        "subject_id": m.subject,
        "score": m.score,
        "modalities": ["finger"],
        "fingers": m.fingers,
    })
}

/// What the API says about prepared fingers.
pub fn fingers_json(fingers: &[FingerTemplate]) -> Vec<Value> {
    fingers
        .iter()
        .map(|f| {
            json!({
                "modality": "finger",
                "position": f.prepared.position,
                "quality": f.quality,
                "minutiae": f.minutiae,
            })
        })
        .collect()
}

/// Two sets of fingers: the mean over `a`'s fingers of the best score
/// against `b`'s fingers at a compatible position (the same, or either
/// unknown; none: 0), as the gallery fuses fingers.
pub fn compare_fingers(a: &[FingerTemplate], b: &[FingerTemplate]) -> f32 {
    let mut matcher = Matcher::new(Params::default());
    let compatible = |x: Position, y: Position| {
        x == y || x == Position::UnknownFinger || y == Position::UnknownFinger
    };
    let total: f32 = a
        .iter()
        .map(|fa| {
            b.iter()
                .filter(|fb| compatible(fa.prepared.position, fb.prepared.position))
                .map(|fb| matcher.score(&fa.prepared.template, &fb.prepared.template))
                .fold(0f32, f32::max)
        })
        .sum();
    total / a.len().max(1) as f32
}
