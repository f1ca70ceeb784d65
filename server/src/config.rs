//! Server configuration: built-in defaults, then a TOML file (`biomatch
//! serve --config F`), then `BIOMATCH__SECTION__KEY` environment variables,
//! then command-line flags; parsed into typed values and validated at
//! start-up with errors that name the offending key. A file key `section.key`
//! is the variable `BIOMATCH__SECTION__KEY`; unknown file keys are errors.
//! API keys (`[[auth.keys]]`: `id`, `sha256` of the key, `roles`) come from
//! the file only.
//!
//! | key | env | default |
//! |---|---|---|
//! | `server.listen` | `BIOMATCH__SERVER__LISTEN` | `127.0.0.1:8080` |
//! | `server.max_concurrent_requests` | `BIOMATCH__SERVER__MAX_CONCURRENT_REQUESTS` | `64` |
//! | `server.request_timeout_ms` | `BIOMATCH__SERVER__REQUEST_TIMEOUT_MS` | `30000` |
//! | `server.max_candidates` | `BIOMATCH__SERVER__MAX_CANDIDATES` | `100` |
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
//! | `finger.min_quality` | `BIOMATCH__FINGER__MIN_QUALITY` | `20` (0–100; images below are refused) |
//! | `finger.threshold` | `BIOMATCH__FINGER__THRESHOLD` | `0.085` (minutiae score; FMR ≤ 0.07 % per set on FVC2002 B's provided records, ≤ 0.035 % with minutiae from biomatch's extractor) |
//! | `finger.shortlist` | `BIOMATCH__FINGER__SHORTLIST` | `300` (rows per probe finger re-ranked in 1:N) |
//! | `auth.allow_anonymous` | `BIOMATCH__AUTH__ALLOW_ANONYMOUS` | true without keys, else false |

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
    /// Fingerprint settings.
    pub finger: FingerConfig,
    /// API keys and anonymous access.
    pub auth: AuthConfig,
}

/// `[finger]` section.
#[derive(Clone, Debug, PartialEq)]
pub struct FingerConfig {
    /// Finger images with a lower quality score (0–100) are refused.
    pub min_quality: u8,
    /// Default decision threshold on minutiae scores.
    pub threshold: f32,
    /// Flat-index rows per probe finger re-ranked by the matcher in 1:N.
    pub shortlist: usize,
}

impl Default for FingerConfig {
    fn default() -> Self {
        FingerConfig {
            min_quality: biomatch_engine::finger::ExtractParams::default().min_quality,
            threshold: 0.085,
            shortlist: 300,
        }
    }
}

/// What an API key may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Enroll, replace and read subjects.
    Enroll,
    /// Verify, compare, extract templates.
    Verify,
    /// Identify.
    Identify,
    /// Everything, including deletions and statistics.
    Admin,
}

impl Role {
    /// Parses `enroll`, `verify`, `identify`, `admin`.
    pub fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "enroll" => Role::Enroll,
            "verify" => Role::Verify,
            "identify" => Role::Identify,
            "admin" => Role::Admin,
            _ => return None,
        })
    }

    /// The config spelling.
    pub fn name(self) -> &'static str {
        match self {
            Role::Enroll => "enroll",
            Role::Verify => "verify",
            Role::Identify => "identify",
            Role::Admin => "admin",
        }
    }
}

/// One API key: its id (recorded in audit rows), the sha256 of the secret
/// (lower-case hex; the secret itself is never stored), its roles.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiKey {
    /// Key id.
    pub id: String,
    /// sha256 of the bearer token, hex.
    pub sha256: String,
    /// Roles.
    pub roles: Vec<Role>,
}

/// `[auth]` section.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct AuthConfig {
    /// Requests without `Authorization` act as `anonymous` with every role.
    /// Default: true only when no key is configured (the local default).
    pub allow_anonymous: bool,
    /// API keys.
    pub keys: Vec<ApiKey>,
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
    /// `/v1` requests served at once; more get 503 with `Retry-After`.
    pub max_concurrent_requests: usize,
    /// Longest a `/v1` request may take before a 503.
    pub request_timeout_ms: u64,
    /// Largest `max_candidates` an identification may ask for.
    pub max_candidates: usize,
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
                max_concurrent_requests: 64,
                request_timeout_ms: 30_000,
                max_candidates: 100,
            },
            storage: StorageConfig {
                data_dir: PathBuf::from("./data"),
            },
            embed: EmbedConfig::default(),
            face: FaceConfig::default(),
            finger: FingerConfig::default(),
            auth: AuthConfig {
                allow_anonymous: true,
                keys: Vec::new(),
            },
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
    /// `--config`: a TOML file.
    pub config_file: Option<PathBuf>,
}

/// Every `section.key` a config file may set (besides `[[auth.keys]]`).
pub const KEYS: &[&str] = &[
    "server.listen",
    "server.max_concurrent_requests",
    "server.request_timeout_ms",
    "server.max_candidates",
    "storage.data_dir",
    "embed.onnxruntime",
    "embed.models_dir",
    "embed.detector",
    "embed.embedder",
    "embed.sessions",
    "embed.intra_threads",
    "embed.max_batch",
    "embed.max_wait_ms",
    "face.policy",
    "face.score_threshold",
    "face.enforce_quality",
    "face.min_detector_score",
    "face.min_inter_eye_px",
    "face.min_blur",
    "face.max_abs_yaw_deg",
    "face.max_abs_roll_deg",
    "finger.min_quality",
    "finger.threshold",
    "finger.shortlist",
    "auth.allow_anonymous",
];

/// A parsed config file: flattened scalar settings (by environment
/// variable name) and the API keys.
#[derive(Debug, Default)]
pub struct FileSettings {
    values: std::collections::HashMap<String, String>,
    keys: Vec<ApiKey>,
}

impl FileSettings {
    /// Reads and checks a TOML config file.
    pub fn read(path: &std::path::Path) -> Result<FileSettings> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("--config: cannot read {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("config file {}", path.display()))
    }

    /// Parses TOML text.
    pub fn parse(text: &str) -> Result<FileSettings> {
        let table: toml::Table = text.parse().context("not valid TOML")?;
        let mut out = FileSettings::default();
        for (section, value) in &table {
            let Some(entries) = value.as_table() else {
                bail!("`{section}` must be a section ([{section}])");
            };
            for (key, value) in entries {
                let dotted = format!("{section}.{key}");
                if dotted == "auth.keys" {
                    out.keys = parse_keys(value)?;
                    continue;
                }
                if !KEYS.contains(&dotted.as_str()) {
                    bail!(
                        "unknown key `{dotted}`; known keys: {}, auth.keys",
                        KEYS.join(", ")
                    );
                }
                let text = match value {
                    toml::Value::String(s) => s.clone(),
                    toml::Value::Integer(i) => i.to_string(),
                    toml::Value::Float(f) => f.to_string(),
                    toml::Value::Boolean(b) => b.to_string(),
                    _ => bail!("`{dotted}` must be a string, number or boolean"),
                };
                out.values.insert(
                    format!(
                        "BIOMATCH__{}__{}",
                        section.to_uppercase(),
                        key.to_uppercase()
                    ),
                    text,
                );
            }
        }
        Ok(out)
    }
}

fn parse_keys(value: &toml::Value) -> Result<Vec<ApiKey>> {
    let Some(array) = value.as_array() else {
        bail!("`auth.keys` must be an array of tables ([[auth.keys]])");
    };
    let mut keys: Vec<ApiKey> = Vec::new();
    for (i, entry) in array.iter().enumerate() {
        let field = |name: &str| entry.get(name);
        let id = field("id")
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
            .with_context(|| format!("auth.keys[{i}].id: a non-empty string is required"))?;
        let sha256 = field("sha256")
            .and_then(|v| v.as_str())
            .filter(|s| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()))
            .with_context(|| format!("auth.keys[{i}].sha256: the key's sha256 as 64 hex digits is required (`biomatch keys hash`)"))?
            .to_ascii_lowercase();
        let roles = field("roles")
            .and_then(|v| v.as_array())
            .with_context(|| {
                format!(
                    "auth.keys[{i}].roles: an array of enroll, verify, identify, admin is required"
                )
            })?
            .iter()
            .map(|r| {
                r.as_str().and_then(Role::parse).with_context(|| {
                    format!("auth.keys[{i}].roles: `{r}` is not enroll, verify, identify or admin")
                })
            })
            .collect::<Result<Vec<_>>>()?;
        if let Some(extra) = entry.as_table().and_then(|t| {
            t.keys()
                .find(|k| !["id", "sha256", "roles"].contains(&k.as_str()))
        }) {
            bail!("auth.keys[{i}]: unknown field `{extra}` (id, sha256, roles)");
        }
        if keys.iter().any(|k| k.id == id) {
            bail!("auth.keys[{i}].id: `{id}` is used twice");
        }
        if keys.iter().any(|k| k.sha256 == sha256) {
            bail!("auth.keys[{i}].sha256: two keys have the same secret");
        }
        keys.push(ApiKey {
            id: id.to_string(),
            sha256,
            roles,
        });
    }
    Ok(keys)
}

impl Config {
    /// Defaults, then the config file, then the process environment, then
    /// `overrides`.
    pub fn load(overrides: &Overrides) -> Result<Config> {
        let file = match &overrides.config_file {
            Some(path) => FileSettings::read(path)?,
            None => FileSettings::default(),
        };
        Config::from_file_and_env(&file, |key| std::env::var(key).ok(), overrides)
    }

    /// Settings from `file`, overridden by `env`, then `overrides`.
    pub fn from_file_and_env(
        file: &FileSettings,
        env: impl Fn(&str) -> Option<String>,
        overrides: &Overrides,
    ) -> Result<Config> {
        let merged = |key: &str| env(key).or_else(|| file.values.get(key).cloned());
        let mut config = Config::from_sources(merged, overrides)?;
        config.auth.keys = file.keys.clone();
        config.auth.allow_anonymous = flag(
            &merged,
            "BIOMATCH__AUTH__ALLOW_ANONYMOUS",
            "auth.allow_anonymous",
            config.auth.keys.is_empty(),
        )?;
        if !config.auth.allow_anonymous && config.auth.keys.is_empty() {
            bail!(
                "auth.allow_anonymous is false but no [[auth.keys]] are configured: nobody could use the API"
            );
        }
        Ok(config)
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
        let sv = &mut config.server;
        sv.max_concurrent_requests = number(
            &env,
            "BIOMATCH__SERVER__MAX_CONCURRENT_REQUESTS",
            "server.max_concurrent_requests",
            sv.max_concurrent_requests,
            1,
            100_000,
        )?;
        sv.request_timeout_ms = number(
            &env,
            "BIOMATCH__SERVER__REQUEST_TIMEOUT_MS",
            "server.request_timeout_ms",
            sv.request_timeout_ms,
            1,
            3_600_000,
        )?;
        sv.max_candidates = number(
            &env,
            "BIOMATCH__SERVER__MAX_CANDIDATES",
            "server.max_candidates",
            sv.max_candidates,
            1,
            10_000,
        )?;
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
        f.enforce_quality = flag(
            &env,
            "BIOMATCH__FACE__ENFORCE_QUALITY",
            "face.enforce_quality",
            f.enforce_quality,
        )?;
        let q = &mut f.quality;
        q.min_detector_score = gate(&env, "MIN_DETECTOR_SCORE", q.min_detector_score, 1.0)?;
        q.min_inter_eye_px = gate(&env, "MIN_INTER_EYE_PX", q.min_inter_eye_px, 10_000.0)?;
        q.min_blur = gate(&env, "MIN_BLUR", q.min_blur, 1e6)?;
        q.max_abs_yaw_deg = gate(&env, "MAX_ABS_YAW_DEG", q.max_abs_yaw_deg, 90.0)?;
        q.max_abs_roll_deg = gate(&env, "MAX_ABS_ROLL_DEG", q.max_abs_roll_deg, 180.0)?;
        let g = &mut config.finger;
        g.min_quality = number(
            &env,
            "BIOMATCH__FINGER__MIN_QUALITY",
            "finger.min_quality",
            g.min_quality,
            0,
            100,
        )?;
        g.threshold = number(
            &env,
            "BIOMATCH__FINGER__THRESHOLD",
            "finger.threshold",
            g.threshold,
            0.0,
            1.0,
        )?;
        g.shortlist = number(
            &env,
            "BIOMATCH__FINGER__SHORTLIST",
            "finger.shortlist",
            g.shortlist,
            1,
            100_000,
        )?;
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

/// Parses a boolean setting (`true`/`1`, `false`/`0`), naming the key on error.
fn flag(
    env: &impl Fn(&str) -> Option<String>,
    var: &str,
    key: &str,
    default: bool,
) -> Result<bool> {
    match env(var).as_deref().map(str::trim) {
        None => Ok(default),
        Some("true" | "1") => Ok(true),
        Some("false" | "0") => Ok(false),
        Some(v) => bail!("{var} ({key}): `{v}` is not true or false"),
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
            config_file: None,
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

    const FILE: &str = r#"
[server]
listen = "0.0.0.0:9100"

[embed]
max_batch = 32

[face]
min_blur = "off"

[[auth.keys]]
id = "registration"
sha256 = "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD"
roles = ["enroll", "verify"]
"#;

    #[test]
    fn config_file_then_environment() {
        let file = FileSettings::parse(FILE).unwrap();
        let c = Config::from_file_and_env(&file, env(&[]), &Overrides::default()).unwrap();
        assert_eq!(c.server.listen.port(), 9100);
        assert_eq!(c.embed.max_batch, 32);
        assert_eq!(c.face.quality.min_blur, None);
        assert_eq!(c.auth.keys.len(), 1);
        assert_eq!(c.auth.keys[0].roles, vec![Role::Enroll, Role::Verify]);
        assert!(
            c.auth.keys[0].sha256.starts_with("ba7816"),
            "digests are normalised to lower case"
        );
        assert!(
            !c.auth.allow_anonymous,
            "keys configured: anonymous access is off unless asked for"
        );
        let e = [
            ("BIOMATCH__SERVER__LISTEN", "127.0.0.1:9200"),
            ("BIOMATCH__AUTH__ALLOW_ANONYMOUS", "true"),
        ];
        let c = Config::from_file_and_env(&file, env(&e), &Overrides::default()).unwrap();
        assert_eq!(c.server.listen.port(), 9200);
        assert!(c.auth.allow_anonymous);
        // Without a file: the local default allows anonymous access.
        let c =
            Config::from_file_and_env(&FileSettings::default(), env(&[]), &Overrides::default())
                .unwrap();
        assert!(c.auth.allow_anonymous && c.auth.keys.is_empty());
    }

    #[test]
    fn config_file_errors_name_the_key() {
        let err = |text: &str| format!("{:#}", FileSettings::parse(text).unwrap_err());
        assert!(err("[server]\nlisen = 1").contains("unknown key `server.lisen`"));
        assert!(
            err("[[auth.keys]]\nid = \"a\"\nsha256 = \"xyz\"\nroles = []")
                .contains("auth.keys[0].sha256")
        );
        let bad_role = format!(
            "[[auth.keys]]\nid = \"a\"\nsha256 = \"{}\"\nroles = [\"root\"]",
            "a".repeat(64)
        );
        assert!(err(&bad_role).contains("`\"root\"` is not enroll"));
        assert!(err("listen = 3").contains("must be a section"));
        let file = FileSettings::parse("[server]\nlisten = \"nowhere\"").unwrap();
        let e = format!(
            "{:#}",
            Config::from_file_and_env(&file, env(&[]), &Overrides::default()).unwrap_err()
        );
        assert!(e.contains("server.listen"), "{e}");
        let file = FileSettings::parse("[auth]\nallow_anonymous = false").unwrap();
        let e = format!(
            "{:#}",
            Config::from_file_and_env(&file, env(&[]), &Overrides::default()).unwrap_err()
        );
        assert!(e.contains("nobody could use the API"), "{e}");
    }
}
