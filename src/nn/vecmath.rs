//! The element-wise math of the native layers (and of frostline's own ONNX Runtime operators,
//! `backbone::own_ops`) on contiguous rows, written so the compiler
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
    let shifted = x * std::f32::consts::LOG2_E + ROUND;
    let n = shifted - ROUND;
    let r = x - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let mut p = r * 1.987_569_1e-4 + 1.398_199_9e-3;
    p = r * p + 8.333_452e-3;
    p = r * p + 4.166_579_6e-2;
    p = r * p + 1.666_666_5e-1;
    p = r * p + 0.5;
    let y = p * (r * r) + r + 1.0;
    // 2^n: `shifted`'s low mantissa bits hold n + 1.5·2^23, whose low 9 bits are n's; with the
    // bias 127 added (n ∈ [−126, 127] after the clamp) they shift into the exponent. Integer
    // bit work vectorises where `n as i32` (a saturating cast) does not.
    y * f32::from_bits(shifted.to_bits().wrapping_add(127) << 23)
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

/// The largest of `x` (−∞ for none) over 16 lanes then across them; a plain compare per lane,
/// so it vectorises (`f32::max`'s NaN rules keep a fold scalar). NaNs are not propagated.
#[inline(always)]
pub fn max(x: &[f32]) -> f32 {
    let pick = |a: f32, b: f32| if b > a { b } else { a };
    let mut acc = [f32::NEG_INFINITY; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a = pick(*a, v);
        }
    }
    acc.iter()
        .chain(tail)
        .fold(f32::NEG_INFINITY, |m, &v| pick(m, v))
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

/// The per-token int8 recipe's quantization step, the same IEEE operations as ONNX's
/// `Abs → ReduceMax → Max(·, 1e-12) → Div(·, 127) → QuantizeLinear` (zero point 128, one block
/// per row) so the int8 graph frostline runs with its own ops gives the very bits of the portable
/// one: per `cols`-long row, `scale = max(max|x|, 1e-12) / 127` and
/// `q = clamp(round_half_even(x / scale) + 128, 0, 255)`.
pub const QUANT_EPS: f32 = 1e-12;

/// Each `cols`-long row of `x` to uint8 codes `q` (zero point 128) and its scale.
pub fn quantize_rows(x: &[f32], cols: usize, q: &mut [u8], scales: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if Cpu::get().avx512f {
        // SAFETY: the CPU has AVX-512F.
        return unsafe { quantize_rows_avx512(x, cols, q, scales) };
    }
    quantize_rows_any(x, cols, q, scales)
}

/// [`quantize_rows`] on any CPU: the same operations, one lane at a time where the compiler
/// does not vectorise them.
fn quantize_rows_any(x: &[f32], cols: usize, q: &mut [u8], scales: &mut [f32]) {
    const ROUND: f32 = 12_582_912.0; // 1.5 · 2^23: adding it rounds half to even
    for ((row, out), s) in x
        .chunks_exact(cols)
        .zip(q.chunks_exact_mut(cols))
        .zip(scales.iter_mut())
    {
        let amax = row.iter().fold(0f32, |m, v| m.max(v.abs()));
        let scale = amax.max(QUANT_EPS) / 127.0;
        *s = scale;
        for (o, &v) in out.iter_mut().zip(row) {
            // Integral after rounding, so + 128 and the clamp are exact in f32.
            let r = ((v / scale + ROUND) - ROUND) + 128.0;
            *o = r.clamp(0.0, 255.0) as u8;
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn quantize_rows_avx512(x: &[f32], cols: usize, q: &mut [u8], scales: &mut [f32]) {
    use std::arch::x86_64::*;
    for ((row, out), s) in x
        .chunks_exact(cols)
        .zip(q.chunks_exact_mut(cols))
        .zip(scales.iter_mut())
    {
        let body = cols / 16 * 16;
        // `max_ps(a, b)` gives `b` where either is NaN: the new value first, so a NaN is passed
        // over, as `f32::max` does in the portable path (the other order kept a NaN that came
        // last in its lane, and the row's scale became NaN on this path alone).
        let mut acc = _mm512_setzero_ps();
        for i in (0..body).step_by(16) {
            acc = _mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(row.as_ptr().add(i))), acc);
        }
        let amax = row[body..]
            .iter()
            .fold(_mm512_reduce_max_ps(acc), |m, v| m.max(v.abs()));
        let scale = amax.max(QUANT_EPS) / 127.0;
        *s = scale;
        let sv = _mm512_set1_ps(scale);
        // x · (1/scale) is within 1.6e-5 of x / scale (|x / scale| ≤ 127.5, two roundings of
        // 2^-24 each), so both round to the same integer unless x / scale lies within that of a
        // half; only then is the (slower) division done, for bit-exact ties.
        let inv = _mm512_set1_ps(1.0 / scale);
        let near_half = _mm512_set1_ps(0.5 - TIE_MARGIN);
        let zero_point = _mm_set1_epi8(-128);
        for i in (0..body).step_by(16) {
            let v = _mm512_loadu_ps(row.as_ptr().add(i));
            let fast = _mm512_mul_ps(v, inv);
            // Rounded half to even (the MXCSR default); |fast − r| is the distance to the
            // integer, exact in f32 at these magnitudes.
            let mut r = _mm512_cvtps_epi32(fast);
            let off = _mm512_abs_ps(_mm512_sub_ps(fast, _mm512_cvtepi32_ps(r)));
            if _mm512_cmp_ps_mask::<_CMP_GT_OQ>(off, near_half) != 0 {
                r = _mm512_cvtps_epi32(_mm512_div_ps(v, sv));
            }
            // Saturated to [-128, 127] then + 128 as a byte (the xor): clamp(r + 128, 0, 255).
            // A NaN converts to i32::MIN, so to code 0, as the clamp of a NaN sum gave.
            let codes = _mm_xor_si128(_mm512_cvtsepi32_epi8(r), zero_point);
            _mm_storeu_si128(out.as_mut_ptr().add(i).cast(), codes);
        }
        quantize_tail(&row[body..], scale, &mut out[body..]);
    }
}

/// How close to a half `x · (1/scale)` may come before the quotient is computed by division
/// (2^-14, four times the worst error of the product).
const TIE_MARGIN: f32 = 6.103_515_6e-5;

/// The codes of the last `x.len() < 16` values of a row whose scale is known.
#[inline(always)]
fn quantize_tail(x: &[f32], scale: f32, out: &mut [u8]) {
    for (o, &v) in out.iter_mut().zip(x) {
        *o = ((v / scale).round_ties_even() + 128.0).clamp(0.0, 255.0) as u8;
    }
}

dispatch! {
    /// `y = ((f · scale_of_row) + bias) + residual` over `cols`-long rows: an int8 product's
    /// row scale, its bias and the residual in one pass, in the order of the portable graph's
    /// `Mul`, `Add`, `Add`.
    pub fn scale_bias_residual(f: &[f32], scales: &[f32], bias: &[f32], residual: &[f32], y: &mut [f32]) {
        let cols = bias.len();
        for (((fr, &s), rr), yr) in f
            .chunks_exact(cols)
            .zip(scales)
            .zip(residual.chunks_exact(cols))
            .zip(y.chunks_exact_mut(cols))
        {
            for (((o, &v), &b), &r) in yr.iter_mut().zip(fr).zip(bias).zip(rr) {
                *o = (v * s + b) + r;
            }
        }
    }
}

dispatch! {
    /// Each row of `f` times its scale, cut into `parts.len()` equal pieces, piece i of every
    /// row into `parts[i]`: the QKV product's row scale and its split into Q, K and V.
    pub fn scale_split(f: &[f32], scales: &[f32], parts: &mut [&mut [f32]]) {
        let width = parts.first().map_or(0, |p| p.len() / scales.len().max(1));
        let cols = width * parts.len();
        for (r, (row, &s)) in f.chunks_exact(cols).zip(scales).enumerate() {
            for (piece, part) in row.chunks_exact(width).zip(parts.iter_mut()) {
                for (o, &v) in part[r * width..(r + 1) * width].iter_mut().zip(piece) {
                    *o = v * s;
                }
            }
        }
    }
}

/// `out = GELU(x · scale_of_row + bias)` over `bias.len()`-long rows: ONNX Runtime's `BiasGelu`
/// (exact erf form) in one pass, after an int8 product's row scale where `scales` has them (the
/// portable graph's `Mul`; without, the scale is 1, and × 1 is exact).
///
/// Inference only (frostline's ONNX Runtime operators), so the one function here whose AVX-512
/// path runs other operations than the portable one: the erf's polynomials in FMAs and its
/// quotient as a 14-bit reciprocal refined by a Newton step instead of a division (the
/// division was ~40 % of the work); within a few ulp of the portable path.
pub fn bias_gelu(x: &[f32], scales: Option<&[f32]>, bias: &[f32], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if Cpu::get().avx512f {
        // SAFETY: the CPU has AVX-512F (FMA comes with it).
        return unsafe { bias_gelu_avx512(x, scales, bias, out) };
    }
    bias_gelu_portable(x, scales, bias, out)
}

dispatch! {
    /// [`bias_gelu`] in the portable sequence of operations.
    pub fn bias_gelu_portable(x: &[f32], scales: Option<&[f32]>, bias: &[f32], out: &mut [f32]) {
        let cols = bias.len();
        for (r, (xr, or)) in x.chunks_exact(cols).zip(out.chunks_exact_mut(cols)).enumerate() {
            let s = scales.map_or(1.0, |s| s[r]);
            for ((o, &v), &b) in or.iter_mut().zip(xr).zip(bias) {
                let v = v * s + b;
                *o = 0.5 * v * (1.0 + erf(v * INV_SQRT2));
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
unsafe fn bias_gelu_avx512(x: &[f32], scales: Option<&[f32]>, bias: &[f32], out: &mut [f32]) {
    use std::arch::x86_64::*;
    #[inline(always)]
    unsafe fn gelu16(v: __m512) -> __m512 {
        let z = _mm512_mul_ps(v, _mm512_set1_ps(INV_SQRT2));
        let z = _mm512_min_ps(_mm512_max_ps(z, _mm512_set1_ps(-4.0)), _mm512_set1_ps(4.0));
        let z2 = _mm512_mul_ps(z, z);
        let c = |v: f32| _mm512_set1_ps(v);
        let mut p = _mm512_fmadd_ps(z2, c(-2.726_142_3e-10), c(2.770_681_4e-8));
        for k in [
            -2.101_024e-6,
            -5.692_506_5e-5,
            -7.349_906_3e-4,
            -2.9546e-3,
            -1.609_603_3e-2,
        ] {
            p = _mm512_fmadd_ps(z2, p, c(k));
        }
        p = _mm512_mul_ps(p, z);
        let mut q = _mm512_fmadd_ps(z2, c(-1.456_607_2e-5), c(-2.133_740_6e-4));
        for k in [-1.682_827e-3, -7.373_329e-3, -1.426_473_9e-2] {
            q = _mm512_fmadd_ps(z2, q, c(k));
        }
        // 1/q: 14 bits, then one Newton step r(2 − q·r) to ~28 (q is never near 0 here).
        let r = _mm512_rcp14_ps(q);
        let r = _mm512_mul_ps(r, _mm512_fnmadd_ps(q, r, c(2.0)));
        let erf = _mm512_mul_ps(p, r);
        let half_v = _mm512_mul_ps(v, c(0.5));
        _mm512_fmadd_ps(half_v, erf, half_v)
    }
    let cols = bias.len();
    let body = cols / 16 * 16;
    for (row, (xr, or)) in x
        .chunks_exact(cols)
        .zip(out.chunks_exact_mut(cols))
        .enumerate()
    {
        let s = scales.map_or(1.0, |s| s[row]);
        let sv = _mm512_set1_ps(s);
        for i in (0..body).step_by(16) {
            let v = _mm512_add_ps(
                _mm512_mul_ps(_mm512_loadu_ps(xr.as_ptr().add(i)), sv),
                _mm512_loadu_ps(bias.as_ptr().add(i)),
            );
            _mm512_storeu_ps(or.as_mut_ptr().add(i), gelu16(v));
        }
        for ((o, &v), &b) in or[body..].iter_mut().zip(&xr[body..]).zip(&bias[body..]) {
            let v = v * s + b;
            *o = 0.5 * v * (1.0 + erf(v * INV_SQRT2));
        }
    }
}

dispatch! {
    #[allow(clippy::too_many_arguments)]
    /// `y = LayerNorm((f · scale_of_row + bias) + residual)` over `bias.len()`-long rows, in one
    /// pass over memory: a product's bias, the residual and the norm after it (ONNX's `Add`,
    /// `Add`, `LayerNormalization`), after an int8 product's row scale where `scales` has them
    /// (without, the scale is 1, and × 1 is exact).
    pub fn bias_residual_layernorm(
        f: &[f32],
        scales: Option<&[f32]>,
        bias: &[f32],
        residual: &[f32],
        gamma: &[f32],
        beta: &[f32],
        eps: f32,
        y: &mut [f32],
    ) {
        let cols = bias.len();
        let h = cols as f32;
        for (row, ((fr, rr), yr)) in f
            .chunks_exact(cols)
            .zip(residual.chunks_exact(cols))
            .zip(y.chunks_exact_mut(cols))
            .enumerate()
        {
            let s = scales.map_or(1.0, |s| s[row]);
            for (((o, &v), &b), &r) in yr.iter_mut().zip(fr).zip(bias).zip(rr) {
                *o = (v * s + b) + r;
            }
            let mean = sum(yr) / h;
            for o in yr.iter_mut() {
                *o -= mean;
            }
            let inv = 1.0 / ((dot(yr, yr) / h) + eps).sqrt();
            for ((o, &g), &b) in yr.iter_mut().zip(gamma).zip(beta) {
                *o = *o * inv * g + b;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The per-token quantization as ONNX writes it: ReduceMax(Abs), Max(eps), Div(127), then
    /// QuantizeLinear's round half to even of x / scale, + 128, saturated.
    fn quantize_reference(row: &[f32]) -> (Vec<u8>, f32) {
        let amax = row.iter().fold(0f32, |m, v| m.max(v.abs()));
        let scale = amax.max(QUANT_EPS) / 127.0;
        let q = row
            .iter()
            .map(|v| ((v / scale).round_ties_even() as i32 + 128).clamp(0, 255) as u8)
            .collect();
        (q, scale)
    }

    #[test]
    fn quantize_rows_matches_onnx_on_every_path_ties_included() {
        // Widths with and without a tail, an all-zero row, and rows whose values sit exactly on
        // halves of the scale (x = (k + 0.5) · amax / 127), where rounding must go to even.
        for cols in [384, 1536, 37, 5] {
            let mut x: Vec<f32> = (0..cols * 6)
                .map(|i| ((i * 7919 % 1000) as f32 - 500.0) * 0.013)
                .collect();
            x[cols..2 * cols].fill(0.0);
            let amax = 127.0f32;
            for (j, v) in x[2 * cols..3 * cols].iter_mut().enumerate() {
                *v = if j == 0 {
                    amax
                } else {
                    (j % 254) as f32 - 126.5
                };
            }
            // Values a hair either side of a half: the product by 1/scale must not round them
            // across it.
            // A scale that is no power of two (max 100: 100 / 127), so x · (1/scale) and
            // x / scale can differ in the last place.
            let scale = 100f32 / 127.0;
            for (j, v) in x[3 * cols..4 * cols].iter_mut().enumerate() {
                let on_half = ((j % 200) as f32 - 99.5) * scale;
                *v = match (j, j % 3) {
                    (0, _) => 100.0,
                    (_, 0) => on_half,
                    (_, 1) => on_half.next_up(),
                    _ => on_half.next_down(),
                };
            }
            let rows = x.len() / cols;
            let (mut q, mut s) = (vec![0u8; x.len()], vec![0f32; rows]);
            let (mut q_any, mut s_any) = (q.clone(), s.clone());
            quantize_rows(&x, cols, &mut q, &mut s);
            quantize_rows_any(&x, cols, &mut q_any, &mut s_any);
            for r in 0..rows {
                let (want, scale) = quantize_reference(&x[r * cols..(r + 1) * cols]);
                assert_eq!(s[r].to_bits(), scale.to_bits(), "cols {cols} row {r} scale");
                assert_eq!(
                    &q[r * cols..(r + 1) * cols],
                    &want[..],
                    "cols {cols} row {r}"
                );
                assert_eq!(q_any, q, "cols {cols}: the portable path differs");
                assert_eq!(s_any, s);
            }
        }
        // A NaN (first, in the middle, last) is passed over by the row's maximum on every path,
        // and codes to 0.
        for cols in [1536, 37] {
            let mut x: Vec<f32> = (0..cols).map(|i| (i as f32 * 0.37).sin()).collect();
            for at in [0, cols / 2, cols - 1] {
                x[at] = f32::NAN;
            }
            let (mut q, mut s) = (vec![0u8; cols], vec![0f32; 1]);
            let (mut q_any, mut s_any) = (q.clone(), s.clone());
            quantize_rows(&x, cols, &mut q, &mut s);
            quantize_rows_any(&x, cols, &mut q_any, &mut s_any);
            let amax = x
                .iter()
                .filter(|v| !v.is_nan())
                .fold(0f32, |m, v| m.max(v.abs()));
            assert_eq!(s[0], amax / 127.0, "cols {cols}");
            assert_eq!((q[0], q[cols / 2], q[cols - 1]), (0, 0, 0));
            assert_eq!((q_any, s_any), (q, s), "cols {cols}");
        }
    }

    #[test]
    fn scaled_products_keep_the_portable_order() {
        let f: Vec<f32> = (0..2 * 12).map(|i| (i as f32 * 0.61).sin()).collect();
        let scales = [0.3f32, 1.7];
        let bias: Vec<f32> = (0..12).map(|i| i as f32 * 0.1).collect();
        let resid: Vec<f32> = (0..24).map(|i| (i as f32).cos()).collect();
        let mut y = vec![0f32; 24];
        scale_bias_residual(&f, &scales, &bias, &resid, &mut y);
        for i in 0..24 {
            let mul = f[i] * scales[i / 12];
            assert_eq!(y[i].to_bits(), ((mul + bias[i % 12]) + resid[i]).to_bits());
        }
        let (mut q, mut k, mut v) = (vec![0f32; 8], vec![0f32; 8], vec![0f32; 8]);
        scale_split(&f, &scales, &mut [&mut q, &mut k, &mut v]);
        for r in 0..2 {
            for (p, part) in [&q, &k, &v].into_iter().enumerate() {
                for c in 0..4 {
                    assert_eq!(part[r * 4 + c], f[r * 12 + p * 4 + c] * scales[r]);
                }
            }
        }
    }

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

    #[test]
    fn bias_gelu_and_the_fused_layernorm_match_f64() {
        let cols = 40; // not a multiple of the 16 lanes
        let x: Vec<f32> = (0..3 * cols)
            .map(|i| (i as f32 * 0.71).sin() * 5.0)
            .collect();
        let r: Vec<f32> = (0..3 * cols)
            .map(|i| (i as f32 * 0.13).cos() * 3.0)
            .collect();
        let b: Vec<f32> = (0..cols).map(|i| (i as f32 * 0.5).cos()).collect();
        let g: Vec<f32> = (0..cols).map(|i| 1.0 + i as f32 * 0.01).collect();
        let be: Vec<f32> = (0..cols).map(|i| i as f32 * -0.02).collect();
        // Without row scales (fp32) and with an int8 product's (the portable graph's `Mul`).
        let row_scales = [0.5f32, 1.75, 0.03];
        for scales in [None, Some(&row_scales[..])] {
            let s = |row: usize| scales.map_or(1.0, |s| s[row]) as f64;
            let mut out = vec![0f32; 3 * cols];
            // The dispatcher's pick (AVX-512's own operations where the CPU has it) and the
            // portable sequence.
            type Gelu = fn(&[f32], Option<&[f32]>, &[f32], &mut [f32]);
            for gelu in [bias_gelu as Gelu, bias_gelu_portable] {
                gelu(&x, scales, &b, &mut out);
                for (i, &o) in out.iter().enumerate() {
                    let v = x[i] as f64 * s(i / cols) + b[i % cols] as f64;
                    let want = 0.5 * v * (1.0 + libm::erf(v / std::f64::consts::SQRT_2));
                    assert!(
                        (o as f64 - want).abs() < 1e-5 * (1.0 + want.abs()),
                        "gelu at {i}: {o} vs {want}"
                    );
                }
            }
            bias_residual_layernorm(&x, scales, &b, &r, &g, &be, 1e-12, &mut out);
            for row in 0..3 {
                let t: Vec<f64> = (0..cols)
                    .map(|c| {
                        x[row * cols + c] as f64 * s(row) + b[c] as f64 + r[row * cols + c] as f64
                    })
                    .collect();
                let mean = t.iter().sum::<f64>() / cols as f64;
                let var = t.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / cols as f64;
                for c in 0..cols {
                    let want = (t[c] - mean) / (var + 1e-12).sqrt() * g[c] as f64 + be[c] as f64;
                    let o = out[row * cols + c] as f64;
                    assert!(
                        (o - want).abs() < 1e-5,
                        "layernorm at {row},{c}: {o} vs {want}"
                    );
                }
            }
        }
    }
}
