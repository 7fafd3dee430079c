//! The fp32 product of a frozen graph's weight matrices on AVX-512F: the weights packed once
//! per session as 32-column panels, k-major, and the activations read in place — a strip of up
//! to 12 rows times a panel in 24 zmm accumulators, per k two panel loads, one broadcast per
//! row and 24 FMAs (the loads stay below the FMA ports' rate, so the FMAs set the pace).
//!
//! The sums run in k order, one FMA per term: the results agree with ONNX Runtime's MLAS to
//! float rounding, as any two fp32 GEMMs do.
//!
//! The native engine's kernel ([`super::Kernel::gemm`], `avx512.rs`) has the same register tile
//! but another contract: operands of any strides, both packed per call in k blocks, for the
//! forward and backward products of layers that train. Here the weights are constants packed
//! once and the activations are contiguous rows, so nothing is packed per call.

use std::ops::Range;

use super::Cpu;

/// Columns per panel: two zmm of 16 floats.
pub const PANEL: usize = 32;
/// Rows per strip: 12 rows × 2 zmm = 24 accumulators of the 32 registers.
const MR: usize = 12;
/// Rows of the output per block, the unit tasks split the rows in: eight whole strips, so a
/// panel brought in from L3 serves 96 rows (48 rows per task ran at ~480 GFLOP/s, 96 at ~500
/// on the encoder's shapes with 2 threads, the weights of six layers cycled through the caches).
pub const ROWS: usize = 8 * MR;

/// A weight matrix `[k, n]` packed for [`F32Weights::product`].
pub struct F32Weights {
    k: usize,
    n: usize,
    /// `[n / 32 panels][k][32 columns]`: one k of a panel is two zmm loads.
    packed: Vec<f32>,
}

impl F32Weights {
    /// Whether this CPU runs the kernel (AVX-512F), or why not.
    pub fn available() -> Result<(), &'static str> {
        if Cpu::get().avx512f {
            Ok(())
        } else {
            Err("the CPU has no AVX-512F")
        }
    }

    /// Whether a `[k, n]` matrix fits the panels whole.
    pub fn fits(k: usize, n: usize) -> bool {
        k > 0 && n > 0 && n.is_multiple_of(PANEL)
    }

    /// Packs row-major `w` (`[k, n]`, see [`Self::fits`]).
    pub fn pack(w: &[f32], k: usize, n: usize) -> Self {
        assert!(Self::available().is_ok(), "the fp32 kernel needs AVX-512F");
        assert!(Self::fits(k, n) && w.len() == k * n);
        let mut packed = vec![0f32; k * n];
        for (panel, out) in packed.chunks_exact_mut(k * PANEL).enumerate() {
            for (row, out) in w.chunks_exact(n).zip(out.chunks_exact_mut(PANEL)) {
                out.copy_from_slice(&row[panel * PANEL..(panel + 1) * PANEL]);
            }
        }
        Self { k, n, packed }
    }

    pub fn k(&self) -> usize {
        self.k
    }

    pub fn n(&self) -> usize {
        self.n
    }

    /// `out[r][c] = Σ_k a[r][k] · w[k][c]` for `rows` rows of `a` (row-major, `k` wide) and
    /// the columns of panels `panels` ([`PANEL`] each); `out` rows are `n` wide, and only those
    /// columns are written (tasks may share rows, each with its panels).
    ///
    /// # Safety
    /// `out` points to `rows · n` floats no other thread writes in these columns.
    pub unsafe fn product(&self, a: &[f32], rows: usize, panels: Range<usize>, out: *mut f32) {
        assert!(a.len() >= rows * self.k && panels.end <= self.n / PANEL);
        #[cfg(target_arch = "x86_64")]
        for panel in panels {
            let b = self.packed[panel * self.k * PANEL..].as_ptr();
            for r0 in (0..rows).step_by(MR) {
                let live = MR.min(rows - r0);
                // SAFETY: `pack` checked AVX-512F; the strip's rows lie in `a` (asserted), the
                // panel holds k × 32 floats, and `out` is as the caller promised.
                unsafe {
                    strip_times_panel(
                        live,
                        a[r0 * self.k..].as_ptr(),
                        self.k,
                        b,
                        out.add(r0 * self.n + panel * PANEL),
                        self.n,
                    )
                }
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = (a, rows, panels, out);
    }
}

/// One strip (1–12 rows) times one panel, dispatched to the kernel for its row count.
///
/// # Safety
/// As [`kernel`].
#[cfg(target_arch = "x86_64")]
unsafe fn strip_times_panel(
    live: usize,
    a: *const f32,
    k: usize,
    b: *const f32,
    out: *mut f32,
    ldo: usize,
) {
    macro_rules! rows {
        ($($r:literal)*) => {
            match live {
                $($r => kernel::<$r>(a, k, b, out, ldo),)*
                _ => unreachable!("a strip has 1 to {MR} rows"),
            }
        };
    }
    rows!(1 2 3 4 5 6 7 8 9 10 11 12)
}

/// `R` rows (`k` apart) × 32 columns: per k, two loads of the panel, one broadcast per row and
/// `2R` FMAs; the sums stored straight from the accumulators.
///
/// # Safety
/// AVX-512F; `a` holds `R` rows of `k` floats at stride `k`, `b` `k · 32` floats; `out` has `R`
/// rows of 32 writable floats at stride `ldo`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn kernel<const R: usize>(
    a: *const f32,
    k: usize,
    b: *const f32,
    out: *mut f32,
    ldo: usize,
) {
    use std::arch::x86_64::*;
    let mut acc = [[_mm512_setzero_ps(); 2]; R];
    for kk in 0..k {
        let b0 = _mm512_loadu_ps(b.add(kk * PANEL));
        let b1 = _mm512_loadu_ps(b.add(kk * PANEL + 16));
        for (r, acc) in acc.iter_mut().enumerate() {
            let x = _mm512_set1_ps(a.add(r * k + kk).read());
            acc[0] = _mm512_fmadd_ps(x, b0, acc[0]);
            acc[1] = _mm512_fmadd_ps(x, b1, acc[1]);
        }
    }
    for (r, acc) in acc.iter().enumerate() {
        _mm512_storeu_ps(out.add(r * ldo), acc[0]);
        _mm512_storeu_ps(out.add(r * ldo + 16), acc[1]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against the product in f64, on row counts below, at and past a strip with tails, k from
    /// 1 to the FFN's 1536, the panels in two calls as tasks split them.
    #[test]
    fn fp32_products_match_the_product_in_f64() {
        if let Err(why) = F32Weights::available() {
            eprintln!("frostline's fp32 kernel does not run here: {why}");
            return;
        }
        let mut rng = crate::nn::Rng::new(5);
        for &(rows, k, n) in &[
            (1, 1, 32),
            (5, 7, 64),
            (12, 64, 32),
            (13, 384, 96),
            (31, 384, 1152),
            (77, 1536, 384),
        ] {
            let w: Vec<f32> = (0..k * n).map(|_| rng.uniform() as f32 - 0.5).collect();
            let a: Vec<f32> = (0..rows * k).map(|_| rng.uniform() as f32 - 0.5).collect();
            let packed = F32Weights::pack(&w, k, n);
            let mut out = vec![f32::NAN; rows * n];
            let half = n / PANEL / 2;
            // SAFETY: `out` holds rows × n floats.
            unsafe {
                packed.product(&a, rows, 0..half, out.as_mut_ptr());
                packed.product(&a, rows, half..n / PANEL, out.as_mut_ptr());
            }
            for r in 0..rows {
                for c in 0..n {
                    let terms = (0..k).map(|i| a[r * k + i] as f64 * w[i * n + c] as f64);
                    let (want, size) = terms.fold((0f64, 0f64), |(s, m), t| (s + t, m + t.abs()));
                    let got = out[r * n + c] as f64;
                    // The worst-case error of k rounded sums: k·ε times the sum of |terms|.
                    let bound = k as f64 * f32::EPSILON as f64 * size;
                    assert!(
                        (got - want).abs() <= bound,
                        "rows {rows} k {k} n {n} at ({r}, {c}): {got} vs {want}"
                    );
                }
            }
        }
    }
}
