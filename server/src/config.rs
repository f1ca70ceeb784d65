//! Server configuration: built-in defaults, then `BIOMATCH__SECTION__KEY`
//! environment variables, then command-line flags; parsed into typed values
//! and validated at start-up with errors that name the offending key.
//!
//! | key | env | default |
//! |---|---|---|
//! | `server.listen` | `BIOMATCH__SERVER__LISTEN` | `127.0.0.1:8080` |
//! | `storage.data_dir` | `BIOMATCH__STORAGE__DATA_DIR` | `./data` |
//! | `embed.onnxruntime` | `BIOMATCH__EMBED__ONNXRUNTIME` | unset: `ORT_DYLIB_PATH` |
//! | `embed.models_dir` | `BIOMATCH__EMBED__MODELS_DIR` | `models` |
//! | `embed.detector` | `BIOMATCH__EMBED__DETECTOR` | `yunet` |
//! | `embed.embedder` | `BIOMATCH__EMBED__EMBEDDER` | `mobilefacenet` |
//! | `embed.sessions` | `BIOMATCH__EMBED__SESSIONS` | `1` |
//! | `embed.intra_threads` | `BIOMATCH__EMBED__INTRA_THREADS` | cores |
//! | `embed.max_batch` | `BIOMATCH__EMBED__MAX_BATCH` | `16` |
//! | `embed.max_wait_ms` | `BIOMATCH__EMBED__MAX_WAIT_MS` | `2` |
//! | `face.policy` | `BIOMATCH__FACE__POLICY` | `largest` |
//! | `face.score_threshold` | `BIOMATCH__FACE__SCORE_THRESHOLD` | `0.6` |
//! | `face.enforce_quality` | `BIOMATCH__FACE__ENFORCE_QUALITY` | `true` |
//! | `face.min_detector_score` | `BIOMATCH__FACE__MIN_DETECTOR_SCORE` | `0.7` (`off` disables a gate) |
//! | `face.min_inter_eye_px` | `BIOMATCH__FACE__MIN_INTER_EYE_PX` | `20` |
//! | `face.min_blur` | `BIOMATCH__FACE__MIN_BLUR` | `15` |
//! | `face.max_abs_yaw_deg` | `BIOMATCH__FACE__MAX_ABS_YAW_DEG` | `45` |
//! | `face.max_abs_roll_deg` | `BIOMATCH__FACE__MAX_ABS_ROLL_DEG` | `30` |

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use biomatch_engine::face::{FaceConfig, FacePolicy};

/// Validated configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// HTTP server settings.
    pub server: ServerConfig,
    /// Storage settings.
    pub storage: StorageConfig,
    /// Model runtime settings.
    pub embed: EmbedConfig,
    /// Face pipeline settings (face choice, detector threshold, quality gates).
    pub face: FaceConfig,
}

/// `[embed]` section: the ONNX Runtime library, model manifests and how
/// models run.
#[derive(Clone, Debug, PartialEq)]
pub struct EmbedConfig {
    /// libonnxruntime.so; `None` falls back to `ORT_DYLIB_PATH`.
    pub onnxruntime: Option<PathBuf>,
    /// Folder of model manifests and installed model files.
    pub models_dir: PathBuf,
    /// Face detector manifest id.
    pub detector: String,
    /// Face embedder manifest id.
    pub embedder: String,
    /// Sessions per model.
    pub sessions: usize,
    /// ORT intra-op threads per session.
    pub intra_threads: usize,
    /// Largest dynamic batch.
    pub max_batch: usize,
    /// Longest wait for a batch to fill, milliseconds.
    pub max_wait_ms: f64,
}

impl Default for EmbedConfig {
    fn default() -> Self {
        EmbedConfig {
            onnxruntime: None,
            models_dir: PathBuf::from("models"),
            detector: "yunet".into(),
            embedder: "mobilefacenet".into(),
            sessions: 1,
            intra_threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            max_batch: 16,
            max_wait_ms: 2.0,
        }
    }
}

/// `[server]` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    /// Address to listen on; port 0 picks a free port.
    pub listen: SocketAddr,
}

/// `[storage]` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StorageConfig {
    /// Directory for the catalog and index files.
    pub data_dir: PathBuf,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            server: ServerConfig {
                listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            },
            storage: StorageConfig {
                data_dir: PathBuf::from("./data"),
            },
            embed: EmbedConfig::default(),
            face: FaceConfig::default(),
        }
    }
}

/// Values given on the command line (they win over the environment).
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// `--listen`.
    pub listen: Option<String>,
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
}

impl Config {
    /// Defaults, then the process environment, then `overrides`.
    pub fn load(overrides: &Overrides) -> Result<Config> {
        Config::from_sources(|key| std::env::var(key).ok(), overrides)
    }

    /// [`Config::load`] with an explicit environment (for tests).
    pub fn from_sources(
        env: impl Fn(&str) -> Option<String>,
        overrides: &Overrides,
    ) -> Result<Config> {
        let mut config = Config::default();
        let listen = overrides
            .listen
            .clone()
            .map(|v| ("--listen", v))
            .or_else(|| env("BIOMATCH__SERVER__LISTEN").map(|v| ("BIOMATCH__SERVER__LISTEN", v)));
        if let Some((source, value)) = listen {
            config.server.listen = value.trim().parse().with_context(|| {
                format!("{source} (server.listen): `{value}` is not a socket address such as 127.0.0.1:8080")
            })?;
        }
        let data_dir = overrides
            .data_dir
            .clone()
            .map(|v| ("--data-dir", v))
            .or_else(|| {
                env("BIOMATCH__STORAGE__DATA_DIR")
                    .map(|v| ("BIOMATCH__STORAGE__DATA_DIR", v.into()))
            });
        if let Some((source, value)) = data_dir {
            if value.as_os_str().is_empty() {
                bail!("{source} (storage.data_dir) is empty; give a directory path");
            }
            config.storage.data_dir = value;
        }
        let e = &mut config.embed;
        if let Some(v) = env("BIOMATCH__EMBED__ONNXRUNTIME").filter(|v| !v.is_empty()) {
            e.onnxruntime = Some(PathBuf::from(v));
        }
        if let Some(v) = env("BIOMATCH__EMBED__MODELS_DIR") {
            if v.is_empty() {
                bail!(
                    "BIOMATCH__EMBED__MODELS_DIR (embed.models_dir) is empty; give a directory path"
                );
            }
            e.models_dir = PathBuf::from(v);
        }
        if let Some(v) = env("BIOMATCH__EMBED__DETECTOR") {
            e.detector = v;
        }
        if let Some(v) = env("BIOMATCH__EMBED__EMBEDDER") {
            e.embedder = v;
        }
        e.sessions = number(
            &env,
            "BIOMATCH__EMBED__SESSIONS",
            "embed.sessions",
            e.sessions,
            1,
            64,
        )?;
        e.intra_threads = number(
            &env,
            "BIOMATCH__EMBED__INTRA_THREADS",
            "embed.intra_threads",
            e.intra_threads,
            1,
            256,
        )?;
        e.max_batch = number(
            &env,
            "BIOMATCH__EMBED__MAX_BATCH",
            "embed.max_batch",
            e.max_batch,
            1,
            1024,
        )?;
        e.max_wait_ms = number(
            &env,
            "BIOMATCH__EMBED__MAX_WAIT_MS",
            "embed.max_wait_ms",
            e.max_wait_ms,
            0.0,
            1000.0,
        )?;
        let f = &mut config.face;
        if let Some(v) = env("BIOMATCH__FACE__POLICY") {
            f.policy = match v.trim() {
                "largest" => FacePolicy::Largest,
                "most-central" => FacePolicy::MostCentral,
                "best-score" => FacePolicy::BestScore,
                _ => bail!(
                    "BIOMATCH__FACE__POLICY (face.policy): `{v}` is not largest, most-central or best-score"
                ),
            };
        }
        f.detector.score_threshold = number(
            &env,
            "BIOMATCH__FACE__SCORE_THRESHOLD",
            "face.score_threshold",
            f.detector.score_threshold,
            0.0,
            1.0,
        )?;
        if let Some(v) = env("BIOMATCH__FACE__ENFORCE_QUALITY") {
            f.enforce_quality = match v.trim() {
                "true" | "1" => true,
                "false" | "0" => false,
                _ => bail!(
                    "BIOMATCH__FACE__ENFORCE_QUALITY (face.enforce_quality): `{v}` is not true or false"
                ),
            };
        }
        let q = &mut f.quality;
        q.min_detector_score = gate(&env, "MIN_DETECTOR_SCORE", q.min_detector_score, 1.0)?;
        q.min_inter_eye_px = gate(&env, "MIN_INTER_EYE_PX", q.min_inter_eye_px, 10_000.0)?;
        q.min_blur = gate(&env, "MIN_BLUR", q.min_blur, 1e6)?;
        q.max_abs_yaw_deg = gate(&env, "MAX_ABS_YAW_DEG", q.max_abs_yaw_deg, 90.0)?;
        q.max_abs_roll_deg = gate(&env, "MAX_ABS_ROLL_DEG", q.max_abs_roll_deg, 180.0)?;
        Ok(config)
    }
}

/// A quality gate `BIOMATCH__FACE__<name>`: a number in `[0, max]`, or
/// `off` to disable it.
fn gate(
    env: &impl Fn(&str) -> Option<String>,
    name: &str,
    current: Option<f32>,
    max: f32,
) -> Result<Option<f32>> {
    let var = format!("BIOMATCH__FACE__{name}");
    let key = format!("face.{}", name.to_ascii_lowercase());
    match env(&var) {
        None => Ok(current),
        Some(v) if v.trim() == "off" => Ok(None),
        Some(_) => Ok(Some(number(env, &var, &key, 0.0, 0.0, max)?)),
    }
}

/// Parses a numeric setting within `[min, max]`, naming the key on error.
fn number<T>(
    env: &impl Fn(&str) -> Option<String>,
    var: &str,
    key: &str,
    default: T,
    min: T,
    max: T,
) -> Result<T>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
{
    let Some(value) = env(var) else {
        return Ok(default);
    };
    match value.trim().parse::<T>() {
        Ok(v) if v >= min && v <= max => Ok(v),
        _ => bail!("{var} ({key}): `{value}` is not a number in {min}..={max}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            pairs
                .iter()
                .find(|(key, _)| *key == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn defaults_env_then_flags() {
        let none = Overrides::default();
        assert_eq!(
            Config::from_sources(env(&[]), &none).unwrap(),
            Config::default()
        );
        let e = [
            ("BIOMATCH__SERVER__LISTEN", "0.0.0.0:9000"),
            ("BIOMATCH__STORAGE__DATA_DIR", "/var/lib/bm"),
        ];
        let c = Config::from_sources(env(&e), &none).unwrap();
        assert_eq!(c.server.listen.port(), 9000);
        assert_eq!(c.storage.data_dir, PathBuf::from("/var/lib/bm"));
        let flags = Overrides {
            listen: Some("127.0.0.1:7000".into()),
            data_dir: None,
        };
        let c = Config::from_sources(env(&e), &flags).unwrap();
        assert_eq!(c.server.listen.port(), 7000);
        assert_eq!(c.storage.data_dir, PathBuf::from("/var/lib/bm"));
    }

    #[test]
    fn errors_name_the_key() {
        let e = [("BIOMATCH__SERVER__LISTEN", "localhost")];
        let err = Config::from_sources(env(&e), &Overrides::default()).unwrap_err();
        assert!(
            format!("{err:#}").contains("BIOMATCH__SERVER__LISTEN (server.listen)"),
            "{err:#}"
        );
        let e = [("BIOMATCH__STORAGE__DATA_DIR", "")];
        let err = Config::from_sources(env(&e), &Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("storage.data_dir"), "{err:#}");
        let e = [("BIOMATCH__EMBED__MAX_BATCH", "0")];
        let err = Config::from_sources(env(&e), &Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("embed.max_batch"), "{err:#}");
        let e = [("BIOMATCH__EMBED__MAX_WAIT_MS", "soon")];
        let err = Config::from_sources(env(&e), &Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("embed.max_wait_ms"), "{err:#}");
    }

    #[test]
    fn embed_settings_come_from_the_environment() {
        let e = [
            ("BIOMATCH__EMBED__ONNXRUNTIME", "/opt/ort/libonnxruntime.so"),
            ("BIOMATCH__EMBED__EMBEDDER", "w600k-mbf-int8"),
            ("BIOMATCH__EMBED__MAX_BATCH", "64"),
        ];
        let c = Config::from_sources(env(&e), &Overrides::default()).unwrap();
        assert_eq!(
            c.embed.onnxruntime,
            Some(PathBuf::from("/opt/ort/libonnxruntime.so"))
        );
        assert_eq!(c.embed.embedder, "w600k-mbf-int8");
        assert_eq!(c.embed.max_batch, 64);
        assert_eq!(c.embed.detector, "yunet");
    }

    #[test]
    fn face_settings_and_quality_gates() {
        let c = Config::from_sources(env(&[]), &Overrides::default()).unwrap();
        assert!(c.face.enforce_quality);
        assert_eq!(c.face.quality.min_blur, Some(15.0));
        let e = [
            ("BIOMATCH__FACE__POLICY", "most-central"),
            ("BIOMATCH__FACE__MIN_BLUR", "off"),
            ("BIOMATCH__FACE__MAX_ABS_YAW_DEG", "30"),
            ("BIOMATCH__FACE__ENFORCE_QUALITY", "false"),
        ];
        let c = Config::from_sources(env(&e), &Overrides::default()).unwrap();
        assert_eq!(c.face.policy, FacePolicy::MostCentral);
        assert_eq!(c.face.quality.min_blur, None);
        assert_eq!(c.face.quality.max_abs_yaw_deg, Some(30.0));
        assert!(!c.face.enforce_quality);
        let e = [("BIOMATCH__FACE__MIN_DETECTOR_SCORE", "2")];
        let err = Config::from_sources(env(&e), &Overrides::default()).unwrap_err();
        assert!(
            err.to_string().contains("face.min_detector_score"),
            "{err:#}"
        );
    }
}
