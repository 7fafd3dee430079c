//! GFLOP/s of the native layers' matrix products, per kernel, on the layer shapes of a BERT
//! layer: tokens × in → out for the forward product (x·Wᵀ) and both backward products
//! (dy·W → dx, dyᵀ·x → dW). Kernels compared side by side in one run: the old matrixmultiply
//! path, the AVX-512 fp32 kernel and the bf16 kernel where the CPU has them. Prints one CSV line
//! per (shape, product, kernel): `shape,product,kernel,gflops`.
//!
//!     cargo bench --bench engine -- [TOKENS]

use std::time::Instant;

use frostline::nn::gemm::{Cpu, Kernel};
use ndarray::Array2;

fn main() {
    let tokens: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(4096);
    let cpu = Cpu::get();
    eprintln!(
        "cpu: {} | flags: {} | threads: {}",
        cpu.model,
        cpu.flags(),
        frostline::nn::gemm::threads()
    );
    let mut kernels = vec![("matrixmultiply", Kernel::Portable)];
    if Kernel::best_fp32() != Kernel::Portable {
        kernels.push(("fp32", Kernel::best_fp32()));
    }
    for k in Kernel::bf16_kernels() {
        kernels.push((
            match k {
                Kernel::AmxBf16 => "bf16 amx",
                _ => "bf16",
            },
            k,
        ));
    }
    if let Some(why) = Kernel::amx_unavailable() {
        eprintln!("AMX kernel not run: {why}");
    }
    println!("shape,product,kernel,gflops");
    let shapes = [
        (384, 1536),
        (1536, 384),
        (384, 384),
        (768, 3072),
        (3072, 768),
        (768, 768),
    ];
    let fill = |r: usize, c: usize, seed: usize| {
        Array2::from_shape_fn((r, c), |(i, j)| {
            ((i * 31 + j * 17 + seed) % 97) as f32 / 97.0 - 0.5
        })
    };
    for (inp, out) in shapes {
        let x = fill(tokens, inp, 1);
        let w = fill(out, inp, 2);
        let dy = fill(tokens, out, 3);
        let flops = 2.0 * tokens as f64 * inp as f64 * out as f64;
        for (name, kernel) in &kernels {
            let mut y = Array2::<f32>::zeros((tokens, out));
            let mut dx = Array2::<f32>::zeros((tokens, inp));
            let mut dw = Array2::<f32>::zeros((out, inp));
            let products: [(&str, &mut dyn FnMut()); 3] = [
                ("forward x.Wt", &mut || {
                    kernel.gemm(1.0, &x.view(), &w.t(), 0.0, &mut y.view_mut())
                }),
                ("backward dy.W", &mut || {
                    kernel.gemm(1.0, &dy.view(), &w.view(), 0.0, &mut dx.view_mut())
                }),
                ("backward dyT.x", &mut || {
                    kernel.gemm(1.0, &dy.t(), &x.view(), 1.0, &mut dw.view_mut())
                }),
            ];
            for (product, run) in products {
                run(); // warm-up: pages, pool threads
                let reps = 5;
                let mut best = f64::INFINITY;
                for _ in 0..reps {
                    let t = Instant::now();
                    run();
                    best = best.min(t.elapsed().as_secs_f64());
                }
                println!(
                    "{tokens}x{inp}x{out},{product},{name},{:.1}",
                    flops / best / 1e9
                );
            }
        }
    }
}
