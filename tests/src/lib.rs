//! Helpers for biomatch's end-to-end tests: find the real `biomatch`
//! binary, start it on an ephemeral port with a temporary data directory,
//! talk to it over HTTP, stop it with a signal; and what the gallery crash
//! test's child process writes ([`crash`]).

#![deny(missing_docs)]

pub mod crash;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

/// Path of the `biomatch` binary under test.
///
/// `BIOMATCH_BIN` if set; otherwise the binary built next to this test
/// executable (`target/<profile>/biomatch`), which `scripts/test` builds
/// before running the tests.
pub fn biomatch_bin() -> PathBuf {
    match std::env::var_os("BIOMATCH_BIN") {
        Some(bin) => PathBuf::from(bin),
        None => built_bin("biomatch"),
    }
}

/// Path of a binary of this workspace built next to the test executable
/// (`target/<profile>/<name>`).
///
/// # Panics
/// If it has not been built (`scripts/test` builds every binary first).
pub fn built_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|p| p.join(format!("{name}{}", std::env::consts::EXE_SUFFIX)))
        .expect("target directory");
    assert!(
        bin.exists(),
        "{} not found: build it first (`cargo build --workspace --bins`; scripts/test does)",
        bin.display()
    );
    bin
}

/// A `biomatch` command with a clean environment for biomatch variables.
pub fn biomatch() -> Command {
    let mut cmd = Command::new(biomatch_bin());
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        if key.starts_with("BIOMATCH__") || key == "BIOMATCH_SIMD" {
            cmd.env_remove(key);
        }
    }
    cmd.env("BIOMATCH_LOG", "warn");
    // Models installed by scripts/test next to their manifests; one ORT
    // thread per session keeps parallel tests off each other's cores.
    cmd.env("BIOMATCH__EMBED__MODELS_DIR", repo_root().join("models"));
    cmd.env("BIOMATCH__EMBED__INTRA_THREADS", "1");
    cmd
}

/// Runs `cmd`, asserts that it succeeded (its stderr as the message) and
/// parses its stdout as JSON.
pub fn json_stdout(cmd: &mut Command) -> serde_json::Value {
    let out = cmd.output().expect("run the command");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

/// `biomatch ARGS`, which must succeed, its stdout parsed as JSON.
pub fn biomatch_json(args: &[&str]) -> serde_json::Value {
    json_stdout(biomatch().args(args))
}

/// `path` when it exists. Otherwise the test skips (`None`), except under
/// `CI=true`, where missing data or a missing tool (`what`) is a failure.
pub fn required(path: PathBuf, what: &str) -> Option<PathBuf> {
    if path.exists() {
        return Some(path);
    }
    assert_ne!(
        std::env::var("CI").as_deref(),
        Ok("true"),
        "CI=true and {what} is missing at {}",
        path.display()
    );
    eprintln!("SKIPPED: no {what} at {}", path.display());
    None
}

/// The workspace root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// A running `biomatch serve`, killed on drop if still running.
pub struct Server {
    child: Child,
    /// Base URL, e.g. `http://127.0.0.1:39127`.
    pub url: String,
    /// The server's data directory.
    pub data_dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

impl Server {
    /// Starts `biomatch serve` on an ephemeral port with a fresh data
    /// directory and extra environment variables.
    pub fn start(env: &[(&str, &str)]) -> Result<Server> {
        let tmp = tempfile::tempdir()?;
        let data_dir = tmp.path().join("data");
        let mut server = Server::start_in(&data_dir, env)?;
        server._tmp = Some(tmp);
        Ok(server)
    }

    /// Starts `biomatch serve` with `data_dir` (kept after the server stops).
    pub fn start_in(data_dir: &Path, env: &[(&str, &str)]) -> Result<Server> {
        Server::start_with(data_dir, &[], env)
    }

    /// Starts `biomatch serve ARGS…` with `data_dir` and extra environment.
    pub fn start_with(data_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Result<Server> {
        let mut cmd = biomatch();
        cmd.arg("serve")
            .args(args)
            .env("BIOMATCH__SERVER__LISTEN", "127.0.0.1:0")
            .env("BIOMATCH__STORAGE__DATA_DIR", data_dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().context("spawning biomatch serve")?;
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("biomatch listening on ") {
                    let _ = tx.send(url.trim().to_string());
                }
            }
        });
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(url) => Ok(Server {
                child,
                url,
                data_dir: data_dir.to_path_buf(),
                _tmp: None,
            }),
            Err(_) => {
                let _ = child.kill();
                let status = child.wait()?;
                bail!("biomatch serve did not report its address ({status})")
            }
        }
    }

    /// `GET path`, returning the status and the JSON body.
    pub fn get(&self, path: &str) -> Result<(u16, serde_json::Value)> {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .new_agent();
        let mut response = agent.get(format!("{}{path}", self.url)).call()?;
        let status = response.status().as_u16();
        let body = response.body_mut().read_to_string()?;
        let json = serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body));
        Ok((status, json))
    }

    /// Sends `method path` with a raw body (JSON content type); returns the
    /// status and the JSON body (a string when the body is not JSON).
    pub fn send(&self, method: &str, path: &str, body: &[u8]) -> Result<(u16, serde_json::Value)> {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .new_agent();
        let url = format!("{}{path}", self.url);
        let mut response = match method {
            "GET" => agent.get(&url).call()?,
            "DELETE" => agent.delete(&url).call()?,
            "POST" => agent
                .post(&url)
                .content_type("application/json")
                .send(body)?,
            "PUT" => agent
                .put(&url)
                .content_type("application/json")
                .send(body)?,
            other => bail!("method {other} not supported by the test client"),
        };
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_string()?;
        let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
        Ok((status, json))
    }

    /// [`Server::send`] with a JSON value.
    pub fn json(
        &self,
        method: &str,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<(u16, serde_json::Value)> {
        self.send(method, path, body.to_string().as_bytes())
    }

    /// Sends SIGTERM and waits up to `timeout` for the process to exit.
    pub fn terminate(mut self, timeout: Duration) -> Result<ExitStatus> {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) with a pid we own and a valid signal number.
        let rc = unsafe { libc::kill(pid, libc::SIGTERM) };
        if rc != 0 {
            bail!("kill(SIGTERM) failed: {}", std::io::Error::last_os_error());
        }
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if start.elapsed() > timeout {
                let _ = self.child.kill();
                return Err(anyhow!("server did not stop within {timeout:?} of SIGTERM"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
