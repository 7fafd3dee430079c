//! The blocked matrix product around a micro-kernel (the BLIS loop order): B is packed one
//! k-block at a time into column panels shared by every thread; each thread packs its own
//! block of A rows into row panels and runs the micro-kernel over (column panel, row panel)
//! pairs. Every element of C is summed over k in the same order whatever the thread count, so
//! results are bit-identical from one run, or one machine size, to the next.

use std::sync::OnceLock;

use ndarray::{ArrayView2, ArrayViewMut2};
use rayon::prelude::*;

/// Columns of C one micro-kernel call produces (its rows are the kernel's `MR`).
pub(super) const NR: usize = 32;
/// The most rows of C any micro-kernel produces per call: the tile buffer's height.
pub(super) const MAX_MR: usize = 32;

/// One micro-kernel call's block of C, row-major with rows `NR` apart.
pub(super) type Tile = [f32; MAX_MR * NR];

/// A micro-kernel and the packed layout it reads. `P` is one packed element: an f32, or two
/// bf16 values of consecutive k (`KSTEP = 2`) in one u32.
pub(super) trait MicroKernel: Sync + Sized {
    type P: Copy + Default + Send + Sync;
    const KSTEP: usize;
    /// k values per block (a multiple of `KSTEP`).
    const KC: usize;
    /// Rows of C per call (at most `MAX_MR`).
    const MR: usize;
    /// Packed steps per panel are padded with zeros to a multiple of this (AMX tiles hold 16).
    const STEP_ALIGN: usize;
    /// Packs `x` (two k values when `KSTEP = 2`; `hi` is 0 past the end of k).
    fn pack(lo: f32, hi: f32) -> Self::P;
    /// Packs a contiguous run of `KSTEP · dst.len()` values (a loop the compiler vectorises).
    /// Called only where this kernel was chosen, so it may use the kernel's CPU features.
    fn pack_run(src: &[f32], dst: &mut [Self::P]);
    /// Packs a panel of A as [`MicroKernel::run`] reads it: by default step-major, like B's
    /// (`[step][row]`, what a broadcast kernel wants).
    ///
    /// # Safety
    /// As [`pack_panel`].
    unsafe fn pack_a(p: Panel, out: &mut [Self::P]) {
        pack_panel::<Self>(p, out)
    }

    /// Packs a panel of B: step-major, as [`pack_panel`] (a kernel may do it faster).
    ///
    /// # Safety
    /// As [`pack_panel`].
    unsafe fn pack_b(p: Panel, out: &mut [Self::P]) {
        pack_panel::<Self>(p, out)
    }

    /// `tile[i * NR + j] = Σ_s a[i, s] · b[s][j]` over `steps` packed k steps (a multiple of
    /// `STEP_ALIGN`), for rows `i < MR`.
    ///
    /// # Safety
    /// `a` holds `steps * MR` elements, `b` `steps * NR`; the CPU has the kernel's features.
    unsafe fn run(steps: usize, a: *const Self::P, b: *const Self::P, tile: &mut Tile);
}

/// Packed steps in one k block, at most (the largest `KC / KSTEP`).
pub(super) const MAX_STEPS: usize = 256;

/// Products below this many multiply-adds run on the calling thread (a fork costs more).
const PARALLEL_MIN: usize = 1 << 21;
/// Row panels of A one thread packs and works through at a time (fits in L2 with its k-block).
const MC_PANELS: usize = 8;

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

/// Runs `f` on the matmul threads (so its rayon work shares them with the products').
pub fn in_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    pool().install(f)
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
    unsafe fn at_ptr(self, i: usize, j: usize) -> *const f32 {
        self.ptr.offset(i as isize * self.rs + j as isize * self.cs)
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

/// A panel to pack: `live` lanes (zeros up to `width`) × k values `0..kc`, padded with zero
/// steps up to `psteps`; lane `l`, k value `k` lies at `base + l·ls + k·ks`. A panel of A has
/// rows for lanes, a panel of B columns.
#[derive(Clone, Copy)]
pub(super) struct Panel {
    pub(super) base: *const f32,
    pub(super) ls: isize,
    pub(super) ks: isize,
    pub(super) live: usize,
    pub(super) width: usize,
    pub(super) kc: usize,
    pub(super) psteps: usize,
}

impl Panel {
    /// # Safety
    /// `(l, k)` lies inside the source matrix.
    #[inline(always)]
    pub(super) unsafe fn at(self, l: usize, k: usize) -> *const f32 {
        self.base
            .offset(l as isize * self.ls + k as isize * self.ks)
    }

    /// Packed steps of `kstep` k values: those whose every k value exists, and all of them (one
    /// more, zero-padded, when `kc` is not a multiple of `kstep`).
    pub(super) fn steps(self, kstep: usize) -> (usize, usize) {
        (self.kc / kstep, self.kc.div_ceil(kstep))
    }
}

/// Packs `p` into `out` as `[step][width]`. The inner loop walks whichever axis is contiguous.
///
/// # Safety
/// Every `(l < live, k < kc)` of `p` lies inside the source matrix.
#[cfg_attr(target_arch = "x86_64", target_feature(enable = "avx512f"))]
pub(super) unsafe fn pack_panel<K: MicroKernel>(p: Panel, out: &mut [K::P]) {
    let Panel {
        ls,
        ks,
        live,
        width,
        psteps,
        ..
    } = p;
    let (full, steps) = p.steps(K::KSTEP);
    let at = |l: usize, k: usize| p.at(l, k);
    let pair = |q: *const f32| K::pack(*q, if K::KSTEP == 2 { *q.offset(ks) } else { 0.0 });
    if ks == 1 && ls != 1 {
        // k is contiguous: a transpose. Each lane's run of k values is converted in one
        // vectorised pass, eight lanes at a time, then written out step by step so each
        // step's writes are contiguous.
        const GROUP: usize = 8;
        let mut runs = [[K::P::default(); MAX_STEPS]; GROUP];
        for l0 in (0..live).step_by(GROUP) {
            let lanes = GROUP.min(live - l0);
            for (g, run) in runs.iter_mut().enumerate().take(lanes) {
                let src = std::slice::from_raw_parts(at(l0 + g, 0), full * K::KSTEP);
                K::pack_run(src, &mut run[..full]);
            }
            for st in 0..full {
                let o = &mut out[st * width + l0..st * width + l0 + lanes];
                for (o, run) in o.iter_mut().zip(&runs) {
                    *o = run[st];
                }
            }
        }
    } else {
        for st in 0..full {
            let q = at(0, st * K::KSTEP);
            for (l, o) in out[st * width..st * width + live].iter_mut().enumerate() {
                *o = pair(q.offset(l as isize * ls));
            }
        }
    }
    if steps > full {
        // An odd kc with two k values per step: the last step holds one.
        for l in 0..live {
            out[full * width + l] = K::pack(*at(l, full * K::KSTEP), 0.0);
        }
    }
    if live < width {
        for st in 0..steps {
            out[st * width + live..(st + 1) * width].fill(K::P::default());
        }
    }
    out[steps * width..psteps * width].fill(K::P::default());
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
    let mr = K::MR;
    let mc = if parallel {
        m.div_ceil(threads())
            .next_multiple_of(mr)
            .min(MC_PANELS * mr)
    } else {
        MC_PANELS * mr
    };
    let col_panels = n.div_ceil(NR);
    let max_steps = K::KC
        .min(k)
        .div_ceil(K::KSTEP)
        .next_multiple_of(K::STEP_ALIGN);
    let mut bp = vec![K::P::default(); col_panels * max_steps * NR];
    for (block, k0) in (0..k).step_by(K::KC).enumerate() {
        let kc = K::KC.min(k - k0);
        let steps = kc.div_ceil(K::KSTEP).next_multiple_of(K::STEP_ALIGN);
        let pack = |(p, out): (usize, &mut [K::P])| {
            let c0 = p * NR;
            // SAFETY: columns c0..c0+live and k values k0..k0+kc lie inside B.
            unsafe {
                let panel = Panel {
                    base: sb.at_ptr(k0, c0),
                    ls: sb.cs,
                    ks: sb.rs,
                    live: NR.min(n - c0),
                    width: NR,
                    kc,
                    psteps: steps,
                };
                K::pack_b(panel, out)
            }
        };
        if parallel {
            pool().install(|| bp.par_chunks_mut(max_steps * NR).enumerate().for_each(pack));
        } else {
            bp.chunks_mut(max_steps * NR).enumerate().for_each(pack);
        }
        let first = block == 0;
        let bp = &bp;
        let work = |ap: &mut Vec<K::P>, r0: usize| {
            let rows = mc.min(m - r0);
            let row_panels = rows.div_ceil(mr);
            for (p, out) in ap.chunks_mut(steps * mr).take(row_panels).enumerate() {
                let i0 = r0 + p * mr;
                // SAFETY: rows i0..i0+live and k values k0..k0+kc lie inside A.
                unsafe {
                    let panel = Panel {
                        base: sa.at_ptr(i0, k0),
                        ls: sa.rs,
                        ks: sa.cs,
                        live: mr.min(m - i0),
                        width: mr,
                        kc,
                        psteps: steps,
                    };
                    K::pack_a(panel, out)
                }
            }
            let mut tile: Tile = [0f32; MAX_MR * NR];
            for jp in 0..col_panels {
                let bpanel = &bp[jp * max_steps * NR..];
                for ip in 0..row_panels {
                    // SAFETY: the panels hold `steps` packed steps each; the kernel was chosen
                    // for this CPU's features.
                    unsafe {
                        K::run(
                            steps,
                            ap[ip * steps * mr..].as_ptr(),
                            bpanel.as_ptr(),
                            &mut tile,
                        )
                    };
                    let i0 = r0 + ip * mr;
                    let j0 = jp * NR;
                    // SAFETY: the row block is this worker's alone; indices are inside C.
                    unsafe {
                        merge(
                            &tile,
                            dst,
                            (i0, j0),
                            (mr.min(m - i0), NR.min(n - j0)),
                            alpha,
                            if first { beta } else { 1.0 },
                        )
                    };
                }
            }
        };
        let starts: Vec<usize> = (0..m).step_by(mc).collect();
        let ap_len = mc.min(m).div_ceil(mr) * steps * mr;
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
// Every kernel the driver runs is an AVX-512 one: the merge is compiled for it.
#[cfg_attr(target_arch = "x86_64", target_feature(enable = "avx512f"))]
unsafe fn merge(
    tile: &Tile,
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
