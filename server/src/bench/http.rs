//! `biomatch bench http`: load on a running server over real HTTP.
//!
//! Fills the gallery up to `--subjects` template enrollments (seeded
//! random unit vectors, ids `bench-000000…`; existing ones are reused),
//! enrolls a few LFW portraits, then runs four workloads with
//! `--concurrency` client threads for `--requests` requests each:
//! identify and verify with template probes, and identify and verify with
//! image probes (the whole face pipeline). Reports throughput, p50, p99
//! and the error count of each.

use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Serialize;
use serde_json::{Value, json};

use super::percentile;

/// `biomatch bench http` arguments.
#[derive(Debug, clap::Args)]
pub struct HttpArgs {
    /// Base URL of a running `biomatch serve`.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// API key (an admin, or enroll + verify + identify key); none for anonymous.
    #[arg(long, env = "BIOMATCH_API_KEY")]
    pub key: Option<String>,
    /// Subjects the gallery should hold (template enrollments).
    #[arg(long, default_value_t = 100_000)]
    pub subjects: usize,
    /// Client threads.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Requests per workload.
    #[arg(long, default_value_t = 400)]
    pub requests: usize,
    /// LFW folder for the image probes.
    #[arg(long, default_value = "../shared/datasets/lfw")]
    pub data: PathBuf,
    /// Seed of the template vectors.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// One workload's figures.
#[derive(Debug, Serialize)]
pub struct Workload {
    /// Name.
    pub name: String,
    /// Requests sent.
    pub requests: usize,
    /// Requests per second.
    pub per_second: f64,
    /// Median latency, ms.
    pub p50_ms: f64,
    /// 99th percentile latency, ms.
    pub p99_ms: f64,
    /// Answers that were not 2xx (or transport errors).
    pub errors: usize,
}

/// What `bench http` reports.
#[derive(Debug, Serialize)]
pub struct HttpReport {
    /// Server URL.
    pub url: String,
    /// Subjects in the gallery during the run.
    pub gallery_subjects: u64,
    /// Seconds spent filling the gallery in this run.
    pub fill_seconds: f64,
    /// Subjects enrolled in this run.
    pub enrolled: usize,
    /// Client threads.
    pub concurrency: usize,
    /// The workloads.
    pub workloads: Vec<Workload>,
}

struct Client {
    agent: ureq::Agent,
    url: String,
    key: Option<String>,
}

impl Client {
    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<(u16, Value)> {
        let url = format!("{}{path}", self.url);
        let auth = self.key.as_ref().map(|k| format!("Bearer {k}"));
        let mut response = match (method, body) {
            ("GET", _) => {
                let mut r = self.agent.get(&url);
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                r.call()?
            }
            (_, Some(body)) => {
                let mut r = self.agent.post(&url).content_type("application/json");
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                r.send(body.to_string())?
            }
            _ => bail!("unsupported call"),
        };
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_string()?;
        Ok((
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        ))
    }
}

fn template_b64(v: &[f32]) -> String {
    BASE64.encode(v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>())
}

/// Runs the benchmark.
pub fn run(args: &HttpArgs) -> Result<HttpReport> {
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .new_agent();
    let client = Client {
        agent,
        url: args.url.trim_end_matches('/').to_string(),
        key: args.key.clone(),
    };
    let (status, health) = client
        .call("GET", "/health", None)
        .with_context(|| format!("is `biomatch serve` running at {}?", args.url))?;
    if status != 200 {
        bail!("GET /health answered {status}: {health}");
    }
    let dim = health["face_models"]["dim"]
        .as_u64()
        .context("the server has no face models loaded")? as usize;

    // Fill the gallery with template enrollments, in parallel.
    let started = Instant::now();
    let next = AtomicUsize::new(0);
    let enrolled = AtomicUsize::new(0);
    let chunk = 1000;
    std::thread::scope(|s| -> Result<()> {
        let handles: Vec<_> = (0..args.concurrency.max(1))
            .map(|_| {
                s.spawn(|| -> Result<()> {
                    loop {
                        let start = next.fetch_add(chunk, Ordering::Relaxed);
                        if start >= args.subjects {
                            return Ok(());
                        }
                        let n = chunk.min(args.subjects - start);
                        let rows = biomatch_datasets::synth::random_unit_rows(start, n, dim, args.seed);
                        for (i, v) in rows.chunks_exact(dim).enumerate() {
                            let body = json!({"subject_id": format!("bench-{:06}", start + i), "face": {"template": template_b64(v)}});
                            let (status, answer) = client.call("POST", "/v1/subjects", Some(&body))?;
                            match status {
                                201 => {
                                    enrolled.fetch_add(1, Ordering::Relaxed);
                                }
                                409 => {}
                                _ => bail!("enrollment answered {status}: {answer}"),
                            }
                        }
                        if (start / chunk).is_multiple_of(10) {
                            eprintln!("bench http: {} of {} subjects", start + n, args.subjects);
                        }
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .try_for_each(|h| h.join().expect("enrollment thread panicked"))
    })?;
    let fill_seconds = started.elapsed().as_secs_f64();

    // A few real faces for the image probes: enroll one image per person, probe with another.
    let people = [
        "George_W_Bush",
        "Colin_Powell",
        "Tony_Blair",
        "Donald_Rumsfeld",
        "Gerhard_Schroeder",
    ];
    let mut probes = Vec::new();
    for person in people {
        let image = |n: u32| -> Result<String> {
            let path = args
                .data
                .join(format!("images/{person}/{person}_{n:04}.jpg"));
            Ok(BASE64.encode(
                std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
            ))
        };
        let id = format!("bench-lfw-{person}");
        let (status, answer) = client.call(
            "POST",
            "/v1/subjects",
            Some(&json!({"subject_id": id, "face": {"image": image(1)?}})),
        )?;
        if status != 201 && status != 409 {
            bail!("enrolling {person}: {status} {answer}");
        }
        probes.push((id, image(2)?));
    }

    let template_probe = |i: usize| {
        let v =
            biomatch_datasets::synth::random_unit_rows(i % args.subjects.max(1), 1, dim, args.seed);
        (
            format!("bench-{:06}", i % args.subjects.max(1)),
            template_b64(&v),
        )
    };
    let mut workloads = Vec::new();
    workloads.push(load(&client, args, "identify, template", |i| {
        let (_, t) = template_probe(i * 7919);
        (
            "/v1/identify".into(),
            json!({"probe": {"face": {"template": t}}, "max_candidates": 10}),
        )
    })?);
    workloads.push(load(&client, args, "verify, template", |i| {
        let (id, t) = template_probe(i * 7919);
        (
            "/v1/verify".into(),
            json!({"subject_id": id, "probe": {"face": {"template": t}}}),
        )
    })?);
    workloads.push(load(&client, args, "identify, image", |i| {
        let (_, img) = &probes[i % probes.len()];
        (
            "/v1/identify".into(),
            json!({"probe": {"face": {"image": img}}, "max_candidates": 10}),
        )
    })?);
    workloads.push(load(&client, args, "verify, image", |i| {
        let (id, img) = &probes[i % probes.len()];
        (
            "/v1/verify".into(),
            json!({"subject_id": id, "probe": {"face": {"image": img}}}),
        )
    })?);
    let (_, health) = client.call("GET", "/health", None)?;
    Ok(HttpReport {
        url: args.url.clone(),
        gallery_subjects: health["gallery"]["subjects"].as_u64().unwrap_or(0),
        fill_seconds,
        enrolled: enrolled.into_inner(),
        concurrency: args.concurrency,
        workloads,
    })
}

fn load(
    client: &Client,
    args: &HttpArgs,
    name: &str,
    request: impl Fn(usize) -> (String, Value) + Sync,
) -> Result<Workload> {
    let next = AtomicUsize::new(0);
    let latencies = Mutex::new(Vec::with_capacity(args.requests));
    let errors = AtomicUsize::new(0);
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..args.concurrency.max(1) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= args.requests {
                        return;
                    }
                    let (path, body) = request(i);
                    let t = Instant::now();
                    let ok = matches!(client.call("POST", &path, Some(&body)), Ok((200..=299, _)));
                    let ms = t.elapsed().as_secs_f64() * 1e3;
                    if !ok {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                    latencies.lock().unwrap_or_else(|e| e.into_inner()).push(ms);
                }
            });
        }
    });
    let seconds = started.elapsed().as_secs_f64();
    let mut ms = latencies.into_inner().unwrap_or_else(|e| e.into_inner());
    ms.sort_by(f64::total_cmp);
    Ok(Workload {
        name: name.to_string(),
        requests: args.requests,
        per_second: args.requests as f64 / seconds,
        p50_ms: percentile(&ms, 0.5),
        p99_ms: percentile(&ms, 0.99),
        errors: errors.into_inner(),
    })
}

/// Prints the report as a table.
pub fn print_table(r: &HttpReport) {
    println!(
        "HTTP load on {} — gallery {} subjects ({} enrolled now in {:.1} s), {} clients",
        r.url, r.gallery_subjects, r.enrolled, r.fill_seconds, r.concurrency
    );
    println!("| workload | requests | per second | p50 ms | p99 ms | errors |");
    println!("|---|---|---|---|---|---|");
    for w in &r.workloads {
        println!(
            "| {} | {} | {:.1} | {:.2} | {:.2} | {} |",
            w.name, w.requests, w.per_second, w.p50_ms, w.p99_ms, w.errors
        );
    }
}
