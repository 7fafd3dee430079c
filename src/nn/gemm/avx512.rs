//! AVX-512 micro-kernels: 12 × 32 tiles of C in 24 zmm accumulators, one broadcast of A per row
//! and two loads of B per k step. fp32 uses FMA; bf16 uses `vdpbf16ps` (two bf16 products per
//! lane summed into an fp32 accumulator).

use std::arch::x86_64::*;

use super::driver::{pack_panel, MicroKernel, Panel, Tile, MAX_STEPS, NR};

/// Rows of C per call: 12 rows × 2 zmm of columns = 24 accumulators of the 32 registers.
const MR: usize = 12;
use super::to_bf16;

pub(super) struct Fp32;
pub(super) struct Bf16;

// The packers' stack buffers hold one k block.
const _: () = assert!(Fp32::KC <= MAX_STEPS && Bf16::KC / 2 <= MAX_STEPS);

impl MicroKernel for Fp32 {
    type P = f32;
    const KSTEP: usize = 1;
    const KC: usize = 128;
    const MR: usize = MR;
    const STEP_ALIGN: usize = 1;

    #[inline(always)]
    fn pack(lo: f32, _: f32) -> f32 {
        lo
    }

    fn pack_run(src: &[f32], dst: &mut [f32]) {
        dst.copy_from_slice(src);
    }

    unsafe fn run(steps: usize, a: *const f32, b: *const f32, tile: &mut Tile) {
        fp32_kernel(steps, a, b, tile)
    }
}

impl MicroKernel for Bf16 {
    type P = u32;
    const KSTEP: usize = 2;
    const KC: usize = 256;
    const MR: usize = MR;
    const STEP_ALIGN: usize = 1;

    #[inline(always)]
    fn pack(lo: f32, hi: f32) -> u32 {
        (to_bf16(hi) as u32) << 16 | to_bf16(lo) as u32
    }

    fn pack_run(src: &[f32], dst: &mut [u32]) {
        // SAFETY: packing runs only where a bf16 kernel was chosen, i.e. on AVX512-BF16 (every
        // AMX CPU has it too).
        unsafe { bf16_pack_run(src, dst) }
    }

    unsafe fn pack_b(p: Panel, out: &mut [u32]) {
        pack_bf16_rows(p, out)
    }

    unsafe fn run(steps: usize, a: *const u32, b: *const u32, tile: &mut Tile) {
        bf16_kernel(steps, a, b, tile)
    }
}

/// A step-major bf16 panel (`[step][width]`, as [`pack_panel`] makes it). Where the lanes are
/// contiguous (B = W in dy·W, a row of W per k) each step converts two k rows 16 lanes at a
/// time and interleaves them into pairs, instead of one pair at a time.
///
/// # Safety
/// As [`pack_panel`]; the CPU has AVX512-BF16 and AVX512-BW.
pub(super) unsafe fn pack_bf16_rows(p: Panel, out: &mut [u32]) {
    if p.ls != 1 || !p.width.is_multiple_of(16) {
        return pack_panel::<Bf16>(p, out);
    }
    pack_bf16_rows_avx512(p, out)
}

#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn pack_bf16_rows_avx512(p: Panel, out: &mut [u32]) {
    let Panel {
        base,
        ks,
        live,
        width,
        psteps,
        ..
    } = p;
    let (full, steps) = p.steps(2);
    for l0 in (0..width).step_by(16) {
        let lanes = live.saturating_sub(l0).min(16);
        let mask: __mmask16 = ((1u32 << lanes) - 1) as u16;
        // Wrapping arithmetic: past the live lanes the address may leave the matrix, though the
        // load is masked off entirely there.
        let row = |k: usize| {
            let at = base.wrapping_offset(k as isize * ks).wrapping_add(l0);
            _mm512_maskz_loadu_ps(mask, at)
        };
        for st in 0..steps {
            let odd = if st < full {
                row(2 * st + 1)
            } else {
                _mm512_setzero_ps()
            };
            let pairs = bf16_pairs(row(2 * st), odd);
            _mm512_storeu_si512(out.as_mut_ptr().add(st * width + l0).cast(), pairs);
        }
    }
    out[steps * width..psteps * width].fill(0);
}

/// 16 lanes of two k values → 16 packed pairs (k even in the low half of each u32), rounded
/// to nearest even as [`to_bf16`] (denormals flushed, as a bf16 product loses them anyway).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
pub(super) fn bf16_pairs(even: __m512, odd: __m512) -> __m512i {
    // The conversion puts `even`'s 16 values in words 0–15 and `odd`'s in 16–31; word w of the
    // result takes word w/2 (w even) or 16 + w/2 (w odd).
    const INTERLEAVE: [u16; 32] = {
        let mut w = [0u16; 32];
        let mut i = 0;
        while i < 32 {
            w[i] = (i / 2 + 16 * (i % 2)) as u16;
            i += 1;
        }
        w
    };
    // SAFETY: a 64-byte read of a 64-byte constant.
    let index = unsafe { _mm512_loadu_si512(INTERLEAVE.as_ptr().cast()) };
    let both: __m512i = unsafe { std::mem::transmute(_mm512_cvtne2ps_pbh(odd, even)) };
    _mm512_permutexvar_epi16(index, both)
}

/// 32 values at a time with `vcvtne2ps2bf16` (round to nearest even, as [`to_bf16`]; it also
/// flushes denormals, which a bf16 product would lose anyway), the rest one pair at a time.
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn bf16_pack_run(src: &[f32], dst: &mut [u32]) {
    let n = dst.len().min(src.len() / 2);
    let vectors = n / 16;
    for v in 0..vectors {
        let lo = _mm512_loadu_ps(src.as_ptr().add(32 * v));
        let hi = _mm512_loadu_ps(src.as_ptr().add(32 * v + 16));
        // The result's low half comes from the second operand: bf16 values in source order,
        // i.e. each u32 holds (k even, k odd) as `pack` makes it.
        let both: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(hi, lo));
        _mm512_storeu_si512(dst.as_mut_ptr().add(16 * v).cast(), both);
    }
    for (o, c) in dst[16 * vectors..n]
        .iter_mut()
        .zip(src[32 * vectors..].chunks_exact(2))
    {
        *o = Bf16::pack(c[0], c[1]);
    }
}

macro_rules! rows12 {
    ($m:ident) => {
        $m!(0);
        $m!(1);
        $m!(2);
        $m!(3);
        $m!(4);
        $m!(5);
        $m!(6);
        $m!(7);
        $m!(8);
        $m!(9);
        $m!(10);
        $m!(11);
    };
}

#[target_feature(enable = "avx512f")]
unsafe fn fp32_kernel(steps: usize, a: *const f32, b: *const f32, tile: &mut Tile) {
    let mut acc = [[_mm512_setzero_ps(); 2]; MR];
    for s in 0..steps {
        let b0 = _mm512_loadu_ps(b.add(s * NR));
        let b1 = _mm512_loadu_ps(b.add(s * NR + 16));
        let ar = a.add(s * MR);
        macro_rules! row {
            ($i:expr) => {
                let ai = _mm512_set1_ps(*ar.add($i));
                acc[$i][0] = _mm512_fmadd_ps(ai, b0, acc[$i][0]);
                acc[$i][1] = _mm512_fmadd_ps(ai, b1, acc[$i][1]);
            };
        }
        rows12!(row);
    }
    for (i, r) in acc.iter().enumerate() {
        _mm512_storeu_ps(tile.as_mut_ptr().add(i * NR), r[0]);
        _mm512_storeu_ps(tile.as_mut_ptr().add(i * NR + 16), r[1]);
    }
}

#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn bf16_kernel(steps: usize, a: *const u32, b: *const u32, tile: &mut Tile) {
    let mut acc = [[_mm512_setzero_ps(); 2]; MR];
    for s in 0..steps {
        let b0: __m512bh = std::mem::transmute(_mm512_loadu_si512(b.add(s * NR).cast()));
        let b1: __m512bh = std::mem::transmute(_mm512_loadu_si512(b.add(s * NR + 16).cast()));
        let ar = a.add(s * MR);
        macro_rules! row {
            ($i:expr) => {
                let ai: __m512bh = std::mem::transmute(_mm512_set1_epi32(*ar.add($i) as i32));
                acc[$i][0] = _mm512_dpbf16_ps(acc[$i][0], ai, b0);
                acc[$i][1] = _mm512_dpbf16_ps(acc[$i][1], ai, b1);
            };
        }
        rows12!(row);
    }
    for (i, r) in acc.iter().enumerate() {
        _mm512_storeu_ps(tile.as_mut_ptr().add(i * NR), r[0]);
        _mm512_storeu_ps(tile.as_mut_ptr().add(i * NR + 16), r[1]);
    }
}
