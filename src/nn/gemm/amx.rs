//! The AMX bf16 micro-kernel: a 32 × 32 block of C in four 16 × 16 fp32 tile registers, fed
//! per 32 k values by two tiles of A (16 rows × 32 bf16 each, lane-major panels) and two of B
//! (16 k pairs × 16 columns, read straight from the step-major B panel with its 128-byte row
//! stride); `tdpbf16ps` multiplies bf16 pairs and accumulates in fp32 — 16× the products of
//! one `vdpbf16ps` per instruction.
//!
//! AMX state is large, so Linux hands it out per process on request
//! (`arch_prctl(ARCH_REQ_XCOMP_PERM, XTILEDATA)`): [`usable`] asks once. Each call loads its
//! tile configuration and releases the tiles when done, so the thread is left as it was found
//! (ONNX Runtime's own AMX kernels may share it).

use std::arch::asm;
use std::arch::x86_64::*;
use std::sync::OnceLock;

use super::avx512::{bf16_pairs, pack_bf16_rows, Bf16};
use super::driver::{MicroKernel, Panel, Tile, MAX_STEPS, NR};
use super::Cpu;

pub(super) struct AmxBf16;

/// k pairs per tile row: 64 bytes.
const TILE_STEPS: usize = 16;
/// Rows of C per call: two tiles of 16.
const MR: usize = 32;

// The B panel's rows are what a B tile loads: 16 columns of 4 bytes, and the next 16 at +64.
const _: () = assert!(NR == 32 && AmxBf16::KC / 2 <= MAX_STEPS);

impl MicroKernel for AmxBf16 {
    type P = u32;
    const KSTEP: usize = 2;
    const KC: usize = 512;
    const MR: usize = MR;
    const STEP_ALIGN: usize = TILE_STEPS;

    #[inline(always)]
    fn pack(lo: f32, hi: f32) -> u32 {
        Bf16::pack(lo, hi)
    }

    fn pack_run(src: &[f32], dst: &mut [u32]) {
        Bf16::pack_run(src, dst)
    }

    unsafe fn pack_b(p: Panel, out: &mut [u32]) {
        pack_bf16_rows(p, out)
    }

    /// A tile loads rows of A with k contiguous: A's panels are lane-major.
    unsafe fn pack_a(p: Panel, out: &mut [u32]) {
        pack_lanes(p, out)
    }

    unsafe fn run(steps: usize, a: *const u32, b: *const u32, tile: &mut Tile) {
        debug_assert!(steps > 0 && steps.is_multiple_of(TILE_STEPS));
        let a_stride = steps * 4;
        asm!(
            "ldtilecfg [{cfg}]",
            "tilezero tmm0",
            "tilezero tmm1",
            "tilezero tmm2",
            "tilezero tmm3",
            "2:",
            "tileloadd tmm4, [{a0} + {sa} * 1]",
            "tileloadd tmm5, [{a1} + {sa} * 1]",
            "tileloadd tmm6, [{b} + {sb} * 1]",
            "tileloadd tmm7, [{b} + {sb} * 1 + 64]",
            "tdpbf16ps tmm0, tmm4, tmm6",
            "tdpbf16ps tmm1, tmm4, tmm7",
            "tdpbf16ps tmm2, tmm5, tmm6",
            "tdpbf16ps tmm3, tmm5, tmm7",
            "add {a0}, 64",
            "add {a1}, 64",
            "add {b}, {b_step}",
            "dec {n}",
            "jnz 2b",
            "tilestored [{c} + {sc} * 1], tmm0",
            "tilestored [{c} + {sc} * 1 + 64], tmm1",
            "tilestored [{c} + {sc} * 1 + {c_low}], tmm2",
            "tilestored [{c} + {sc} * 1 + {c_low} + 64], tmm3",
            "tilerelease",
            cfg = in(reg) CONFIG.0.as_ptr(),
            a0 = inout(reg) a => _,
            a1 = inout(reg) a.add(TILE_STEPS * steps) => _,
            b = inout(reg) b => _,
            n = inout(reg) steps / TILE_STEPS => _,
            sa = in(reg) a_stride,
            sb = in(reg) NR * 4,
            c = in(reg) tile.as_mut_ptr(),
            sc = in(reg) NR * 4,
            b_step = const TILE_STEPS * NR * 4,
            c_low = const 16 * NR * 4,
            options(nostack),
        );
    }
}

/// Packs panel `p` of A lane-major, `out[l · psteps + step]`, each u32 a (k even, k odd) bf16
/// pair, zeros past k and past `live`. Row-major A (k contiguous) converts each lane's run at
/// once; A read through a transpose (lanes contiguous, as dyᵀ in a weight gradient) converts 16
/// lanes × one k pair per vector and scatters the pairs to their lanes' rows.
///
/// # Safety
/// Every `(l < live, k < kc)` offset lies inside the source matrix; the CPU has AVX512-BF16
/// (with AVX512-BW: see [`Cpu`]).
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn pack_lanes(p: Panel, out: &mut [u32]) {
    let Panel {
        ls,
        ks,
        live,
        width,
        psteps,
        ..
    } = p;
    let (full, steps) = p.steps(2);
    let at = |l: usize, k: usize| p.at(l, k);
    if ks == 1 {
        for l in 0..live {
            let src = std::slice::from_raw_parts(at(l, 0), 2 * full);
            Bf16::pack_run(src, &mut out[l * psteps..l * psteps + full]);
        }
    } else if ls == 1 {
        let rows = _mm512_mullo_epi32(
            _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
            _mm512_set1_epi32(psteps as i32),
        );
        for l0 in (0..live).step_by(16) {
            let mask: __mmask16 = (((1u32 << 16.min(live - l0)) - 1) & 0xffff) as u16;
            for st in 0..full {
                let even = _mm512_maskz_loadu_ps(mask, at(l0, 2 * st));
                let odd = _mm512_maskz_loadu_ps(mask, at(l0, 2 * st + 1));
                let pairs = bf16_pairs(even, odd);
                _mm512_mask_i32scatter_epi32::<4>(
                    out.as_mut_ptr().add(l0 * psteps + st).cast(),
                    mask,
                    rows,
                    pairs,
                );
            }
        }
    } else {
        for st in 0..full {
            for l in 0..live {
                let q = at(l, 2 * st);
                out[l * psteps + st] = Bf16::pack(*q, *q.offset(ks));
            }
        }
    }
    for l in 0..live {
        let row = &mut out[l * psteps..(l + 1) * psteps];
        if steps > full {
            row[full] = Bf16::pack(*at(l, 2 * full), 0.0);
        }
        row[steps..].fill(0);
    }
    out[live * psteps..width * psteps].fill(0);
}

/// The tile configuration: palette 1, tiles 0–7 each 16 rows of 64 bytes (the int8 kernel's
/// too, [`super::amx_int8`]).
#[repr(C, align(64))]
pub(super) struct TileConfig(pub(super) [u8; 64]);

pub(super) static CONFIG: TileConfig = TileConfig({
    let mut c = [0u8; 64];
    c[0] = 1;
    let mut t = 0;
    while t < 8 {
        c[16 + 2 * t] = 64; // bytes per row (u16, little-endian)
        c[48 + t] = 16; // rows
        t += 1;
    }
    c
});

/// Why AMX does not run here, or `None` when it does: the CPU lacks it, the user turned it
/// off (`FROSTLINE_AMX=off`), or the OS refused the tile state. Decided once per process.
pub(super) fn unavailable() -> Option<&'static str> {
    static WHY: OnceLock<Option<&'static str>> = OnceLock::new();
    *WHY.get_or_init(|| {
        let cpu = Cpu::get();
        if !cpu.amx_bf16 {
            Some("the CPU has no AMX-BF16")
        } else if !cpu.avx512_bf16 {
            // The packers convert with AVX512-BF16.
            Some("the CPU has AMX-BF16 but no AVX512-BF16")
        } else if std::env::var("FROSTLINE_AMX").is_ok_and(|v| v == "off") {
            Some("turned off by FROSTLINE_AMX=off")
        } else if !os_grants_tile_state() {
            Some("the OS refused AMX tile state (arch_prctl ARCH_REQ_XCOMP_PERM)")
        } else {
            None
        }
    })
}

/// Whether Linux lets this process use AMX tile data (asked once; ONNX Runtime's int8 kernels
/// ask the same of the OS for themselves).
pub(super) fn os_grants_tile_state() -> bool {
    static GRANTED: OnceLock<bool> = OnceLock::new();
    *GRANTED.get_or_init(request_tile_state)
}

/// Whether the AMX kernel runs in this process.
pub(super) fn usable() -> bool {
    unavailable().is_none()
}

#[cfg(target_os = "linux")]
fn request_tile_state() -> bool {
    const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
    const XFEATURE_XTILEDATA: libc::c_long = 18;
    // SAFETY: a plain syscall with integer arguments; it only grants this process permission.
    unsafe {
        libc::syscall(
            libc::SYS_arch_prctl,
            ARCH_REQ_XCOMP_PERM,
            XFEATURE_XTILEDATA,
        ) == 0
    }
}

#[cfg(not(target_os = "linux"))]
fn request_tile_state() -> bool {
    false
}
