//! AVX-512 micro-kernels: 12 × 32 tiles of C in 24 zmm accumulators, one broadcast of A per row
//! and two loads of B per k step. fp32 uses FMA; bf16 uses `vdpbf16ps` (two bf16 products per
//! lane summed into an fp32 accumulator).

use std::arch::x86_64::*;

use super::driver::{MicroKernel, MAX_STEPS, MR, NR};
use super::to_bf16;

pub(super) struct Fp32;
pub(super) struct Bf16;

// The packers' stack buffers hold one k block.
const _: () = assert!(Fp32::KC <= MAX_STEPS && Bf16::KC / 2 <= MAX_STEPS);

impl MicroKernel for Fp32 {
    type P = f32;
    const KSTEP: usize = 1;
    const KC: usize = 128;

    #[inline(always)]
    fn pack(lo: f32, _: f32) -> f32 {
        lo
    }

    fn pack_run(src: &[f32], dst: &mut [f32]) {
        dst.copy_from_slice(src);
    }

    unsafe fn run(steps: usize, a: *const f32, b: *const f32, tile: &mut [f32; MR * NR]) {
        fp32_kernel(steps, a, b, tile)
    }
}

impl MicroKernel for Bf16 {
    type P = u32;
    const KSTEP: usize = 2;
    const KC: usize = 256;

    #[inline(always)]
    fn pack(lo: f32, hi: f32) -> u32 {
        (to_bf16(hi) as u32) << 16 | to_bf16(lo) as u32
    }

    fn pack_run(src: &[f32], dst: &mut [u32]) {
        // SAFETY: packing runs only where the bf16 kernel was chosen, i.e. on AVX-512.
        unsafe { bf16_pack_run(src, dst) }
    }

    unsafe fn run(steps: usize, a: *const u32, b: *const u32, tile: &mut [f32; MR * NR]) {
        bf16_kernel(steps, a, b, tile)
    }
}

#[target_feature(enable = "avx512f")]
unsafe fn bf16_pack_run(src: &[f32], dst: &mut [u32]) {
    for (o, c) in dst.iter_mut().zip(src.chunks_exact(2)) {
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
unsafe fn fp32_kernel(steps: usize, a: *const f32, b: *const f32, tile: &mut [f32; MR * NR]) {
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
unsafe fn bf16_kernel(steps: usize, a: *const u32, b: *const u32, tile: &mut [f32; MR * NR]) {
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
