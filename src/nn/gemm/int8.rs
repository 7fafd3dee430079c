//! The int8 product of the quantized backbone: `u8` activations (one zero point) times `s8`
//! weights (a scale per output column), summed exactly in i32, then `f32(acc) · scale[n]` —
//! ONNX Runtime's `MatMulIntegerToFloat` as the per-token graph uses it, to the bit (the
//! integer sums are exact, and the one rounding is the same).
//!
//! Two kernels, chosen at run time from the CPU's features: AMX tiles (`tdpbusd`,
//! [`super::amx_int8`]) where the CPU has AMX-INT8 and the OS grants the tile state, else
//! AVX512-VNNI (`vpdpbusd`, [`super::vnni_int8`]). Why not MLAS's: its kernels copy the
//! activations into their own layout and write the product in a second pass; here the
//! weights are packed once, when the session is made, the activations are read in place (AMX)
//! or in 12-row strips that stay in L1 (VNNI), and the scales are applied while the sums are
//! still in registers. The zero point comes out through the weights' column sums:
//! Σ (a − zp)·w = Σ a·w − zp·Σ w.

use super::int8_packed::Packed;
pub use super::int8_packed::PANEL;
use super::Cpu;

/// Which code runs the int8 products.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Int8Kernel {
    /// AMX tiles: 32 × 32 blocks of `tdpbusd`.
    AmxInt8,
    /// AVX-512 VNNI: 12 × 32 blocks of `vpdpbusd` in 24 zmm accumulators.
    Avx512Vnni,
}

impl Int8Kernel {
    /// The int8 kernel this CPU runs (AMX before VNNI), or why none does. Decided once.
    pub fn get() -> Result<Int8Kernel, &'static str> {
        let cpu = Cpu::get();
        if !cfg!(target_arch = "x86_64") {
            Err("frostline's int8 kernels are x86_64 only")
        } else if Int8Kernel::AmxInt8.usable() {
            Ok(Int8Kernel::AmxInt8)
        } else if Int8Kernel::Avx512Vnni.usable() {
            Ok(Int8Kernel::Avx512Vnni)
        } else if cpu.amx_int8 {
            Err("the OS refused AMX tile state and the CPU has no AVX512-VNNI")
        } else {
            Err("the CPU has neither AMX-INT8 nor AVX512-VNNI")
        }
    }

    /// Whether this CPU (and OS) runs this kernel: [`Int8Weights::pack`] refuses one it does
    /// not, so a packed matrix's products always run.
    pub fn usable(self) -> bool {
        let cpu = Cpu::get();
        cfg!(target_arch = "x86_64")
            && match self {
                Int8Kernel::AmxInt8 => super::amx_int8::unavailable().is_none(),
                Int8Kernel::Avx512Vnni => cpu.avx512_vnni && cpu.avx512f,
            }
    }

    /// How doctor and the docs name it.
    pub fn describe(self) -> &'static str {
        match self {
            Int8Kernel::AmxInt8 => "AMX-INT8 tiles (amx_int8)",
            Int8Kernel::Avx512Vnni => "AVX512-VNNI (vpdpbusd)",
        }
    }

    /// The k values one step of the kernel takes: a weight's row count must be a multiple.
    fn k_step(self) -> usize {
        match self {
            Int8Kernel::AmxInt8 => super::amx_int8::K_STEP,
            Int8Kernel::Avx512Vnni => super::vnni_int8::K_STEP,
        }
    }
}

/// Rows of the output per block: the unit tasks split the rows in.
pub const ROWS: usize = 32;

/// An int8 weight matrix `[k, n]` packed for one kernel, with what the epilogue needs.
pub struct Int8Weights {
    kernel: Int8Kernel,
    k: usize,
    n: usize,
    /// The weights in the kernel's layout (see its `pack`).
    packed: Vec<i8>,
    /// `zp · Σ_k w[k][n]` per column: what the zero point adds to every sum.
    zp_offsets: Vec<i32>,
    /// The scale of each output column (the activation scale times the weight's).
    scales: Vec<f32>,
}

impl Int8Weights {
    /// Packs row-major `w` (`[k, n]`, fitting `kernel`: see [`Self::fits`]) for `kernel`;
    /// `scales` one per column (or one for all), `zero_point` the activations'.
    pub fn pack(
        kernel: Int8Kernel,
        w: &[i8],
        k: usize,
        n: usize,
        scales: &[f32],
        zero_point: u8,
    ) -> Self {
        assert!(kernel.usable(), "{kernel:?} does not run on this CPU");
        assert!(Self::fits(kernel, k, n) && w.len() == k * n);
        assert!(scales.len() == n || scales.len() == 1);
        let packed = match kernel {
            Int8Kernel::AmxInt8 => super::amx_int8::pack(w, k, n),
            Int8Kernel::Avx512Vnni => super::vnni_int8::pack(w, k, n),
        };
        let zp_offsets = (0..n)
            .map(|c| zero_point as i32 * (0..k).map(|r| w[r * n + c] as i32).sum::<i32>())
            .collect();
        let scales = (0..n).map(|c| scales[c % scales.len()]).collect();
        Self {
            kernel,
            k,
            n,
            packed,
            zp_offsets,
            scales,
        }
    }

    /// Whether a `[k, n]` matrix fits `kernel`'s blocks whole.
    pub fn fits(kernel: Int8Kernel, k: usize, n: usize) -> bool {
        k > 0 && n > 0 && k.is_multiple_of(kernel.k_step()) && n.is_multiple_of(PANEL)
    }

    pub fn k(&self) -> usize {
        self.k
    }

    pub fn n(&self) -> usize {
        self.n
    }

    /// `out[r][c] = f32(Σ_k (a[r][k] − zp) · w[k][c]) · scale[c]` for `rows` rows of `a`
    /// (row-major, `k` wide) and the columns of panels `panels` ([`PANEL`] each); `out` rows
    /// are `n` wide, and only those columns are written (tasks may share rows, each with its
    /// panels).
    ///
    /// # Safety
    /// `out` points to `rows · n` floats no other thread writes in these columns.
    pub unsafe fn product(
        &self,
        a: &[u8],
        rows: usize,
        panels: std::ops::Range<usize>,
        out: *mut f32,
    ) {
        assert!(a.len() >= rows * self.k && panels.end <= self.n / PANEL);
        let part = Packed {
            k: self.k,
            n: self.n,
            b: &self.packed,
            zp_offsets: &self.zp_offsets,
            scales: &self.scales,
        };
        // SAFETY: `pack` checked that the kernel runs on this CPU; `out` as the caller
        // promised.
        unsafe {
            match self.kernel {
                Int8Kernel::AmxInt8 => super::amx_int8::product(&part, a, rows, panels, out),
                Int8Kernel::Avx512Vnni => super::vnni_int8::product(&part, a, rows, panels, out),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kernel this CPU runs, against the exact integer product times the scales, bit for
    /// bit: row counts below, at and past one block and several, with tails; k from one step
    /// to the FFN's 1536; the panels in two calls, as tasks split them.
    #[test]
    fn int8_products_equal_the_exact_integer_product_times_the_scales() {
        let kernels: Vec<Int8Kernel> = [Int8Kernel::AmxInt8, Int8Kernel::Avx512Vnni]
            .into_iter()
            .filter(|k| k.usable())
            .collect();
        if kernels.is_empty() {
            eprintln!("no int8 kernel of frostline's runs on this CPU");
            return;
        }
        let mut rng = crate::nn::Rng::new(11);
        for kernel in kernels {
            let shapes: &[(usize, usize, usize)] = &[
                (1, 64, 32),
                (5, 6 * kernel.k_step(), 64),
                (15, 9 * kernel.k_step(), 32),
                (13, 128, 64),
                (31, 128, 64),
                (32, 384, 96),
                (77, 1536, 384),
                (200, 128, 64),
            ];
            for &(rows, k, n) in shapes {
                let w: Vec<i8> = (0..k * n)
                    .map(|_| (rng.uniform() * 255.0 - 127.0) as i8)
                    .collect();
                let a: Vec<u8> = (0..rows * k)
                    .map(|_| (rng.uniform() * 255.0) as u8)
                    .collect();
                let scales: Vec<f32> = (0..n).map(|_| rng.uniform() as f32 * 0.01).collect();
                let packed = Int8Weights::pack(kernel, &w, k, n, &scales, 128);
                let mut out = vec![f32::NAN; rows * n];
                let half = n / PANEL / 2;
                // SAFETY: `out` holds rows × n floats.
                unsafe {
                    packed.product(&a, rows, 0..half, out.as_mut_ptr());
                    packed.product(&a, rows, half..n / PANEL, out.as_mut_ptr());
                }
                for r in 0..rows {
                    for c in 0..n {
                        let exact: i32 = (0..k)
                            .map(|i| (a[r * k + i] as i32 - 128) * w[i * n + c] as i32)
                            .sum();
                        let want = exact as f32 * scales[c];
                        assert_eq!(
                            out[r * n + c].to_bits(),
                            want.to_bits(),
                            "{kernel:?}: rows {rows} k {k} n {n} at ({r}, {c})"
                        );
                    }
                }
            }
        }
    }
}
