//! The int8 product on AVX512-VNNI (the contract: `Int8Weights::product` in `int8.rs`): a strip of
//! up to 12 activation rows times a 32-column panel in 24 zmm accumulators, one `vpdpbusd` per row
//! and half-panel for every 4 k values. The strip is first copied k-group-major (12 rows × 4 bytes
//! per group, 48 bytes), so each group's broadcasts read one cache line; it is reused for every
//! panel of the task. The epilogue runs on the accumulators, so the sums never go to memory.

use super::int8_packed::Packed;

/// k values per `vpdpbusd` lane: a weight's row count must be a multiple.
pub(super) const K_STEP: usize = 4;
/// Rows per strip: 12 rows × 2 zmm of columns = 24 accumulators of the 32 registers.
const MR: usize = 12;
/// Columns per panel: two zmm of 16 i32 sums.
const COLS: usize = super::int8_packed::PANEL;

/// Row-major `w` (`[k, n]`, k a multiple of 4, n of 32) as `[n / 32 panels][k / 4 groups]
/// [32 columns][4 k values]`: one group of a panel is two zmm loads.
pub(super) fn pack(w: &[i8], k: usize, n: usize) -> Vec<i8> {
    let groups = k / K_STEP;
    let mut packed = vec![0i8; k * n];
    for panel in 0..n / COLS {
        for g in 0..groups {
            let base = (panel * groups + g) * COLS * K_STEP;
            for col in 0..COLS {
                for t in 0..K_STEP {
                    packed[base + col * K_STEP + t] = w[(g * K_STEP + t) * n + panel * COLS + col];
                }
            }
        }
    }
    packed
}

/// `Int8Weights::product` on AVX512-VNNI.
///
/// # Safety
/// The CPU has AVX-512F and AVX512-VNNI; `a` holds `rows · k` bytes; `out` as `product` says.
pub(super) unsafe fn product(
    w: &Packed,
    a: &[u8],
    rows: usize,
    panels: std::ops::Range<usize>,
    out: *mut f32,
) {
    #[cfg(target_arch = "x86_64")]
    STRIP.with_borrow_mut(|strip| {
        let groups = w.k / K_STEP;
        strip.resize(groups * MR, 0);
        for r0 in (0..rows).step_by(MR) {
            let live = MR.min(rows - r0);
            pack_strip(&a[r0 * w.k..(r0 + live) * w.k], w.k, live, strip);
            for panel in panels.clone() {
                let b = w.b[panel * groups * COLS * K_STEP..].as_ptr();
                let o = out.add(r0 * w.n + panel * COLS);
                let epi = Epilogue {
                    zp_offsets: w.zp_offsets[panel * COLS..].as_ptr(),
                    scales: w.scales[panel * COLS..].as_ptr(),
                    out: o,
                    ldo: w.n,
                };
                // SAFETY: the strip holds `groups` groups of `live` rows, the panel `groups`
                // groups of 32 columns; `out` as the caller promised.
                unsafe { strip_times_panel(live, strip.as_ptr(), b, groups, &epi) }
            }
        }
    });
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (w, a, rows, panels, out);
}

/// `live` rows of `a` (stride `k`) as `[group][live rows][4 bytes]` (as u32 each): four rows
/// by four groups at a time, a 4 × 4 transpose of u32 in SSE registers; the rest one by one.
fn pack_strip(a: &[u8], k: usize, live: usize, strip: &mut [u32]) {
    let groups = k / K_STEP;
    let quad = |r: usize, g: usize| {
        let at = r * k + g * K_STEP;
        u32::from_le_bytes([a[at], a[at + 1], a[at + 2], a[at + 3]])
    };
    let (rows4, groups4) = (live / 4 * 4, groups / 4 * 4);
    #[cfg(target_arch = "x86_64")]
    for r in (0..rows4).step_by(4) {
        for g in (0..groups4).step_by(4) {
            // SAFETY: rows r..r+4 and groups g..g+4 are inside `a` (k ≥ 4g + 16 per row), and
            // the four stores land in `strip` (groups · live u32, each at g'·live + r..r+4).
            unsafe {
                transpose_4x4(
                    a.as_ptr().add(r * k + g * K_STEP),
                    k,
                    strip.as_mut_ptr().add(g * live + r),
                    live,
                )
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let (rows4, groups4) = (0, 0);
    for r in 0..live {
        let from = if r < rows4 { groups4 } else { 0 };
        for g in from..groups {
            strip[g * live + r] = quad(r, g);
        }
    }
}

/// Four rows of four u32 (rows `lda` bytes apart) to four groups of four rows (`ldo` u32 apart).
///
/// # Safety
/// `a` has 4 rows of 16 readable bytes at stride `lda`; `out` 4 runs of 4 writable u32 at
/// stride `ldo`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn transpose_4x4(a: *const u8, lda: usize, out: *mut u32, ldo: usize) {
    use std::arch::x86_64::*;
    let x = [0, 1, 2, 3].map(|i| _mm_loadu_si128(a.add(i * lda).cast()));
    let lo01 = _mm_unpacklo_epi32(x[0], x[1]);
    let lo23 = _mm_unpacklo_epi32(x[2], x[3]);
    let hi01 = _mm_unpackhi_epi32(x[0], x[1]);
    let hi23 = _mm_unpackhi_epi32(x[2], x[3]);
    let groups = [
        _mm_unpacklo_epi64(lo01, lo23),
        _mm_unpackhi_epi64(lo01, lo23),
        _mm_unpacklo_epi64(hi01, hi23),
        _mm_unpackhi_epi64(hi01, hi23),
    ];
    for (g, v) in groups.into_iter().enumerate() {
        _mm_storeu_si128(out.add(g * ldo).cast(), v);
    }
}

thread_local! {
    /// A thread's copy of the activation strip being multiplied.
    static STRIP: std::cell::RefCell<Vec<u32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Where a strip's results go: `out[r][c] = f32(sum − zp_offsets[c]) · scales[c]`, rows `ldo`
/// apart, columns from the panel's first.
struct Epilogue {
    zp_offsets: *const i32,
    scales: *const f32,
    out: *mut f32,
    ldo: usize,
}

/// One strip (1–12 rows) times one panel, dispatched to the kernel for its row count.
///
/// # Safety
/// As [`kernel`].
#[cfg(target_arch = "x86_64")]
unsafe fn strip_times_panel(live: usize, a: *const u32, b: *const i8, groups: usize, e: &Epilogue) {
    macro_rules! rows {
        ($($r:literal)*) => {
            match live {
                $($r => kernel::<$r>(a, b, groups, e),)*
                _ => unreachable!("a strip has 1 to {MR} rows"),
            }
        };
    }
    rows!(1 2 3 4 5 6 7 8 9 10 11 12)
}

/// `R` rows × 32 columns: per k group, two loads of the panel and one broadcast per row,
/// `2R` `vpdpbusd`; then the epilogue straight from the accumulators.
///
/// # Safety
/// AVX-512F and AVX512-VNNI; `a` holds `groups · R` u32, `b` `groups · 32 · 4` bytes; `e.out`
/// has `R` rows of 32 writable floats at stride `e.ldo`, the offsets and scales 32 values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vnni")]
unsafe fn kernel<const R: usize>(a: *const u32, b: *const i8, groups: usize, e: &Epilogue) {
    use std::arch::x86_64::*;
    let mut acc = [[_mm512_setzero_si512(); 2]; R];
    for g in 0..groups {
        let bg = b.add(g * COLS * K_STEP);
        let b0 = _mm512_loadu_si512(bg.cast());
        let b1 = _mm512_loadu_si512(bg.add(64).cast());
        let ag = a.add(g * R);
        for (r, acc) in acc.iter_mut().enumerate() {
            let x = _mm512_set1_epi32(ag.add(r).read() as i32);
            acc[0] = _mm512_dpbusd_epi32(acc[0], x, b0);
            acc[1] = _mm512_dpbusd_epi32(acc[1], x, b1);
        }
    }
    let offsets = [0, 1].map(|h| _mm512_loadu_si512(e.zp_offsets.add(16 * h).cast()));
    let scales = [0, 1].map(|h| _mm512_loadu_ps(e.scales.add(16 * h)));
    for (r, acc) in acc.iter().enumerate() {
        let o = e.out.add(r * e.ldo);
        for h in 0..2 {
            let v = _mm512_cvtepi32_ps(_mm512_sub_epi32(acc[h], offsets[h]));
            _mm512_storeu_ps(o.add(16 * h), _mm512_mul_ps(v, scales[h]));
        }
    }
}
