//! 3×3 convolutions by Winograd's F(4×4, 3×3) (Lavin & Gray 2016), on AVX-512 or AVX2:
//! each 4×4 block of outputs is 36 products of transformed 6×6 input and kernel tiles
//! instead of 144, so the multiply-adds drop by 4× for some extra addition and rounding
//! (fp32: ~1e-5 relative, far below a level of 255; F(2×2, 3×3) saves 2.25×, larger tiles
//! save more and round worse).
//!
//! Activations are channels-last (`[h][w][c]`), so every step works on whole vectors of
//! channels (16 with AVX-512, 8 with AVX2) with no transposes: the input is copied into a
//! zero-padded buffer (where a dense block's concatenation and a nearest upsampling
//! happen), each tile is transformed, the 36 transformed planes are multiplied by the
//! transformed kernels (one GEMM-like pass per plane: 12 tiles × 2 vectors of output
//! channels in registers, 6 tiles with AVX2's 16 registers), and the outputs are
//! transformed back with the bias and activation straight into the result. Channel counts
//! that are not multiples of 16 (a picture's 3) are padded with zero kernels. Tiles go to
//! threads in blocks that stay in the core's L2.

use std::cell::RefCell;
use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::conv::SharedPtr;

/// Outputs per tile side, and the side of the input tile that makes them.
const M: usize = 4;
const SIDE: usize = M + 2;
/// Transformed planes: one per position of an input tile.
const PLANES: usize = SIDE * SIDE;
/// Tiles per block: a multiple of the multiply pass's register blocks (12 and 6 tiles);
/// its transformed input (36 × 24 × cin values, 660 KB for 192 channels) stays in L2.
const BLOCK: usize = 24;

/// The vector instructions a [`Winograd`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Isa {
    /// AVX-512F: 16 channels a vector.
    Avx512,
    /// AVX2 and FMA: 8 channels a vector.
    Avx2,
}

/// A 3×3, padding-1 convolution's kernels, transformed, with its bias and slopes; every
/// channel count rounded up to whole vectors of 16 (zeros beyond the real ones).
#[derive(Debug)]
pub(super) struct Winograd {
    isa: Isa,
    cin: usize,
    cout: usize,
    /// `cin` and `cout` rounded up to multiples of 16.
    cin16: usize,
    cout16: usize,
    /// `U = G g Gᵀ`: `[PLANES][cin16][cout16]`.
    u: Vec<f32>,
    bias: Vec<f32>,
    slopes: Option<Vec<f32>>,
}

/// Whether Winograd runs this convolution: 3×3 with padding 1.
pub(super) fn applies(k: usize, padding: usize) -> bool {
    k == 3 && padding == 1
}

impl Winograd {
    /// From `[cout, cin, 3, 3]` weights: `U = G g Gᵀ` per (output, input) channel pair.
    pub(super) fn new(
        weight: &[f32],
        (cin, cout): (usize, usize),
        bias: &[f32],
        slopes: Option<&[f32]>,
        isa: Isa,
    ) -> Self {
        const G: [[f64; 3]; SIDE] = [
            [1.0 / 4.0, 0.0, 0.0],
            [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
            [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
            [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
            [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
            [0.0, 0.0, 1.0],
        ];
        let (cin16, cout16) = (cin.next_multiple_of(16), cout.next_multiple_of(16));
        // Per input channel (in parallel: x4plus has 1.3 M pairs), `[PLANES][cout16]`,
        // then laid out `[PLANES][cin16][cout16]`.
        let per_input: Vec<Vec<f32>> = (0..cin)
            .into_par_iter()
            .map(|ci| {
                let mut planes = vec![0f32; PLANES * cout16];
                for co in 0..cout {
                    let g = &weight[(co * cin + ci) * 9..][..9];
                    // G g (6×3), then (G g) Gᵀ (6×6), in f64 so only the final value rounds.
                    let mut gg = [[0f64; 3]; SIDE];
                    for (i, row) in gg.iter_mut().enumerate() {
                        for (j, v) in row.iter_mut().enumerate() {
                            *v = (0..3).map(|k| G[i][k] * f64::from(g[k * 3 + j])).sum();
                        }
                    }
                    for i in 0..SIDE {
                        for j in 0..SIDE {
                            let v: f64 = (0..3).map(|k| gg[i][k] * G[j][k]).sum();
                            planes[(i * SIDE + j) * cout16 + co] = v as f32;
                        }
                    }
                }
                planes
            })
            .collect();
        let mut u = vec![0f32; PLANES * cin16 * cout16];
        for (ci, planes) in per_input.iter().enumerate() {
            for (xi, plane) in planes.chunks_exact(cout16).enumerate() {
                u[(xi * cin16 + ci) * cout16..][..cout16].copy_from_slice(plane);
            }
        }
        let padded = |v: &[f32]| {
            let mut p = v.to_vec();
            p.resize(cout16, 0.0);
            p
        };
        Winograd {
            isa,
            cin,
            cout,
            cin16,
            cout16,
            u,
            bias: padded(bias),
            slopes: slopes.map(padded),
        }
    }

    /// `act(conv(x) + b)` of one channels-last picture whose channels are the `inputs`
    /// (each `[sh][sw][c]`, together `cin`) upsampled by `up` (nearest neighbour) to
    /// `h = sh·up`, `w = sw·up`, into `out` (`[h][w][cout]`, every value written).
    ///
    /// # Safety
    /// The CPU must have the instructions of the `isa` given to [`Winograd::new`].
    pub(super) unsafe fn run(
        &self,
        inputs: &[(&[f32], usize)],
        (sh, sw): (usize, usize),
        up: usize,
        out: &mut [MaybeUninit<f32>],
    ) {
        let (cin, cin16) = (self.cin, self.cin16);
        let (h, w) = (sh * up, sw * up);
        assert_eq!(inputs.iter().map(|(_, c)| c).sum::<usize>(), cin);
        assert!(inputs.iter().all(|(d, c)| d.len() == sh * sw * c));
        assert_eq!(out.len(), h * w * self.cout);
        let (ty, tx) = (h.div_ceil(M), w.div_ceil(M));
        // One pixel of zeros around (and more where h or w is not a multiple of M).
        let (hp, wp) = (M * ty + 2, M * tx + 2);
        let tiles = ty * tx;
        SCRATCH.with_borrow_mut(|padded| {
            padded.resize(hp * wp * cin16, 0.0);
            let padded = &mut padded[..hp * wp * cin16];
            // Fill: every row, interior from the inputs side by side, borders zero.
            padded
                .par_chunks_mut(wp * cin16)
                .enumerate()
                .for_each(|(r, row)| {
                    if r == 0 || r > h {
                        row.fill(0.0);
                        return;
                    }
                    row[..cin16].fill(0.0);
                    row[(w + 1) * cin16..].fill(0.0);
                    let sy = (r - 1) / up;
                    for (x, px) in row[cin16..(w + 1) * cin16]
                        .chunks_exact_mut(cin16)
                        .enumerate()
                    {
                        let at = sy * sw + x / up;
                        let mut c0 = 0;
                        for &(data, c) in inputs {
                            px[c0..c0 + c].copy_from_slice(&data[at * c..(at + 1) * c]);
                            c0 += c;
                        }
                        px[c0..].fill(0.0);
                    }
                });
            let padded = &*padded;
            let out = SharedPtr(out.as_mut_ptr().cast::<f32>());
            let geometry = Geometry { wp, tx, h, w };
            #[cfg(target_arch = "x86_64")]
            (0..tiles.div_ceil(BLOCK)).into_par_iter().for_each(|b| {
                BLOCK_SCRATCH.with_borrow_mut(|bs| {
                    bs.v.resize(PLANES * BLOCK * cin16, 0.0);
                    bs.m.resize(PLANES * BLOCK * self.cout16, 0.0);
                    let t0 = b * BLOCK;
                    let n = (tiles - t0).min(BLOCK);
                    let (v, m, cout16) = (&mut bs.v, &mut bs.m, self.cout16);
                    // SAFETY: the CPU has `isa`'s instructions (the caller's word); each
                    // block writes only the pixels of its own tiles, inside `out` (h·w·cout
                    // values, asserted).
                    unsafe {
                        match self.isa {
                            Isa::Avx512 => {
                                avx512::input_transform(padded, &geometry, cin16, t0, n, v);
                                avx512::multiply(&self.u, v, m, cin16, cout16);
                                avx512::output_transform(self, m, &geometry, t0, n, out.get());
                            }
                            Isa::Avx2 => {
                                avx2::input_transform(padded, &geometry, cin16, t0, n, v);
                                avx2::multiply(&self.u, v, m, cin16, cout16);
                                avx2::output_transform(self, m, &geometry, t0, n, out.get());
                            }
                        }
                    }
                });
            });
            #[cfg(not(target_arch = "x86_64"))]
            {
                let _ = (padded, out, geometry);
                unreachable!("Winograd runs on x86-64 only ({tiles} tiles)");
            }
        });
    }
}

/// Where tiles lie: the padded input's width, tiles per row, and the output's size.
#[derive(Debug)]
struct Geometry {
    wp: usize,
    tx: usize,
    h: usize,
    w: usize,
}

/// A block's transformed inputs `v [PLANES][BLOCK][cin16]` and products
/// `m [PLANES][BLOCK][cout16]`.
#[derive(Default)]
struct BlockScratch {
    v: Vec<f32>,
    m: Vec<f32>,
}

thread_local! {
    /// The padded input, kept between calls (fresh pages cost more than the copy).
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    static BLOCK_SCRATCH: RefCell<BlockScratch> = RefCell::new(BlockScratch::default());
}

/// The kernels of one instruction set, written once: the module that invokes this defines
/// the vector type `V`, `LANES` (f32 per vector), `TILES` (tiles per register block of the
/// multiply pass) and the vector helpers (`zero`, `set1`, `load`, `store`, `add`, `sub`,
/// `fmadd` = a·b + c, `fnmadd` = c − a·b, `fmsub` = a·b − c, `store_activated`), each
/// compiled for `$features`, so the kernels inline them.
macro_rules! kernels {
    ($features:literal) => {
        /// `Bᵀ d` of one column (or row) of six vectors.
        #[target_feature(enable = $features)]
        #[inline]
        fn b_transposed(d: [V; SIDE]) -> [V; SIDE] {
            let four = set1(4.0);
            let five = set1(5.0);
            let p = fnmadd(four, d[2], d[4]); // d4 − 4·d2
            let q = fmsub(four, d[1], d[3]); // 4·d1 − d3
            let r = sub(d[4], d[2]);
            let s = sub(d[3], d[1]);
            let s = add(s, s); // 2·(d3 − d1)
            [
                fmadd(four, d[0], fnmadd(five, d[2], d[4])),
                sub(p, q),
                add(p, q),
                add(r, s),
                sub(r, s),
                fmadd(four, d[1], fnmadd(five, d[3], d[5])),
            ]
        }

        /// `Aᵀ m` of one column (or row) of six vectors.
        #[target_feature(enable = $features)]
        #[inline]
        fn a_transposed(m: [V; SIDE]) -> [V; M] {
            let a = add(m[1], m[2]);
            let b = sub(m[1], m[2]);
            let c = add(m[3], m[4]);
            let d = sub(m[3], m[4]);
            [
                add(add(m[0], a), c),
                fmadd(set1(2.0), d, b),
                fmadd(set1(4.0), c, a),
                add(fmadd(set1(8.0), d, b), m[5]),
            ]
        }

        /// `V = Bᵀ d B` for tiles `[t0, t0 + n)` (zeros for the rest of the block), `LANES`
        /// channels a vector: `v[ξ][j][ci]`.
        #[target_feature(enable = $features)]
        pub(super) unsafe fn input_transform(
            padded: &[f32],
            g: &Geometry,
            cin: usize,
            t0: usize,
            n: usize,
            v: &mut [f32],
        ) {
            let wp = g.wp;
            assert!(v.len() >= PLANES * BLOCK * cin && cin.is_multiple_of(LANES));
            for j in 0..BLOCK {
                if j >= n {
                    for xi in 0..PLANES {
                        v[(xi * BLOCK + j) * cin..][..cin].fill(0.0);
                    }
                    continue;
                }
                let (ty, tx) = ((t0 + j) / g.tx, (t0 + j) % g.tx);
                let base = (M * ty * wp + M * tx) * cin;
                assert!(base + ((SIDE - 1) * wp + SIDE - 1) * cin + cin <= padded.len());
                for c in (0..cin).step_by(LANES) {
                    // SAFETY: the tile's 6×6 pixels lie inside `padded` (asserted),
                    // c + LANES <= cin.
                    unsafe {
                        let p = padded.as_ptr().add(base + c);
                        // Bᵀ d: columns.
                        let mut t = [[zero(); SIDE]; SIDE];
                        for col in 0..SIDE {
                            let d: [V; SIDE] =
                                std::array::from_fn(|r| load(p.add((r * wp + col) * cin)));
                            let bd = b_transposed(d);
                            for r in 0..SIDE {
                                t[r][col] = bd[r];
                            }
                        }
                        // (Bᵀ d) B: rows.
                        for (r, tr) in t.iter().enumerate() {
                            for (col, o) in b_transposed(*tr).iter().enumerate() {
                                let xi = r * SIDE + col;
                                store(v.as_mut_ptr().add((xi * BLOCK + j) * cin + c), *o);
                            }
                        }
                    }
                }
            }
        }

        /// `m[ξ][j][co] = Σ_ci v[ξ][j][ci] · u[ξ][ci][co]` for the whole block.
        #[target_feature(enable = $features)]
        pub(super) unsafe fn multiply(
            u: &[f32],
            v: &[f32],
            m: &mut [f32],
            cin: usize,
            cout: usize,
        ) {
            assert!(u.len() >= PLANES * cin * cout && v.len() >= PLANES * BLOCK * cin);
            assert!(m.len() >= PLANES * BLOCK * cout && cout.is_multiple_of(LANES));
            for xi in 0..PLANES {
                let (u, v) = (&u[xi * cin * cout..], &v[xi * BLOCK * cin..]);
                let m = &mut m[xi * BLOCK * cout..];
                for j in (0..BLOCK).step_by(TILES) {
                    let mut co = 0;
                    while co < cout {
                        // SAFETY: j + TILES <= BLOCK, co + LANES·NV <= cout (asserted above).
                        unsafe {
                            if cout - co >= 2 * LANES {
                                tiles::<2>(u, v, m, cin, cout, j, co);
                                co += 2 * LANES;
                            } else {
                                tiles::<1>(u, v, m, cin, cout, j, co);
                                co += LANES;
                            }
                        }
                    }
                }
            }
        }

        /// Tiles `[j, j + TILES)` × outputs `[co, co + LANES·NV)` of one transformed plane.
        #[target_feature(enable = $features)]
        #[inline]
        unsafe fn tiles<const NV: usize>(
            u: &[f32],
            v: &[f32],
            m: &mut [f32],
            cin: usize,
            cout: usize,
            j: usize,
            co: usize,
        ) {
            let mut acc = [[zero(); NV]; TILES];
            let (up, vp) = (u.as_ptr(), v.as_ptr());
            for ci in 0..cin {
                // SAFETY: ci < cin, co + LANES·NV <= cout, j + TILES <= BLOCK (the caller's).
                unsafe {
                    let mut uw = [zero(); NV];
                    for (k, w) in uw.iter_mut().enumerate() {
                        *w = load(up.add(ci * cout + co + LANES * k));
                    }
                    for (t, a) in acc.iter_mut().enumerate() {
                        let b = set1(*vp.add((j + t) * cin + ci));
                        for k in 0..NV {
                            a[k] = fmadd(b, uw[k], a[k]);
                        }
                    }
                }
            }
            for (t, a) in acc.iter().enumerate() {
                for (k, a) in a.iter().enumerate() {
                    // SAFETY: as above.
                    unsafe { store(m.as_mut_ptr().add((j + t) * cout + co + LANES * k), *a) };
                }
            }
        }

        /// `Y = Aᵀ M A` for the block's first `n` tiles (tiles `t0..t0 + n`), plus the
        /// bias, through the activation, into the channels-last output `[h][w][cout]`
        /// (pixels past the picture's edge dropped).
        #[target_feature(enable = $features)]
        pub(super) unsafe fn output_transform(
            wg: &Winograd,
            m: &[f32],
            g: &Geometry,
            t0: usize,
            n: usize,
            out: *mut f32,
        ) {
            let (cout, cout16) = (wg.cout, wg.cout16);
            assert!(m.len() >= PLANES * BLOCK * cout16 && n <= BLOCK);
            assert!(
                wg.bias.len() >= cout16 && wg.slopes.as_ref().is_none_or(|s| s.len() >= cout16)
            );
            for j in 0..n {
                let (ty, tx) = ((t0 + j) / g.tx, (t0 + j) % g.tx);
                // Vectors holding real channels (the last one maybe in part).
                for c in (0..cout).step_by(LANES) {
                    let lanes = (cout - c).min(LANES);
                    // SAFETY: ξ < PLANES, j < BLOCK, c + LANES <= cout16 (bias and slopes
                    // have cout16 values, asserted); stores go to pixels inside the
                    // picture, channels < cout.
                    unsafe {
                        let mm = |xi: usize| load(m.as_ptr().add((xi * BLOCK + j) * cout16 + c));
                        let bias = load(wg.bias.as_ptr().add(c));
                        let slopes = wg.slopes.as_ref().map(|s| load(s.as_ptr().add(c)));
                        // Aᵀ M: columns.
                        let mut s = [[zero(); SIDE]; M];
                        for col in 0..SIDE {
                            let am = a_transposed(std::array::from_fn(|r| mm(r * SIDE + col)));
                            for r in 0..M {
                                s[r][col] = am[r];
                            }
                        }
                        // (Aᵀ M) A: rows.
                        for (r, sr) in s.iter().enumerate() {
                            let oy = M * ty + r;
                            if oy >= g.h {
                                break;
                            }
                            for (col, &y) in a_transposed(*sr).iter().enumerate() {
                                let ox = M * tx + col;
                                if ox >= g.w {
                                    break;
                                }
                                let at = out.add((oy * g.w + ox) * cout + c);
                                store_activated(at, add(y, bias), slopes, lanes);
                            }
                        }
                    }
                }
            }
        }
    };
}

// The transforms index rows and columns of 6×6 tiles: index loops read as the maths does.
#[allow(clippy::needless_range_loop)]
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{Geometry, Winograd, BLOCK, M, PLANES, SIDE};

    type V = __m512;
    const LANES: usize = 16;
    /// 12 tiles × 2 vectors of outputs: 24 of the 32 registers accumulate.
    const TILES: usize = 12;

    #[target_feature(enable = "avx512f")]
    #[inline]
    fn zero() -> V {
        _mm512_setzero_ps()
    }
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn set1(x: f32) -> V {
        _mm512_set1_ps(x)
    }
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn load(p: *const f32) -> V {
        // SAFETY: the caller's: 16 values from p.
        unsafe { _mm512_loadu_ps(p) }
    }
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn store(p: *mut f32, v: V) {
        // SAFETY: the caller's: 16 values from p.
        unsafe { _mm512_storeu_ps(p, v) }
    }
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn add(a: V, b: V) -> V {
        _mm512_add_ps(a, b)
    }
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn sub(a: V, b: V) -> V {
        _mm512_sub_ps(a, b)
    }
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn fmadd(a: V, b: V, c: V) -> V {
        _mm512_fmadd_ps(a, b, c)
    }
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn fnmadd(a: V, b: V, c: V) -> V {
        _mm512_fnmadd_ps(a, b, c)
    }
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn fmsub(a: V, b: V, c: V) -> V {
        _mm512_fmsub_ps(a, b, c)
    }
    /// `v` (negatives times `slopes`, if any) into the first `lanes` values at `p`.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn store_activated(p: *mut f32, v: V, slopes: Option<V>, lanes: usize) {
        let v = match slopes {
            Some(a) => {
                let neg = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(v, _mm512_setzero_ps());
                _mm512_mask_mul_ps(v, neg, v, a)
            }
            None => v,
        };
        let mask = (u32::MAX >> (32 - lanes)) as __mmask16;
        // SAFETY: the caller's: `lanes` values from p.
        unsafe { _mm512_mask_storeu_ps(p, mask, v) }
    }

    kernels!("avx512f");
}

/// The same kernels in 256-bit vectors, for CPUs with AVX2 and FMA but not AVX-512 (Zen 3
/// and earlier, most laptops).
#[allow(clippy::needless_range_loop)]
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{Geometry, Winograd, BLOCK, M, PLANES, SIDE};

    type V = __m256;
    const LANES: usize = 8;
    /// 6 tiles × 2 vectors of outputs: 12 of the 16 registers accumulate.
    const TILES: usize = 6;

    #[target_feature(enable = "avx2,fma")]
    #[inline]
    fn zero() -> V {
        _mm256_setzero_ps()
    }
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    fn set1(x: f32) -> V {
        _mm256_set1_ps(x)
    }
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn load(p: *const f32) -> V {
        // SAFETY: the caller's: 8 values from p.
        unsafe { _mm256_loadu_ps(p) }
    }
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn store(p: *mut f32, v: V) {
        // SAFETY: the caller's: 8 values from p.
        unsafe { _mm256_storeu_ps(p, v) }
    }
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    fn add(a: V, b: V) -> V {
        _mm256_add_ps(a, b)
    }
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    fn sub(a: V, b: V) -> V {
        _mm256_sub_ps(a, b)
    }
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    fn fmadd(a: V, b: V, c: V) -> V {
        _mm256_fmadd_ps(a, b, c)
    }
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    fn fnmadd(a: V, b: V, c: V) -> V {
        _mm256_fnmadd_ps(a, b, c)
    }
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    fn fmsub(a: V, b: V, c: V) -> V {
        _mm256_fmsub_ps(a, b, c)
    }
    /// `v` (negatives times `slopes`, if any) into the first `lanes` values at `p`.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn store_activated(p: *mut f32, v: V, slopes: Option<V>, lanes: usize) {
        let v = match slopes {
            Some(a) => {
                let neg = _mm256_cmp_ps::<_CMP_LT_OQ>(v, _mm256_setzero_ps());
                _mm256_blendv_ps(v, _mm256_mul_ps(v, a), neg)
            }
            None => v,
        };
        // SAFETY: the caller's: `lanes` values from p.
        unsafe {
            if lanes == LANES {
                _mm256_storeu_ps(p, v);
            } else {
                let first = _mm256_set_epi32(7, 6, 5, 4, 3, 2, 1, 0);
                let mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(lanes as i32), first);
                _mm256_maskstore_ps(p, mask, v);
            }
        }
    }

    kernels!("avx2,fma");
}
