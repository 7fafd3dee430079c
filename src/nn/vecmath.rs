//! The element-wise math of the native layers on contiguous rows, written so the compiler
//! vectorises it: exact GELU through a rational erf approximation, exp by range reduction and a
//! polynomial (no calls into libm in a loop), and sums over 16 independent lanes. Each public
//! function is compiled for AVX-512, AVX2/FMA and the baseline, and picks one at run time; the
//! arithmetic is the same sequence of IEEE operations on every path (no FMA contraction), so
//! results do not depend on the CPU.

use super::gemm::Cpu;

/// Compiles `body` three times (AVX-512, AVX2/FMA, baseline) and dispatches on the CPU.
macro_rules! dispatch {
    ($(#[$m:meta])* pub fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$m])*
        pub fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            fn body($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512vl,avx512bw,avx512dq")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn avx512($($arg: $ty),*) $(-> $ret)? { body($($arg),*) }
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn avx2($($arg: $ty),*) $(-> $ret)? { body($($arg),*) }
                let cpu = Cpu::get();
                if cpu.avx512f {
                    // SAFETY: the CPU has the features the function was compiled for.
                    return unsafe { avx512($($arg),*) };
                }
                if cpu.avx2_fma {
                    // SAFETY: as above.
                    return unsafe { avx2($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
}

const LANES: usize = 16;
const INV_SQRT2: f32 = std::f32::consts::FRAC_1_SQRT_2;
const INV_SQRT_2PI: f32 = 0.398_942_3;

/// erf(x) as a rational function of x on [−4, 4] (±1 to fp32 precision beyond): the minimax
/// fit Eigen and XLA use for fp32, within a few ulp of the exact function.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = x2 * -2.726_142_3e-10 + 2.770_681_4e-8;
    p = x2 * p + -2.101_024e-6;
    p = x2 * p + -5.692_506_5e-5;
    p = x2 * p + -7.349_906_3e-4;
    p = x2 * p + -2.9546e-3;
    p = x2 * p + -1.609_603_3e-2;
    p *= x;
    let mut q = x2 * -1.456_607_2e-5 + -2.133_740_6e-4;
    q = x2 * q + -1.682_827e-3;
    q = x2 * q + -7.373_329e-3;
    q = x2 * q + -1.426_473_9e-2;
    p / q
}

/// e^x: x = n·ln2 + r with |r| ≤ ln2/2, a degree-6 polynomial for e^r, 2^n put in the exponent
/// bits. Relative error ~1e-7; inputs below −87.3 give ~1e-38 rather than 0.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const ROUND: f32 = 12_582_912.0; // 1.5 · 2^23: adding it rounds to an integer
    let x = x.clamp(-87.3, 88.3);
    let n = (x * std::f32::consts::LOG2_E + ROUND) - ROUND;
    let r = x - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let mut p = r * 1.987_569_1e-4 + 1.398_199_9e-3;
    p = r * p + 8.333_452e-3;
    p = r * p + 4.166_579_6e-2;
    p = r * p + 1.666_666_5e-1;
    p = r * p + 0.5;
    let y = p * (r * r) + r + 1.0;
    y * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// Σ x over 16 lanes then across them: one fixed order, vectorisable.
#[inline(always)]
pub fn sum(x: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for (a, v) in acc.iter_mut().zip(c) {
            *a += v;
        }
    }
    acc.iter().sum::<f32>() + tail.iter().sum::<f32>()
}

/// Σ a·b, as [`sum`].
#[inline(always)]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for ((s, p), q) in acc.iter_mut().zip(x).zip(y) {
            *s += p * q;
        }
    }
    acc.iter().sum::<f32>() + tail
}

dispatch! {
    /// `out = GELU(x)` in the exact erf form BERT uses: x · Φ(x).
    pub fn gelu(x: &[f32], out: &mut [f32]) {
        for (o, &v) in out.iter_mut().zip(x) {
            *o = 0.5 * v * (1.0 + erf(v * INV_SQRT2));
        }
    }
}

dispatch! {
    /// `out = dy · (Φ(x) + x · φ(x))`, GELU's derivative times the upstream gradient.
    pub fn gelu_backward(x: &[f32], dy: &[f32], out: &mut [f32]) {
        for ((o, &v), &g) in out.iter_mut().zip(x).zip(dy) {
            let cdf = 0.5 * (1.0 + erf(v * INV_SQRT2));
            let pdf = INV_SQRT_2PI * exp(-0.5 * v * v);
            *o = g * (cdf + v * pdf);
        }
    }
}

dispatch! {
    /// Each `cols`-long row of `p` ← softmax(scale · row).
    pub fn softmax_rows(p: &mut [f32], cols: usize, scale: f32) {
        for row in p.chunks_exact_mut(cols) {
            let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v * scale));
            for v in row.iter_mut() {
                *v = exp(*v * scale - max);
            }
            let inv = 1.0 / sum(row);
            for v in row.iter_mut() {
                *v *= inv;
            }
        }
    }
}

dispatch! {
    /// Softmax backward per row: `ds = scale · P ⊙ (dP − Σ_j dP·P)`, written over `dp`.
    pub fn softmax_backward_rows(p: &[f32], dp: &mut [f32], cols: usize, scale: f32) {
        for (d, pr) in dp.chunks_exact_mut(cols).zip(p.chunks_exact(cols)) {
            let s = dot(d, pr);
            for (x, &pv) in d.iter_mut().zip(pr) {
                *x = scale * pv * (*x - s);
            }
        }
    }
}

dispatch! {
    #[allow(clippy::too_many_arguments)]
    /// LayerNorm forward over `cols`-long rows: `xhat` ← normalised x, `y` ← γ·x̂ + β, and each
    /// row's 1/σ into `inv_std`.
    pub fn layernorm_rows(
        x: &[f32],
        cols: usize,
        gamma: &[f32],
        beta: &[f32],
        eps: f32,
        xhat: &mut [f32],
        y: &mut [f32],
        inv_std: &mut [f32],
    ) {
        let h = cols as f32;
        for (((xr, xh), yr), s) in x
            .chunks_exact(cols)
            .zip(xhat.chunks_exact_mut(cols))
            .zip(y.chunks_exact_mut(cols))
            .zip(inv_std.iter_mut())
        {
            let mean = sum(xr) / h;
            for (o, &v) in xh.iter_mut().zip(xr) {
                *o = v - mean;
            }
            let var = dot(xh, xh) / h;
            *s = 1.0 / (var + eps).sqrt();
            let inv = *s;
            for (((o, xv), &g), &b) in yr.iter_mut().zip(xh.iter_mut()).zip(gamma).zip(beta) {
                *xv *= inv;
                *o = *xv * g + b;
            }
        }
    }
}

dispatch! {
    #[allow(clippy::too_many_arguments)]
    /// LayerNorm backward: `dx` ← (dy·γ − mean(dy·γ) − x̂·mean(dy·γ·x̂)) / σ per row; dγ and dβ
    /// accumulate into `dgamma`, `dbeta`.
    pub fn layernorm_backward_rows(
        dy: &[f32],
        xhat: &[f32],
        inv_std: &[f32],
        cols: usize,
        gamma: &[f32],
        dgamma: &mut [f32],
        dbeta: &mut [f32],
        dx: &mut [f32],
    ) {
        let h = cols as f32;
        for (((dyr, xh), &s), dxr) in dy
            .chunks_exact(cols)
            .zip(xhat.chunks_exact(cols))
            .zip(inv_std)
            .zip(dx.chunks_exact_mut(cols))
        {
            for (((dg, db), &d), &x) in dgamma.iter_mut().zip(dbeta.iter_mut()).zip(dyr).zip(xh) {
                *dg += d * x;
                *db += d;
            }
            for ((o, &d), &g) in dxr.iter_mut().zip(dyr).zip(gamma) {
                *o = d * g;
            }
            let mean_d = sum(dxr) / h;
            let mean_dx = dot(dxr, xh) / h;
            for (o, &x) in dxr.iter_mut().zip(xh) {
                *o = s * (*o - mean_d - x * mean_dx);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_is_within_a_few_ulp_of_libm() {
        let mut worst = 0f32;
        for i in -80_000..=80_000 {
            let x = i as f32 / 10_000.0;
            worst = worst.max((erf(x) - libm::erff(x)).abs());
        }
        assert!(worst < 5e-7, "max |erf − libm::erff| = {worst}");
    }

    #[test]
    fn exp_is_within_a_few_ulp_of_std() {
        let mut worst = 0f32;
        for i in -87_000..=88_000 {
            let x = i as f32 / 1_000.0;
            worst = worst.max(((exp(x) - x.exp()) / x.exp()).abs());
        }
        assert!(worst < 5e-7, "max relative error {worst}");
        assert!(exp(-1000.0) < 1e-37 && exp(-1000.0) >= 0.0);
    }

    #[test]
    fn lane_sums_match_a_plain_sum() {
        let x: Vec<f32> = (0..1000).map(|i| (i as f32 * 0.37).sin()).collect();
        let plain: f64 = x.iter().map(|&v| v as f64).sum();
        assert!((sum(&x) as f64 - plain).abs() < 1e-4);
        let d: f64 = x.iter().map(|&v| v as f64 * v as f64).sum();
        assert!((dot(&x, &x) as f64 - d).abs() < 1e-3);
    }
}
