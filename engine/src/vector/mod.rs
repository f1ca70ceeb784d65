//! Similarity kernels: inner product and squared L2 over `f32`, `f16` and
//! `i8` vectors, for single pairs and for batches of queries against a
//! block of rows.
//!
//! # Backends
//!
//! Every kernel exists once per backend: [`scalar`] (plain safe Rust, the
//! parity baseline every other backend is tested against), AVX2+FMA+F16C,
//! AVX-512 (F/BW/VL) and AVX-512 with VNNI. The CPU is probed once; the best
//! backend it supports is chosen unless `BIOMATCH_SIMD` names one
//! (`scalar`, `avx2`, `avx512`, `avx512vnni`). Naming a backend the CPU
//! lacks is an error ([`init`]), never a silent fallback.
//!
//! The safe entry point is [`Kernels`]: a value of it can only be made for a
//! backend the CPU supports, and every method checks its slice lengths before
//! any `unsafe` code runs. The free functions ([`dot_f32`], …) use the
//! process-wide active backend.
//!
//! # Pair kernels and block kernels
//!
//! Pair kernels (`dot_f32(a, b)`) take two row-major vectors and sum with
//! several SIMD accumulators; they are within a proven error bound of the
//! exact result but their rounding differs between backends.
//!
//! Block kernels (`block_dot_f32(queries, dim, block, out)`) score many
//! queries against one [`layout`] block of [`BLOCK_ROWS`] rows stored
//! column-blocked, which lets every SIMD lane hold a different row: no
//! horizontal reductions, and each score is one sequential fused
//! multiply-add chain over the dimensions. That makes block scores
//! **bit-identical across backends and across batch sizes**: the index
//! returns the same score for a row whether it was found by a single query,
//! a batch or a re-scoring pass, on any CPU with FMA. Integer kernels are
//! exact everywhere.

pub mod layout;
pub mod probe;
pub mod quant;
pub mod scalar;

#[cfg(target_arch = "x86_64")]
pub(crate) mod x86_64;

use std::fmt;
use std::sync::OnceLock;

pub use half::f16;
pub use layout::BLOCK_ROWS;

use crate::error::{Error, Result};

/// Largest vector length accepted by the kernels.
///
/// Bounds the integer kernels' accumulators: with `|code| ≤ 128` an `i8`
/// squared distance is at most `255² · 32768 < 2³¹`.
pub const MAX_DIM: usize = 32_768;

/// How an index stores and scans vectors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dtype {
    /// 32-bit floats: scanned scores are exact.
    F32,
    /// IEEE half precision: half the bytes to scan; results re-scored exactly.
    F16,
    /// Symmetric int8 codes with one scale per vector: a quarter of the bytes;
    /// results re-scored exactly.
    I8,
}

impl Dtype {
    /// All storage types.
    pub const ALL: [Dtype; 3] = [Dtype::F32, Dtype::F16, Dtype::I8];

    /// Name as used in configuration and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Dtype::F32 => "f32",
            Dtype::F16 => "f16",
            Dtype::I8 => "i8",
        }
    }

    /// Parses `f32`, `f16` or `i8`.
    pub fn parse(s: &str) -> Result<Dtype> {
        Dtype::ALL
            .into_iter()
            .find(|d| d.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| Error::invalid("dtype", format!("`{s}`: expected f32, f16 or i8")))
    }

    /// On-disk code.
    pub fn code(self) -> u8 {
        match self {
            Dtype::F32 => 0,
            Dtype::F16 => 1,
            Dtype::I8 => 2,
        }
    }

    /// Inverse of [`Dtype::code`].
    pub fn from_code(code: u8) -> Option<Dtype> {
        Dtype::ALL.into_iter().find(|d| d.code() == code)
    }

    /// Bytes of one stored block of [`BLOCK_ROWS`] rows of dimension `dim`.
    pub fn block_bytes(self, dim: usize) -> usize {
        match self {
            Dtype::F32 => layout::block_len(dim) * 4,
            Dtype::F16 => layout::block_len(dim) * 2,
            Dtype::I8 => layout::block_len_i8(dim),
        }
    }

    /// Bytes a scan reads per row (the scanned codes only).
    pub fn bytes_per_row(self, dim: usize) -> usize {
        self.block_bytes(dim) / BLOCK_ROWS
    }
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How two vectors are compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Inner product of L2-normalised vectors; vectors are normalised on the
    /// way in. Scores in `[-1, 1]`, higher is more similar.
    Cosine,
    /// Raw inner product; higher is more similar.
    InnerProduct,
    /// Squared Euclidean distance; lower is more similar.
    L2,
}

impl Metric {
    /// All metrics.
    pub const ALL: [Metric; 3] = [Metric::Cosine, Metric::InnerProduct, Metric::L2];

    /// Name as used in configuration.
    pub fn name(self) -> &'static str {
        match self {
            Metric::Cosine => "cosine",
            Metric::InnerProduct => "inner_product",
            Metric::L2 => "l2",
        }
    }

    /// Parses `cosine`, `inner_product` (or `ip`) or `l2`.
    pub fn parse(s: &str) -> Result<Metric> {
        let s = s.trim().to_ascii_lowercase();
        if s == "ip" {
            return Ok(Metric::InnerProduct);
        }
        Metric::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| {
                Error::invalid(
                    "metric",
                    format!("`{s}`: expected cosine, inner_product or l2"),
                )
            })
    }

    /// On-disk code.
    pub fn code(self) -> u8 {
        match self {
            Metric::Cosine => 0,
            Metric::InnerProduct => 1,
            Metric::L2 => 2,
        }
    }

    /// Inverse of [`Metric::code`].
    pub fn from_code(code: u8) -> Option<Metric> {
        Metric::ALL.into_iter().find(|m| m.code() == code)
    }

    /// Whether larger scores are better (similarities) or smaller (distances).
    pub fn higher_is_better(self) -> bool {
        !matches!(self, Metric::L2)
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A kernel implementation family, in the order the dispatcher prefers them
/// (best first in [`Backend::PREFERENCE`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Backend {
    /// Portable safe Rust; the reference every other backend is tested against.
    Scalar,
    /// x86-64 AVX2 with FMA and F16C.
    Avx2,
    /// x86-64 AVX-512 F/BW/VL (plus AVX2/FMA/F16C), int8 via 16-bit multiply-adds.
    Avx512,
    /// AVX-512 with VNNI: int8 dot products with `vpdpbusd`.
    Avx512Vnni,
}

impl Backend {
    /// All backends, best first: the dispatcher takes the first the CPU supports.
    pub const PREFERENCE: [Backend; 4] = [
        Backend::Avx512Vnni,
        Backend::Avx512,
        Backend::Avx2,
        Backend::Scalar,
    ];

    /// Stable name, as accepted by `BIOMATCH_SIMD` and reported in logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Scalar => "scalar",
            Backend::Avx2 => "avx2",
            Backend::Avx512 => "avx512",
            Backend::Avx512Vnni => "avx512vnni",
        }
    }

    /// Parses a backend name (case-insensitive).
    pub fn parse(name: &str) -> Result<Backend> {
        let wanted = name.trim().to_ascii_lowercase();
        Backend::PREFERENCE
            .into_iter()
            .find(|b| b.name() == wanted)
            .ok_or_else(|| Error::UnsupportedBackend {
                requested: name.to_string(),
                reason: format!(
                    "unknown backend; expected one of {}",
                    Backend::PREFERENCE.map(Backend::name).join(", ")
                ),
            })
    }

    /// CPU features this backend needs (names as in `/proc/cpuinfo`-style
    /// `is_x86_feature_detected!`).
    pub fn required_features(self) -> &'static [&'static str] {
        match self {
            Backend::Scalar => &[],
            Backend::Avx2 => &["avx2", "fma", "f16c"],
            Backend::Avx512 => &["avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl"],
            Backend::Avx512Vnni => &[
                "avx2",
                "fma",
                "f16c",
                "avx512f",
                "avx512bw",
                "avx512vl",
                "avx512vnni",
            ],
        }
    }

    /// Features this backend needs that the running CPU lacks (empty: supported).
    pub fn missing_features(self) -> Vec<&'static str> {
        self.missing_features_on(&cpu_features())
    }

    /// Features this backend needs that `cpu` lacks.
    pub fn missing_features_on(self, cpu: &CpuFeatures) -> Vec<&'static str> {
        self.required_features()
            .iter()
            .copied()
            .filter(|f| !cpu.has(f))
            .collect()
    }

    /// Whether the running CPU can execute this backend.
    pub fn is_supported(self) -> bool {
        self.missing_features().is_empty()
    }

    /// The best backend the running CPU supports.
    pub fn detect() -> Backend {
        Backend::detect_on(&cpu_features())
    }

    /// The best backend `cpu` supports.
    pub fn detect_on(cpu: &CpuFeatures) -> Backend {
        Backend::PREFERENCE
            .into_iter()
            .find(|b| b.missing_features_on(cpu).is_empty())
            .unwrap_or(Backend::Scalar)
    }

    /// The backend to use given an optional request (the value of `BIOMATCH_SIMD`).
    ///
    /// `None` or an empty string selects [`Backend::detect`]; a name selects
    /// that backend if the CPU supports it and is an error otherwise.
    pub fn select(requested: Option<&str>) -> Result<Backend> {
        Backend::select_on(requested, &cpu_features())
    }

    /// [`Backend::select`] for a given CPU.
    pub fn select_on(requested: Option<&str>, cpu: &CpuFeatures) -> Result<Backend> {
        let Some(name) = requested.map(str::trim).filter(|s| !s.is_empty()) else {
            return Ok(Backend::detect_on(cpu));
        };
        let backend = Backend::parse(name)?;
        let missing = backend.missing_features_on(cpu);
        if missing.is_empty() {
            return Ok(backend);
        }
        let supported: Vec<&str> = Backend::PREFERENCE
            .into_iter()
            .filter(|b| b.missing_features_on(cpu).is_empty())
            .map(Backend::name)
            .collect();
        Err(Error::UnsupportedBackend {
            requested: name.to_string(),
            reason: format!(
                "this CPU lacks {}; supported here: {}",
                missing.join(", "),
                supported.join(", ")
            ),
        })
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The CPU features the kernels care about, probed once.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuFeatures {
    /// AVX2 integer and float 256-bit vectors.
    pub avx2: bool,
    /// Fused multiply-add.
    pub fma: bool,
    /// Half-precision conversions.
    pub f16c: bool,
    /// AVX-512 foundation.
    pub avx512f: bool,
    /// AVX-512 byte and word instructions.
    pub avx512bw: bool,
    /// AVX-512 on 128/256-bit vectors.
    pub avx512vl: bool,
    /// AVX-512 vector neural network instructions (`vpdpbusd`).
    pub avx512vnni: bool,
}

impl CpuFeatures {
    fn probe() -> CpuFeatures {
        #[cfg(target_arch = "x86_64")]
        {
            CpuFeatures {
                avx2: std::arch::is_x86_feature_detected!("avx2"),
                fma: std::arch::is_x86_feature_detected!("fma"),
                f16c: std::arch::is_x86_feature_detected!("f16c"),
                avx512f: std::arch::is_x86_feature_detected!("avx512f"),
                avx512bw: std::arch::is_x86_feature_detected!("avx512bw"),
                avx512vl: std::arch::is_x86_feature_detected!("avx512vl"),
                avx512vnni: std::arch::is_x86_feature_detected!("avx512vnni"),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            CpuFeatures::default()
        }
    }

    /// Whether the named feature is present.
    pub fn has(&self, feature: &str) -> bool {
        match feature {
            "avx2" => self.avx2,
            "fma" => self.fma,
            "f16c" => self.f16c,
            "avx512f" => self.avx512f,
            "avx512bw" => self.avx512bw,
            "avx512vl" => self.avx512vl,
            "avx512vnni" => self.avx512vnni,
            _ => false,
        }
    }
}

/// The running CPU's features (probed on first call, then cached).
pub fn cpu_features() -> CpuFeatures {
    static FEATURES: OnceLock<CpuFeatures> = OnceLock::new();
    *FEATURES.get_or_init(CpuFeatures::probe)
}

static ACTIVE: OnceLock<Kernels> = OnceLock::new();

/// Chooses the process-wide backend from `BIOMATCH_SIMD` (or CPU detection).
///
/// Call this at start-up to turn a bad `BIOMATCH_SIMD` into a clean error.
/// Idempotent: later calls return the backend chosen first.
pub fn init() -> Result<Kernels> {
    if let Some(k) = ACTIVE.get() {
        return Ok(*k);
    }
    let requested = std::env::var("BIOMATCH_SIMD").ok();
    let backend = Backend::select(requested.as_deref())?;
    let kernels = Kernels::new(backend)?;
    Ok(*ACTIVE.get_or_init(|| kernels))
}

/// The process-wide kernels.
///
/// # Panics
///
/// If `BIOMATCH_SIMD` names a backend that is unknown or unsupported by this
/// CPU and [`init`] was not called first to report it.
pub fn kernels() -> Kernels {
    match init() {
        Ok(k) => k,
        Err(e) => panic!("{e} (unset BIOMATCH_SIMD or pick a supported backend)"),
    }
}

/// Name of the active backend, for logs and metrics.
pub fn backend_name() -> &'static str {
    kernels().backend().name()
}

/// A handle to one backend's kernels.
///
/// Invariant: the backend is supported by the running CPU (checked in
/// [`Kernels::new`]). This is what makes the methods safe: they check slice
/// lengths, then call the backend's `#[target_feature]` functions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kernels {
    backend: Backend,
}

/// Dispatches `$method(args)` to the backend's implementation.
macro_rules! dispatch {
    ($self:ident, $scalar:path, $avx2:path, $avx512:path, $vnni:path, ($($arg:expr),*)) => {
        match $self.backend {
            Backend::Scalar => $scalar($($arg),*),
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `Kernels::new` verified the CPU has AVX2, FMA and F16C.
            Backend::Avx2 => unsafe { $avx2($($arg),*) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `Kernels::new` verified the CPU has AVX-512 F/BW/VL, AVX2, FMA, F16C.
            Backend::Avx512 => unsafe { $avx512($($arg),*) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `Kernels::new` verified the CPU has the AVX-512 set plus VNNI.
            Backend::Avx512Vnni => unsafe { $vnni($($arg),*) },
            #[cfg(not(target_arch = "x86_64"))]
            _ => unreachable!("Kernels::new only admits supported backends"),
        }
    };
}

#[cfg(target_arch = "x86_64")]
use x86_64::{avx2, avx512};

impl Kernels {
    /// Kernels of `backend`, if the running CPU supports it.
    pub fn new(backend: Backend) -> Result<Kernels> {
        let missing = backend.missing_features();
        if missing.is_empty() {
            Ok(Kernels { backend })
        } else {
            Err(Error::UnsupportedBackend {
                requested: backend.name().to_string(),
                reason: format!("this CPU lacks {}", missing.join(", ")),
            })
        }
    }

    /// The reference kernels (always available).
    pub fn scalar() -> Kernels {
        Kernels {
            backend: Backend::Scalar,
        }
    }

    /// Kernels for every backend this CPU supports, best first.
    pub fn available() -> Vec<Kernels> {
        Backend::PREFERENCE
            .into_iter()
            .filter_map(|b| Kernels::new(b).ok())
            .collect()
    }

    /// Which backend these kernels run.
    pub fn backend(self) -> Backend {
        self.backend
    }

    /// Inner product of two `f32` vectors.
    ///
    /// # Panics
    /// If `a.len() != b.len()` or the length exceeds [`MAX_DIM`].
    pub fn dot_f32(self, a: &[f32], b: &[f32]) -> f32 {
        check_pair(a.len(), b.len());
        #[cfg(target_arch = "x86_64")]
        {
            dispatch!(
                self,
                scalar::dot_f32_scalar,
                avx2::dot_f32_avx2,
                avx512::dot_f32_avx512,
                avx512::dot_f32_avx512,
                (a, b)
            )
        }
        #[cfg(not(target_arch = "x86_64"))]
        scalar::dot_f32_scalar(a, b)
    }

    /// Squared Euclidean distance of two `f32` vectors.
    ///
    /// # Panics
    /// If `a.len() != b.len()` or the length exceeds [`MAX_DIM`].
    pub fn l2sq_f32(self, a: &[f32], b: &[f32]) -> f32 {
        check_pair(a.len(), b.len());
        #[cfg(target_arch = "x86_64")]
        {
            dispatch!(
                self,
                scalar::l2sq_f32_scalar,
                avx2::l2sq_f32_avx2,
                avx512::l2sq_f32_avx512,
                avx512::l2sq_f32_avx512,
                (a, b)
            )
        }
        #[cfg(not(target_arch = "x86_64"))]
        scalar::l2sq_f32_scalar(a, b)
    }

    /// Inner product of two `f16` vectors, accumulated in `f32`.
    ///
    /// # Panics
    /// If `a.len() != b.len()` or the length exceeds [`MAX_DIM`].
    pub fn dot_f16(self, a: &[f16], b: &[f16]) -> f32 {
        check_pair(a.len(), b.len());
        #[cfg(target_arch = "x86_64")]
        {
            dispatch!(
                self,
                scalar::dot_f16_scalar,
                avx2::dot_f16_avx2,
                avx512::dot_f16_avx512,
                avx512::dot_f16_avx512,
                (a, b)
            )
        }
        #[cfg(not(target_arch = "x86_64"))]
        scalar::dot_f16_scalar(a, b)
    }

    /// Squared Euclidean distance of two `f16` vectors, accumulated in `f32`.
    ///
    /// # Panics
    /// If `a.len() != b.len()` or the length exceeds [`MAX_DIM`].
    pub fn l2sq_f16(self, a: &[f16], b: &[f16]) -> f32 {
        check_pair(a.len(), b.len());
        #[cfg(target_arch = "x86_64")]
        {
            dispatch!(
                self,
                scalar::l2sq_f16_scalar,
                avx2::l2sq_f16_avx2,
                avx512::l2sq_f16_avx512,
                avx512::l2sq_f16_avx512,
                (a, b)
            )
        }
        #[cfg(not(target_arch = "x86_64"))]
        scalar::l2sq_f16_scalar(a, b)
    }

    /// Exact inner product of two `i8` vectors.
    ///
    /// # Panics
    /// If `a.len() != b.len()` or the length exceeds [`MAX_DIM`].
    pub fn dot_i8(self, a: &[i8], b: &[i8]) -> i32 {
        check_pair(a.len(), b.len());
        #[cfg(target_arch = "x86_64")]
        {
            dispatch!(
                self,
                scalar::dot_i8_scalar,
                avx2::dot_i8_avx2,
                avx512::dot_i8_avx512bw,
                avx512::dot_i8_avx512vnni,
                (a, b)
            )
        }
        #[cfg(not(target_arch = "x86_64"))]
        scalar::dot_i8_scalar(a, b)
    }

    /// Exact squared Euclidean distance of two `i8` vectors.
    ///
    /// # Panics
    /// If `a.len() != b.len()` or the length exceeds [`MAX_DIM`].
    pub fn l2sq_i8(self, a: &[i8], b: &[i8]) -> i32 {
        check_pair(a.len(), b.len());
        #[cfg(target_arch = "x86_64")]
        {
            dispatch!(
                self,
                scalar::l2sq_i8_scalar,
                avx2::l2sq_i8_avx2,
                avx512::l2sq_i8_avx512bw,
                avx512::l2sq_i8_avx512vnni,
                (a, b)
            )
        }
        #[cfg(not(target_arch = "x86_64"))]
        scalar::l2sq_i8_scalar(a, b)
    }

    /// Inner products of `queries` (row-major, `dim` each) with the
    /// [`BLOCK_ROWS`] rows of one `f32` block (see [`layout`]).
    ///
    /// `out[q * BLOCK_ROWS + r]` receives the score of query `q` and row `r`:
    /// `acc = fma(q[k], row[k], acc)` for `k = 0..dim`, starting at `0.0`.
    /// Bit-identical across backends.
    ///
    /// # Panics
    /// If `dim` is 0 or above [`MAX_DIM`], `queries.len()` is not a multiple of
    /// `dim`, `block.len() != dim * BLOCK_ROWS`, or
    /// `out.len() != queries.len() / dim * BLOCK_ROWS`.
    pub fn block_dot_f32(self, queries: &[f32], dim: usize, block: &[f32], out: &mut [f32]) {
        check_block(
            queries.len(),
            dim,
            dim,
            block.len(),
            layout::block_len(dim),
            out.len(),
        );
        #[cfg(target_arch = "x86_64")]
        {
            dispatch!(
                self,
                scalar::block_dot_f32_scalar,
                avx2::block_dot_f32_avx2,
                avx512::block_dot_f32_avx512,
                avx512::block_dot_f32_avx512,
                (queries, dim, block, out)
            )
        }
        #[cfg(not(target_arch = "x86_64"))]
        scalar::block_dot_f32_scalar(queries, dim, block, out)
    }

    /// Squared L2 distances of `queries` to the rows of one `f32` block:
    /// `acc = fma(d, d, acc)` with `d = row[k] - q[k]`. Bit-identical across
    /// backends.
    ///
    /// # Panics
    /// As [`Kernels::block_dot_f32`].
    pub fn block_l2sq_f32(self, queries: &[f32], dim: usize, block: &[f32], out: &mut [f32]) {
        check_block(
            queries.len(),
            dim,
            dim,
            block.len(),
            layout::block_len(dim),
            out.len(),
        );
        #[cfg(target_arch = "x86_64")]
        {
            dispatch!(
                self,
                scalar::block_l2sq_f32_scalar,
                avx2::block_l2sq_f32_avx2,
                avx512::block_l2sq_f32_avx512,
                avx512::block_l2sq_f32_avx512,
                (queries, dim, block, out)
            )
        }
        #[cfg(not(target_arch = "x86_64"))]
        scalar::block_l2sq_f32_scalar(queries, dim, block, out)
    }

    /// Inner products of `f32` queries with the rows of one `f16` block; rows
    /// are widened exactly to `f32`, then as [`Kernels::block_dot_f32`].
    ///
    /// # Panics
    /// As [`Kernels::block_dot_f32`].
    pub fn block_dot_f16(self, queries: &[f32], dim: usize, block: &[f16], out: &mut [f32]) {
        check_block(
            queries.len(),
            dim,
            dim,
            block.len(),
            layout::block_len(dim),
            out.len(),
        );
        #[cfg(target_arch = "x86_64")]
        {
            dispatch!(
                self,
                scalar::block_dot_f16_scalar,
                avx2::block_dot_f16_avx2,
                avx512::block_dot_f16_avx512,
                avx512::block_dot_f16_avx512,
                (queries, dim, block, out)
            )
        }
        #[cfg(not(target_arch = "x86_64"))]
        scalar::block_dot_f16_scalar(queries, dim, block, out)
    }

    /// Squared L2 distances of `f32` queries to the rows of one `f16` block.
    ///
    /// # Panics
    /// As [`Kernels::block_dot_f32`].
    pub fn block_l2sq_f16(self, queries: &[f32], dim: usize, block: &[f16], out: &mut [f32]) {
        check_block(
            queries.len(),
            dim,
            dim,
            block.len(),
            layout::block_len(dim),
            out.len(),
        );
        #[cfg(target_arch = "x86_64")]
        {
            dispatch!(
                self,
                scalar::block_l2sq_f16_scalar,
                avx2::block_l2sq_f16_avx2,
                avx512::block_l2sq_f16_avx512,
                avx512::block_l2sq_f16_avx512,
                (queries, dim, block, out)
            )
        }
        #[cfg(not(target_arch = "x86_64"))]
        scalar::block_l2sq_f16_scalar(queries, dim, block, out)
    }

    /// Exact inner products of `i8` queries with the rows of one `i8` block.
    ///
    /// Queries are row-major with [`layout::padded_dim_i8`]`(dim)` codes each
    /// (zero padded); the block is in the layout of [`layout::pack_i8`].
    ///
    /// # Panics
    /// If `dim` is 0 or above [`MAX_DIM`], `queries.len()` is not a multiple of
    /// the padded dimension, `block.len() != padded_dim * BLOCK_ROWS`, or `out`
    /// does not hold `BLOCK_ROWS` scores per query.
    pub fn block_dot_i8(self, queries: &[i8], dim: usize, block: &[u8], out: &mut [i32]) {
        let pdim = layout::padded_dim_i8(dim);
        check_block(
            queries.len(),
            dim,
            pdim,
            block.len(),
            layout::block_len_i8(dim),
            out.len(),
        );
        #[cfg(target_arch = "x86_64")]
        {
            dispatch!(
                self,
                scalar::block_dot_i8_scalar,
                avx2::block_dot_i8_avx2,
                avx512::block_dot_i8_avx512bw,
                avx512::block_dot_i8_avx512vnni,
                (queries, pdim, block, out)
            )
        }
        #[cfg(not(target_arch = "x86_64"))]
        scalar::block_dot_i8_scalar(queries, pdim, block, out)
    }

    /// Exact squared L2 distances of `i8` queries to the rows of one `i8`
    /// block, through the integer identity `‖q − r‖² = ‖q‖² + ‖r‖² − 2 q·r`.
    ///
    /// `row_sqnorms[r]` must be `Σ code²` of row `r` (as stored next to the
    /// block by the index; see [`layout::sqnorm_i8`]).
    ///
    /// # Panics
    /// As [`Kernels::block_dot_i8`], or if `row_sqnorms.len() != BLOCK_ROWS`.
    pub fn block_l2sq_i8(
        self,
        queries: &[i8],
        dim: usize,
        block: &[u8],
        row_sqnorms: &[i32],
        out: &mut [i32],
    ) {
        assert_eq!(
            row_sqnorms.len(),
            BLOCK_ROWS,
            "one squared norm per block row"
        );
        self.block_dot_i8(queries, dim, block, out);
        let pdim = layout::padded_dim_i8(dim);
        for (q, scores) in queries
            .chunks_exact(pdim)
            .zip(out.chunks_exact_mut(BLOCK_ROWS))
        {
            let qn = layout::sqnorm_i8(q);
            for (s, &rn) in scores.iter_mut().zip(row_sqnorms) {
                *s = qn + rn - 2 * *s;
            }
        }
    }
}

impl Kernels {
    /// Scores of one query against row-major rows with exactly the
    /// semantics of [`Kernels::block_dot_f32`] (one sequential FMA chain per
    /// row): a row scores bit-identically here and in a block. Re-scoring
    /// uses it to reach the exact `f32` score of a candidate without
    /// packing it into a block.
    ///
    /// # Panics
    /// If `out.len() != rows.len()`, a row's length differs from the
    /// query's, or the length is 0 or above [`MAX_DIM`].
    pub fn rows_dot_f32(self, query: &[f32], rows: &[&[f32]], out: &mut [f32]) {
        check_rows(query, rows, out.len());
        #[cfg(target_arch = "x86_64")]
        {
            dispatch!(
                self,
                scalar::rows_dot_f32_scalar,
                avx2::rows_dot_f32_fma,
                avx2::rows_dot_f32_fma,
                avx2::rows_dot_f32_fma,
                (query, rows, out)
            )
        }
        #[cfg(not(target_arch = "x86_64"))]
        scalar::rows_dot_f32_scalar(query, rows, out)
    }

    /// Squared L2 counterpart of [`Kernels::rows_dot_f32`], bit-identical
    /// to [`Kernels::block_l2sq_f32`].
    ///
    /// # Panics
    /// As [`Kernels::rows_dot_f32`].
    pub fn rows_l2sq_f32(self, query: &[f32], rows: &[&[f32]], out: &mut [f32]) {
        check_rows(query, rows, out.len());
        #[cfg(target_arch = "x86_64")]
        {
            dispatch!(
                self,
                scalar::rows_l2sq_f32_scalar,
                avx2::rows_l2sq_f32_fma,
                avx2::rows_l2sq_f32_fma,
                avx2::rows_l2sq_f32_fma,
                (query, rows, out)
            )
        }
        #[cfg(not(target_arch = "x86_64"))]
        scalar::rows_l2sq_f32_scalar(query, rows, out)
    }

    /// Which of a block's 128 keys reach `threshold`: bit `r` is set iff
    /// `keys[r] >= threshold`. NaN keys never qualify. Searches use it to
    /// skip blocks and rows that cannot enter a result.
    pub fn mask_ge(self, keys: &[f32; BLOCK_ROWS], threshold: f32) -> u128 {
        #[cfg(target_arch = "x86_64")]
        {
            dispatch!(
                self,
                scalar::mask_ge_scalar,
                avx2::mask_ge_avx2,
                avx512::mask_ge_avx512,
                avx512::mask_ge_avx512,
                (keys, threshold)
            )
        }
        #[cfg(not(target_arch = "x86_64"))]
        scalar::mask_ge_scalar(keys, threshold)
    }
}

/// Pair-kernel preconditions, checked before any `unsafe` code.
fn check_pair(a: usize, b: usize) {
    assert_eq!(a, b, "vector lengths differ");
    assert!(
        a <= MAX_DIM,
        "vector length {a} exceeds MAX_DIM ({MAX_DIM})"
    );
}

/// Row re-scoring preconditions, checked before any `unsafe` code.
fn check_rows(query: &[f32], rows: &[&[f32]], out: usize) {
    assert!(
        (1..=MAX_DIM).contains(&query.len()),
        "dimension {} outside 1..={MAX_DIM}",
        query.len()
    );
    assert_eq!(out, rows.len(), "output length");
    assert!(
        rows.iter().all(|r| r.len() == query.len()),
        "row length differs from the query's"
    );
}

/// Block-kernel preconditions, checked before any `unsafe` code.
///
/// `qdim` is the per-query stride (the padded dimension for `i8`),
/// `block_len` the length a block of this dimension must have.
fn check_block(
    queries: usize,
    dim: usize,
    qdim: usize,
    block: usize,
    block_len: usize,
    out: usize,
) {
    assert!(
        (1..=MAX_DIM).contains(&dim),
        "dimension {dim} outside 1..={MAX_DIM}"
    );
    assert!(
        queries.is_multiple_of(qdim),
        "queries are not a whole number of vectors"
    );
    assert_eq!(block, block_len, "block length");
    assert_eq!(out, queries / qdim * BLOCK_ROWS, "output length");
}

/// Inner product with the active backend. See [`Kernels::dot_f32`].
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    kernels().dot_f32(a, b)
}

/// Squared L2 distance with the active backend. See [`Kernels::l2sq_f32`].
pub fn l2sq_f32(a: &[f32], b: &[f32]) -> f32 {
    kernels().l2sq_f32(a, b)
}

/// Inner product of `f16` vectors with the active backend. See [`Kernels::dot_f16`].
pub fn dot_f16(a: &[f16], b: &[f16]) -> f32 {
    kernels().dot_f16(a, b)
}

/// Squared L2 distance of `f16` vectors with the active backend.
pub fn l2sq_f16(a: &[f16], b: &[f16]) -> f32 {
    kernels().l2sq_f16(a, b)
}

/// Exact `i8` inner product with the active backend. See [`Kernels::dot_i8`].
pub fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    kernels().dot_i8(a, b)
}

/// Exact `i8` squared L2 distance with the active backend.
pub fn l2sq_i8(a: &[i8], b: &[i8]) -> i32 {
    kernels().l2sq_i8(a, b)
}

#[cfg(test)]
mod tests;
