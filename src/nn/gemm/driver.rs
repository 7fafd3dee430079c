//! The blocked matrix product around a micro-kernel (the BLIS loop order): B is packed one
//! k-block at a time into column panels shared by every thread; each thread packs its own
//! block of A rows into row panels and runs the micro-kernel over (column panel, row panel)
//! pairs. Every element of C is summed over k in the same order whatever the thread count, so
//! results are bit-identical from one run, or one machine size, to the next.

use std::sync::OnceLock;

use ndarray::{ArrayView2, ArrayViewMut2};
use rayon::prelude::*;

/// Rows and columns of C one micro-kernel call produces.
pub(super) const MR: usize = 12;
pub(super) const NR: usize = 32;

/// A micro-kernel and the packed layout it reads. `P` is one packed element: an f32, or two
/// bf16 values of consecutive k (`KSTEP = 2`) in one u32.
pub(super) trait MicroKernel: Sync {
    type P: Copy + Default + Send + Sync;
    const KSTEP: usize;
    /// k values per block (a multiple of `KSTEP`).
    const KC: usize;
    /// Packs `x` (two k values when `KSTEP = 2`; `hi` is 0 past the end of k).
    fn pack(lo: f32, hi: f32) -> Self::P;
    /// `tile[i * NR + j] = Σ_s a[s][i] · b[s][j]` over `steps` packed k steps.
    ///
    /// # Safety
    /// `a` holds `steps * MR` elements, `b` `steps * NR`; the CPU has the kernel's features.
    unsafe fn run(steps: usize, a: *const Self::P, b: *const Self::P, tile: &mut [f32; MR * NR]);
}

/// Products below this many multiply-adds run on the calling thread (a fork costs more).
const PARALLEL_MIN: usize = 1 << 21;
/// Rows of A one thread packs and works through at a time (fits in L2 with its k-block).
const MC: usize = 8 * MR;

/// The threads products run on: `MATMUL_NUM_THREADS` (set by the binary to the core count
/// unless the user set it), else every core.
fn pool() -> &'static rayon::ThreadPool {
    static POOL: OnceLock<rayon::ThreadPool> = OnceLock::new();
    POOL.get_or_init(|| {
        let threads = std::env::var("MATMUL_NUM_THREADS")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|&n| n > 0)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("frostline-matmul-{i}"))
            .build()
            .expect("matmul thread pool")
    })
}

pub fn threads() -> usize {
    pool().current_num_threads()
}

/// A strided read-only matrix (element strides, possibly negative).
#[derive(Clone, Copy)]
struct Src {
    ptr: *const f32,
    rs: isize,
    cs: isize,
}
// SAFETY: only read, while the borrowed view it came from outlives every use.
unsafe impl Send for Src {}
unsafe impl Sync for Src {}

impl Src {
    fn of(v: &ArrayView2<f32>) -> Self {
        let s = v.strides();
        Self {
            ptr: v.as_ptr(),
            rs: s[0],
            cs: s[1],
        }
    }
    /// # Safety
    /// `(i, j)` lies inside the view.
    #[inline(always)]
    unsafe fn at(self, i: usize, j: usize) -> f32 {
        *self.ptr.offset(i as isize * self.rs + j as isize * self.cs)
    }
}

#[derive(Clone, Copy)]
struct Dst {
    ptr: *mut f32,
    rs: isize,
    cs: isize,
}
// SAFETY: threads write disjoint row blocks of C.
unsafe impl Send for Dst {}
unsafe impl Sync for Dst {}

/// Packs rows `r0..r0+MR` (zeros past `rows`) × k values `k0..k0+kc` of `a` into `out`
/// (`[step][MR]`). `a` is read along whichever axis is contiguous.
fn pack_rows<K: MicroKernel>(
    a: Src,
    rows: usize,
    r0: usize,
    k0: usize,
    kc: usize,
    out: &mut [K::P],
) {
    let steps = kc.div_ceil(K::KSTEP);
    let live = rows.saturating_sub(r0).min(MR);
    let get = |i: usize, k: usize| -> f32 {
        if k < k0 + kc {
            // SAFETY: i < rows, k < k0 + kc ≤ the view's columns.
            unsafe { a.at(r0 + i, k) }
        } else {
            0.0
        }
    };
    for s in 0..steps {
        let k = k0 + s * K::KSTEP;
        for i in 0..MR {
            out[s * MR + i] = if i < live {
                K::pack(get(i, k), if K::KSTEP == 2 { get(i, k + 1) } else { 0.0 })
            } else {
                K::P::default()
            };
        }
    }
}

/// Packs k values `k0..k0+kc` × columns `c0..c0+NR` (zeros past `cols`) of `b` into `out`
/// (`[step][NR]`).
fn pack_cols<K: MicroKernel>(
    b: Src,
    cols: usize,
    c0: usize,
    k0: usize,
    kc: usize,
    out: &mut [K::P],
) {
    let steps = kc.div_ceil(K::KSTEP);
    let live = cols.saturating_sub(c0).min(NR);
    let get = |k: usize, j: usize| -> f32 {
        if k < k0 + kc {
            // SAFETY: j < cols, k < k0 + kc ≤ the view's rows.
            unsafe { b.at(k, c0 + j) }
        } else {
            0.0
        }
    };
    if b.cs != 1 && b.rs == 1 {
        // k is the contiguous axis (a transposed weight): walk it innermost.
        out[..steps * NR].fill(K::P::default());
        for j in 0..live {
            for s in 0..steps {
                let k = k0 + s * K::KSTEP;
                out[s * NR + j] =
                    K::pack(get(k, j), if K::KSTEP == 2 { get(k + 1, j) } else { 0.0 });
            }
        }
        return;
    }
    for s in 0..steps {
        let k = k0 + s * K::KSTEP;
        for j in 0..NR {
            out[s * NR + j] = if j < live {
                K::pack(get(k, j), if K::KSTEP == 2 { get(k + 1, j) } else { 0.0 })
            } else {
                K::P::default()
            };
        }
    }
}

/// `c = alpha · a · b + beta · c` (`beta = 0` ignores what C held, NaN included).
pub(super) fn gemm<K: MicroKernel>(
    alpha: f32,
    a: &ArrayView2<f32>,
    b: &ArrayView2<f32>,
    beta: f32,
    c: &mut ArrayViewMut2<f32>,
) {
    let (m, k) = a.dim();
    let n = b.ncols();
    assert_eq!(b.nrows(), k, "inner dimensions differ");
    assert_eq!(c.dim(), (m, n), "output shape");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        c.mapv_inplace(|v| if beta == 0.0 { 0.0 } else { beta * v });
        return;
    }
    let (sa, sb) = (Src::of(a), Src::of(b));
    let (rs, cs) = (c.strides()[0], c.strides()[1]);
    let dst = Dst {
        ptr: c.as_mut_ptr(),
        rs,
        cs,
    };
    let parallel = m * n * k >= PARALLEL_MIN && threads() > 1;
    let mc = if parallel {
        m.div_ceil(threads()).next_multiple_of(MR).min(MC)
    } else {
        MC
    };
    let col_panels = n.div_ceil(NR);
    let max_steps = K::KC / K::KSTEP;
    let mut bp = vec![K::P::default(); col_panels * max_steps * NR];
    for (block, k0) in (0..k).step_by(K::KC).enumerate() {
        let kc = K::KC.min(k - k0);
        let steps = kc.div_ceil(K::KSTEP);
        let pack = |(p, out): (usize, &mut [K::P])| pack_cols::<K>(sb, n, p * NR, k0, kc, out);
        if parallel {
            pool().install(|| bp.par_chunks_mut(max_steps * NR).enumerate().for_each(pack));
        } else {
            bp.chunks_mut(max_steps * NR).enumerate().for_each(pack);
        }
        let first = block == 0;
        let bp = &bp;
        let work = |ap: &mut Vec<K::P>, r0: usize| {
            let rows = mc.min(m - r0);
            let row_panels = rows.div_ceil(MR);
            for (p, out) in ap.chunks_mut(steps * MR).take(row_panels).enumerate() {
                pack_rows::<K>(sa, m, r0 + p * MR, k0, kc, out);
            }
            let mut tile = [0f32; MR * NR];
            for jp in 0..col_panels {
                let bpanel = &bp[jp * max_steps * NR..];
                for ip in 0..row_panels {
                    // SAFETY: the panels hold `steps` packed steps each; the kernel was chosen
                    // for this CPU's features.
                    unsafe {
                        K::run(
                            steps,
                            ap[ip * steps * MR..].as_ptr(),
                            bpanel.as_ptr(),
                            &mut tile,
                        )
                    };
                    let i0 = r0 + ip * MR;
                    let j0 = jp * NR;
                    // SAFETY: the row block is this worker's alone; indices are inside C.
                    unsafe {
                        merge(
                            &tile,
                            dst,
                            (i0, j0),
                            (MR.min(m - i0), NR.min(n - j0)),
                            alpha,
                            if first { beta } else { 1.0 },
                        )
                    };
                }
            }
        };
        let starts: Vec<usize> = (0..m).step_by(mc).collect();
        let ap_len = mc.div_ceil(MR) * steps * MR;
        if parallel {
            pool().install(|| {
                starts
                    .par_iter()
                    .for_each_init(|| vec![K::P::default(); ap_len], |ap, &r0| work(ap, r0))
            });
        } else {
            let mut ap = vec![K::P::default(); ap_len];
            for &r0 in &starts {
                work(&mut ap, r0);
            }
        }
    }
}

/// `C[i0.., j0..] = alpha · tile + beta · C` over the live `(rows, cols)`.
///
/// # Safety
/// The region lies inside C and no other thread writes it.
#[inline(always)]
unsafe fn merge(
    tile: &[f32; MR * NR],
    c: Dst,
    (i0, j0): (usize, usize),
    (rows, cols): (usize, usize),
    alpha: f32,
    beta: f32,
) {
    for i in 0..rows {
        let row = c.ptr.offset((i0 + i) as isize * c.rs + j0 as isize * c.cs);
        let t = &tile[i * NR..i * NR + cols];
        if c.cs == 1 {
            let out = std::slice::from_raw_parts_mut(row, cols);
            if beta == 0.0 {
                out.iter_mut().zip(t).for_each(|(o, &v)| *o = alpha * v);
            } else if beta == 1.0 {
                out.iter_mut().zip(t).for_each(|(o, &v)| *o += alpha * v);
            } else {
                out.iter_mut()
                    .zip(t)
                    .for_each(|(o, &v)| *o = alpha * v + beta * *o);
            }
        } else {
            for (j, &v) in t.iter().enumerate() {
                let o = &mut *row.offset(j as isize * c.cs);
                *o = if beta == 0.0 {
                    alpha * v
                } else {
                    alpha * v + beta * *o
                };
            }
        }
    }
}
