//! frostline's own product kernels outside ONNX Runtime, on the encoder's weight products as a
//! graph runs them: all-MiniLM-L6-v2's four shapes per layer (QKV 384×1152, output 384×384, FFN
//! 384×1536 and 1536×384), six layers of weights cycled through the caches, a batch of 1,024
//! token rows split between the threads, and every thread waiting for the others after each
//! product (as each product node of a graph ends). What the profile of a graph shows beyond this
//! rate is the graph's, not the kernel's. Prints one JSON object on stdout:
//!
//!     cargo bench --bench products -- [THREADS]
//!
//! `fp32_gflops` where the fp32 kernel runs (AVX-512F), `int8_gmacs` (multiply-adds) where an
//! int8 kernel does (AMX-INT8 or AVX512-VNNI, named in `int8_kernel`); best of 3 timed runs.

use std::sync::Barrier;
use std::time::Instant;

use frostline::nn::gemm::f32_packed::{self, F32Weights};
use frostline::nn::gemm::int8::{self, Int8Kernel, Int8Weights};

mod common;

/// Token rows per batch, as `frostline embed` packs them (1,024 padded tokens).
const ROWS: usize = 1024;
/// The encoder's weight shapes per layer `(k, n)`, and its layers.
const SHAPES: [(usize, usize); 4] = [(384, 1152), (384, 384), (384, 1536), (1536, 384)];
const LAYERS: usize = 6;
/// Batches per timed run: ~0.5 s of products at this chip's rates.
const BATCHES: usize = 20;

fn main() {
    let (threads, mut out) = common::threads_and_header();
    out["rows"] = ROWS.into();
    let macs_per_batch = (ROWS * LAYERS * SHAPES.iter().map(|(k, n)| k * n).sum::<usize>()) as f64;
    let mut values = Values(0x2545_f491_4f6c_dd1d);
    if F32Weights::available().is_ok() {
        let weights: Vec<F32Weights> = layer_shapes()
            .map(|(k, n)| F32Weights::pack(&values.f32s(k * n), k, n))
            .collect();
        let inputs = SHAPES.map(|(k, _)| values.f32s(ROWS * k));
        let seconds = best_of(3, threads, &weights, &inputs);
        out["fp32_gflops"] = round(2.0 * macs_per_batch * BATCHES as f64 / seconds / 1e9);
    }
    if let Ok(kernel) = Int8Kernel::get() {
        let weights: Vec<Int8Weights> = layer_shapes()
            .map(|(k, n)| {
                let w: Vec<i8> = values
                    .f32s(k * n)
                    .iter()
                    .map(|v| (v * 254.0) as i8)
                    .collect();
                Int8Weights::pack(kernel, &w, k, n, &[1e-3], 128)
            })
            .collect();
        let inputs = SHAPES.map(|(k, _)| {
            let a = values.f32s(ROWS * k);
            a.iter()
                .map(|v| ((v + 0.5) * 255.0) as u8)
                .collect::<Vec<u8>>()
        });
        let seconds = best_of(3, threads, &weights, &inputs);
        out["int8_gmacs"] = round(macs_per_batch * BATCHES as f64 / seconds / 1e9);
        out["int8_kernel"] = kernel.describe().into();
    }
    println!("{out}");
}

/// The weight shapes of every layer, in the order a graph runs them.
fn layer_shapes() -> impl Iterator<Item = (usize, usize)> {
    (0..LAYERS).flat_map(|_| SHAPES)
}

/// Which of the four shapes `(k, n)` is.
fn shape_of(k: usize, n: usize) -> usize {
    SHAPES
        .iter()
        .position(|&s| s == (k, n))
        .expect("an encoder shape")
}

fn round(x: f64) -> serde_json::Value {
    serde_json::json!((x * 10.0).round() / 10.0)
}

/// A packed weight matrix of one of frostline's product kernels, as the benchmark calls it.
trait Product: Sync {
    /// The activations' element type.
    type In: Sync;
    /// Rows per call and columns per panel, as the graph's product op splits them.
    const ROWS: usize;
    const PANEL: usize;
    fn shape(&self) -> (usize, usize);
    /// # Safety
    /// As the kernel's `product`: `out` has `rows` rows of n floats no other thread writes.
    unsafe fn rows_times(&self, a: &[Self::In], rows: usize, out: *mut f32);
}

impl Product for F32Weights {
    type In = f32;
    const ROWS: usize = f32_packed::ROWS;
    const PANEL: usize = f32_packed::PANEL;
    fn shape(&self) -> (usize, usize) {
        (self.k(), self.n())
    }
    unsafe fn rows_times(&self, a: &[f32], rows: usize, out: *mut f32) {
        // SAFETY: as the caller promised.
        unsafe { self.product(a, rows, 0..self.n() / Self::PANEL, out) }
    }
}

impl Product for Int8Weights {
    type In = u8;
    const ROWS: usize = int8::ROWS;
    const PANEL: usize = int8::PANEL;
    fn shape(&self) -> (usize, usize) {
        (self.k(), self.n())
    }
    unsafe fn rows_times(&self, a: &[u8], rows: usize, out: *mut f32) {
        // SAFETY: as the caller promised.
        unsafe { self.product(a, rows, 0..self.n() / Self::PANEL, out) }
    }
}

/// The output buffer, shared by the threads (each writes its own rows).
#[derive(Clone, Copy)]
struct Out(*mut f32);
// SAFETY: the threads write disjoint rows, and the buffer outlives them.
unsafe impl Send for Out {}
unsafe impl Sync for Out {}

impl Out {
    /// The pointer (a method, so a closure captures the `Out`, not its raw field).
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// The shortest wall time, over `tries`, of BATCHES batches through every product in
/// `weights` (`inputs`: one activation matrix per shape of [`SHAPES`]), the rows split in halves
/// (thirds…) between `threads` threads that meet after each product, each taking its rows in
/// blocks of the kernel's `ROWS`.
fn best_of<W: Product>(
    tries: usize,
    threads: usize,
    weights: &[W],
    inputs: &[Vec<W::In>; 4],
) -> f64 {
    let widest = SHAPES.iter().map(|&(_, n)| n).max().unwrap_or(0);
    let mut out = vec![0f32; ROWS * widest];
    let out = Out(out.as_mut_ptr());
    let barrier = Barrier::new(threads);
    let product = |w: &W, rows: std::ops::Range<usize>| {
        let (k, n) = w.shape();
        let a = &inputs[shape_of(k, n)];
        for r0 in rows.clone().step_by(W::ROWS) {
            let live = W::ROWS.min(rows.end - r0);
            // SAFETY: this thread alone writes rows r0..r0+live of `out`, n wide.
            unsafe { w.rows_times(&a[r0 * k..], live, out.get().add(r0 * n)) }
        }
    };
    let run = || {
        std::thread::scope(|s| {
            for t in 0..threads {
                let (barrier, product) = (&barrier, &product);
                let rows = t * ROWS / threads..(t + 1) * ROWS / threads;
                s.spawn(move || {
                    for _ in 0..BATCHES {
                        for w in weights {
                            product(w, rows.clone());
                            barrier.wait();
                        }
                    }
                });
            }
        })
    };
    run(); // warm: weights and activations paged in
    (0..tries)
        .map(|_| {
            let start = Instant::now();
            run();
            start.elapsed().as_secs_f64()
        })
        .fold(f64::MAX, f64::min)
}

/// Deterministic values in [-0.5, 0.5) (xorshift): the rates do not depend on them.
struct Values(u64);

impl Values {
    fn f32s(&mut self, n: usize) -> Vec<f32> {
        (0..n)
            .map(|_| {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                (self.0 >> 40) as f32 / (1u64 << 24) as f32 - 0.5
            })
            .collect()
    }
}
