//! Model manifests (`models/*.toml`): what a model file is, where it comes
//! from, and how its input must be prepared.
//!
//! A manifest names its file by sha256; [`verify_file`] checks it and
//! [`ModelManifest::load_dir`] reads every manifest of a directory. The
//! preprocessing fields are applied by [`super::preprocess`], so adding a
//! model with another colour order or normalisation is a manifest change,
//! not a code change.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, IoContext, Result};

/// What a model does; decides which pipeline may use it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Task {
    /// Face detector with five landmarks.
    FaceDetect,
    /// Face embedder (aligned 112×112 crop → embedding).
    FaceEmbed,
    /// Face liveness (presentation-attack) classifier.
    FaceLiveness,
    /// Fingerprint embedder.
    FingerEmbed,
}

impl Task {
    /// The manifest spelling (`face-embed`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Task::FaceDetect => "face-detect",
            Task::FaceEmbed => "face-embed",
            Task::FaceLiveness => "face-liveness",
            Task::FingerEmbed => "finger-embed",
        }
    }
}

/// Channel order a model expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColourOrder {
    /// Red, green, blue.
    Rgb,
    /// Blue, green, red (OpenCV-trained models).
    Bgr,
    /// One grey channel.
    Grey,
}

/// The model's input tensor and how pixels become its values:
/// `value = (pixel · scale − mean[c]) / std[c]`, NCHW.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    /// Tensor shape; `-1` marks a dynamic axis (batch, height, width).
    pub shape: Vec<i64>,
    /// Channel order.
    pub colour: ColourOrder,
    /// Multiplier applied to 0–255 pixel values first.
    #[serde(default = "one")]
    pub scale: f32,
    /// Per-channel mean subtracted after scaling (in the model's channel order).
    #[serde(default)]
    pub mean: Vec<f32>,
    /// Per-channel divisor applied last (in the model's channel order).
    #[serde(default)]
    pub std: Vec<f32>,
}

fn one() -> f32 {
    1.0
}

/// The model's (main) output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    /// Values per sample (embedding dimension, class count).
    pub size: usize,
}

/// How a manifest's `thresholds` were measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Calibration {
    /// The evaluation that produced them (protocol, dataset, counts).
    pub dataset: String,
    /// The command that wrote them.
    pub command: String,
    /// How thresholds are found, and how rare rates are extrapolated.
    pub method: String,
    /// Impostor comparisons behind the `fmr_` thresholds.
    pub impostor_scores: u64,
    /// Non-mated searches behind the `fpir_` thresholds (0: none).
    #[serde(default)]
    pub nonmated_searches: u64,
    /// Gallery size the `fpir_` thresholds hold for (FPIR grows with it).
    #[serde(default)]
    pub fpir_gallery_size: u64,
    /// Threshold keys that are extrapolated rather than measured.
    #[serde(default)]
    pub extrapolated: Vec<String>,
}

/// A model manifest, one TOML file in `models/`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelManifest {
    /// Short id used on the command line and in collections (`mobilefacenet`).
    pub id: String,
    /// Version of the weights; with `id` it names an embedding space.
    pub version: String,
    /// What the model does.
    pub task: Task,
    /// Decoder family for detectors (`yunet`, `scrfd`); absent otherwise.
    #[serde(default)]
    pub family: Option<String>,
    /// File name, relative to the manifest's directory.
    pub file: String,
    /// Lower-case hex sha256 of the file.
    pub sha256: String,
    /// Licence of the weights.
    pub licence: String,
    /// Whether the licence allows commercial use; defaults only use models where it does.
    pub commercial_use: bool,
    /// Where the file comes from (URL, or a description when there is none).
    pub source: String,
    /// Direct download URL, when one exists.
    #[serde(default)]
    pub url: Option<String>,
    /// Liveness models: how much the face box is enlarged for the crop.
    #[serde(default)]
    pub crop_scale: Option<f32>,
    /// Input tensor and preprocessing.
    pub input: InputSpec,
    /// Output size.
    pub output: OutputSpec,
    /// Calibrated decision thresholds by name (filled by evaluation runs).
    #[serde(default)]
    pub thresholds: BTreeMap<String, f32>,
    /// Where `thresholds` come from (written by `biomatch eval --calibrate`).
    #[serde(default)]
    pub calibration: Option<Calibration>,
    /// Free-form notes (reference accuracy, caveats).
    #[serde(default)]
    pub notes: Option<String>,
    /// Directory the manifest was read from (not part of the file).
    #[serde(skip)]
    pub dir: PathBuf,
}

impl ModelManifest {
    /// Parses a manifest from TOML text; `dir` is where its file lives.
    pub fn parse(text: &str, dir: &Path) -> Result<Self> {
        let mut manifest: ModelManifest =
            toml::from_str(text).map_err(|e| Error::invalid("manifest", e.to_string()))?;
        manifest.dir = dir.to_path_buf();
        manifest.validate()?;
        Ok(manifest)
    }

    /// Reads one manifest file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).at(path)?;
        let dir = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, dir).map_err(|e| match e {
            Error::InvalidArgument { reason, .. } => Error::corrupted(path, reason),
            other => other,
        })
    }

    /// Reads every `*.toml` manifest in `dir`, sorted by id.
    pub fn load_dir(dir: &Path) -> Result<Vec<Self>> {
        let mut manifests = Vec::new();
        for entry in std::fs::read_dir(dir).at(dir)? {
            let path = entry.at(dir)?.path();
            if path.extension().is_some_and(|e| e == "toml") {
                manifests.push(Self::load(&path)?);
            }
        }
        manifests.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(manifests)
    }

    /// Finds the manifest with this id in `dir`.
    pub fn find(dir: &Path, id: &str) -> Result<Self> {
        let all = Self::load_dir(dir)?;
        let known: Vec<String> = all.iter().map(|m| m.id.clone()).collect();
        all.into_iter().find(|m| m.id == id).ok_or_else(|| {
            Error::invalid(
                "model",
                format!(
                    "no manifest with id `{id}` in {}; known: {}",
                    dir.display(),
                    known.join(", ")
                ),
            )
        })
    }

    /// Where the model file lives once installed.
    pub fn path(&self) -> PathBuf {
        self.dir.join(&self.file)
    }

    /// Channels of the input tensor (axis 1 of NCHW).
    pub fn channels(&self) -> usize {
        self.input.shape[1] as usize
    }

    fn validate(&self) -> Result<()> {
        let bad =
            |reason: String| Err(Error::invalid("manifest", format!("{}: {reason}", self.id)));
        if self.sha256.len() != 64 || !self.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return bad(format!("sha256 `{}` is not 64 hex digits", self.sha256));
        }
        let shape = &self.input.shape;
        if shape.len() != 4 || shape[1] <= 0 || shape.iter().any(|&d| d == 0 || d < -1) {
            return bad(format!(
                "input shape {shape:?} is not N×C×H×W (-1 = dynamic)"
            ));
        }
        let channels = shape[1] as usize;
        let expected = if self.input.colour == ColourOrder::Grey {
            1
        } else {
            3
        };
        if channels != expected {
            return bad(format!(
                "{channels} input channels for colour {:?}",
                self.input.colour
            ));
        }
        for (name, v) in [("mean", &self.input.mean), ("std", &self.input.std)] {
            if !v.is_empty() && v.len() != channels {
                return bad(format!(
                    "{name} has {} values for {channels} channels",
                    v.len()
                ));
            }
        }
        if self.input.std.iter().any(|&s| !(s.is_finite() && s != 0.0)) {
            return bad("std values must be finite and non-zero".into());
        }
        if self.output.size == 0 {
            return bad("output size 0".into());
        }
        if self.task == Task::FaceDetect && self.family.is_none() {
            return bad("a face-detect model needs `family` (yunet or scrfd)".into());
        }
        Ok(())
    }
}

/// sha256 of a file, lower-case hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).at(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).at(path)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Checks that `path` has the manifest's sha256.
pub fn verify_file(manifest: &ModelManifest, path: &Path) -> Result<()> {
    check_digest(manifest, path, sha256_file(path)?)
}

/// Checks that `bytes`, read from `path`, have the manifest's sha256.
pub fn verify_bytes(manifest: &ModelManifest, path: &Path, bytes: &[u8]) -> Result<()> {
    check_digest(manifest, path, hex::encode(Sha256::digest(bytes)))
}

fn check_digest(manifest: &ModelManifest, path: &Path, actual: String) -> Result<()> {
    if actual != manifest.sha256.to_ascii_lowercase() {
        return Err(Error::ChecksumMismatch {
            path: path.to_path_buf(),
            expected: manifest.sha256.clone(),
            actual,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"
id = "tiny"
version = "1"
task = "finger-embed"
file = "tiny.onnx"
sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
licence = "Apache-2.0"
commercial_use = true
source = "generated"
[input]
shape = [-1, 1, 16, 16]
colour = "grey"
scale = 0.00392156862745098
[output]
size = 32
"#;

    #[test]
    fn parses_and_validates() {
        let m = ModelManifest::parse(TEXT, Path::new("/m")).unwrap();
        assert_eq!(m.task, Task::FingerEmbed);
        assert_eq!(m.channels(), 1);
        assert_eq!(m.path(), Path::new("/m/tiny.onnx"));
        let bad = TEXT.replace("colour = \"grey\"", "colour = \"rgb\"");
        assert!(matches!(
            ModelManifest::parse(&bad, Path::new("/m")),
            Err(Error::InvalidArgument { .. })
        ));
        let unknown = TEXT.replace("licence", "license");
        assert!(ModelManifest::parse(&unknown, Path::new("/m")).is_err());
    }

    #[test]
    fn checksum_mismatch_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tiny.onnx");
        std::fs::write(&path, b"abc").unwrap();
        let mut m = ModelManifest::parse(TEXT, dir.path()).unwrap();
        assert!(matches!(
            verify_file(&m, &path),
            Err(Error::ChecksumMismatch { .. })
        ));
        m.sha256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad".into();
        verify_file(&m, &path).unwrap();
    }
}
