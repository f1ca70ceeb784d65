//! Model files: `biomatch models install` and loading the face pipeline
//! from manifests.
//!
//! Installation copies each manifest's file from the mirror
//! (`BIOMATCH_MODEL_MIRROR`, default `../shared/models`) — or, with
//! `--download`, fetches the manifest's `url` — into the manifests'
//! directory, verifying sha256 before the file takes its final name. An
//! installed file with the right digest is left alone.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use biomatch_engine::embed::manifest::{sha256_file, verify_file};
use biomatch_engine::embed::{ModelManifest, RunOptions};
use biomatch_engine::face::{Detector, Embedder, FaceConfig, FacePipeline, Liveness};

/// Default mirror, relative to the repository root.
pub const DEFAULT_MIRROR: &str = "../shared/models";

/// The mirror from `BIOMATCH_MODEL_MIRROR` or the default.
pub fn mirror_dir() -> PathBuf {
    std::env::var_os("BIOMATCH_MODEL_MIRROR")
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from(DEFAULT_MIRROR), PathBuf::from)
}

/// What happened to one model.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum Outcome {
    /// Already in place with the right digest.
    Present,
    /// Copied from the mirror.
    Copied,
    /// Downloaded from the manifest's URL.
    Downloaded,
}

/// Installs the models `ids` (all manifests when empty) into `models_dir`.
pub fn install(
    models_dir: &Path,
    mirror: &Path,
    ids: &[String],
    download: bool,
) -> Result<Vec<(String, Outcome)>> {
    let manifests = ModelManifest::load_dir(models_dir)?;
    for id in ids {
        if !manifests.iter().any(|m| &m.id == id) {
            bail!("no manifest with id `{id}` in {}", models_dir.display());
        }
    }
    let mut done = Vec::new();
    for manifest in manifests
        .iter()
        .filter(|m| ids.is_empty() || ids.contains(&m.id))
    {
        let outcome = install_one(manifest, mirror, download)
            .with_context(|| format!("installing model `{}`", manifest.id))?;
        done.push((manifest.id.clone(), outcome));
    }
    Ok(done)
}

fn install_one(manifest: &ModelManifest, mirror: &Path, download: bool) -> Result<Outcome> {
    let dest = manifest.path();
    if dest.is_file() && sha256_file(&dest)? == manifest.sha256 {
        return Ok(Outcome::Present);
    }
    let part = dest.with_extension("onnx.part");
    let source = mirror.join(&manifest.file);
    let outcome = if source.is_file() {
        std::fs::copy(&source, &part)
            .with_context(|| format!("copying {} to {}", source.display(), part.display()))?;
        Outcome::Copied
    } else if download {
        let Some(url) = &manifest.url else {
            bail!(
                "{} is not in the mirror {} and the manifest has no download URL (source: {})",
                manifest.file,
                mirror.display(),
                manifest.source
            );
        };
        fetch(url, &part)?;
        Outcome::Downloaded
    } else {
        bail!(
            "{} is not in the mirror {} (set BIOMATCH_MODEL_MIRROR, or pass --download to fetch {})",
            manifest.file,
            mirror.display(),
            manifest.url.as_deref().unwrap_or("its source")
        );
    };
    if let Err(e) = verify_file(manifest, &part) {
        let _ = std::fs::remove_file(&part);
        return Err(e.into());
    }
    std::fs::rename(&part, &dest).with_context(|| format!("renaming into {}", dest.display()))?;
    Ok(outcome)
}

fn fetch(url: &str, to: &Path) -> Result<()> {
    eprintln!("downloading {url}");
    let mut response = ureq::get(url)
        .call()
        .with_context(|| format!("GET {url}"))?;
    let mut body = response.body_mut().with_config().limit(1 << 30).reader();
    let mut file =
        std::fs::File::create(to).with_context(|| format!("creating {}", to.display()))?;
    std::io::copy(&mut body, &mut file).with_context(|| format!("downloading {url}"))?;
    file.flush()?;
    Ok(())
}

/// Loads the manifest with this id from `models_dir`.
pub fn manifest(models_dir: &Path, id: &str) -> Result<ModelManifest> {
    Ok(ModelManifest::find(models_dir, id)?)
}

/// Which models make up a face pipeline.
#[derive(Debug, Clone)]
pub struct FaceModels {
    /// Detector manifest id.
    pub detector: String,
    /// Embedder manifest id.
    pub embedder: String,
    /// Liveness manifest ids (empty: no liveness).
    pub liveness: Vec<String>,
}

impl Default for FaceModels {
    fn default() -> Self {
        FaceModels {
            detector: "yunet".into(),
            embedder: "mobilefacenet".into(),
            liveness: vec!["minifasnet-v2".into(), "minifasnet-v1se".into()],
        }
    }
}

/// Loads a face pipeline (the ONNX Runtime must be initialised).
pub fn load_face_pipeline(
    models_dir: &Path,
    models: &FaceModels,
    options: &RunOptions,
    config: FaceConfig,
) -> Result<FacePipeline> {
    let detector = Detector::load(
        &manifest(models_dir, &models.detector)?,
        options,
        config.detector,
    )?;
    let embedder = Embedder::load(&manifest(models_dir, &models.embedder)?, options)?;
    let liveness = if models.liveness.is_empty() {
        None
    } else {
        let manifests = models
            .liveness
            .iter()
            .map(|id| manifest(models_dir, id))
            .collect::<Result<Vec<_>>>()?;
        Some(Liveness::load(&manifests, options)?)
    };
    Ok(FacePipeline::new(detector, embedder, liveness, config))
}

/// Which face models a command uses and where they and the ONNX Runtime
/// are (shared by `eval lfw`, `bench embed` and `face`).
#[derive(Debug, clap::Args)]
pub struct ModelArgs {
    /// Detector manifest id.
    #[arg(long, default_value = "yunet")]
    pub detector: String,
    /// Embedder manifest id.
    #[arg(long, default_value = "mobilefacenet")]
    pub embedder: String,
    /// Directory of model manifests and installed files.
    #[arg(long, default_value = "models")]
    pub models: PathBuf,
    /// ONNX Runtime library (embed.onnxruntime; else ORT_DYLIB_PATH).
    #[arg(long, env = "BIOMATCH__EMBED__ONNXRUNTIME")]
    pub onnxruntime: Option<PathBuf>,
}

impl ModelArgs {
    /// Loads the ONNX Runtime library.
    pub fn init_runtime(&self) -> Result<()> {
        biomatch_engine::embed::runtime::init(self.onnxruntime.as_deref())?;
        Ok(())
    }
}

/// `biomatch face` arguments.
#[derive(Debug, clap::Args)]
pub struct FaceArgs {
    /// Image file (JPEG, PNG, BMP, TIFF).
    pub image: PathBuf,
    /// Also run the liveness ensemble.
    #[arg(long)]
    pub liveness: bool,
    /// Write the aligned 112×112 crop here (PNG).
    #[arg(long)]
    pub crop_out: Option<PathBuf>,
    /// Models and runtime.
    #[command(flatten)]
    pub model: ModelArgs,
}

/// Runs the pipeline on one image and prints one JSON object.
pub fn run_face(args: &FaceArgs) -> Result<()> {
    args.model.init_runtime()?;
    let models = FaceModels {
        detector: args.model.detector.clone(),
        embedder: args.model.embedder.clone(),
        liveness: if args.liveness {
            FaceModels::default().liveness
        } else {
            vec![]
        },
    };
    let config = FaceConfig {
        quality: biomatch_engine::face::QualityThresholds::none(),
        ..FaceConfig::default()
    };
    let pipeline = load_face_pipeline(&args.model.models, &models, &RunOptions::default(), config)?;
    let bytes =
        std::fs::read(&args.image).with_context(|| format!("reading {}", args.image.display()))?;
    let t = pipeline.process(&bytes, args.liveness)?;
    if let Some(out) = &args.crop_out {
        t.aligned
            .crop
            .save(out)
            .with_context(|| format!("writing {}", out.display()))?;
    }
    let report = serde_json::json!({
        "faces_found": t.aligned.faces_found,
        "face": t.aligned.face,
        "quality": t.aligned.quality,
        "liveness": t.liveness,
        "times_ms": {
            "decode": t.times.decode.as_secs_f64() * 1e3,
            "detect": t.times.detect.as_secs_f64() * 1e3,
            "align": t.times.align.as_secs_f64() * 1e3,
            "embed": t.times.embed.as_secs_f64() * 1e3,
            "liveness": t.times.liveness.as_secs_f64() * 1e3,
        },
        "embedding": t.embedding,
    });
    println!("{report}");
    Ok(())
}
