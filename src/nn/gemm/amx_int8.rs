//! The int8 product on AMX (the contract: `Int8Weights::product` in `int8.rs`): a 32 × 32 block of
//! i32 sums per `tdpbusd` loop, two A tiles loading 16 activation rows of 64 bytes straight from
//! the input (row stride K, no packing), two B tiles from weights packed once.

#[cfg(target_arch = "x86_64")]
use std::arch::asm;
use std::cell::RefCell;

use super::int8_packed::Packed;
use super::Cpu;

/// k values per tile row of A (bytes), and per B tile (16 rows of 4).
pub(super) const K_STEP: usize = 64;
/// Rows of C per block: two A tiles of 16.
const ROWS: usize = 32;
/// Columns of C per block: two B tiles of 16.
const COLS: usize = super::int8_packed::PANEL;
/// Bytes of one B tile: 16 groups of 4 k values × 16 columns.
const B_TILE: usize = 1024;

/// Why the AMX int8 product does not run here, or `None` when it does: the CPU lacks AMX-INT8
/// or AVX-512 (the epilogue), or the OS refused the tile state. Decided once per process.
pub(super) fn unavailable() -> Option<&'static str> {
    let cpu = Cpu::get();
    if !cfg!(target_arch = "x86_64") || !cpu.amx_int8 {
        Some("the CPU has no AMX-INT8")
    } else if !cpu.avx512f {
        Some("the CPU has AMX-INT8 but no AVX-512F")
    } else if !os_grants_tile_state() {
        Some("the OS refused AMX tile state (arch_prctl ARCH_REQ_XCOMP_PERM)")
    } else {
        None
    }
}

#[cfg(target_arch = "x86_64")]
fn os_grants_tile_state() -> bool {
    super::amx::os_grants_tile_state()
}

#[cfg(not(target_arch = "x86_64"))]
fn os_grants_tile_state() -> bool {
    false
}

/// Row-major `w` (`[k, n]`, k a multiple of [`K_STEP`], n of 32) in B tiles:
/// `[n / COLS panels][k / K_STEP steps][2 tiles][16 groups of 4 k][16 columns × 4]`.
pub(super) fn pack(w: &[i8], k: usize, n: usize) -> Vec<i8> {
    let steps = k / K_STEP;
    let mut packed = vec![0i8; k * n];
    for panel in 0..n / COLS {
        for step in 0..steps {
            for tile in 0..2 {
                let base = ((panel * steps + step) * 2 + tile) * B_TILE;
                for group in 0..16 {
                    for col in 0..16 {
                        for t in 0..4 {
                            let kk = step * K_STEP + 4 * group + t;
                            let nn = panel * COLS + tile * 16 + col;
                            packed[base + group * 64 + col * 4 + t] = w[kk * n + nn];
                        }
                    }
                }
            }
        }
    }
    packed
}

/// `Int8Weights::product` on AMX.
///
/// # Safety
/// AMX-INT8 is usable here ([`unavailable`] is `None`); `a` holds `rows · k` bytes; `out` as
/// `product` says.
pub(super) unsafe fn product(
    w: &Packed,
    a: &[u8],
    rows: usize,
    panels: std::ops::Range<usize>,
    out: *mut f32,
) {
    debug_assert!(unavailable().is_none());
    #[cfg(target_arch = "x86_64")]
    TAIL.with_borrow_mut(|tail| {
        // SAFETY: AMX-INT8 and AVX-512F are there and granted (the caller's promise); every
        // tile load reads ROWS full rows of `a` (or of the padded copy) and whole packed
        // tiles; `out` as the caller promised.
        unsafe { product_amx(w, a, rows, panels, out, tail) }
    })
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn product_amx(
    w: &Packed,
    a: &[u8],
    rows: usize,
    panels: std::ops::Range<usize>,
    out: *mut f32,
    tail: &mut Vec<u8>,
) {
    let k = w.k;
    let steps = k / K_STEP;
    // Two blocks of sums: a block's epilogue runs after the next block's tile products are
    // issued, so the AVX-512 work overlaps the AMX unit's instead of waiting for it.
    let mut acc = [Acc([0; ROWS * COLS]), Acc([0; ROWS * COLS])];
    let mut pending: Option<(usize, usize, usize)> = None; // (first row, live rows, panel)
    asm!("ldtilecfg [{}]", in(reg) super::amx::CONFIG.0.as_ptr(), options(nostack));
    let mut turn = 0;
    for r0 in (0..rows).step_by(ROWS) {
        let live = ROWS.min(rows - r0);
        // The last rows of a block that is not full come from a zero-padded copy, so each
        // tile load reads only memory that is there.
        let block = if live == ROWS {
            a[r0 * k..(r0 + ROWS) * k].as_ptr()
        } else {
            tail.clear();
            tail.extend_from_slice(&a[r0 * k..(r0 + live) * k]);
            tail.resize(ROWS * k, 0);
            tail.as_ptr()
        };
        for panel in panels.clone() {
            let b = w.b.as_ptr().add(panel * steps * 2 * B_TILE);
            block_32x32(block, k, b, steps, &mut acc[turn]);
            if let Some(done) = pending {
                epilogue(w, &acc[1 - turn], done, out);
            }
            pending = Some((r0, live, panel));
            turn = 1 - turn;
        }
    }
    if let Some(done) = pending {
        epilogue(w, &acc[1 - turn], done, out);
    }
    asm!("tilerelease", options(nostack));
}

/// `out` for a finished block: `f32(sum − zp · Σw) · scale` for its live rows. (Streaming
/// stores were tried: the next op then reads the product from memory, 25 % slower overall.)
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn epilogue(w: &Packed, acc: &Acc, (r0, live, panel): (usize, usize, usize), out: *mut f32) {
    use std::arch::x86_64::*;
    let c0 = panel * COLS;
    let offsets = [0, 1].map(|h| _mm512_loadu_si512(w.zp_offsets.as_ptr().add(c0 + 16 * h).cast()));
    let scales = [0, 1].map(|h| _mm512_loadu_ps(w.scales.as_ptr().add(c0 + 16 * h)));
    for r in 0..live {
        let o = out.add((r0 + r) * w.n + c0);
        for h in 0..2 {
            let s = _mm512_load_si512(acc.0.as_ptr().add(r * COLS + 16 * h).cast());
            let v = _mm512_mul_ps(
                _mm512_cvtepi32_ps(_mm512_sub_epi32(s, offsets[h])),
                scales[h],
            );
            _mm512_storeu_ps(o.add(16 * h), v);
        }
    }
}

thread_local! {
    /// A thread's zero-padded copy of the last rows of an input.
    static TAIL: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// A 32 × 32 block of i32 sums, 64-byte aligned for the tile stores.
#[repr(C, align(64))]
struct Acc([i32; ROWS * COLS]);

/// One 32 × 32 block of C: 2 A tiles (16 rows × 64 k bytes each, read from `a` with row
/// stride `lda`) times 2 B tiles per 64 k values, four `tdpbusd` into four accumulator tiles.
///
/// # Safety
/// The tile configuration `amx::CONFIG` is loaded; `a` holds 32 rows of `steps · 64` bytes at
/// stride `lda`, `b` `steps` pairs of packed B tiles.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn block_32x32(a: *const u8, lda: usize, b: *const i8, steps: usize, acc: &mut Acc) {
    asm!(
        "tilezero tmm0",
        "tilezero tmm1",
        "tilezero tmm2",
        "tilezero tmm3",
        "2:",
        "tileloadd tmm4, [{a0} + {lda} * 1]",
        "tileloadd tmm5, [{a1} + {lda} * 1]",
        "tileloadd tmm6, [{b} + {sb} * 1]",
        "tileloadd tmm7, [{b} + {sb} * 1 + 1024]",
        "tdpbusd tmm0, tmm4, tmm6",
        "tdpbusd tmm1, tmm4, tmm7",
        "tdpbusd tmm2, tmm5, tmm6",
        "tdpbusd tmm3, tmm5, tmm7",
        "add {a0}, 64",
        "add {a1}, 64",
        "add {b}, 2048",
        "dec {n}",
        "jnz 2b",
        "tilestored [{c} + {sc} * 1], tmm0",
        "tilestored [{c} + {sc} * 1 + 64], tmm1",
        "tilestored [{c} + {sc} * 1 + 2048], tmm2",
        "tilestored [{c} + {sc} * 1 + 2112], tmm3",
        a0 = inout(reg) a => _,
        a1 = inout(reg) a.add(16 * lda) => _,
        lda = in(reg) lda,
        b = inout(reg) b => _,
        sb = in(reg) 64usize,
        n = inout(reg) steps => _,
        c = in(reg) acc.0.as_mut_ptr(),
        sc = in(reg) COLS * 4,
        options(nostack),
    );
}
