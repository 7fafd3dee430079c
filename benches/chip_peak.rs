//! The chip's own ceilings, measured: how many fp32 FMAs (AVX-512F, else AVX2) and int8
//! multiply-adds (AVX512-VNNI `vpdpbusd`) the cores run per second when they do nothing else —
//! 12 independent accumulators per thread, all threads at once, no memory traffic. The
//! benchmarks hold frostline's kernels against these, so a figure such as "the int8 products run
//! at 88 % of the chip" is measured in the same run, never assumed from a data sheet. Prints one
//! JSON object on stdout:
//!
//!     cargo bench --bench chip_peak -- [THREADS]
//!
//! Fields absent where the CPU lacks the instruction.

use std::sync::Barrier;
use std::time::Instant;

use frostline::nn::gemm::Cpu;

mod common;

/// Instructions per accumulator per timed run: long enough (~0.3 s) to ride out a time slice.
const ROUNDS: u64 = 100_000_000;

fn main() {
    let (threads, mut out) = common::threads_and_header();
    let cpu = Cpu::get();
    #[cfg(target_arch = "x86_64")]
    {
        if cpu.avx512f {
            // 12 zmm FMAs of 16 lanes, 2 flops each, per round.
            let s = best_of(3, threads, || unsafe { fma_avx512(ROUNDS) });
            out["fp32_fma_gflops"] = rate(threads, 12.0 * 16.0 * 2.0, s);
            out["fp32_fma_isa"] = "AVX-512F".into();
        } else if cpu.avx2_fma {
            let s = best_of(3, threads, || unsafe { fma_avx2(ROUNDS) });
            out["fp32_fma_gflops"] = rate(threads, 12.0 * 8.0 * 2.0, s);
            out["fp32_fma_isa"] = "AVX2 FMA".into();
        }
        if cpu.avx512f && cpu.avx512_vnni {
            // 12 zmm vpdpbusd of 16 lanes × 4 byte products per round.
            let s = best_of(3, threads, || unsafe { vnni_avx512(ROUNDS) });
            out["int8_vnni_gmacs"] = rate(threads, 12.0 * 64.0, s);
        }
    }
    println!("{out}");
}

/// G operations per second of `threads` threads that each ran ROUNDS rounds of `per_round`.
fn rate(threads: usize, per_round: f64, seconds: f64) -> serde_json::Value {
    let r = threads as f64 * ROUNDS as f64 * per_round / seconds / 1e9;
    serde_json::json!((r * 10.0).round() / 10.0)
}

/// The shortest wall time, over `tries`, of `threads` threads running `f` at once.
fn best_of(tries: usize, threads: usize, f: impl Fn() -> f32 + Sync) -> f64 {
    (0..tries)
        .map(|_| {
            let start = Barrier::new(threads + 1);
            std::thread::scope(|s| {
                let workers: Vec<_> = (0..threads)
                    .map(|_| {
                        s.spawn(|| {
                            start.wait();
                            std::hint::black_box(f());
                        })
                    })
                    .collect();
                start.wait();
                let t = Instant::now();
                for w in workers {
                    w.join().expect("a peak thread panicked");
                }
                t.elapsed().as_secs_f64()
            })
        })
        .fold(f64::INFINITY, f64::min)
}

/// 12 independent FMA chains; their sum, so none is dead code.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn fma_avx512(rounds: u64) -> f32 {
    use std::arch::x86_64::*;
    let a = _mm512_set1_ps(std::hint::black_box(0.999_999));
    let b = _mm512_set1_ps(std::hint::black_box(1e-7));
    let mut acc: [__m512; 12] = std::array::from_fn(|i| _mm512_set1_ps(i as f32));
    for _ in 0..rounds {
        for acc in &mut acc {
            *acc = _mm512_fmadd_ps(*acc, a, b);
        }
    }
    acc.iter().map(|&v| _mm512_reduce_add_ps(v)).sum()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn fma_avx2(rounds: u64) -> f32 {
    use std::arch::x86_64::*;
    let a = _mm256_set1_ps(std::hint::black_box(0.999_999));
    let b = _mm256_set1_ps(std::hint::black_box(1e-7));
    let mut acc: [__m256; 12] = std::array::from_fn(|i| _mm256_set1_ps(i as f32));
    for _ in 0..rounds {
        for acc in &mut acc {
            *acc = _mm256_fmadd_ps(*acc, a, b);
        }
    }
    let mut lanes = [0f32; 8];
    let mut sum = 0.0;
    for v in acc {
        _mm256_storeu_ps(lanes.as_mut_ptr(), v);
        sum += lanes.iter().sum::<f32>();
    }
    sum
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vnni")]
unsafe fn vnni_avx512(rounds: u64) -> f32 {
    use std::arch::x86_64::*;
    let a = _mm512_set1_epi32(std::hint::black_box(0x0102_0304));
    let b = _mm512_set1_epi32(std::hint::black_box(0x0101_0101));
    let mut acc: [__m512i; 12] = std::array::from_fn(|i| _mm512_set1_epi32(i as i32));
    for _ in 0..rounds {
        for acc in &mut acc {
            *acc = _mm512_dpbusd_epi32(*acc, a, b);
        }
    }
    acc.iter().map(|&v| _mm512_reduce_add_epi32(v) as f32).sum()
}
