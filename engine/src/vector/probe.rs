//! Machine probes: memory read bandwidth and arithmetic peaks.
//!
//! Benchmarks report search speed as a fraction of what the machine can do
//! in the same run: a memory-bound scan against [`read_bandwidth_gbps`], a
//! compute-bound batch against [`int8_mac_peak`] or [`f32_fma_peak`]. The
//! probes use the widest instructions the CPU has (not the forced
//! `BIOMATCH_SIMD` backend), so the reference is the hardware's best, and
//! they run on every thread of the current rayon pool at once.
//!
//! Each probe kernel has a scalar model of its exact result, which the
//! tests compare against; that proves the loop did the work it is timed for.

use std::hint::black_box;
use std::time::{Duration, Instant};

use super::cpu_features;

/// Wrapping sum of `data`, read with the widest loads the CPU has.
pub fn read_sum(data: &[u64]) -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        let cpu = cpu_features();
        if cpu.avx512f {
            // SAFETY: AVX-512F was detected on this CPU.
            return unsafe { super::x86_64::avx512::read_sum_avx512(data) };
        }
        if cpu.avx2 {
            // SAFETY: AVX2 was detected on this CPU.
            return unsafe { super::x86_64::avx2::read_sum_avx2(data) };
        }
    }
    read_sum_scalar(data)
}

/// Reference for [`read_sum`].
pub fn read_sum_scalar(data: &[u64]) -> u64 {
    data.iter().fold(0u64, |s, &x| s.wrapping_add(x))
}

/// Read bandwidth in GB/s (10⁹ bytes per second) of the current rayon
/// pool's threads summing `data` together, best of `repeats` passes.
///
/// The buffer is split into 1 MiB pieces shared out by work stealing, the
/// way searches split their scans, so one slow thread does not stall the
/// others. `data` should be much larger than the last-level cache.
pub fn read_bandwidth_gbps(data: &[u64], repeats: usize) -> f64 {
    use rayon::prelude::*;
    const PIECE: usize = (1 << 20) / 8;
    let mut best = f64::INFINITY;
    for _ in 0..repeats.max(1) {
        let start = Instant::now();
        let sum = data
            .par_chunks(PIECE)
            .map(read_sum)
            .reduce(|| 0, u64::wrapping_add);
        black_box(sum);
        best = best.min(start.elapsed().as_secs_f64());
    }
    (data.len() * 8) as f64 / best / 1e9
}

/// An arithmetic peak measured on all threads of the current rayon pool.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ArithmeticPeak {
    /// The instruction the loop issued (e.g. `vpdpbusd zmm`).
    pub instruction: &'static str,
    /// Operations per second across all threads: int8 multiply-adds for
    /// [`int8_mac_peak`], floating-point operations (2 per FMA lane) for
    /// [`f32_fma_peak`].
    pub ops_per_second: f64,
}

/// The int8 probe loop for this CPU.
///
/// Every loop keeps `accumulators` independent chains of the instruction
/// (enough to cover its latency), each started from a different value so
/// the compiler cannot merge them.
struct Int8Probe {
    instruction: &'static str,
    accumulators: u64,
    /// Multiply-adds per instruction.
    macs: u64,
    run: fn(u64, i8, i8) -> i64,
}

fn int8_probe() -> Int8Probe {
    #[cfg(target_arch = "x86_64")]
    {
        let cpu = cpu_features();
        if cpu.avx512vnni && cpu.avx512bw {
            return Int8Probe {
                instruction: "vpdpbusd zmm",
                accumulators: 16,
                macs: 64,
                run: |n, a, b| {
                    // SAFETY: AVX-512F/BW/VNNI were detected on this CPU.
                    unsafe { super::x86_64::avx512::int8_mac_loop_vnni(n, a, b) }
                },
            };
        }
        if cpu.avx512bw {
            return Int8Probe {
                instruction: "vpmaddubsw zmm",
                accumulators: 16,
                macs: 64,
                run: |n, a, b| {
                    // SAFETY: AVX-512F/BW were detected on this CPU.
                    unsafe { super::x86_64::avx512::int8_mac_loop_avx512bw(n, a, b) }
                },
            };
        }
        if cpu.avx2 {
            return Int8Probe {
                instruction: "vpmaddubsw ymm",
                accumulators: 12,
                macs: 32,
                run: |n, a, b| {
                    // SAFETY: AVX2 was detected on this CPU.
                    unsafe { super::x86_64::avx2::int8_mac_loop_avx2(n, a, b) }
                },
            };
        }
    }
    Int8Probe {
        instruction: "scalar i32 multiply-add",
        accumulators: 1,
        macs: 1,
        run: int8_mac_loop_scalar,
    }
}

/// The int8 multiply-add peak of this CPU (multiply-adds per second).
pub fn int8_mac_peak(target: Duration) -> ArithmeticPeak {
    let probe = int8_probe();
    let ops = measure(target, probe.accumulators * probe.macs, |n| {
        black_box((probe.run)(n, black_box(1), black_box(1)));
    });
    ArithmeticPeak {
        instruction: probe.instruction,
        ops_per_second: ops,
    }
}

/// The `f32` FMA probe loop for this CPU: `accumulators` chains of
/// `x = fma(x, a, b)` over `lanes` lanes, chain `i` starting at `1 + i/1024`;
/// the loop returns the largest lane.
struct FmaProbe {
    instruction: &'static str,
    accumulators: u64,
    lanes: u64,
    run: fn(u64, f32, f32) -> f32,
}

fn fma_probe() -> FmaProbe {
    #[cfg(target_arch = "x86_64")]
    {
        let cpu = cpu_features();
        if cpu.avx512f {
            return FmaProbe {
                instruction: "vfmadd zmm",
                accumulators: 16,
                lanes: 16,
                run: |n, a, b| {
                    // SAFETY: AVX-512F was detected on this CPU.
                    unsafe { super::x86_64::avx512::fma_loop_avx512(n, a, b) }
                },
            };
        }
        if cpu.avx2 && cpu.fma {
            return FmaProbe {
                instruction: "vfmadd ymm",
                accumulators: 12,
                lanes: 8,
                run: |n, a, b| {
                    // SAFETY: AVX2 and FMA were detected on this CPU.
                    unsafe { super::x86_64::avx2::fma_loop_avx2(n, a, b) }
                },
            };
        }
    }
    FmaProbe {
        instruction: "scalar fma",
        accumulators: 1,
        lanes: 1,
        run: |n, a, b| fma_chain(n, 1.0, a, b),
    }
}

/// The `f32` fused multiply-add peak (floating-point operations per second,
/// two per FMA lane).
pub fn f32_fma_peak(target: Duration) -> ArithmeticPeak {
    let probe = fma_probe();
    let ops = measure(target, probe.accumulators * probe.lanes * 2, |n| {
        black_box((probe.run)(n, black_box(0.999), black_box(0.001)));
    });
    ArithmeticPeak {
        instruction: probe.instruction,
        ops_per_second: ops,
    }
}

/// Runs `kernel(iterations)` on every pool thread at once, sized so one run
/// lasts about `target`, and returns operations per second (best of 3).
fn measure(target: Duration, ops_per_iteration: u64, kernel: impl Fn(u64) + Sync) -> f64 {
    // Calibrate on one thread: grow until a run takes a tenth of the target.
    let mut n = 1_000u64;
    loop {
        let start = Instant::now();
        kernel(n);
        let t = start.elapsed();
        if t >= target / 10 || n >= 1 << 40 {
            let scale = target.as_secs_f64() / t.as_secs_f64().max(1e-9);
            n = ((n as f64) * scale).max(1.0) as u64;
            break;
        }
        n *= 4;
    }
    let threads = rayon::current_num_threads().max(1) as f64;
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let start = Instant::now();
        rayon::broadcast(|_| kernel(n));
        best = best.min(start.elapsed().as_secs_f64());
    }
    n as f64 * ops_per_iteration as f64 * threads / best
}

/// Exact result of this CPU's int8 probe loop, computed in scalar code: the
/// sum over accumulators and lanes (as `i64`) after `iterations` steps.
#[cfg(test)]
fn int8_mac_loop_expected(iterations: u64, a: i8, b: i8) -> i64 {
    let probe = int8_probe();
    let lanes_of = |bits: i64, lane_bits: i64| bits / lane_bits;
    match probe.instruction {
        // Accumulator i starts with every i32 lane = i and adds 4·(a as u8)·b per step.
        "vpdpbusd zmm" => (0..probe.accumulators as i32)
            .map(|i| {
                let step = 4 * i32::from(a as u8) * i32::from(b);
                let lane = i.wrapping_add(step.wrapping_mul(iterations as i32));
                lanes_of(512, 32) * i64::from(lane)
            })
            .sum(),
        // Accumulator i starts with every byte = a + i and is fed back as the unsigned operand.
        "vpmaddubsw zmm" | "vpmaddubsw ymm" => {
            let bits = if probe.instruction.ends_with("zmm") {
                512
            } else {
                256
            };
            (0..probe.accumulators as i8)
                .map(|i| {
                    lanes_of(bits, 16) * i64::from(maddubs_chain(iterations, a.wrapping_add(i), b))
                })
                .sum()
        }
        _ => int8_mac_loop_scalar(iterations, a, b),
    }
}

/// One i16 lane of `acc = vpmaddubsw(acc, b)` repeated, from bytes `(start, start)`.
#[cfg(test)]
fn maddubs_chain(iterations: u64, start: i8, b: i8) -> i16 {
    let mut v = i16::from_le_bytes([start as u8, start as u8]);
    for _ in 0..iterations {
        let [lo, hi] = v.to_le_bytes();
        let s = i32::from(lo) * i32::from(b) + i32::from(hi) * i32::from(b);
        v = s.clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16;
    }
    v
}

fn int8_mac_loop_scalar(iterations: u64, a: i8, b: i8) -> i64 {
    let mut acc = 0i32;
    for _ in 0..iterations {
        acc = black_box(acc).wrapping_add(i32::from(a) * i32::from(b));
    }
    i64::from(acc)
}

/// Exact result of this CPU's FMA probe loop: the largest chain value.
#[cfg(test)]
fn fma_loop_expected(iterations: u64, a: f32, b: f32) -> f32 {
    let probe = fma_probe();
    (0..probe.accumulators)
        .map(|i| fma_chain(iterations, 1.0 + i as f32 / 1024.0, a, b))
        .fold(f32::NEG_INFINITY, f32::max)
}

fn fma_chain(iterations: u64, start: f32, a: f32, b: f32) -> f32 {
    let mut x = start;
    for _ in 0..iterations {
        x = x.mul_add(a, b);
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_sum_matches_scalar_on_ragged_lengths() {
        for len in [
            0usize, 1, 7, 8, 15, 16, 31, 32, 63, 64, 127, 128, 257, 513, 4099,
        ] {
            let data: Vec<u64> = (0..len as u64)
                .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15))
                .collect();
            assert_eq!(read_sum(&data), read_sum_scalar(&data), "len {len}");
        }
    }

    #[test]
    fn int8_probe_loop_does_the_work_it_is_timed_for() {
        let probe = int8_probe();
        for (n, a, b) in [(0, 1, 1), (1, 1, 1), (37, 3, -2), (1000, -5, 7)] {
            assert_eq!(
                (probe.run)(n, a, b),
                int8_mac_loop_expected(n, a, b),
                "n={n} a={a} b={b}"
            );
        }
    }

    #[test]
    fn fma_probe_loop_does_the_work_it_is_timed_for() {
        let probe = fma_probe();
        for n in [0, 1, 100, 12_345] {
            assert_eq!(
                (probe.run)(n, 0.999, 0.001),
                fma_loop_expected(n, 0.999, 0.001)
            );
        }
    }

    #[test]
    fn peaks_and_bandwidth_are_positive() {
        let peak = int8_mac_peak(Duration::from_millis(5));
        assert!(peak.ops_per_second > 0.0, "{peak:?}");
        let peak = f32_fma_peak(Duration::from_millis(5));
        assert!(peak.ops_per_second > 0.0, "{peak:?}");
        let data = vec![1u64; 1 << 16];
        assert!(read_bandwidth_gbps(&data, 2) > 0.0);
    }
}
