//! 3×3 convolutions by Winograd's F(2×2, 3×3) (Lavin & Gray 2016), AVX-512 only: each
//! 2×2 block of outputs is 16 products of transformed 4×4 input and kernel tiles instead
//! of 36, so the multiply-adds drop by 2.25× for a little extra addition and rounding
//! (fp32: ~1e-6 relative, far below a level of 255).
//!
//! Channels are the vector lanes throughout (inputs and outputs in multiples of 16): the
//! input is copied channels-last into a zero-padded buffer, each tile is transformed with
//! whole vectors, the 16 transformed planes are multiplied by the transformed kernels (one
//! GEMM-like pass per plane, 12 tiles × 32 output channels in 24 registers), and the
//! outputs transformed back. Tiles go to threads in blocks that stay in the core's L2.

use std::cell::RefCell;
use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::conv::SharedPtr;

/// Tiles per block: a multiple of the kernel's 12; its transformed input (16 × 48 × cin
/// values, 590 KB for 192 channels) stays in L2.
const BLOCK: usize = 48;
/// Tiles per register block of the multiply pass.
const TILES: usize = 12;
/// The most channels in or out (the buffers of the fill and the last pass are on the
/// stack); wider convolutions take the direct kernel.
pub(super) const MAX_CHANNELS: usize = 512;

/// A 3×3, padding-1 convolution's kernels, transformed: `[16][cin][cout]`.
#[derive(Debug)]
pub(super) struct Winograd {
    cin: usize,
    cout: usize,
    u: Vec<f32>,
}

/// Whether F(2×2, 3×3) runs this convolution: AVX-512, 3×3 with padding 1, channels in
/// whole vectors.
pub(super) fn applies(k: usize, padding: usize, cin: usize, cout: usize) -> bool {
    k == 3
        && padding == 1
        && cin.is_multiple_of(16)
        && cout.is_multiple_of(16)
        && (1..=MAX_CHANNELS).contains(&cin)
        && cout <= MAX_CHANNELS
}

impl Winograd {
    /// From `[cout, cin, 3, 3]` weights: `U = G g Gᵀ` per (output, input) channel pair.
    pub(super) fn new(weight: &[f32], cin: usize, cout: usize) -> Self {
        const G: [[f32; 3]; 4] = [
            [1.0, 0.0, 0.0],
            [0.5, 0.5, 0.5],
            [0.5, -0.5, 0.5],
            [0.0, 0.0, 1.0],
        ];
        let mut u = vec![0f32; 16 * cin * cout];
        for co in 0..cout {
            for ci in 0..cin {
                let g = &weight[(co * cin + ci) * 9..][..9];
                // G g (4×3), then (G g) Gᵀ (4×4).
                let mut gg = [[0f32; 3]; 4];
                for (i, row) in gg.iter_mut().enumerate() {
                    for (j, v) in row.iter_mut().enumerate() {
                        *v = (0..3).map(|k| G[i][k] * g[k * 3 + j]).sum();
                    }
                }
                for i in 0..4 {
                    for j in 0..4 {
                        let v: f32 = (0..3).map(|k| gg[i][k] * G[j][k]).sum();
                        u[((i * 4 + j) * cin + ci) * cout + co] = v;
                    }
                }
            }
        }
        Winograd { cin, cout, u }
    }

    /// `act(conv(x) + b)` of one picture whose channels are the `inputs` (each `[c, sh,
    /// sw]`, together `cin`) upsampled by `up` (nearest neighbour) to `h = sh·up`,
    /// `w = sw·up`, into `out` (`[cout, h, w]`, every value written).
    ///
    /// # Safety
    /// The CPU must have AVX-512F.
    pub(super) unsafe fn run(
        &self,
        inputs: &[(&[f32], usize)],
        (sh, sw): (usize, usize),
        up: usize,
        bias: &[f32],
        slopes: Option<&[f32]>,
        out: &mut [std::mem::MaybeUninit<f32>],
    ) {
        let (cin, cout) = (self.cin, self.cout);
        let (h, w) = (sh * up, sw * up);
        let (ty, tx) = (h.div_ceil(2), w.div_ceil(2));
        // Channels-last, one pixel of zeros around (and one more where h or w is odd).
        let (hp, wp) = (2 * ty + 2, 2 * tx + 2);
        let tiles = ty * tx;
        let blocks = tiles.div_ceil(BLOCK);
        SCRATCH.with_borrow_mut(|s| {
            s.padded.resize(hp * wp * cin, 0.0);
            s.acc.resize(tiles * 4 * cout, 0.0);
            let padded = &mut s.padded[..hp * wp * cin];
            // Fill: every row, interior from the inputs, borders zero.
            padded
                .par_chunks_mut(wp * cin)
                .enumerate()
                .for_each(|(r, row)| {
                    if r == 0 || r > h {
                        row.fill(0.0);
                        return;
                    }
                    row[..cin].fill(0.0);
                    row[(w + 1) * cin..].fill(0.0);
                    // 16 pixels at a time through a small buffer, so both the reads (along
                    // each channel's row) and the writes (along the pixels) run in order.
                    let mut tile = [0f32; 16 * MAX_CHANNELS];
                    for x0 in (0..w).step_by(16) {
                        let nx = (w - x0).min(16);
                        let mut c0 = 0;
                        for (data, c) in inputs {
                            for ci in 0..*c {
                                let src = &data[(ci * sh + (r - 1) / up) * sw..][..sw];
                                for xi in 0..nx {
                                    tile[xi * cin + c0 + ci] = src[(x0 + xi) / up];
                                }
                            }
                            c0 += c;
                        }
                        row[(x0 + 1) * cin..][..nx * cin].copy_from_slice(&tile[..nx * cin]);
                    }
                });
            let padded = &*padded;
            // Outputs channels-last per tile: acc[tile][4][cout].
            let acc = SharedPtr(s.acc.as_mut_ptr());
            #[cfg(target_arch = "x86_64")]
            (0..blocks).into_par_iter().for_each(|b| {
                BLOCK_SCRATCH.with_borrow_mut(|bs| {
                    bs.v.resize(16 * BLOCK * cin, 0.0);
                    bs.m.resize(16 * BLOCK * cout, 0.0);
                    let t0 = b * BLOCK;
                    let n = (tiles - t0).min(BLOCK);
                    // SAFETY: AVX-512F (the caller's word); each block writes only its
                    // own tiles of `acc`, sized tiles·4·cout above.
                    unsafe {
                        avx512::input_transform(padded, (wp, tx, cin), t0, n, &mut bs.v);
                        avx512::multiply(&self.u, &bs.v, &mut bs.m, cin, cout);
                        avx512::output_transform(&bs.m, cout, n, acc.get().add(t0 * 4 * cout));
                    }
                });
            });
            #[cfg(not(target_arch = "x86_64"))]
            unreachable!("Winograd runs on x86-64 with AVX-512 only ({blocks} blocks, {acc:?})");
            // Back to [cout, h, w], with the bias and activation: a row of every plane per
            // task, 16 pixels at a time through a small buffer (as the fill).
            let acc = &s.acc;
            let dst = SharedPtr(out.as_mut_ptr().cast::<f32>());
            // (The output is written through `MaybeUninit`s, never read or referenced
            // as f32 before every value is written.)
            (0..h).into_par_iter().for_each(|y| {
                let mut tile = [0f32; 16 * MAX_CHANNELS];
                for x0 in (0..w).step_by(16) {
                    let nx = (w - x0).min(16);
                    for xi in 0..nx {
                        let x = x0 + xi;
                        let at = (((y / 2) * tx + x / 2) * 4 + (y % 2) * 2 + x % 2) * cout;
                        for (co, v) in acc[at..at + cout].iter().enumerate() {
                            tile[co * 16 + xi] = *v;
                        }
                    }
                    for co in 0..cout {
                        let (b, a) = (bias[co], slopes.map(|s| s[co]));
                        // SAFETY: row y, pixels [x0, x0 + nx) of plane co: inside `out`
                        // (cout·h·w values), written by this task only.
                        let o = unsafe {
                            std::slice::from_raw_parts_mut(
                                dst.get()
                                    .cast::<MaybeUninit<f32>>()
                                    .add((co * h + y) * w + x0),
                                nx,
                            )
                        };
                        for (o, v) in o.iter_mut().zip(&tile[co * 16..co * 16 + nx]) {
                            let v = v + b;
                            o.write(match a {
                                Some(a) if v < 0.0 => v * a,
                                _ => v,
                            });
                        }
                    }
                }
            });
        });
    }
}

#[derive(Default)]
struct Scratch {
    padded: Vec<f32>,
    acc: Vec<f32>,
}

/// A block's transformed inputs `v [16][BLOCK][cin]` and products `m [16][BLOCK][cout]`.
#[derive(Default)]
struct BlockScratch {
    v: Vec<f32>,
    m: Vec<f32>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
    static BLOCK_SCRATCH: RefCell<BlockScratch> = RefCell::new(BlockScratch::default());
}

// The transforms index rows and columns of 4×4 tiles: index loops read as the maths does.
#[allow(clippy::needless_range_loop)]
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{BLOCK, TILES};

    /// `V = Bᵀ d B` for tiles `[t0, t0 + n)` (zeros for the rest of the block), 16
    /// channels a vector: `v[ξ][j][ci]`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn input_transform(
        padded: &[f32],
        (wp, tx, cin): (usize, usize, usize),
        t0: usize,
        n: usize,
        v: &mut [f32],
    ) {
        assert!(v.len() >= 16 * BLOCK * cin);
        for j in 0..BLOCK {
            if j >= n {
                for xi in 0..16 {
                    v[(xi * BLOCK + j) * cin..][..cin].fill(0.0);
                }
                continue;
            }
            let (ty, tx_) = ((t0 + j) / tx, (t0 + j) % tx);
            let base = (2 * ty * wp + 2 * tx_) * cin;
            assert!(base + (3 * wp + 3) * cin + cin <= padded.len());
            for c in (0..cin).step_by(16) {
                // SAFETY: the tile's 4×4 pixels lie inside `padded` (asserted), c + 16 <= cin.
                unsafe {
                    let p = padded.as_ptr().add(base + c);
                    let d = |r: usize, col: usize| _mm512_loadu_ps(p.add((r * wp + col) * cin));
                    // Bᵀ d: rows.
                    let mut t = [[_mm512_setzero_ps(); 4]; 4];
                    for col in 0..4 {
                        let (d0, d1, d2, d3) = (d(0, col), d(1, col), d(2, col), d(3, col));
                        t[0][col] = _mm512_sub_ps(d0, d2);
                        t[1][col] = _mm512_add_ps(d1, d2);
                        t[2][col] = _mm512_sub_ps(d2, d1);
                        t[3][col] = _mm512_sub_ps(d1, d3);
                    }
                    // (Bᵀ d) B: columns.
                    for (r, tr) in t.iter().enumerate() {
                        let out = [
                            _mm512_sub_ps(tr[0], tr[2]),
                            _mm512_add_ps(tr[1], tr[2]),
                            _mm512_sub_ps(tr[2], tr[1]),
                            _mm512_sub_ps(tr[1], tr[3]),
                        ];
                        for (col, o) in out.iter().enumerate() {
                            let xi = r * 4 + col;
                            _mm512_storeu_ps(v.as_mut_ptr().add((xi * BLOCK + j) * cin + c), *o);
                        }
                    }
                }
            }
        }
    }

    /// `m[ξ][j][co] = Σ_ci v[ξ][j][ci] · u[ξ][ci][co]` for the whole block.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn multiply(u: &[f32], v: &[f32], m: &mut [f32], cin: usize, cout: usize) {
        assert!(u.len() >= 16 * cin * cout && v.len() >= 16 * BLOCK * cin);
        assert!(m.len() >= 16 * BLOCK * cout && cout.is_multiple_of(16));
        for xi in 0..16 {
            let (u, v) = (&u[xi * cin * cout..], &v[xi * BLOCK * cin..]);
            let m = &mut m[xi * BLOCK * cout..];
            for j in (0..BLOCK).step_by(TILES) {
                let mut co = 0;
                while co < cout {
                    // SAFETY: j + TILES <= BLOCK, co + 16·NV <= cout (asserted above).
                    unsafe {
                        if cout - co >= 32 {
                            tiles::<2>(u, v, m, cin, cout, j, co);
                            co += 32;
                        } else {
                            tiles::<1>(u, v, m, cin, cout, j, co);
                            co += 16;
                        }
                    }
                }
            }
        }
    }

    /// Tiles `[j, j + 12)` × outputs `[co, co + 16·NV)` of one transformed plane.
    #[target_feature(enable = "avx512f")]
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
        let mut acc = [[_mm512_setzero_ps(); NV]; TILES];
        let (up, vp) = (u.as_ptr(), v.as_ptr());
        for ci in 0..cin {
            // SAFETY: ci < cin, co + 16·NV <= cout, j + TILES <= BLOCK (the caller's).
            unsafe {
                let mut uw = [_mm512_setzero_ps(); NV];
                for (k, w) in uw.iter_mut().enumerate() {
                    *w = _mm512_loadu_ps(up.add(ci * cout + co + 16 * k));
                }
                for (t, a) in acc.iter_mut().enumerate() {
                    let b = _mm512_set1_ps(*vp.add((j + t) * cin + ci));
                    for k in 0..NV {
                        a[k] = _mm512_fmadd_ps(b, uw[k], a[k]);
                    }
                }
            }
        }
        for (t, a) in acc.iter().enumerate() {
            for (k, a) in a.iter().enumerate() {
                // SAFETY: as above.
                unsafe { _mm512_storeu_ps(m.as_mut_ptr().add((j + t) * cout + co + 16 * k), *a) };
            }
        }
    }

    /// `Y = Aᵀ M A` for the block's first `n` tiles: `out[j][4][cout]` (2×2 outputs in
    /// row order).
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn output_transform(m: &[f32], cout: usize, n: usize, out: *mut f32) {
        assert!(m.len() >= 16 * BLOCK * cout && n <= BLOCK);
        for j in 0..n {
            for c in (0..cout).step_by(16) {
                // SAFETY: ξ < 16, j < BLOCK, c + 16 <= cout; `out` holds n·4·cout values.
                unsafe {
                    let mm =
                        |xi: usize| _mm512_loadu_ps(m.as_ptr().add((xi * BLOCK + j) * cout + c));
                    // Aᵀ M: rows.
                    let mut s = [[_mm512_setzero_ps(); 4]; 2];
                    for col in 0..4 {
                        let (m0, m1, m2, m3) = (mm(col), mm(4 + col), mm(8 + col), mm(12 + col));
                        s[0][col] = _mm512_add_ps(_mm512_add_ps(m0, m1), m2);
                        s[1][col] = _mm512_sub_ps(_mm512_sub_ps(m1, m2), m3);
                    }
                    // (Aᵀ M) A: columns.
                    for (r, sr) in s.iter().enumerate() {
                        let y0 = _mm512_add_ps(_mm512_add_ps(sr[0], sr[1]), sr[2]);
                        let y1 = _mm512_sub_ps(_mm512_sub_ps(sr[1], sr[2]), sr[3]);
                        _mm512_storeu_ps(out.add((j * 4 + r * 2) * cout + c), y0);
                        _mm512_storeu_ps(out.add((j * 4 + r * 2 + 1) * cout + c), y1);
                    }
                }
            }
        }
    }
}
