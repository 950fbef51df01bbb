//! `C [+]= A · B` for f32 matrices in memory, with the left matrix packed once for many
//! products (a convolution's weight, multiplied with every image of a batch): in f32 with
//! AVX-512 FMAs ([`Format::F32`]), or in bfloat16 with f32 sums ([`Format::Bf16`], the
//! training convolutions under `precision: "bf16"` on CPUs with AVX512_BF16).
//!
//! In bf16, A and B are rounded (nearest even) as they are packed, so the convolutions keep
//! their f32 buffers; `vdpbf16ps` then adds two products per f32 lane and instruction, twice
//! an f32 FMA's work. The blocking is the usual one (Goto & van de Geijn): a slab of B `KP`
//! packed values deep, in panels of `NR` columns, `MC` rows of A packed in panels of `MR`
//! rows, and a register-tile kernel over one A panel and one B panel. A packed value holds
//! one k (an f32's bits) or, in bf16, a pair: B as `[k/2][NR]` u32 (B[2p][j] low,
//! B[2p+1][j] high), A as `[k/2][MR]` u32 likewise, so one u32 of A broadcast against a
//! vector of B's pairs gives 16 columns two products each.
//! Every sum runs in the same order whatever the threads: results are reproducible.
//!
//! Why f32 too: `gemm` packs its left matrix on every call, and a convolution calls it once
//! per image with the same weight; its micro-kernel also runs along the destination's
//! contiguous side, 16 pixels for a 4x4 map (one vector: its narrow edge kernel).

use rayon::prelude::*;

/// Depth of a packed slab, in packed values (k, or pairs of k in bf16). B's panel,
/// `KP · NR` u32, stays in L1 (16 KiB for NR = 32).
const KP: usize = 128;
/// Rows of A packed at once (a multiple of both row counts of the register tiles).
const MC: usize = 144;
/// Columns of B packed at once.
const NC: usize = 1536;

/// How A and B are packed and multiplied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    /// f32 values, f32 FMAs (AVX-512F).
    F32,
    /// Pairs of bf16, `vdpbf16ps` (AVX512_BF16).
    Bf16,
}

impl Format {
    /// Values of k in one packed u32.
    fn group(self) -> usize {
        match self {
            Format::F32 => 1,
            Format::Bf16 => 2,
        }
    }

    /// Depth of a slab in k.
    fn kc(self) -> usize {
        KP * self.group()
    }

    /// Whether this CPU runs f32 products packed (AVX-512F); `EASEL_CONV_KERNEL=gemm` (the
    /// lesser kernels: the `gemm` crate's) turns them off. Decided once.
    pub(crate) fn f32_available() -> bool {
        static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *AVAILABLE.get_or_init(|| {
            #[cfg(target_arch = "x86_64")]
            {
                std::arch::is_x86_feature_detected!("avx512f")
                    && std::env::var("EASEL_CONV_KERNEL").as_deref() != Ok("gemm")
            }
            #[cfg(not(target_arch = "x86_64"))]
            false
        })
    }
}

/// One A or B pair: `lo` in the low half, `hi` in the high half, each rounded to bf16.
fn pair(lo: f32, hi: f32) -> u32 {
    u32::from(half::bf16::from_f32(lo).to_bits())
        | u32::from(half::bf16::from_f32(hi).to_bits()) << 16
}

/// A matrix in memory: element (i, j) at `ptr + i·rs + j·cs`.
#[derive(Clone, Copy)]
pub(crate) struct Mat {
    pub ptr: *const f32,
    pub rs: usize,
    pub cs: usize,
}

// SAFETY: only read, by threads that the caller's borrow outlives.
unsafe impl Send for Mat {}
unsafe impl Sync for Mat {}

impl Mat {
    /// The matrix from column `j` on.
    ///
    /// # Safety
    /// Column `j` must be inside the matrix.
    unsafe fn columns_from(self, j: usize) -> Mat {
        Mat {
            // SAFETY: the caller keeps j inside.
            ptr: unsafe { self.ptr.add(j * self.cs) },
            ..self
        }
    }

    /// # Safety
    /// (i, j) must be inside the matrix.
    unsafe fn at(&self, i: usize, j: usize) -> f32 {
        // SAFETY: the caller keeps (i, j) inside.
        unsafe { *self.ptr.add(i * self.rs + j * self.cs) }
    }
}

/// A left matrix packed in the panels [`gemm`] reads, block by block, in the register tile
/// that suits products with `n` columns; packed once, it serves many products of any width
/// (a convolution's weight, multiplied with every image of a batch).
pub(crate) struct PackedA {
    format: Format,
    m: usize,
    k: usize,
    mr: usize,
    /// Block (ic / MC, pc / kc), row-major over the k blocks.
    blocks: Vec<Vec<u32>>,
}

impl PackedA {
    /// # Safety
    /// AVX512F must be available, and for [`Format::Bf16`] AVX512_BF16; `a` valid for
    /// `m`×`k`.
    pub(crate) unsafe fn new(format: Format, a: Mat, m: usize, k: usize, n: usize) -> PackedA {
        let mr = tile_rows(n);
        let kc = format.kc();
        let kblocks = k.max(1).div_ceil(kc);
        // Blocks in parallel (each is packed by one thread, so the result is the same).
        let blocks = (0..m.div_ceil(MC) * kblocks)
            .into_par_iter()
            .map(|b| {
                let (ic, pc) = (b / kblocks * MC, b % kblocks * kc);
                let (mc, kc) = (MC.min(m - ic), kc.min(k - pc.min(k)));
                let mut out = vec![];
                // SAFETY: the block is inside a; the instructions are the caller's promise.
                unsafe { pack_a(format, &mut out, mr, a, ic, mc, pc, kc) };
                out
            })
            .collect();
        PackedA {
            format,
            m,
            k,
            mr,
            blocks,
        }
    }

    fn block(&self, ic: usize, pc: usize) -> &[u32] {
        let kc = self.format.kc();
        &self.blocks[(ic / MC) * self.k.max(1).div_ceil(kc) + pc / kc]
    }
}

/// Rows of the register tile for products with `n` columns: narrow products (a few output
/// pixels, as deep layers' small pictures) take 24 rows × 16 columns, others 12 × 32. Both
/// hold 24 accumulators.
fn tile_rows(n: usize) -> usize {
    if n <= 16 {
        24
    } else {
        12
    }
}

/// `dst (m×n, rows dst_rs apart, columns contiguous) = [dst +] a (m×k) · b (k×n)`, with
/// columns split among rayon's threads when `parallel`.
///
/// # Safety
/// The instructions of `a`'s format must be available; `a`, `b` and `dst` valid for their
/// shapes, `dst` not overlapping them; `a` packed for m×k.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn gemm(
    (m, n, k): (usize, usize, usize),
    dst: *mut f32,
    dst_rs: usize,
    accumulate: bool,
    a: &PackedA,
    b: Mat,
    parallel: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(a.m == m && a.k == k, "packed for another product");
    let threads = rayon::current_num_threads();
    let dst = super::conv::SharedPtr(dst);
    if parallel && threads > 1 && n >= 2 * 32 {
        // Column blocks, one per task; each writes its own columns of dst. The tile rows
        // stay those of the whole n (a was packed for it), so every tile is computed as
        // one thread would: the same bits whatever the threads.
        let per = n.div_ceil(threads).next_multiple_of(32);
        (0..n.div_ceil(per)).into_par_iter().for_each(|t| {
            let j0 = t * per;
            let cols = per.min(n - j0);
            // SAFETY: column j0 < n of b.
            let b = unsafe { b.columns_from(j0) };
            // SAFETY: as the caller's, on columns j0..j0+cols.
            unsafe { serial((m, cols, k), dst.get().add(j0), dst_rs, accumulate, a, b) };
        });
    } else {
        // SAFETY: the caller's.
        unsafe { serial((m, n, k), dst.get(), dst_rs, accumulate, a, b) };
    }
}

/// [`gemm`] on one thread, with the register tiles `a` was packed for.
///
/// # Safety
/// As [`gemm`].
unsafe fn serial(
    (m, n, k): (usize, usize, usize),
    dst: *mut f32,
    dst_rs: usize,
    accumulate: bool,
    a: &PackedA,
    b: Mat,
) {
    let mnk = (m, n, k);
    // SAFETY: the caller's.
    unsafe {
        match (a.mr, a.format) {
            (24, Format::F32) => blocked::<24, 1, false>(mnk, dst, dst_rs, accumulate, a, b),
            (_, Format::F32) => blocked::<12, 2, false>(mnk, dst, dst_rs, accumulate, a, b),
            (24, Format::Bf16) => blocked::<24, 1, true>(mnk, dst, dst_rs, accumulate, a, b),
            (_, Format::Bf16) => blocked::<12, 2, true>(mnk, dst, dst_rs, accumulate, a, b),
        }
    }
}

/// # Safety
/// As [`gemm`]; `BF16` is `a`'s format.
unsafe fn blocked<const MR: usize, const NV: usize, const BF16: bool>(
    (m, n, k): (usize, usize, usize),
    dst: *mut f32,
    dst_rs: usize,
    accumulate: bool,
    a: &PackedA,
    b: Mat,
) {
    let nr = 16 * NV;
    let kc_max = a.format.kc();
    let mut bpack: Vec<u32> = Vec::new();
    let mut tile = vec![0f32; MR * nr];
    let kernel = |kp: usize, ap: &[u32], bp: &[u32], c: *mut f32, ldc: usize, load: bool| {
        let t = Tile {
            kp,
            ap,
            bp,
            c,
            ldc,
            load,
        };
        // SAFETY (both arms): the caller's promise of the format's instructions.
        unsafe {
            if BF16 {
                avx512::tile_bf16::<MR, NV>(t)
            } else {
                avx512::tile_f32::<MR, NV>(t)
            }
        }
    };
    for jc in (0..n).step_by(NC) {
        let nc = NC.min(n - jc);
        let npanels = nc.div_ceil(nr);
        for pc in (0..k.max(1)).step_by(kc_max) {
            let kc = kc_max.min(k - pc.min(k));
            let kp = kc.div_ceil(a.format.group());
            // SAFETY: rows pc..pc+kc and columns jc..jc+nc are inside b.
            unsafe { pack_b(a.format, &mut bpack, b, pc, kc, jc, nc, nr) };
            let load = accumulate || pc > 0;
            for ic in (0..m).step_by(MC) {
                let mc = MC.min(m - ic);
                let mpanels = mc.div_ceil(MR);
                let apack = a.block(ic, pc);
                for jp in 0..npanels {
                    let cols = nr.min(nc - jp * nr);
                    let bp = &bpack[jp * kp * nr..(jp + 1) * kp * nr];
                    for ip in 0..mpanels {
                        let rows = MR.min(mc - ip * MR);
                        let ap = &apack[ip * kp * MR..(ip + 1) * kp * MR];
                        // SAFETY: (ic + ip·MR, jc + jp·nr) is inside dst.
                        let c = unsafe { dst.add((ic + ip * MR) * dst_rs + jc + jp * nr) };
                        if rows == MR && cols == nr {
                            // A whole tile of dst; the packs hold kp values.
                            kernel(kp, ap, bp, c, dst_rs, load);
                        } else {
                            // An edge: the packs are zero-padded; the tile goes through
                            // a buffer and only its valid part reaches dst.
                            kernel(kp, ap, bp, tile.as_mut_ptr(), nr, false);
                            for r in 0..rows {
                                for j in 0..cols {
                                    // SAFETY: r < rows, j < cols: inside dst.
                                    unsafe {
                                        let d = c.add(r * dst_rs + j);
                                        let v = tile[r * nr + j];
                                        *d = if load { *d + v } else { v };
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// One register tile's work: `c` (MR × 16·NV, rows `ldc` apart; read first when `load`)
/// [+]= the A panel `ap` (kp·MR packed values) times the B panel `bp` (kp·16·NV).
pub(super) struct Tile<'a> {
    kp: usize,
    ap: &'a [u32],
    bp: &'a [u32],
    c: *mut f32,
    ldc: usize,
    load: bool,
}

/// `out[i]` = `lo[i]`'s bits (f32), or the bf16 pair of `lo[i]` and `hi[i]` (0 without `hi`).
///
/// # Safety
/// For bf16, AVX-512F; `out` as long as `lo` (and `hi`).
unsafe fn convert(format: Format, lo: &[f32], hi: Option<&[f32]>, out: &mut [u32]) {
    match format {
        Format::F32 => {
            for (o, v) in out.iter_mut().zip(lo) {
                *o = v.to_bits();
            }
        }
        // SAFETY: the caller's.
        Format::Bf16 => unsafe { avx512::pairs(lo, hi, out) },
    }
}

/// Packs rows `pc..pc+kc` × columns `jc..jc+nc` of `b` as panels of `nr` columns, k in
/// the format's groups, zero-padded to whole panels and groups.
///
/// # Safety
/// The block must be inside `b`; the format's instructions available.
#[allow(clippy::too_many_arguments)]
unsafe fn pack_b(
    format: Format,
    out: &mut Vec<u32>,
    b: Mat,
    pc: usize,
    kc: usize,
    jc: usize,
    nc: usize,
    nr: usize,
) {
    if b.rs == 1 {
        // B's columns are contiguous in k (B read transposed): packed as the rows of Bᵀ,
        // whose panels have B's layout.
        let bt = Mat {
            ptr: b.ptr,
            rs: b.cs,
            cs: 1,
        };
        // SAFETY: the block of Bᵀ is the caller's block of B.
        return unsafe { pack_a(format, out, nr, bt, jc, nc, pc, kc) };
    }
    let group = format.group();
    let kp = kc.div_ceil(group);
    let panels = nc.div_ceil(nr);
    out.clear();
    out.resize(panels * kp * nr, 0);
    // Rows: one of B's rows at a time, or two (k = 2p and 2p + 1) paired by the converter.
    let mut lo = vec![0f32; nc];
    let mut hi = vec![0f32; nc];
    for p in 0..kp {
        let (k0, k1) = (pc + group * p, pc + group * p + 1);
        let has_hi = k1 < pc + kc;
        // f32 packs one row a value: `hi` is left alone.
        for (k, buf, wanted) in [(k0, &mut lo, true), (k1, &mut hi, has_hi)]
            .into_iter()
            .take(group)
        {
            if !wanted {
                buf.fill(0.0);
            } else if b.cs == 1 {
                // SAFETY: row k, columns jc..jc+nc are inside b.
                buf.copy_from_slice(unsafe {
                    std::slice::from_raw_parts(b.ptr.add(k * b.rs + jc), nc)
                });
            } else {
                for (j, v) in buf.iter_mut().enumerate() {
                    // SAFETY: row k, column jc + j are inside b.
                    *v = unsafe { b.at(k, jc + j) };
                }
            }
        }
        for jp in 0..panels {
            let cols = nr.min(nc - jp * nr);
            let row = &mut out[jp * kp * nr + p * nr..][..cols];
            let span = jp * nr..jp * nr + cols;
            // SAFETY: the format's instructions are the caller's promise; the three
            // slices are `cols` long.
            unsafe { convert(format, &lo[span.clone()], Some(&hi[span]), row) };
        }
    }
}

/// Packs rows `ic..ic+mc` × columns `pc..pc+kc` of `a` as panels of `mr` rows, k in the
/// format's groups, zero-padded.
///
/// # Safety
/// The block must be inside `a`; the format's instructions available.
#[allow(clippy::too_many_arguments)]
unsafe fn pack_a(
    format: Format,
    out: &mut Vec<u32>,
    mr: usize,
    a: Mat,
    ic: usize,
    mc: usize,
    pc: usize,
    kc: usize,
) {
    let group = format.group();
    let kp = kc.div_ceil(group);
    let panels = mc.div_ceil(mr);
    out.clear();
    out.resize(panels * kp * mr, 0);
    let mut run = vec![0u32; kp];
    for ip in 0..panels {
        let rows = mr.min(mc - ip * mr);
        let panel = &mut out[ip * kp * mr..(ip + 1) * kp * mr];
        for r in 0..rows {
            let i = ic + ip * mr + r;
            if a.cs == 1 {
                // A row's values (pairs: adjacent values) are converted in one run.
                // SAFETY: row i, columns pc..pc+kc are inside a; the instructions are the
                // caller's promise.
                unsafe {
                    let src = std::slice::from_raw_parts(a.ptr.add(i * a.rs + pc), kc);
                    match format {
                        Format::F32 => convert(format, src, None, &mut run),
                        Format::Bf16 => avx512::adjacent_pairs(src, &mut run),
                    }
                }
                for (p, v) in run.iter().enumerate() {
                    panel[p * mr + r] = *v;
                }
                continue;
            }
            for p in 0..kp {
                let (k0, k1) = (pc + group * p, pc + group * p + 1);
                // SAFETY: inside the block; k1 only when it is.
                panel[p * mr + r] = unsafe {
                    match format {
                        Format::F32 => a.at(i, k0).to_bits(),
                        Format::Bf16 => {
                            pair(a.at(i, k0), if k1 < pc + kc { a.at(i, k1) } else { 0.0 })
                        }
                    }
                };
            }
        }
    }
}

/// Where there is no AVX-512 there are no packed products: `Precision::bf16_available` and
/// `Format::f32_available` are false, so nothing here is reached.
#[cfg(not(target_arch = "x86_64"))]
mod avx512 {
    pub(super) unsafe fn adjacent_pairs(_: &[f32], _: &mut [u32]) {
        unreachable!("bf16 products need x86-64 with AVX512_BF16")
    }

    pub(super) unsafe fn pairs(_: &[f32], _: Option<&[f32]>, _: &mut [u32]) {
        unreachable!("bf16 products need x86-64 with AVX512_BF16")
    }

    pub(super) unsafe fn tile_bf16<const MR: usize, const NV: usize>(_: super::Tile) {
        unreachable!("bf16 products need x86-64 with AVX512_BF16")
    }

    pub(super) unsafe fn tile_f32<const MR: usize, const NV: usize>(_: super::Tile) {
        unreachable!("packed f32 products need x86-64 with AVX-512F")
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::Tile;

    pub(super) use super::super::infer::avx512_pairs as pairs;

    /// `dst[i] = bf16(src[2i]) | bf16(src[2i + 1]) << 16` (0 past the end of an odd
    /// `src`), rounded to nearest even by `vcvtne2ps2bf16`.
    ///
    /// # Safety
    /// AVX512F and AVX512_BF16; `dst` holds `src.len()` / 2 rounded up.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) unsafe fn adjacent_pairs(src: &[f32], dst: &mut [u32]) {
        let n = src.len();
        debug_assert!(dst.len() >= n.div_ceil(2));
        let mut i = 0;
        while i + 32 <= n {
            // SAFETY: i + 32 <= n; dst holds (i + 32) / 2.
            unsafe {
                let lo = _mm512_loadu_ps(src.as_ptr().add(i));
                let hi = _mm512_loadu_ps(src.as_ptr().add(i + 16));
                // Lanes 0–15 of the result from the second operand, 16–31 from the first.
                let v: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(hi, lo));
                _mm512_storeu_si512(dst.as_mut_ptr().add(i / 2).cast(), v);
            }
            i += 32;
        }
        while i < n {
            let hi = if i + 1 < n { src[i + 1] } else { 0.0 };
            dst[i / 2] = super::pair(src[i], hi);
            i += 2;
        }
    }

    /// `c (MR × 16·NV, rows ldc apart) = [c +] Σ_p A-pairs[p] · B-pairs[p]` over `kp` pairs.
    ///
    /// # Safety
    /// AVX512F and AVX512_BF16; as [`Tile`] says.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) unsafe fn tile_bf16<const MR: usize, const NV: usize>(t: Tile) {
        // SAFETY: the caller's; this function has the instructions `tile` inlines.
        unsafe {
            tile::<MR, NV>(t, |acc, a, b| {
                let a = std::mem::transmute::<__m512i, __m512bh>(_mm512_set1_epi32(a as i32));
                _mm512_dpbf16_ps(acc, a, std::mem::transmute::<__m512i, __m512bh>(b))
            })
        }
    }

    /// `c (MR × 16·NV, rows ldc apart) = [c +] Σ_p A[p] · B[p]` over `kp` values of k.
    ///
    /// # Safety
    /// AVX512F; as [`Tile`] says (the packs holding f32 bits).
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn tile_f32<const MR: usize, const NV: usize>(t: Tile) {
        // SAFETY: the caller's; this function has the instructions `tile` inlines.
        unsafe {
            tile::<MR, NV>(t, |acc, a, b| {
                _mm512_fmadd_ps(
                    _mm512_set1_ps(f32::from_bits(a)),
                    _mm512_castsi512_ps(b),
                    acc,
                )
            })
        }
    }

    /// The register tile both formats share: for every packed k, NV vectors of B and one
    /// broadcast u32 of A a row, `acc = step(acc, a, b)`. Inlined into the callers above,
    /// which have the instructions `step` uses.
    ///
    /// # Safety
    /// AVX512F; as [`Tile`] says.
    #[inline(always)]
    unsafe fn tile<const MR: usize, const NV: usize>(
        Tile {
            kp,
            ap,
            bp,
            c,
            ldc,
            load,
        }: Tile,
        step: impl Fn(__m512, u32, __m512i) -> __m512,
    ) {
        debug_assert!(ap.len() >= kp * MR && bp.len() >= kp * 16 * NV);
        // SAFETY: the caller's.
        let mut acc = unsafe { start::<MR, NV>(c, ldc, load) };
        let (mut a, mut b) = (ap.as_ptr(), bp.as_ptr());
        for _ in 0..kp {
            // SAFETY: AVX512F is the caller's promise.
            let mut bv = [unsafe { _mm512_setzero_si512() }; NV];
            for (v, x) in bv.iter_mut().enumerate() {
                // SAFETY: b walks bp, 16·NV u32 a k.
                *x = unsafe { _mm512_loadu_si512(b.add(16 * v).cast()) };
            }
            for (r, row) in acc.iter_mut().enumerate() {
                // SAFETY: a walks ap, MR u32 a k.
                let av = unsafe { *a.add(r) };
                for (x, acc) in bv.iter().zip(row.iter_mut()) {
                    *acc = step(*acc, av, *x);
                }
            }
            // SAFETY: one k on, inside the packs.
            unsafe {
                a = a.add(MR);
                b = b.add(16 * NV);
            }
        }
        // SAFETY: the caller's.
        unsafe { store(&acc, c, ldc) }
    }

    /// A tile's accumulators: zero, or `c`'s values when `load`.
    ///
    /// # Safety
    /// AVX512F; `c` a whole MR × 16·NV tile, rows ldc apart.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn start<const MR: usize, const NV: usize>(
        c: *const f32,
        ldc: usize,
        load: bool,
    ) -> [[__m512; NV]; MR] {
        let mut acc = [[_mm512_setzero_ps(); NV]; MR];
        if load {
            for (r, row) in acc.iter_mut().enumerate() {
                for (v, a) in row.iter_mut().enumerate() {
                    // SAFETY: the tile is inside c.
                    *a = unsafe { _mm512_loadu_ps(c.add(r * ldc + 16 * v)) };
                }
            }
        }
        acc
    }

    /// # Safety
    /// AVX512F; `c` a whole MR × 16·NV tile, rows ldc apart.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn store<const MR: usize, const NV: usize>(
        acc: &[[__m512; NV]; MR],
        c: *mut f32,
        ldc: usize,
    ) {
        for (r, row) in acc.iter().enumerate() {
            for (v, x) in row.iter().enumerate() {
                // SAFETY: the tile is inside c.
                unsafe { _mm512_storeu_ps(c.add(r * ldc + 16 * v), *x) };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a format multiplies: the value itself, or its bf16 rounding.
    fn rounded(format: Format, v: f32) -> f32 {
        match format {
            Format::F32 => v,
            Format::Bf16 => half::bf16::from_f32(v).to_f32(),
        }
    }

    /// The formats this CPU runs.
    fn formats() -> Vec<Format> {
        let mut f = vec![];
        if Format::f32_available() {
            f.push(Format::F32);
        }
        if crate::gan::Precision::bf16_available() {
            f.push(Format::Bf16);
        }
        if f.is_empty() {
            eprintln!("skipped: this CPU has no AVX-512 (the products go through `gemm`)");
        }
        f
    }

    /// Equals an f64 product of the matrices (in bf16: of the rounded matrices) to f32
    /// summation, for every layout the convolutions use, edges in m, n and k, odd k, several
    /// k blocks, and accumulation.
    #[test]
    fn products_equal_the_rounded_matrices_product() {
        for format in formats() {
            products_equal(format);
        }
    }

    fn products_equal(format: Format) {
        let mut seed = 7u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((seed >> 33) as f32 / (1u64 << 31) as f32) - 0.5
        };
        for &(m, n, k) in &[
            (1, 1, 1),
            (12, 32, 2),
            (13, 33, 3),
            (5, 16, 300),
            (30, 16, 260),
            (40, 7, 515),
            (150, 1600, 70),
            (3, 64, 48),
        ] {
            for (a_t, b_t, accumulate, parallel) in [
                (false, false, false, false),
                (true, false, true, false),
                (false, true, false, true),
                (false, false, true, true),
            ] {
                let av: Vec<f32> = (0..m * k).map(|_| next()).collect();
                let bv: Vec<f32> = (0..k * n).map(|_| next()).collect();
                let start: Vec<f32> = (0..m * n).map(|_| next()).collect();
                let a = if a_t {
                    Mat {
                        ptr: av.as_ptr(),
                        rs: 1,
                        cs: m,
                    }
                } else {
                    Mat {
                        ptr: av.as_ptr(),
                        rs: k,
                        cs: 1,
                    }
                };
                let b = if b_t {
                    Mat {
                        ptr: bv.as_ptr(),
                        rs: 1,
                        cs: k,
                    }
                } else {
                    Mat {
                        ptr: bv.as_ptr(),
                        rs: n,
                        cs: 1,
                    }
                };
                let mut c = start.clone();
                // SAFETY: shapes as allocated; the CPU has AVX512_BF16 (checked).
                unsafe {
                    let p = PackedA::new(format, a, m, k, n);
                    gemm((m, n, k), c.as_mut_ptr(), n, accumulate, &p, b, parallel)
                }
                for i in 0..m {
                    for j in 0..n {
                        let mut want = if accumulate {
                            f64::from(start[i * n + j])
                        } else {
                            0.0
                        };
                        let mut scale = want.abs();
                        for p in 0..k {
                            // SAFETY: inside both matrices.
                            let x = unsafe {
                                f64::from(rounded(format, a.at(i, p)))
                                    * f64::from(rounded(format, b.at(p, j)))
                            };
                            want += x;
                            scale += x.abs();
                        }
                        let got = f64::from(c[i * n + j]);
                        assert!(
                            (got - want).abs() <= 1e-5 * scale + 1e-30,
                            "{format:?} {m}x{n}x{k} a_t {a_t} b_t {b_t}: ({i}, {j}) {got} vs {want}"
                        );
                    }
                }
            }
        }
    }

    /// Split among 16 threads, a product whose last column block is 16 wide (720 columns;
    /// 48 rows: whole tiles of both shapes) gives the bits one thread gives, accumulating
    /// over several k blocks.
    #[test]
    fn threads_do_not_change_the_bits() {
        for format in formats() {
            threads_keep_the_bits(format);
        }
    }

    fn threads_keep_the_bits(format: Format) {
        let (m, n, k) = (48, 720, 600);
        let av: Vec<f32> = (0..m * k)
            .map(|i| ((i * 7919) % 1000) as f32 / 999.0 - 0.5)
            .collect();
        let bv: Vec<f32> = (0..k * n)
            .map(|i| ((i * 104729) % 997) as f32 / 996.0 - 0.5)
            .collect();
        let start: Vec<f32> = (0..m * n).map(|i| (i % 13) as f32 * 0.1).collect();
        let a = Mat {
            ptr: av.as_ptr(),
            rs: k,
            cs: 1,
        };
        let b = Mat {
            ptr: bv.as_ptr(),
            rs: 1,
            cs: k,
        };
        let run = |parallel: bool| {
            let mut c = start.clone();
            // SAFETY: shapes as allocated; AVX512_BF16 checked.
            unsafe {
                let p = PackedA::new(format, a, m, k, n);
                gemm((m, n, k), c.as_mut_ptr(), n, true, &p, b, parallel)
            };
            c
        };
        let one = run(false);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(16)
            .build()
            .unwrap();
        assert!(
            pool.install(|| run(true)) == one,
            "{format:?}: 16 threads changed the bits"
        );
    }
}
