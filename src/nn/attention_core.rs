//! The attention core of one (sequence, head) of a padded batch, forward only: the scaled
//! products of the queries with the kept keys, their softmax, and the weighted sum of the values
//! — what ONNX Runtime's `Attention` computes after its QKV product, for frostline's own
//! operator (`backbone::own_ops`). ONNX Runtime runs it as three small GEMM calls per head,
//! which on 20-token texts costs more in calls than in arithmetic; here each head is one pass
//! over register tiles of 4 query rows × 16 keys (scores) and 4 rows × 16 features (context).
//!
//! Masked keys are left out rather than given −10000 as ORT does: e^(−10000) is 0 in f32, so
//! the results agree; a row whose keys are all masked attends to every key, as ORT's uniform
//! shift of all scores does.

use std::ops::Range;

use super::gemm::Cpu;

/// Query rows per register tile.
const ROWS: usize = 8;
/// f32 lanes per vector (one AVX-512 register).
const LANES: usize = 16;

/// Working memory of [`attend`], kept per thread so a task allocates nothing once warm.
#[derive(Default)]
pub struct Scratch {
    /// Keys transposed, per head `[head_dim, keys rounded up to LANES]` (padding zero).
    kt: Vec<f32>,
    /// Values, per head `[keys, head_dim]`.
    v: Vec<f32>,
    /// Queries times 1/√head_dim, per head `[rows rounded up to ROWS, head_dim]` (padding zero).
    q: Vec<f32>,
    /// One tile's scores, then exponentials, `[ROWS, keys rounded up]`.
    p: Vec<f32>,
    /// One head's context, `[rows rounded up, head_dim]`.
    head_ctx: Vec<f32>,
    /// The context of every query row for the group's heads, `[seq, heads in group · head_dim]`.
    pub ctx: Vec<f32>,
    /// `head_dim` zeros: the rows that fill the last block of 16 keys.
    zeros: Vec<f32>,
}

/// One sequence's QKV product as the attention reads it: each row of Q, K and V is
/// `product · scale + bias` (the portable graph's order).
#[derive(Clone, Copy)]
pub struct Qkv<'a> {
    /// `[seq, 3·hidden]`, without bias.
    pub product: &'a [f32],
    /// The product's scale per row where it is an int8 one; `None`: 1 (× 1 is exact).
    pub row_scales: Option<&'a [f32]>,
    /// The `3·hidden` biases.
    pub bias: &'a [f32],
}

/// One sequence's attention for the heads in `group`: `keys` are the positions not masked
/// (none: every key). The context `[seq, group.len() · hidden / heads]` is left in
/// `scratch.ctx`.
///
/// A group's Q, K and V of a row are read as three contiguous runs, once for all its heads:
/// the rows are 3·hidden apart (4.6 kB for MiniLM), past what the hardware prefetcher follows,
/// so reading them head by head missed the cache on every row.
pub fn attend(qkv: Qkv, keys: &[usize], heads: usize, group: Range<usize>, scratch: &mut Scratch) {
    #[cfg(target_arch = "x86_64")]
    {
        let cpu = Cpu::get();
        if cpu.avx512f {
            // SAFETY: the CPU has the features the function was compiled for.
            return unsafe { attend_avx512(qkv, keys, heads, group, scratch) };
        }
        if cpu.avx2_fma {
            // SAFETY: as above.
            return unsafe { attend_avx2(qkv, keys, heads, group, scratch) };
        }
    }
    attend_body::<Separate>(qkv, keys, heads, group, scratch)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx512bw,avx512dq,fma")]
unsafe fn attend_avx512(
    qkv: Qkv,
    keys: &[usize],
    heads: usize,
    group: Range<usize>,
    s: &mut Scratch,
) {
    attend_body::<Avx512>(qkv, keys, heads, group, s)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn attend_avx2(
    qkv: Qkv,
    keys: &[usize],
    heads: usize,
    group: Range<usize>,
    s: &mut Scratch,
) {
    attend_body::<Fused>(qkv, keys, heads, group, s)
}

/// The register-tiled product and the softmax of [`attend`], for ROWS query rows at a time.
trait Tiles {
    /// a·b + c: fused where the CPU has FMA (a plain multiply and add elsewhere, not a libm
    /// call).
    fn mul_add(a: f32, b: f32, c: f32) -> f32;

    /// `out[r, j] = Σ_k a[r·lda + k] · b[k·ldb + j]` for the tile's ROWS rows, `k < depth`,
    /// `j < cols`: the scores (queries × Kᵀ) and the context (probabilities × V) alike.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn tile_product(
        a: &[f32],
        lda: usize,
        depth: usize,
        b: &[f32],
        ldb: usize,
        cols: usize,
        out: &mut [f32],
        ldo: usize,
    ) {
        for r in 0..ROWS {
            let o = &mut out[r * ldo..r * ldo + cols];
            o.fill(0.0);
            for k in 0..depth {
                let w = a[r * lda + k];
                for (o, &x) in o.iter_mut().zip(&b[k * ldb..k * ldb + cols]) {
                    *o = Self::mul_add(w, x, *o);
                }
            }
        }
    }

    /// The tile's scores `out[r, j] = Σ_f q[r·d + f] · kt[f·nkp + j]` for `j < nkp` (as
    /// [`Tiles::tile_product`]), returning each row's max over its first `nk` scores.
    #[inline(always)]
    fn score_tile(
        q: &[f32],
        d: usize,
        kt: &[f32],
        nkp: usize,
        nk: usize,
        out: &mut [f32],
    ) -> [f32; ROWS] {
        Self::tile_product(q, d, d, kt, nkp, nkp, out, nkp);
        std::array::from_fn(|r| super::vecmath::max(&out[r * nkp..r * nkp + nk]))
    }

    /// The first `nk` entries of a score row ← e^(score − max), `max` the row's; returns 1 /
    /// their sum.
    #[inline(always)]
    fn exp_scores(row: &mut [f32], nk: usize, max: f32) -> f32 {
        exp_scores(row, nk, max)
    }

    /// Whether [`Tiles::keys_block`] transposes in registers (else keys go one by one).
    const BLOCK_TRANSPOSE: bool = false;

    /// Columns of Kᵀ for 16 keys at once: `kt[f·ld + t] = rows[t][f] · scales[t] + bias[f]`
    /// for `f < rows[t].len()` (a multiple of 16). Only called where `BLOCK_TRANSPOSE`.
    #[inline(always)]
    fn keys_block(
        _rows: &[&[f32]; 16],
        _scales: &[f32; 16],
        _bias: &[f32],
        _kt: &mut [f32],
        _ld: usize,
    ) {
        unreachable!("no block transpose on this path")
    }
}

struct Fused;
impl Tiles for Fused {
    #[inline(always)]
    fn mul_add(a: f32, b: f32, c: f32) -> f32 {
        a.mul_add(b, c)
    }
}

struct Separate;
impl Tiles for Separate {
    #[inline(always)]
    fn mul_add(a: f32, b: f32, c: f32) -> f32 {
        a * b + c
    }
}

/// AVX-512 tiles: ROWS rows × 32 columns in 16 accumulators, enough independent FMA chains to
/// keep both FMA ports busy; a last 16 columns with 8.
#[cfg(target_arch = "x86_64")]
struct Avx512;

#[cfg(target_arch = "x86_64")]
impl Tiles for Avx512 {
    #[inline(always)]
    fn mul_add(a: f32, b: f32, c: f32) -> f32 {
        a.mul_add(b, c)
    }

    const BLOCK_TRANSPOSE: bool = true;

    #[inline(always)]
    fn keys_block(
        rows: &[&[f32]; 16],
        scales: &[f32; 16],
        bias: &[f32],
        kt: &mut [f32],
        ld: usize,
    ) {
        let d = bias.len();
        assert!(d.is_multiple_of(LANES) && rows.iter().all(|r| r.len() == d));
        assert!(kt.len() >= (d - 1) * ld + LANES);
        for c in (0..d).step_by(LANES) {
            // SAFETY: AVX-512F (this type is only used there); loads of 16 at c < d from rows
            // and bias of length d, stores of 16 at f·ld for f < d inside kt (asserted).
            unsafe {
                use std::arch::x86_64::*;
                let b = _mm512_loadu_ps(bias.as_ptr().add(c));
                let mut v: [__m512; 16] = std::array::from_fn(|t| {
                    _mm512_add_ps(
                        _mm512_mul_ps(
                            _mm512_loadu_ps(rows[t].as_ptr().add(c)),
                            _mm512_set1_ps(scales[t]),
                        ),
                        b,
                    )
                });
                avx512::transpose16(&mut v);
                for (f, v) in v.iter().enumerate() {
                    _mm512_storeu_ps(kt.as_mut_ptr().add((c + f) * ld), *v);
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn tile_product(
        a: &[f32],
        lda: usize,
        depth: usize,
        b: &[f32],
        ldb: usize,
        cols: usize,
        out: &mut [f32],
        ldo: usize,
    ) {
        let fits = |len: usize, ld: usize, rows: usize, width: usize| {
            rows == 0 || len >= (rows - 1) * ld + width
        };
        assert!(
            fits(a.len(), lda, ROWS, depth)
                && fits(b.len(), ldb, depth, cols)
                && fits(out.len(), ldo, ROWS, cols)
        );
        let mut c = 0;
        while c + 2 * LANES <= cols {
            // SAFETY: AVX-512F is enabled by the caller's target features; c + 32 ≤ cols and the
            // lengths asserted above bound every access.
            unsafe { avx512::block::<2>(a, lda, depth, b, ldb, out, ldo, c, None) };
            c += 2 * LANES;
        }
        if c + LANES <= cols {
            // SAFETY: as above, with c + 16 ≤ cols.
            unsafe { avx512::block::<1>(a, lda, depth, b, ldb, out, ldo, c, None) };
            c += LANES;
        }
        // Columns past the last 16 (a head width that is not a multiple of 16), one at a time.
        for r in 0..ROWS {
            for j in c..cols {
                let mut acc = 0f32;
                for k in 0..depth {
                    acc = a[r * lda + k].mul_add(b[k * ldb + j], acc);
                }
                out[r * ldo + j] = acc;
            }
        }
    }

    #[inline(always)]
    fn score_tile(
        q: &[f32],
        d: usize,
        kt: &[f32],
        nkp: usize,
        nk: usize,
        out: &mut [f32],
    ) -> [f32; ROWS] {
        assert!(
            nkp.is_multiple_of(LANES)
                && nk <= nkp
                && q.len() >= ROWS * d
                && kt.len() >= d * nkp
                && out.len() >= ROWS * nkp
        );
        // SAFETY: AVX-512F is enabled by the caller's target features; every block's columns
        // lie below nkp, and the lengths asserted above bound every access.
        unsafe {
            use std::arch::x86_64::*;
            // The max rides along the stores, so the scores are not read again for it.
            let mut max = [_mm512_set1_ps(f32::NEG_INFINITY); ROWS];
            let mut c = 0;
            while c + 2 * LANES <= nkp {
                avx512::block::<2>(q, d, d, kt, nkp, out, nkp, c, Some((&mut max, nk)));
                c += 2 * LANES;
            }
            if c < nkp {
                avx512::block::<1>(q, d, d, kt, nkp, out, nkp, c, Some((&mut max, nk)));
            }
            let mut row_max = [0f32; ROWS];
            for (out, &m) in row_max.iter_mut().zip(&max) {
                *out = _mm512_reduce_max_ps(m);
            }
            row_max
        }
    }

    #[inline(always)]
    fn exp_scores(row: &mut [f32], nk: usize, max: f32) -> f32 {
        assert!(nk >= 1 && nk <= row.len() && row.len().is_multiple_of(LANES));
        let last = (nk - 1) / LANES;
        // SAFETY: AVX-512F is enabled by the caller's target features; each chunk is 16 floats
        // of `row`.
        unsafe {
            use std::arch::x86_64::*;
            let m = _mm512_set1_ps(max);
            let mut sum = _mm512_setzero_ps();
            // Chunks past the one holding the last kept key are padding the context never reads.
            for chunk in row.chunks_exact_mut(LANES).take(last) {
                let e = avx512::exp(_mm512_sub_ps(_mm512_loadu_ps(chunk.as_ptr()), m));
                _mm512_storeu_ps(chunk.as_mut_ptr(), e);
                sum = _mm512_add_ps(sum, e);
            }
            // The last one's lanes past the kept keys stay out of the sum.
            let chunk = &mut row[last * LANES..(last + 1) * LANES];
            let e = avx512::exp(_mm512_sub_ps(_mm512_loadu_ps(chunk.as_ptr()), m));
            _mm512_storeu_ps(chunk.as_mut_ptr(), e);
            sum = _mm512_mask_add_ps(sum, avx512::kept(nk - last * LANES), sum, e);
            1.0 / _mm512_reduce_add_ps(sum)
        }
    }
}

/// The register blocks of [`Avx512`]'s tiles: `V` vectors of 16 per row, ROWS rows.
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{LANES, ROWS};

    /// e^x for x ≤ 0 (a score minus its row's max): x = n·ln2 + r, |r| ≤ ln2/2, e^r by a
    /// degree-5 minimax polynomial in FMAs (relative error 2e-7 in f32 arithmetic, as the
    /// degree-7 Taylor form of Cephes' expf gives 1.2e-7), and 2^n by `scalef` — about half the
    /// instructions of `vecmath::exp`, which keeps one operation order on every CPU for the
    /// native layers.
    #[inline(always)]
    pub(super) unsafe fn exp(x: __m512) -> __m512 {
        const NEAREST: i32 = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
        let x = _mm512_max_ps(x, _mm512_set1_ps(-87.3));
        let n = _mm512_roundscale_ps::<NEAREST>(_mm512_mul_ps(
            x,
            _mm512_set1_ps(std::f32::consts::LOG2_E),
        ));
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693_359_4), x);
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.121_944_4e-4), r);
        // e^r = 1 + r + r²·p(r).
        let mut p = _mm512_fmadd_ps(
            _mm512_set1_ps(8.312_525e-3),
            r,
            _mm512_set1_ps(4.189_011_5e-2),
        );
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.666_711_4e-1));
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.999_923e-1));
        let y = _mm512_fmadd_ps(
            p,
            _mm512_mul_ps(r, r),
            _mm512_add_ps(r, _mm512_set1_ps(1.0)),
        );
        _mm512_scalef_ps(y, n)
    }

    /// The lanes of a 16-lane chunk that hold the first `n` (≥ 16: all) of its values.
    #[inline(always)]
    pub(super) fn kept(n: usize) -> __mmask16 {
        ((1u32 << n.min(LANES)) - 1) as __mmask16
    }

    /// Transposes a 16 × 16 block held as 16 rows: `v[i][j]` ← `v[j][i]` (pairs, quads, then
    /// 128-bit lanes swapped across registers in four rounds of shuffles).
    #[inline(always)]
    pub(super) unsafe fn transpose16(v: &mut [__m512; 16]) {
        let mut t = [_mm512_setzero_ps(); 16];
        for i in 0..8 {
            t[2 * i] = _mm512_unpacklo_ps(v[2 * i], v[2 * i + 1]);
            t[2 * i + 1] = _mm512_unpackhi_ps(v[2 * i], v[2 * i + 1]);
        }
        let pd = |x: __m512| _mm512_castps_pd(x);
        let ps = |x: __m512d| _mm512_castpd_ps(x);
        for q in 0..4 {
            let (a, b) = (4 * q, 4 * q + 2);
            v[4 * q] = ps(_mm512_unpacklo_pd(pd(t[a]), pd(t[b])));
            v[4 * q + 1] = ps(_mm512_unpackhi_pd(pd(t[a]), pd(t[b])));
            v[4 * q + 2] = ps(_mm512_unpacklo_pd(pd(t[a + 1]), pd(t[b + 1])));
            v[4 * q + 3] = ps(_mm512_unpackhi_pd(pd(t[a + 1]), pd(t[b + 1])));
        }
        for h in 0..2 {
            for i in 0..4 {
                let (a, b) = (8 * h + i, 8 * h + 4 + i);
                t[8 * h + i] = _mm512_shuffle_f32x4::<0x88>(v[a], v[b]);
                t[8 * h + 4 + i] = _mm512_shuffle_f32x4::<0xdd>(v[a], v[b]);
            }
        }
        for i in 0..8 {
            v[i] = _mm512_shuffle_f32x4::<0x88>(t[i], t[8 + i]);
            v[8 + i] = _mm512_shuffle_f32x4::<0xdd>(t[i], t[8 + i]);
        }
    }

    /// Columns `c..c + 16·V` of [`super::Tiles::tile_product`], in ROWS·V accumulators; with
    /// `max` = (row maxima, n), each row's max also takes in its stored columns below n.
    ///
    /// # Safety
    /// AVX-512F; the rows and columns read and written lie inside `a`, `b` and `out` (checked by
    /// the caller), and c + 16·V ≤ the product's columns.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    pub(super) unsafe fn block<const V: usize>(
        a: &[f32],
        lda: usize,
        depth: usize,
        b: &[f32],
        ldb: usize,
        out: &mut [f32],
        ldo: usize,
        c: usize,
        max: Option<(&mut [__m512; ROWS], usize)>,
    ) {
        let (ap, bp, op) = (a.as_ptr(), b.as_ptr(), out.as_mut_ptr());
        let mut acc = [[_mm512_setzero_ps(); V]; ROWS];
        for k in 0..depth {
            let x: [__m512; V] =
                std::array::from_fn(|v| _mm512_loadu_ps(bp.add(k * ldb + c + v * LANES)));
            for (r, acc) in acc.iter_mut().enumerate() {
                let w = _mm512_set1_ps(*ap.add(r * lda + k));
                for (acc, &x) in acc.iter_mut().zip(&x) {
                    *acc = _mm512_fmadd_ps(w, x, *acc);
                }
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            for (v, &acc) in acc.iter().enumerate() {
                _mm512_storeu_ps(op.add(r * ldo + c + v * LANES), acc);
            }
        }
        if let Some((max, n)) = max {
            let kept: [__mmask16; V] =
                std::array::from_fn(|v| kept(n.saturating_sub(c + v * LANES)));
            for (max, acc) in max.iter_mut().zip(&acc) {
                for (&acc, &kept) in acc.iter().zip(&kept) {
                    // max(v, m) keeps m where v is NaN, as vecmath::max never picks a NaN.
                    *max = _mm512_mask_max_ps(*max, kept, acc, *max);
                }
            }
        }
    }
}

#[inline(always)]
fn attend_body<M: Tiles>(
    qkv: Qkv,
    keys: &[usize],
    heads: usize,
    group: Range<usize>,
    s: &mut Scratch,
) {
    let Qkv {
        product: qkv,
        row_scales,
        bias,
    } = qkv;
    let hidden = bias.len() / 3;
    let d = hidden / heads;
    let width = 3 * hidden;
    let seq = qkv.len() / width;
    let all: Vec<usize>;
    let keys = if keys.is_empty() {
        all = (0..seq).collect();
        &all
    } else {
        keys
    };
    let (nk, gh) = (keys.len(), group.len());
    let nkp = nk.div_ceil(LANES) * LANES;
    let rows = seq.div_ceil(ROWS) * ROWS;
    let run = gh * d; // one part's features for the group, contiguous in a row
    let (oq, ok, ov) = (
        group.start * d,
        hidden + group.start * d,
        2 * hidden + group.start * d,
    );
    let scale = 1.0 / (d as f32).sqrt();
    // An fp32 product's rows have scale 1: × 1 is exact, so one body serves both.
    let row_scale = |i: usize| row_scales.map_or(1.0, |s| s[i]);
    let (kt_len, v_len, q_len) = (d * nkp, nk * d, rows * d);

    // Buffers are resized, not cleared: every entry read below is written first, and the
    // padding the tiles read (Kᵀ columns past the keys, Q rows past the sequence) is zeroed.
    s.kt.resize(gh * kt_len, 0.0);
    s.v.resize(gh * v_len, 0.0);
    // Keys in groups of 16 transpose in registers where the path can (Kᵀ columns are nkp
    // apart, a strided store per value otherwise), the last group filled up with zero rows
    // (their columns are padding, zeroed below); elsewhere one by one.
    let blocked = if M::BLOCK_TRANSPOSE && d.is_multiple_of(16) {
        nkp
    } else {
        0
    };
    s.zeros.resize(d, 0.0);
    for (j, &key) in keys.iter().enumerate() {
        if let Some(&ahead) = keys.get(j + PREFETCH_ROWS) {
            prefetch(&qkv[ahead * width + ok..], run);
            prefetch(&qkv[ahead * width + ov..], run);
        }
        let row = &qkv[key * width..(key + 1) * width];
        let rs = row_scale(key);
        if j >= blocked {
            for (h, (k, b)) in row[ok..ok + run]
                .chunks_exact(d)
                .zip(bias[ok..ok + run].chunks_exact(d))
                .enumerate()
            {
                // Column j of head h's Kᵀ: a strided write per feature, through an iterator so
                // the compiler proves every index in bounds once rather than per element.
                for ((o, &x), &b) in s.kt[h * kt_len + j..].iter_mut().step_by(nkp).zip(k).zip(b) {
                    *o = x * rs + b;
                }
            }
        }
        for (h, (v, b)) in row[ov..ov + run]
            .chunks_exact(d)
            .zip(bias[ov..ov + run].chunks_exact(d))
            .enumerate()
        {
            let out = &mut s.v[h * v_len + j * d..h * v_len + (j + 1) * d];
            for ((o, &x), &b) in out.iter_mut().zip(v).zip(b) {
                *o = x * rs + b;
            }
        }
    }
    for j0 in (0..blocked).step_by(16) {
        let scales: [f32; 16] =
            std::array::from_fn(|t| keys.get(j0 + t).map_or(0.0, |&key| row_scale(key)));
        for h in 0..gh {
            let at = ok + h * d;
            let rows: [&[f32]; 16] = std::array::from_fn(|t| match keys.get(j0 + t) {
                Some(&key) => &qkv[key * width + at..key * width + at + d],
                None => &s.zeros[..],
            });
            M::keys_block(
                &rows,
                &scales,
                &bias[at..at + d],
                &mut s.kt[h * kt_len + j0..],
                nkp,
            );
        }
    }
    for h in 0..gh {
        for f in 0..d {
            s.kt[h * kt_len + f * nkp + nk..h * kt_len + (f + 1) * nkp].fill(0.0);
        }
    }
    s.q.resize(gh * q_len, 0.0);
    for h in 0..gh {
        s.q[h * q_len + seq * d..(h + 1) * q_len].fill(0.0);
    }
    for i in 0..seq {
        if i + PREFETCH_ROWS < seq {
            prefetch(&qkv[(i + PREFETCH_ROWS) * width + oq..], run);
        }
        let row = &qkv[i * width..(i + 1) * width];
        let rs = row_scale(i);
        for (h, (q, b)) in row[oq..oq + run]
            .chunks_exact(d)
            .zip(bias[oq..oq + run].chunks_exact(d))
            .enumerate()
        {
            let out = &mut s.q[h * q_len + i * d..h * q_len + (i + 1) * d];
            for ((o, &x), &b) in out.iter_mut().zip(q).zip(b) {
                *o = (x * rs + b) * scale;
            }
        }
    }
    s.p.resize(ROWS * nkp, 0.0);
    s.head_ctx.resize(rows * d, 0.0);
    s.ctx.resize(seq * run, 0.0);

    for h in 0..gh {
        let (kt, v) = (
            &s.kt[h * kt_len..(h + 1) * kt_len],
            &s.v[h * v_len..(h + 1) * v_len],
        );
        for i0 in (0..seq).step_by(ROWS) {
            let q = &s.q[h * q_len + i0 * d..h * q_len + (i0 + ROWS) * d];
            let max = M::score_tile(q, d, kt, nkp, nk, &mut s.p);
            // A loop, not a closure: a closure would not share the caller's target features,
            // and the SIMD exponentials would become calls.
            let mut inv = [0f32; ROWS];
            for (r, inv) in inv.iter_mut().enumerate() {
                *inv = M::exp_scores(&mut s.p[r * nkp..(r + 1) * nkp], nk, max[r]);
            }
            let ctx = &mut s.head_ctx[i0 * d..(i0 + ROWS) * d];
            M::tile_product(&s.p, nkp, nk, v, d, d, ctx, d);
            // The softmax's normalisation, on the context row (d values) rather than the scores.
            for (row, &inv) in ctx.chunks_exact_mut(d).zip(&inv) {
                for x in row {
                    *x *= inv;
                }
            }
        }
        for (i, row) in s.head_ctx.chunks_exact(d).take(seq).enumerate() {
            s.ctx[i * run + h * d..i * run + (h + 1) * d].copy_from_slice(row);
        }
    }
}

/// Rows ahead whose Q, K or V runs are fetched into cache while this row is copied: the rows are
/// 3·hidden floats apart, a stride the hardware prefetcher does not follow across pages.
const PREFETCH_ROWS: usize = 4;

/// Asks for the cache lines of the first `len` floats of `x` (a hint; nothing on other CPUs).
#[inline(always)]
fn prefetch(x: &[f32], len: usize) {
    #[cfg(target_arch = "x86_64")]
    for at in (0..len.min(x.len())).step_by(16) {
        // SAFETY: a prefetch of an address inside `x`; it reads nothing and cannot fault.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                x.as_ptr().add(at).cast(),
            );
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (x, len);
}

/// The first `nk` entries of `row` ← e^(score − max), `max` the max of those, returning 1 /
/// their sum (the softmax without its division). The exponentials run over the whole row, a
/// multiple of 16 (no scalar tail); the padding after `nk` is left out of the sum, and the
/// context never reads it.
#[inline(always)]
fn exp_scores(row: &mut [f32], nk: usize, max: f32) -> f32 {
    let mut acc = [0f32; LANES];
    for (c, chunk) in row.chunks_exact_mut(LANES).enumerate() {
        for (l, (v, a)) in chunk.iter_mut().zip(acc.iter_mut()).enumerate() {
            let e = super::vecmath::exp(*v - max);
            *v = e;
            *a += if c * LANES + l < nk { e } else { 0.0 };
        }
    }
    1.0 / acc.iter().sum::<f32>()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The textbook computation in f64: softmax(q·kᵀ/√d) · v over the kept keys, each row of
    /// the product times its scale (where there are row scales) plus the bias.
    fn reference(
        Qkv {
            product: qkv,
            row_scales,
            bias,
        }: Qkv,
        keys: &[usize],
        heads: usize,
        head: usize,
    ) -> Vec<f64> {
        let hidden = bias.len() / 3;
        let d = hidden / heads;
        let seq = qkv.len() / (3 * hidden);
        let at = |i: usize, part: usize, f: usize| {
            let c = part * hidden + head * d + f;
            let s = row_scales.map_or(1.0, |s| s[i]) as f64;
            qkv[i * 3 * hidden + c] as f64 * s + bias[c] as f64
        };
        let mut out = vec![0f64; seq * d];
        for i in 0..seq {
            let scores: Vec<f64> = keys
                .iter()
                .map(|&j| {
                    (0..d).map(|f| at(i, 0, f) * at(j, 1, f)).sum::<f64>() / (d as f64).sqrt()
                })
                .collect();
            let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
            let total: f64 = e.iter().sum();
            for (w, &j) in e.iter().zip(keys) {
                for f in 0..d {
                    out[i * d + f] += w / total * at(j, 2, f);
                }
            }
        }
        out
    }

    type Path = fn(Qkv, &[usize], usize, Range<usize>, &mut Scratch);

    /// The portable body and each SIMD body the CPU has.
    fn paths() -> Vec<Path> {
        let mut paths: Vec<Path> = vec![attend_body::<Separate>];
        #[cfg(target_arch = "x86_64")]
        {
            let cpu = Cpu::get();
            if cpu.avx2_fma {
                // SAFETY (for the closures): called only where the CPU has the features.
                paths.push(|q, k, h, g, s| unsafe { attend_avx2(q, k, h, g, s) });
            }
            if cpu.avx512f {
                paths.push(|q, k, h, g, s| unsafe { attend_avx512(q, k, h, g, s) });
            }
        }
        paths
    }

    #[test]
    fn matches_the_textbook_softmax_on_odd_shapes_and_masks() {
        let mut rng = crate::nn::Rng::new(7);
        // (seq, hidden, heads): head widths 32 (MiniLM), 24 (not a multiple of 16), 8; lengths
        // that are not multiples of the 4-row or 16-key tiles.
        for &(seq, hidden, heads) in &[
            (1, 64, 2),
            (7, 384, 12),
            (19, 96, 4),
            (37, 64, 8),
            (130, 128, 4),
        ] {
            let qkv: Vec<f32> = (0..seq * 3 * hidden)
                .map(|_| (rng.uniform() as f32 - 0.5) * 6.0)
                .collect();
            let bias: Vec<f32> = (0..3 * hidden)
                .map(|_| rng.uniform() as f32 - 0.5)
                .collect();
            let padded = (seq * 2 / 3).max(1);
            // An int8 product's row scales (as the quantized graph's QKV product has them).
            let row_scales: Vec<f32> = (0..seq).map(|_| rng.uniform() as f32 * 2.0).collect();
            for (keys, scales) in [
                (0..seq).collect::<Vec<_>>(),
                (0..padded).collect(),
                (0..seq).step_by(3).collect(),
            ]
            .into_iter()
            .flat_map(|k| [(k.clone(), None), (k, Some(&row_scales[..]))])
            {
                let mut s = Scratch::default();
                let d = hidden / heads;
                // One head, the first two, and every head in one group; on every path this CPU
                // can run (the dispatcher would only ever take the best one).
                for (group, path) in [heads - 1..heads, 0..2.min(heads), 0..heads]
                    .into_iter()
                    .flat_map(|g| paths().into_iter().map(move |p| (g.clone(), p)))
                {
                    let x = Qkv {
                        product: &qkv,
                        row_scales: scales,
                        bias: &bias,
                    };
                    path(x, &keys, heads, group.clone(), &mut s);
                    assert_eq!(s.ctx.len(), seq * group.len() * d);
                    for (g, head) in group.clone().enumerate() {
                        let want = reference(x, &keys, heads, head);
                        let got: Vec<f32> = s
                            .ctx
                            .chunks_exact(group.len() * d)
                            .flat_map(|r| r[g * d..(g + 1) * d].to_vec())
                            .collect();
                        for (i, (&got, &w)) in got.iter().zip(&want).enumerate() {
                            assert!(
                            (got as f64 - w).abs() <= 1e-5 * (1.0 + w.abs()),
                            "seq {seq} hidden {hidden} head {head} keys {} at {i}: {got} vs {w}",
                            keys.len()
                        );
                        }
                    }
                }
            }
            // Every key masked: every key attends, as ORT's uniform −10000 shift gives.
            let mut s = Scratch::default();
            let x = Qkv {
                product: &qkv,
                row_scales: None,
                bias: &bias,
            };
            attend(x, &[], heads, 0..1, &mut s);
            let want = reference(x, &(0..seq).collect::<Vec<_>>(), heads, 0);
            for (&got, &w) in s.ctx.iter().zip(&want) {
                assert!((got as f64 - w).abs() <= 1e-5 * (1.0 + w.abs()));
            }
        }
    }
}
