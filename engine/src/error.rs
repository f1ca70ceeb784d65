//! The engine's one error type.
//!
//! Variants carry the context a caller needs to act on them (which path,
//! which dimension, which id). Input errors (`DimensionMismatch`,
//! `NonFinite`, `ZeroVector`, `InvalidArgument`, `UnknownId`, …) are the
//! caller's to fix; storage errors (`Io`, `Corrupted`, `IncompatibleFormat`)
//! name the file so an operator can find it.

use std::path::PathBuf;

/// Result alias used throughout the engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong inside the engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A vector (or a batch of vectors) does not have the expected dimension.
    #[error("dimension mismatch: expected {expected}, got {got}")]
    DimensionMismatch {
        /// Dimension the index or kernel was built for.
        expected: usize,
        /// Dimension that was supplied.
        got: usize,
    },

    /// A vector contains NaN or ±Inf.
    #[error("vector component {index} is not finite ({value})")]
    NonFinite {
        /// Position of the first non-finite component.
        index: usize,
        /// The offending value.
        value: f32,
    },

    /// A zero vector was given where a direction is needed (cosine, inner product).
    #[error("zero vector: a {metric} index needs a non-zero vector")]
    ZeroVector {
        /// Metric that needs a direction.
        metric: &'static str,
    },

    /// An argument is out of its documented range.
    #[error("invalid argument `{name}`: {reason}")]
    InvalidArgument {
        /// Name of the argument.
        name: &'static str,
        /// What is wrong with it and what is accepted.
        reason: String,
    },

    /// Row ids must be appended in strictly increasing order.
    #[error("row id {id} is not greater than the last appended id {last}")]
    IdNotIncreasing {
        /// The id that was offered.
        id: u64,
        /// The largest id already in the index.
        last: u64,
    },

    /// The id is not in the index (or was already deleted).
    #[error("unknown row id {id}")]
    UnknownId {
        /// The id that was looked up.
        id: u64,
    },

    /// `BIOMATCH_SIMD` (or a caller) asked for a kernel backend this CPU cannot run.
    #[error("SIMD backend `{requested}` is not available: {reason}")]
    UnsupportedBackend {
        /// The backend that was asked for.
        requested: String,
        /// Why it cannot be used (unknown name, missing CPU features).
        reason: String,
    },

    /// An operating-system I/O error, with the file it happened on.
    #[error("I/O error on {path}: {source}", path = path.display())]
    Io {
        /// File or directory involved.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A file exists but its content is damaged (bad checksum, truncated, inconsistent).
    #[error("corrupted file {path}: {reason}", path = path.display())]
    Corrupted {
        /// The damaged file.
        path: PathBuf,
        /// What check failed.
        reason: String,
    },

    /// A file is of another kind or of a format version this build cannot read.
    #[error("incompatible file {path}: {reason}", path = path.display())]
    IncompatibleFormat {
        /// The file.
        path: PathBuf,
        /// Which field did not match and what was expected.
        reason: String,
    },

    /// A subject with this external id is already enrolled.
    #[error("subject `{subject}` is already enrolled")]
    SubjectExists {
        /// External subject id.
        subject: String,
    },

    /// No subject with this external id is enrolled.
    #[error("unknown subject `{subject}`")]
    UnknownSubject {
        /// External subject id.
        subject: String,
    },

    /// No collection has this name.
    #[error("unknown collection `{name}`")]
    UnknownCollection {
        /// Collection name.
        name: String,
    },

    /// A collection exists with another definition, or the embedding space
    /// already has a collection under another name.
    #[error("collection `{name}` conflicts with the catalog: {reason}")]
    CollectionConflict {
        /// Collection name.
        name: String,
        /// What differs.
        reason: String,
    },

    /// The SQLite catalog reported an error.
    #[error("catalog {path}: {source}", path = path.display())]
    Catalog {
        /// Catalog database file.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: rusqlite::Error,
    },

    /// An index was opened with settings that differ from those it was created with.
    #[error("index at {path} was created with {field} = {stored}, but {requested} was requested", path = path.display())]
    ConfigMismatch {
        /// Index directory.
        path: PathBuf,
        /// Name of the setting.
        field: &'static str,
        /// Value recorded on disk.
        stored: String,
        /// Value the caller asked for.
        requested: String,
    },

    /// An image was rejected before or during decoding.
    #[error("invalid image ({kind}): {detail}")]
    Image {
        /// What class of problem it is.
        kind: ImageProblem,
        /// Specifics (format name, dimensions, decoder message).
        detail: String,
    },

    /// The face detector found no face above its score threshold.
    #[error("no face found (detector `{detector}`, score threshold {threshold})")]
    NoFace {
        /// Detector model id.
        detector: String,
        /// Minimum detection score in force.
        threshold: f32,
    },

    /// A finger image holds no usable fingerprint (blank, or no ridge texture).
    #[error("no fingerprint found: {reason}")]
    NoFinger {
        /// What was measured.
        reason: String,
    },

    /// A sample failed a quality gate; `measure` names the failing measure.
    #[error("quality check failed: {measure} = {value:.3} is {relation} the limit {limit}")]
    QualityRejected {
        /// Name of the measure (`detector_score`, `inter_eye_px`, `blur`, `yaw_deg`, `roll_deg`).
        measure: &'static str,
        /// Measured value.
        value: f32,
        /// The configured limit.
        limit: f32,
        /// `"below"` (a minimum was not reached) or `"above"` (a maximum was exceeded).
        relation: &'static str,
    },

    /// The ONNX Runtime shared library could not be found or loaded.
    #[error("ONNX Runtime is not available: {reason}")]
    OnnxRuntimeUnavailable {
        /// What was tried and how to fix it.
        reason: String,
    },

    /// A model could not be loaded or run.
    #[error("model `{model}`: {reason}")]
    Model {
        /// Model id (from its manifest) or file name.
        model: String,
        /// What went wrong.
        reason: String,
    },

    /// A finger minutiae record (ISO/IEC 19794-2, ANSI INCITS 378) is
    /// truncated or inconsistent.
    #[error("invalid minutiae record at byte {offset}: {reason}")]
    MinutiaeRecord {
        /// Byte offset of the field that is wrong (or where data ran out).
        offset: usize,
        /// What is wrong with it.
        reason: String,
    },

    /// A job stopped because it was asked to; its finished work is kept.
    #[error("job {job} was cancelled")]
    Cancelled {
        /// Job id.
        job: u64,
    },

    /// A file's sha256 differs from the one its manifest records.
    #[error("checksum mismatch for {path}: manifest says sha256 {expected}, file has {actual}", path = path.display())]
    ChecksumMismatch {
        /// The file that was checked.
        path: PathBuf,
        /// Digest recorded in the manifest.
        expected: String,
        /// Digest of the file.
        actual: String,
    },
}

/// Classes of image rejection, so callers can map them to their own codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageProblem {
    /// The payload is larger than the configured byte limit.
    TooManyBytes,
    /// The image's dimensions exceed the pixel limit (decompression bombs).
    TooManyPixels,
    /// Not one of the accepted formats (JPEG, PNG, BMP, TIFF).
    UnsupportedFormat,
    /// The bytes claim a supported format but do not decode.
    Malformed,
    /// The image is too small to hold the requested content.
    TooSmall,
}

impl std::fmt::Display for ImageProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ImageProblem::TooManyBytes => "too many bytes",
            ImageProblem::TooManyPixels => "too many pixels",
            ImageProblem::UnsupportedFormat => "unsupported format",
            ImageProblem::Malformed => "malformed",
            ImageProblem::TooSmall => "too small",
        })
    }
}

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// A corruption report for `path`.
    pub fn corrupted(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::Corrupted {
            path: path.into(),
            reason: reason.into(),
        }
    }

    /// An image rejection.
    pub fn image(kind: ImageProblem, detail: impl Into<String>) -> Self {
        Error::Image {
            kind,
            detail: detail.into(),
        }
    }

    /// A model load or inference failure.
    pub fn model(model: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        Error::Model {
            model: model.into(),
            reason: reason.to_string(),
        }
    }

    /// An invalid-argument report.
    pub fn invalid(name: &'static str, reason: impl Into<String>) -> Self {
        Error::InvalidArgument {
            name,
            reason: reason.into(),
        }
    }
}

/// Adds the path to an `io::Result`.
pub(crate) trait IoContext<T> {
    fn at(self, path: &std::path::Path) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: &std::path::Path) -> Result<T> {
        self.map_err(|e| Error::io(path, e))
    }
}
