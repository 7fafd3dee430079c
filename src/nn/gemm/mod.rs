//! The one matrix-product entry point of the native engine: `c = α·a·b + β·c` on ndarray views
//! of any strides (transposes are free: the packers read either axis), with the kernel chosen
//! at run time from the CPU's features. Every forward and backward product of the native layers
//! and heads goes through [`Kernel::gemm`].

#[cfg(target_arch = "x86_64")]
mod amx;
mod amx_int8;
#[cfg(target_arch = "x86_64")]
mod avx512;
mod cpu;
mod driver;
pub mod f32_packed;
pub mod int8;
mod int8_packed;
mod vnni_int8;

use ndarray::{Array2, ArrayView2, ArrayViewMut2};
use serde::{Deserialize, Serialize};

pub use cpu::Cpu;
pub use driver::{in_pool, threads};

/// The precision of the products: fp32, or bf16 inputs with fp32 accumulation (weights,
/// gradients and optimizer state stay fp32 either way).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    Fp32,
    Bf16,
}

/// `train.precision`: the precision of the training products. `auto` takes bf16 where the CPU
/// has bf16 dot products and says so; a checkpoint records the one that ran, never `auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PrecisionChoice {
    Fp32,
    Bf16,
    Auto,
}

impl Precision {
    pub fn as_str(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Bf16 => "bf16",
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Products under this many multiply-adds skip the packed kernels (see [`Kernel::gemm`]).
pub const SMALL_PRODUCT: usize = 1 << 15;

/// Which code runs the products.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// matrixmultiply's fp32 kernels (AVX2/FMA where the CPU has them): the portable path.
    Portable,
    /// frostline's AVX-512 fp32 micro-kernel.
    Avx512,
    /// bf16 products with fp32 accumulation on AVX512-BF16 (`vdpbf16ps`).
    Avx512Bf16,
    /// bf16 products with fp32 accumulation on AMX tiles (`tdpbf16ps`).
    AmxBf16,
}

impl Kernel {
    /// The fastest fp32 kernel this CPU runs.
    pub fn best_fp32() -> Kernel {
        if cfg!(target_arch = "x86_64") && Cpu::get().avx512f {
            Kernel::Avx512
        } else {
            Kernel::Portable
        }
    }

    /// The kernel for `precision` on this CPU; bf16 on a CPU without bf16 dot products is an
    /// error naming what is missing.
    pub fn for_precision(precision: Precision) -> Result<Kernel, String> {
        match precision {
            Precision::Fp32 => Ok(Self::best_fp32()),
            Precision::Bf16 => Self::bf16().ok_or_else(|| {
                let cpu = Cpu::get();
                format!(
                    "precision bf16 needs AVX512-BF16 (the CPU flag avx512_bf16), which this CPU ({}) lacks: use precision = \"fp32\", or \"auto\" to take bf16 only where it exists",
                    cpu.model,
                )
            }),
        }
    }

    /// The fastest bf16 kernel this CPU runs: AMX where the CPU and OS allow it, else
    /// AVX512-BF16, else none.
    pub fn bf16() -> Option<Kernel> {
        Self::bf16_kernels().last().copied()
    }

    /// Every bf16 kernel this CPU runs, slowest first (tests and benchmarks compare them).
    pub fn bf16_kernels() -> Vec<Kernel> {
        let mut k = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            if Cpu::get().avx512_bf16 {
                k.push(Kernel::Avx512Bf16);
            }
            if amx::usable() {
                k.push(Kernel::AmxBf16);
            }
        }
        k
    }

    /// Why the AMX kernel does not run in this process, or `None` when it does (`doctor`).
    pub fn amx_unavailable() -> Option<&'static str> {
        #[cfg(target_arch = "x86_64")]
        return amx::unavailable();
        #[cfg(not(target_arch = "x86_64"))]
        Some("not an x86_64 CPU")
    }

    /// Whether the OS grants this process AMX tile data (false off x86_64 Linux).
    pub fn os_grants_amx() -> bool {
        #[cfg(target_arch = "x86_64")]
        return amx::os_grants_tile_state();
        #[cfg(not(target_arch = "x86_64"))]
        false
    }

    pub fn precision(self) -> Precision {
        match self {
            Kernel::Portable | Kernel::Avx512 => Precision::Fp32,
            Kernel::Avx512Bf16 | Kernel::AmxBf16 => Precision::Bf16,
        }
    }

    /// What runs, in words (`doctor`, the benchmarks).
    pub fn describe(self) -> String {
        match self {
            Kernel::Portable => format!(
                "fp32, matrixmultiply ({})",
                if Cpu::get().avx2_fma {
                    "AVX2/FMA"
                } else {
                    "SSE2"
                }
            ),
            Kernel::Avx512 => "fp32, AVX-512 12x32 micro-kernel".into(),
            Kernel::Avx512Bf16 => format!(
                "bf16 products, fp32 accumulation, AVX512-BF16 vdpbf16ps 12x32 micro-kernel (products under {SMALL_PRODUCT} multiply-adds: fp32)"
            ),
            Kernel::AmxBf16 => format!(
                "bf16 products, fp32 accumulation, AMX tdpbf16ps 32x32 micro-kernel (products under {SMALL_PRODUCT} multiply-adds: fp32)"
            ),
        }
    }

    /// `c = alpha · a · b + beta · c`; `beta = 0` overwrites C whatever it held.
    pub fn gemm(
        self,
        alpha: f32,
        a: &ArrayView2<f32>,
        b: &ArrayView2<f32>,
        beta: f32,
        c: &mut ArrayViewMut2<f32>,
    ) {
        let small = a.nrows() * a.ncols() * b.ncols() < SMALL_PRODUCT;
        match self {
            // Packing a tiny product (one head's attention scores over a short sequence) costs
            // more than multiplying it: those run unpacked, in fp32 whatever the precision.
            Kernel::Avx512 | Kernel::Avx512Bf16 | Kernel::AmxBf16 if small => {
                Kernel::Portable.packed_gemm(alpha, a, b, beta, c)
            }
            _ => self.packed_gemm(alpha, a, b, beta, c),
        }
    }

    /// [`Kernel::gemm`] on this kernel whatever the size.
    fn packed_gemm(
        self,
        alpha: f32,
        a: &ArrayView2<f32>,
        b: &ArrayView2<f32>,
        beta: f32,
        c: &mut ArrayViewMut2<f32>,
    ) {
        match self {
            Kernel::Portable => {
                if beta == 0.0 {
                    c.fill(0.0);
                }
                ndarray::linalg::general_mat_mul(alpha, a, b, beta, c)
            }
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => driver::gemm::<avx512::Fp32>(alpha, a, b, beta, c),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512Bf16 => driver::gemm::<avx512::Bf16>(alpha, a, b, beta, c),
            #[cfg(target_arch = "x86_64")]
            Kernel::AmxBf16 => driver::gemm::<amx::AmxBf16>(alpha, a, b, beta, c),
            #[cfg(not(target_arch = "x86_64"))]
            _ => unreachable!("AVX-512 kernels are only chosen on x86_64"),
        }
    }

    /// `a · b` as a new array.
    pub fn dot(self, a: &ArrayView2<f32>, b: &ArrayView2<f32>) -> Array2<f32> {
        let mut c = Array2::zeros((a.nrows(), b.ncols()));
        self.gemm(1.0, a, b, 0.0, &mut c.view_mut());
        c
    }
}

/// fp32 → bf16 → fp32 with round-to-nearest-even: what a bf16 product sees of a value (tests
/// and error bounds).
pub fn round_to_bf16(x: f32) -> f32 {
    f32::from_bits((to_bf16(x) as u32) << 16)
}

/// fp32 → bf16, round to nearest even (as `vcvtne2ps2bf16`); NaN stays NaN.
#[inline(always)]
fn to_bf16(x: f32) -> u16 {
    let bits = x.to_bits();
    let rounded = bits.wrapping_add(0x7fff + ((bits >> 16) & 1)) >> 16;
    // A select, not a branch, so packing loops vectorise.
    let quiet_nan = (bits >> 16) | 0x40;
    (if x.is_nan() { quiet_nan } else { rounded }) as u16
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{s, Array2};

    fn random(r: usize, c: usize, seed: u64) -> Array2<f32> {
        let mut rng = crate::nn::Rng::new(seed);
        Array2::from_shape_simple_fn((r, c), || rng.uniform() as f32 * 2.0 - 1.0)
    }

    /// `alpha · a · b + beta · c` in f64, with `a` and `b` first passed through `round`.
    fn reference(
        alpha: f32,
        a: &ArrayView2<f32>,
        b: &ArrayView2<f32>,
        beta: f32,
        c: &Array2<f32>,
        round: fn(f32) -> f32,
    ) -> Array2<f64> {
        Array2::from_shape_fn(c.dim(), |(i, j)| {
            let dot: f64 = (0..a.ncols())
                .map(|k| round(a[[i, k]]) as f64 * round(b[[k, j]]) as f64)
                .sum();
            alpha as f64 * dot + beta as f64 * c[[i, j]] as f64
        })
    }

    fn kernels() -> Vec<Kernel> {
        let mut k = vec![Kernel::Portable, Kernel::best_fp32()];
        k.extend(Kernel::bf16_kernels());
        k
    }

    /// Edge tiles (rows past 12 and 32, columns past 32, odd k, k past one block), transposed
    /// and sliced operands in both layouts, alpha and beta: every kernel against an f64
    /// reference. fp32 kernels are held to fp32 rounding; bf16 to the same bound on
    /// bf16-rounded inputs (its accumulation is fp32).
    #[test]
    fn every_kernel_matches_the_reference_on_awkward_shapes() {
        let shapes = [
            (1, 1, 1),
            (13, 33, 3),
            (25, 65, 257),
            (7, 31, 600),
            (40, 100, 1030),
        ];
        for kernel in kernels() {
            let round: fn(f32) -> f32 = match kernel.precision() {
                Precision::Fp32 => |x| x,
                Precision::Bf16 => round_to_bf16,
            };
            for (i, &(m, n, k)) in shapes.iter().enumerate() {
                let seed = i as u64;
                // Both layouts of each operand (the packers have a path per layout): A
                // row-major with B a column slice of a transpose (x·Wᵀ), then A a transpose
                // with B row-major (dyᵀ·x, dy·W).
                let a = random(m, k, seed);
                let bt = random(n, k + 2, seed + 10);
                let b = bt.slice(s![.., 1..k + 1]).reversed_axes();
                let at = random(k, m, seed + 30);
                let b_rows = random(k, n, seed + 40);
                let c0 = random(m, n, seed + 20);
                for (a, b) in [(a.view(), b), (at.t(), b_rows.view())] {
                    for (alpha, beta) in [(1.0, 0.0), (0.5, 1.0), (-2.0, 0.25)] {
                        let mut c = c0.clone();
                        kernel.packed_gemm(alpha, &a, &b, beta, &mut c.view_mut());
                        let want = reference(alpha, &a, &b, beta, &c0, round);
                        for ((ix, &got), &w) in c.indexed_iter().zip(want.iter()) {
                            let tol = 1e-5 * (k as f64).sqrt() * (1.0 + w.abs());
                            assert!(
                                (got as f64 - w).abs() <= tol,
                                "{kernel:?} {m}x{n}x{k} alpha {alpha} beta {beta} at {ix:?}: {got} vs {w}"
                            );
                        }
                    }
                }
            }
        }
    }

    /// Under the bf16 kernel, a product too small to pack runs in fp32, exactly as the fp32
    /// path; a larger one does not.
    #[test]
    fn small_products_run_fp32_under_bf16() {
        for bf16 in Kernel::bf16_kernels() {
            small_product_runs_fp32(bf16);
        }
    }

    fn small_product_runs_fp32(bf16: Kernel) {
        let a = random(20, 32, 3);
        let b = random(32, 20, 4);
        assert_eq!(
            bf16.dot(&a.view(), &b.view()),
            Kernel::Portable.dot(&a.view(), &b.view())
        );
        let a = random(64, 64, 3);
        let b = random(64, 64, 4);
        assert_ne!(
            bf16.dot(&a.view(), &b.view()),
            Kernel::Portable.dot(&a.view(), &b.view())
        );
    }

    /// `beta = 0` overwrites what C held, NaN included (BLAS semantics).
    #[test]
    fn beta_zero_ignores_nan_in_c() {
        for kernel in kernels() {
            let a = random(5, 4, 1);
            let b = random(4, 6, 2);
            let mut c = Array2::from_elem((5, 6), f32::NAN);
            kernel.packed_gemm(1.0, &a.view(), &b.view(), 0.0, &mut c.view_mut());
            assert!(c.iter().all(|v| v.is_finite()), "{kernel:?}");
        }
    }

    /// The bf16 path against fp32 on a layer-sized product: relative error of the whole
    /// product (Frobenius) under 1 %, as bf16's 8-bit mantissa allows (~0.4 % per input).
    #[test]
    fn bf16_products_stay_within_bf16_rounding_of_fp32() {
        let a = random(300, 384, 5);
        let b = random(384, 1536, 6);
        let exact = Kernel::best_fp32().dot(&a.view(), &b.view());
        for bf16 in Kernel::bf16_kernels() {
            let approx = bf16.dot(&a.view(), &b.view());
            let err = (&approx - &exact).mapv(|v| v * v).sum().sqrt()
                / exact.mapv(|v| v * v).sum().sqrt();
            assert!(err < 1e-2 && err > 0.0, "{bf16:?}: relative error {err}");
        }
    }

    /// Same inputs, different thread counts' splits, same bits: the split never changes the
    /// order of a sum (checked by running one product whole and as row slices).
    #[test]
    fn results_do_not_depend_on_how_rows_are_split() {
        for kernel in kernels() {
            let a = random(500, 384, 7);
            let b = random(384, 1536, 8);
            let whole = kernel.dot(&a.view(), &b.view());
            let top = kernel.dot(&a.slice(s![..37, ..]), &b.view());
            let rest = kernel.dot(&a.slice(s![37.., ..]), &b.view());
            assert_eq!(whole.slice(s![..37, ..]), top, "{kernel:?}");
            assert_eq!(whole.slice(s![37.., ..]), rest, "{kernel:?}");
        }
    }

    #[test]
    fn bf16_rounding_is_to_nearest_even() {
        assert_eq!(round_to_bf16(1.0), 1.0);
        // 1 + 2^-8 lies halfway between bf16 neighbours 1 and 1 + 2^-7: ties go to even (1).
        assert_eq!(round_to_bf16(1.0 + 1.0 / 256.0), 1.0);
        assert_eq!(round_to_bf16(1.0 + 3.0 / 256.0), 1.0 + 4.0 / 256.0);
        assert!(round_to_bf16(f32::NAN).is_nan());
        assert_eq!(round_to_bf16(f32::INFINITY), f32::INFINITY);
    }
}
