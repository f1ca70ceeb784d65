//! Server configuration: built-in defaults, then `BIOMATCH__SECTION__KEY`
//! environment variables, then command-line flags; parsed into typed values
//! and validated at start-up with errors that name the offending key.
//!
//! | key | env | default |
//! |---|---|---|
//! | `server.listen` | `BIOMATCH__SERVER__LISTEN` | `127.0.0.1:8080` |
//! | `storage.data_dir` | `BIOMATCH__STORAGE__DATA_DIR` | `./data` |

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};

/// Validated configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// HTTP server settings.
    pub server: ServerConfig,
    /// Storage settings.
    pub storage: StorageConfig,
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
        Ok(config)
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
    }
}
