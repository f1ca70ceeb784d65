//! `biomatch bench compare` (run by `benches/compare/run`): biomatch's flat
//! index side by side with faiss (`faiss-cpu` wheel), on the same seeded
//! vectors, threads and queries, in one process tree.
//!
//! Per dimension (default 1 000 000 × 512 and × 128): the base is capture 1
//! of N synthetic face identities ([`SynthFaces`], unit vectors), the
//! queries capture 2 of seeded random identities. A Python worker
//! (`benches/compare/faiss_worker.py`) computes the exact top 10 of every
//! query with `IndexFlatIP` (the ground truth for both sides) and then
//! answers one measurement request at a time. For each comparable pair —
//! biomatch `f32` / `f16` / `i8` against `IndexFlatIP` / `SQfp16` / `SQ8` —
//! and each mode (single queries, batches of 64 and 1024, threshold
//! search; against SQ8/SQfp16 only with `--sq-threshold`: faiss's range
//! search over scalar-quantised codes is a slow per-query scan), rounds
//! alternate: biomatch, then faiss. faiss's approximate
//! indexes (HNSW32 at several efSearch, IVF4096 at several nprobe) are
//! measured in batches of 1024 and set against biomatch `i8` at the same
//! batch: exact against approximate, with the recall beside it.
//!
//! Each round also probes the machine (streaming read bandwidth, int8 and
//! f32 FMA peaks), so that single-query rates are given as a fraction of
//! the memory bandwidth and batch rates as a fraction of the compute peak.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use biomatch_datasets::synth_gallery::SynthFaces;
use biomatch_engine::index::flat::{FlatConfig, FlatIndex, FlatSnapshot, OpenOptions};
use biomatch_engine::index::{Dtype, Metric};
use biomatch_engine::vector::probe;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::Serialize;

use super::{dir_bytes, median, search_pool};

const K: usize = 10;
const PIECE: usize = 65_536;

/// `biomatch bench compare` arguments.
#[derive(Debug, clap::Args)]
pub struct CompareArgs {
    /// Base vectors per dataset.
    #[arg(long, default_value_t = 1_000_000)]
    pub n: usize,
    /// Dimensions, one dataset each.
    #[arg(long, value_delimiter = ',', default_value = "512,128")]
    pub dims: Vec<usize>,
    /// Queries (batches and threshold search use them all).
    #[arg(long, default_value_t = 1024)]
    pub queries: usize,
    /// Queries timed one at a time.
    #[arg(long, default_value_t = 64)]
    pub single_queries: usize,
    /// Alternating rounds per measurement (the median is reported).
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Threshold of the threshold search (cosine).
    #[arg(long, default_value_t = 0.5)]
    pub threshold: f32,
    /// IVF lists.
    #[arg(long, default_value_t = 4096)]
    pub nlist: usize,
    /// IVF nprobe values.
    #[arg(long, value_delimiter = ',', default_value = "1,8,32,128")]
    pub nprobe: Vec<usize>,
    /// HNSW efSearch values.
    #[arg(long, value_delimiter = ',', default_value = "16,64,256")]
    pub ef: Vec<usize>,
    /// Also time threshold search against faiss SQ8/SQfp16 range search (very slow).
    #[arg(long)]
    pub sq_threshold: bool,
    /// Leave out faiss's approximate indexes (HNSW, IVF), the slow builds.
    #[arg(long)]
    pub exact_only: bool,
    /// Where datasets, biomatch indexes and faiss caches live.
    #[arg(long, default_value = "bench-data/compare")]
    pub data: PathBuf,
    /// Threads for both sides (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Seed of the vectors.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Python with faiss and numpy (default $BIOMATCH_PYTHON, else
    /// .tools/py/bin/python as scripts/setup-faiss makes it).
    #[arg(long)]
    pub python: Option<PathBuf>,
    /// Print one JSON object instead of tables.
    #[arg(long)]
    pub json: bool,
}

/// One measured configuration pair.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Dimension.
    pub dim: usize,
    /// Mode: `single`, `batch64`, `batch1024`, `threshold`.
    pub mode: String,
    /// biomatch side (`flat i8`), if any.
    pub biomatch: Option<String>,
    /// faiss side (`SQ8`, `HNSW32 ef=64`).
    pub faiss: String,
    /// biomatch queries/s (median of rounds).
    pub biomatch_qps: Option<f64>,
    /// faiss queries/s (median of rounds).
    pub faiss_qps: f64,
    /// biomatch / faiss.
    pub ratio: Option<f64>,
    /// biomatch recall@10 against the exact top 10 (top-k modes).
    pub biomatch_recall: Option<f64>,
    /// faiss recall@10.
    pub faiss_recall: Option<f64>,
    /// Threshold mode: hits found by each side.
    pub hits: Option<[u64; 2]>,
    /// biomatch bytes on disk (scanned codes + f32 originals + ids).
    pub biomatch_bytes: Option<u64>,
    /// biomatch bytes scanned per query.
    pub biomatch_scan_bytes: Option<u64>,
    /// faiss index bytes (serialised).
    pub faiss_bytes: Option<u64>,
    /// Single queries: biomatch scan rate over the read bandwidth.
    pub biomatch_of_bandwidth: Option<f64>,
    /// Batches: biomatch multiply-adds per second over the int8 (i8) or
    /// f32 FMA (f32, f16; 2 flops each) peak.
    pub biomatch_of_peak: Option<f64>,
}

/// The machine, probed in every round.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// CPU model.
    pub cpu: String,
    /// Threads used.
    pub threads: usize,
    /// Streaming read bandwidth, GB/s (median).
    pub bandwidth_gbps: f64,
    /// int8 multiply-add peak, 10⁹/s (median).
    pub int8_gmacs: f64,
    /// f32 FMA peak, 10⁹ flop/s (median).
    pub f32_gflops: f64,
}

/// What `bench compare` reports.
#[derive(Debug, Serialize)]
pub struct CompareReport {
    /// faiss version.
    pub faiss_version: String,
    /// Base vectors per dataset.
    pub n: usize,
    /// Queries.
    pub queries: usize,
    /// The machine.
    pub machine: Machine,
    /// Every measurement.
    pub rows: Vec<Row>,
}

/// Runs the comparison.
pub fn run(args: &CompareArgs) -> Result<CompareReport> {
    ensure!(args.n >= 1000, "--n must be at least 1000");
    ensure!(
        args.queries >= args.single_queries.max(1),
        "--queries must be at least --single-queries"
    );
    let (pool, threads) = search_pool(args.threads)?;
    let mut rows = Vec::new();
    let mut probes = Probes::default();
    let mut faiss_version = String::new();
    for &dim in &args.dims {
        let dir = args.data.join(format!("n{}-d{dim}-s{}", args.n, args.seed));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let (base, queries) = write_dataset(&dir, args, dim, &pool)?;
        let mut worker = Worker::start(args, &dir, &base, &queries, threads)?;
        faiss_version.clone_from(&worker.version);
        let gt = read_npy_i64(&dir.join("gt.npy"), K)?;
        let query_rows = read_npy_f32(&queries)?;
        for (dtype, faiss) in [
            (Dtype::F32, "Flat"),
            (Dtype::F16, "SQfp16"),
            (Dtype::I8, "SQ8"),
        ] {
            let index = biomatch_index(&dir, &base, dim, dtype, args)?;
            let snap = index.snapshot();
            let bytes = dir_bytes(index.dir());
            let side = Side {
                snap: &snap,
                queries: &query_rows,
                dim,
                gt: &gt,
            };
            pool.install(|| side.warm_up())?;
            // faiss's range search over scalar-quantised codes is a plain
            // per-query scan (~1/100 of its flat range search's rate: hours
            // for 1024 queries at 1 M × 512); only on request.
            let threshold = dtype == Dtype::F32 || args.sq_threshold;
            let modes = [
                Mode::Single,
                Mode::Batch(64),
                Mode::Batch(1024),
                Mode::Threshold,
            ];
            for mode in modes
                .into_iter()
                .filter(|&m| threshold || m != Mode::Threshold)
            {
                let mut bm = Vec::new();
                let mut fs = Vec::new();
                let mut last = None;
                for _ in 0..args.rounds {
                    probes.measure();
                    let m = pool.install(|| side.measure(mode, args))?;
                    bm.push(m.qps);
                    last = Some(m);
                    let f = worker.ask(&request(faiss, mode, args, fs.is_empty()))?;
                    fs.push(f);
                }
                let m = last.context("at least one round")?;
                let f = fs.last().cloned().context("at least one round")?;
                let faiss_qps = median(&mut fs.iter().map(|f| f.qps).collect::<Vec<_>>());
                let biomatch_qps = median(&mut bm);
                let macs = biomatch_qps * (args.n * dim) as f64;
                rows.push(Row {
                    dim,
                    mode: mode.name(),
                    biomatch: Some(format!("flat {}", dtype.name())),
                    faiss: faiss.to_string(),
                    biomatch_qps: Some(biomatch_qps),
                    faiss_qps,
                    ratio: Some(biomatch_qps / faiss_qps),
                    biomatch_recall: m.recall,
                    faiss_recall: f.recall,
                    hits: m.hits.zip(f.hits).map(|(a, b)| [a, b]),
                    biomatch_bytes: Some(bytes),
                    biomatch_scan_bytes: Some(snap.scan_bytes() as u64),
                    faiss_bytes: fs.iter().find_map(|f| f.bytes),
                    biomatch_of_bandwidth: (mode == Mode::Single).then(|| {
                        snap.scan_bytes() as f64 * biomatch_qps / 1e9 / probes.bandwidth()
                    }),
                    biomatch_of_peak: matches!(mode, Mode::Batch(_)).then(|| match dtype {
                        Dtype::I8 => macs / 1e9 / probes.int8(),
                        _ => 2.0 * macs / 1e9 / probes.f32(),
                    }),
                });
                eprintln!("bench compare: {}", line(rows.last().context("a row")?));
            }
            if dtype == Dtype::I8 && !args.exact_only {
                // The exact batch-1024 measurement just made is the reference.
                let reference = rows
                    .iter()
                    .rfind(|r| r.dim == dim && r.mode == "batch1024")
                    .context("the i8 batch row")?;
                let (biomatch_qps, recall) = (
                    reference.biomatch_qps.unwrap_or(f64::NAN),
                    reference.biomatch_recall,
                );
                let approximate = args
                    .ef
                    .iter()
                    .map(|&ef| (format!("HNSW32 ef={ef}"), "HNSW32".to_string(), ("ef", ef)))
                    .chain(args.nprobe.iter().map(|&p| {
                        let name = format!("IVF{}", args.nlist);
                        (format!("{name} nprobe={p}"), name, ("nprobe", p))
                    }));
                for (label, name, (knob, value)) in approximate {
                    let mut fs = Vec::new();
                    for round in 0..args.rounds {
                        let mut req = request(&name, Mode::Batch(1024), args, round == 0);
                        req[knob] = value.into();
                        fs.push(worker.ask(&req)?);
                    }
                    let faiss_qps = median(&mut fs.iter().map(|f| f.qps).collect::<Vec<_>>());
                    rows.push(Row {
                        dim,
                        mode: "batch1024".into(),
                        biomatch: Some("flat i8 (exact)".into()),
                        faiss: label,
                        biomatch_qps: Some(biomatch_qps),
                        faiss_qps,
                        ratio: Some(biomatch_qps / faiss_qps),
                        biomatch_recall: recall,
                        faiss_recall: fs.last().and_then(|f| f.recall),
                        hits: None,
                        biomatch_bytes: Some(bytes),
                        biomatch_scan_bytes: Some(snap.scan_bytes() as u64),
                        faiss_bytes: fs.iter().find_map(|f| f.bytes),
                        biomatch_of_bandwidth: None,
                        biomatch_of_peak: None,
                    });
                    eprintln!("bench compare: {}", line(rows.last().context("a row")?));
                }
            }
        }
        worker.finish()?;
    }
    Ok(CompareReport {
        faiss_version,
        n: args.n,
        queries: args.queries,
        machine: Machine {
            cpu: super::cpu_model(),
            threads,
            bandwidth_gbps: probes.bandwidth(),
            int8_gmacs: probes.int8(),
            f32_gflops: probes.f32(),
        },
        rows,
    })
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    Single,
    Batch(usize),
    Threshold,
}

impl Mode {
    fn name(self) -> String {
        match self {
            Mode::Single => "single".into(),
            Mode::Batch(b) => format!("batch{b}"),
            Mode::Threshold => "threshold".into(),
        }
    }
}

fn request(index: &str, mode: Mode, args: &CompareArgs, bytes: bool) -> serde_json::Value {
    let mut r = serde_json::json!({"index": index, "k": K, "bytes": bytes});
    match mode {
        Mode::Single => {
            r["mode"] = "single".into();
            r["queries"] = args.single_queries.into();
        }
        Mode::Batch(b) => {
            r["mode"] = "batch".into();
            r["batch"] = b.into();
        }
        Mode::Threshold => {
            r["mode"] = "range".into();
            r["threshold"] = args.threshold.into();
        }
    }
    r
}

/// One biomatch measurement.
struct Measured {
    qps: f64,
    recall: Option<f64>,
    hits: Option<u64>,
}

struct Side<'a> {
    snap: &'a FlatSnapshot,
    queries: &'a [f32],
    dim: usize,
    gt: &'a [Vec<i64>],
}

impl Side<'_> {
    fn warm_up(&self) -> Result<()> {
        self.snap
            .search_batch(&self.queries[..self.dim * 64.min(self.gt.len())], K)?;
        Ok(())
    }

    fn measure(&self, mode: Mode, args: &CompareArgs) -> Result<Measured> {
        let nq = self.queries.len() / self.dim;
        let started = Instant::now();
        let (count, results) = match mode {
            Mode::Single => {
                let n = args.single_queries;
                let hits = self.queries[..n * self.dim]
                    .chunks(self.dim)
                    .map(|q| self.snap.search(q, K))
                    .collect::<biomatch_engine::Result<Vec<_>>>()?;
                (n, hits)
            }
            Mode::Batch(b) => {
                let mut all = Vec::with_capacity(nq);
                for chunk in self.queries.chunks(b * self.dim) {
                    all.extend(self.snap.search_batch(chunk, K)?);
                }
                (nq, all)
            }
            Mode::Threshold => {
                let mut hits = 0u64;
                for chunk in self.queries.chunks(1024 * self.dim) {
                    let found = self.snap.search_threshold_batch(chunk, args.threshold)?;
                    hits += found.iter().map(|h| h.len() as u64).sum::<u64>();
                }
                let qps = nq as f64 / started.elapsed().as_secs_f64();
                return Ok(Measured {
                    qps,
                    recall: None,
                    hits: Some(hits),
                });
            }
        };
        let qps = count as f64 / started.elapsed().as_secs_f64();
        let found: usize = results
            .iter()
            .zip(self.gt)
            .map(|(hits, gt)| hits.iter().filter(|h| gt.contains(&(h.id as i64))).count())
            .sum();
        Ok(Measured {
            qps,
            recall: Some(found as f64 / (count * K) as f64),
            hits: None,
        })
    }
}

/// Machine probes, one sample per round.
#[derive(Default)]
struct Probes {
    buffer: Vec<u64>,
    bandwidth: Vec<f64>,
    int8: Vec<f64>,
    f32: Vec<f64>,
}

impl Probes {
    fn measure(&mut self) {
        if self.buffer.is_empty() {
            self.buffer = (0..(512u64 << 20) / 8).collect();
        }
        self.bandwidth
            .push(probe::read_bandwidth_gbps(&self.buffer, 2));
        self.int8
            .push(probe::int8_mac_peak(Duration::from_millis(150)).ops_per_second / 1e9);
        self.f32
            .push(probe::f32_fma_peak(Duration::from_millis(150)).ops_per_second / 1e9);
    }

    fn bandwidth(&self) -> f64 {
        median(&mut self.bandwidth.clone())
    }

    fn int8(&self) -> f64 {
        median(&mut self.int8.clone())
    }

    fn f32(&self) -> f64 {
        median(&mut self.f32.clone())
    }
}

/// The faiss worker process.
struct Worker {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    version: String,
}

#[derive(Debug, Clone, serde::Deserialize)]
struct FaissOut {
    qps: f64,
    recall: Option<f64>,
    hits: Option<u64>,
    bytes: Option<u64>,
    build_s: f64,
}

impl Worker {
    fn start(
        args: &CompareArgs,
        dir: &Path,
        base: &Path,
        queries: &Path,
        threads: usize,
    ) -> Result<Worker> {
        let python = args
            .python
            .clone()
            .or_else(|| std::env::var_os("BIOMATCH_PYTHON").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from(".tools/py/bin/python"));
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../benches/compare/faiss_worker.py");
        let mut child = Command::new(&python)
            .arg(&script)
            .arg("--base")
            .arg(base)
            .arg("--queries")
            .arg(queries)
            .arg("--gt")
            .arg(dir.join("gt.npy"))
            .arg("--cache")
            .arg(dir)
            .arg("--threads")
            .arg(threads.to_string())
            .arg("--k")
            .arg(K.to_string())
            .arg("--nlist")
            .arg(args.nlist.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| {
                format!(
                    "starting {} (scripts/setup-faiss installs faiss-cpu and numpy)",
                    python.display()
                )
            })?;
        let stdin = child.stdin.take().context("worker stdin")?;
        let mut stdout = BufReader::new(child.stdout.take().context("worker stdout")?);
        eprintln!(
            "bench compare: {}: faiss computes the exact top {K} of every query",
            dir.display()
        );
        let mut first = String::new();
        stdout.read_line(&mut first)?;
        let ready: serde_json::Value = serde_json::from_str(&first).with_context(|| {
            format!("the faiss worker did not start (scripts/setup-faiss); it said `{first}`")
        })?;
        Ok(Worker {
            child,
            stdin,
            stdout,
            version: ready["faiss_version"].as_str().unwrap_or("?").to_string(),
        })
    }

    fn ask(&mut self, request: &serde_json::Value) -> Result<FaissOut> {
        writeln!(self.stdin, "{request}")?;
        self.stdin.flush()?;
        let mut answer = String::new();
        self.stdout.read_line(&mut answer)?;
        if answer.is_empty() {
            bail!("the faiss worker stopped (request {request})");
        }
        let out: FaissOut = serde_json::from_str(&answer)
            .with_context(|| format!("reading the faiss worker's answer `{answer}`"))?;
        if out.build_s > 0.0 {
            eprintln!(
                "bench compare: faiss built {} in {:.1} s",
                request["index"], out.build_s
            );
        }
        Ok(out)
    }

    fn finish(mut self) -> Result<()> {
        drop(self.stdin);
        let status = self.child.wait()?;
        ensure!(status.success(), "the faiss worker exited with {status}");
        Ok(())
    }
}

/// Writes (once) `base.npy` and `queries.npy`.
fn write_dataset(
    dir: &Path,
    args: &CompareArgs,
    dim: usize,
    pool: &rayon::ThreadPool,
) -> Result<(PathBuf, PathBuf)> {
    let faces = SynthFaces::new(dim, args.seed);
    let base = dir.join("base.npy");
    let queries = dir.join("queries.npy");
    let expected = |rows: usize| (super::NPY_HEADER + rows * dim * 4) as u64;
    if std::fs::metadata(&base).map(|m| m.len()).ok() != Some(expected(args.n)) {
        eprintln!(
            "bench compare: writing {} ({} × {dim})",
            base.display(),
            args.n
        );
        super::write_npy(&base, args.n, dim, |start, rows| {
            pool.install(|| {
                (start..start + rows)
                    .into_par_iter()
                    .flat_map_iter(|i| faces.capture(i, 1))
                    .collect()
            })
        })?;
    }
    if std::fs::metadata(&queries).map(|m| m.len()).ok() != Some(expected(args.queries)) {
        let mut rng = ChaCha8Rng::seed_from_u64(args.seed ^ 0xC0_4FA2E);
        let who: Vec<usize> = (0..args.queries)
            .map(|_| rng.random_range(0..args.n))
            .collect();
        super::write_npy(&queries, args.queries, dim, |start, rows| {
            who[start..start + rows]
                .iter()
                .flat_map(|&i| faces.capture(i, 2))
                .collect()
        })?;
        // A new query set needs a new ground truth.
        let _ = std::fs::remove_file(dir.join("gt.npy"));
    }
    Ok((base, queries))
}

/// biomatch's flat index of `base` (built once, reused while complete).
fn biomatch_index(
    dir: &Path,
    base: &Path,
    dim: usize,
    dtype: Dtype,
    args: &CompareArgs,
) -> Result<FlatIndex> {
    let path = dir.join(format!("biomatch-{}", dtype.name()));
    let config = FlatConfig::new(dim, dtype, Metric::Cosine);
    if path.exists() {
        if let Ok(index) = FlatIndex::open(&path, OpenOptions::default())
            && index.len() == args.n
        {
            return Ok(index);
        }
        std::fs::remove_dir_all(&path)?;
    }
    eprintln!("bench compare: building {}", path.display());
    let rows = read_npy_f32(base)?;
    let mut index = FlatIndex::create(&path, config)?;
    for (p, chunk) in rows.chunks(PIECE * dim).enumerate() {
        let ids: Vec<u64> = (0..chunk.len() / dim)
            .map(|i| (p * PIECE + i) as u64)
            .collect();
        index.append_batch(&ids, chunk)?;
    }
    index.seal()?;
    index.sync()?;
    Ok(index)
}

/// The float32 rows of a `.npy` written by [`super::write_npy`].
fn read_npy_f32(path: &Path) -> Result<Vec<f32>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let data = npy_data(&bytes, path)?;
    Ok(data
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

/// Rows of `width` int64 values from a `.npy` numpy wrote.
fn read_npy_i64(path: &Path, width: usize) -> Result<Vec<Vec<i64>>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let data = npy_data(&bytes, path)?;
    Ok(data
        .chunks_exact(8 * width)
        .map(|row| {
            row.chunks_exact(8)
                .map(|b| i64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
                .collect()
        })
        .collect())
}

fn npy_data<'a>(bytes: &'a [u8], path: &Path) -> Result<&'a [u8]> {
    ensure!(
        bytes.len() >= 10 && bytes.starts_with(b"\x93NUMPY"),
        "{} is not a .npy file",
        path.display()
    );
    let (len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        _ => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
    };
    bytes
        .get(start + len..)
        .with_context(|| format!("{} is truncated", path.display()))
}

fn line(r: &Row) -> String {
    format!(
        "d={} {} {} vs {}: {:.0} vs {:.0} q/s (×{:.2}), recall {} / {}",
        r.dim,
        r.mode,
        r.biomatch.as_deref().unwrap_or("-"),
        r.faiss,
        r.biomatch_qps.unwrap_or(f64::NAN),
        r.faiss_qps,
        r.ratio.unwrap_or(f64::NAN),
        recall(r.biomatch_recall),
        recall(r.faiss_recall),
    )
}

fn recall(r: Option<f64>) -> String {
    r.map_or("-".into(), |x| format!("{x:.4}"))
}

/// Prints the tables.
pub fn print_table(r: &CompareReport) {
    println!(
        "biomatch vs faiss {} — {} base vectors, {} queries; {} ({} threads): read {:.1} GB/s, int8 {:.0} GMAC/s, f32 {:.0} GFLOP/s",
        r.faiss_version,
        r.n,
        r.queries,
        r.machine.cpu,
        r.machine.threads,
        r.machine.bandwidth_gbps,
        r.machine.int8_gmacs,
        r.machine.f32_gflops
    );
    println!(
        "| d | mode | biomatch | faiss | biomatch q/s | faiss q/s | biomatch/faiss | recall@10 biomatch / faiss | MB biomatch (scanned) / faiss | of bandwidth / peak |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let mb = |b: Option<u64>| b.map_or("-".to_string(), |b| format!("{:.0}", b as f64 / 1e6));
    for row in &r.rows {
        let recall = match (row.biomatch_recall, row.faiss_recall, row.hits) {
            (_, _, Some([a, b])) => format!("hits {a} / {b}"),
            (a, b, _) => format!("{} / {}", recall(a), recall(b)),
        };
        let fraction = match (row.biomatch_of_bandwidth, row.biomatch_of_peak) {
            (Some(b), _) => format!("{:.0} % of bandwidth", b * 100.0),
            (_, Some(p)) => format!("{:.0} % of peak", p * 100.0),
            _ => "-".into(),
        };
        println!(
            "| {} | {} | {} | {} | {:.0} | {:.0} | {:.2}× | {} | {} ({}) / {} | {} |",
            row.dim,
            row.mode,
            row.biomatch.as_deref().unwrap_or("-"),
            row.faiss,
            row.biomatch_qps.unwrap_or(f64::NAN),
            row.faiss_qps,
            row.ratio.unwrap_or(f64::NAN),
            recall,
            mb(row.biomatch_bytes),
            mb(row.biomatch_scan_bytes),
            mb(row.faiss_bytes),
            fraction
        );
    }
}
