//! Fast CPU convolutions as Candle custom ops (f32 tensors; the products in bf16 for
//! `conv2d_with`/`conv_transpose2d_with` in bf16 where the CPU has AVX512_BF16).
//!
//! Candle's CPU `conv_transpose2d` is a direct loop, and every `conv2d` backward pass uses
//! it for the input gradient, so a GAN step spends most of its time there. These ops do
//! the three products of a convolution with im2col / col2im and a GEMM (the `gemm` crate
//! Candle itself uses for `matmul`):
//!
//! - [`conv2d`]: `y = W · im2col(x)` per batch item;
//! - [`conv_transpose2d`]: `y = col2im(Wᵀ · x)` per batch item (conv2d's input gradient);
//! - [`conv2d_weight_grad`]: `dW = Σₙ dyₙ · im2col(xₙ)ᵀ` (conv2d's weight gradient).
//!
//! The backward pass of each op is expressed with the three ops again, so gradients (and
//! gradients of gradients) take the fast path too. Work is spread over the batch with
//! rayon; every sum is taken in a fixed order, so results do not depend on scheduling
//! (exact resume relies on that).

use candle_core::{bail, CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};
use gemm::Parallelism;
use rayon::prelude::*;

use super::packed_gemm::{self, Format, Mat, PackedA};
use super::strided;
use super::{f32_data, Precision};

/// `conv2d(x [N, Cin, H, W], w [Cout, Cin, K, K])` with symmetric `padding` and `stride`
/// (dilation 1, groups 1), as `Tensor::conv2d(w, padding, stride, 1, 1)`.
pub fn conv2d(x: &Tensor, w: &Tensor, padding: usize, stride: usize) -> Result<Tensor> {
    conv2d_with(x, w, padding, stride, Precision::Fp32)
}

/// [`conv2d`] whose products (forward and both backward) run in `precision`: bf16 on CPUs
/// with AVX512_BF16 ([`Precision::bf16_available`]), else f32.
pub fn conv2d_with(
    x: &Tensor,
    w: &Tensor,
    padding: usize,
    stride: usize,
    precision: Precision,
) -> Result<Tensor> {
    let bf16 = runs_bf16(precision);
    x.apply_op2(
        w,
        Conv2d {
            padding,
            stride,
            bf16,
        },
    )
}

/// Whether products asked for in `precision` run in bf16 here.
fn runs_bf16(precision: Precision) -> bool {
    precision == Precision::Bf16 && Precision::bf16_available()
}

/// `conv_transpose2d(x [N, Cin, H, W], w [Cin, Cout, K, K])`, as
/// `Tensor::conv_transpose2d(w, padding, output_padding, stride, 1)`.
pub fn conv_transpose2d(
    x: &Tensor,
    w: &Tensor,
    padding: usize,
    output_padding: usize,
    stride: usize,
) -> Result<Tensor> {
    conv_transpose2d_with(x, w, padding, output_padding, stride, Precision::Fp32)
}

/// [`conv_transpose2d`] in `precision` (as [`conv2d_with`]).
pub fn conv_transpose2d_with(
    x: &Tensor,
    w: &Tensor,
    padding: usize,
    output_padding: usize,
    stride: usize,
    precision: Precision,
) -> Result<Tensor> {
    let op = (output_padding, output_padding);
    transpose_op(x, w, padding, op, stride, runs_bf16(precision))
}

fn transpose_op(
    x: &Tensor,
    w: &Tensor,
    padding: usize,
    output_padding: (usize, usize),
    stride: usize,
    bf16: bool,
) -> Result<Tensor> {
    x.apply_op2(
        w,
        ConvTranspose2d {
            padding,
            output_padding,
            stride,
            bf16,
        },
    )
}

/// [`conv_transpose2d`] with separate output paddings for height and width (needed for
/// the input gradient of a conv2d whose height and width leave different remainders).
pub fn conv_transpose2d_hw(
    x: &Tensor,
    w: &Tensor,
    padding: usize,
    output_padding: (usize, usize),
    stride: usize,
) -> Result<Tensor> {
    transpose_op(x, w, padding, output_padding, stride, false)
}

/// The weight gradient of `conv2d(x, w, padding, stride)` for a `k`×`k` kernel given the
/// output gradient `grad [N, Cout, Ho, Wo]`: a `[Cout, Cin, k, k]` tensor.
pub fn conv2d_weight_grad(
    x: &Tensor,
    grad: &Tensor,
    k: usize,
    padding: usize,
    stride: usize,
) -> Result<Tensor> {
    weight_grad_op(x, grad, k, padding, stride, false)
}

fn weight_grad_op(
    x: &Tensor,
    grad: &Tensor,
    k: usize,
    padding: usize,
    stride: usize,
    bf16: bool,
) -> Result<Tensor> {
    x.apply_op2(
        grad,
        WeightGrad {
            k,
            padding,
            stride,
            bf16,
        },
    )
}

fn conv_op(x: &Tensor, w: &Tensor, padding: usize, stride: usize, bf16: bool) -> Result<Tensor> {
    x.apply_op2(
        w,
        Conv2d {
            padding,
            stride,
            bf16,
        },
    )
}

/// Output size of a convolution along one axis.
pub(crate) fn out_size(input: usize, k: usize, padding: usize, stride: usize) -> Option<usize> {
    (input + 2 * padding).checked_sub(k).map(|d| d / stride + 1)
}

/// Output padding that makes a transposed convolution of an `out`-sized input return the
/// `input` size a conv2d started from.
fn output_padding(input: usize, out: usize, k: usize, padding: usize, stride: usize) -> usize {
    input + 2 * padding - k - (out - 1) * stride
}

struct Conv2d {
    padding: usize,
    stride: usize,
    /// Products in bf16 (`packed_gemm`), forward and backward.
    bf16: bool,
}

struct ConvTranspose2d {
    padding: usize,
    output_padding: (usize, usize),
    stride: usize,
    bf16: bool,
}

struct WeightGrad {
    k: usize,
    padding: usize,
    stride: usize,
    bf16: bool,
}

impl CustomOp2 for Conv2d {
    fn name(&self) -> &'static str {
        "easel-conv2d"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, cin, h, w) = l1.shape().dims4()?;
        let (cout, cin2, k, k2) = l2.shape().dims4()?;
        if cin != cin2 || k != k2 || self.stride == 0 {
            bail!(
                "easel-conv2d: input {:?} and kernel {:?} (stride {}) do not fit",
                l1.dims(),
                l2.dims(),
                self.stride
            );
        }
        let (Some(ho), Some(wo)) = (
            out_size(h, k, self.padding, self.stride),
            out_size(w, k, self.padding, self.stride),
        ) else {
            bail!("easel-conv2d: kernel {k} larger than the padded input {h}x{w}")
        };
        let g = Geom {
            n,
            cin,
            h,
            w,
            cout,
            ho,
            wo,
            k,
            stride: self.stride,
            pad: self.padding,
            bf16: self.bf16,
        };
        let x = f32_data(s1, l1, "input")?;
        let wt = f32_data(s2, l2, "kernel")?;
        let y = conv_fwd(&g, &x, &wt);
        Ok((CpuStorage::F32(y), Shape::from((n, cout, ho, wo))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (_, _, h, wd) = x.dims4()?;
        let (_, _, k, _) = w.dims4()?;
        let (_, _, ho, wo) = grad.dims4()?;
        let (p, s) = (self.padding, self.stride);
        let op = (
            output_padding(h, ho, k, p, s),
            output_padding(wd, wo, k, p, s),
        );
        // Skip gradients nobody asked for (e.g. the input gradient of D's first layer on
        // real images).
        let dx = x
            .track_op()
            .then(|| transpose_op(grad, w, p, op, s, self.bf16))
            .transpose()?;
        let dw = w
            .track_op()
            .then(|| weight_grad_op(x, grad, k, p, s, self.bf16))
            .transpose()?;
        Ok((dx, dw))
    }
}

impl CustomOp2 for ConvTranspose2d {
    fn name(&self) -> &'static str {
        "easel-conv-transpose2d"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, cin, hin, win) = l1.shape().dims4()?;
        let (cin2, cout, k, k2) = l2.shape().dims4()?;
        let (p, s) = (self.padding, self.stride);
        let (oph, opw) = self.output_padding;
        if cin != cin2 || k != k2 || s == 0 || oph >= s || opw >= s {
            bail!(
                "easel-conv-transpose2d: input {:?} and kernel {:?} (stride {s}, output padding {:?}) do not fit",
                l1.dims(),
                l2.dims(),
                self.output_padding
            );
        }
        if hin == 0 || win == 0 {
            bail!("easel-conv-transpose2d: empty input {:?}", l1.dims());
        }
        let size = |i: usize, op: usize| ((i - 1) * s + k + op).checked_sub(2 * p);
        let (Some(h), Some(w)) = (size(hin, oph), size(win, opw)) else {
            bail!("easel-conv-transpose2d: padding {p} too large for kernel {k}")
        };
        if h == 0 || w == 0 {
            bail!("easel-conv-transpose2d: empty output");
        }
        // As the input gradient of conv2d(image [n, cout, h, w], kernel [cin, cout, k, k]).
        let g = Geom {
            n,
            cin: cout,
            h,
            w,
            cout: cin,
            ho: hin,
            wo: win,
            k,
            stride: s,
            pad: p,
            bf16: self.bf16,
        };
        let x = f32_data(s1, l1, "input")?;
        let wt = f32_data(s2, l2, "kernel")?;
        let y = conv_bwd_input(&g, &x, &wt);
        Ok((CpuStorage::F32(y), Shape::from((n, cout, h, w))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (_, _, k, _) = w.dims4()?;
        let (p, s) = (self.padding, self.stride);
        let dx = x
            .track_op()
            .then(|| conv_op(grad, w, p, s, self.bf16))
            .transpose()?;
        let dw = w
            .track_op()
            .then(|| weight_grad_op(grad, x, k, p, s, self.bf16))
            .transpose()?;
        Ok((dx, dw))
    }
}

impl CustomOp2 for WeightGrad {
    fn name(&self) -> &'static str {
        "easel-conv2d-weight-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, cin, h, w) = l1.shape().dims4()?;
        let (n2, cout, ho, wo) = l2.shape().dims4()?;
        let (k, p, s) = (self.k, self.padding, self.stride);
        if n != n2 || s == 0 || out_size(h, k, p, s) != Some(ho) || out_size(w, k, p, s) != Some(wo)
        {
            bail!(
                "easel-conv2d-weight-grad: input {:?} and output gradient {:?} do not fit kernel {k}, padding {p}, stride {s}",
                l1.dims(),
                l2.dims()
            );
        }
        let g = Geom {
            n,
            cin,
            h,
            w,
            cout,
            ho,
            wo,
            k,
            stride: s,
            pad: p,
            bf16: self.bf16,
        };
        let x = f32_data(s1, l1, "input")?;
        let dy = f32_data(s2, l2, "output gradient")?;
        let dw = conv_bwd_weight(&g, &x, &dy);
        Ok((CpuStorage::F32(dw), Shape::from((cout, cin, k, k))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        dy: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        // dW[o,i,a,b] = Σ dy[n,o,p]·x[n,i,pos(p,a,b)] is linear in each argument.
        let (_, _, h, w) = x.dims4()?;
        let (_, _, ho, wo) = dy.dims4()?;
        let (k, p, s) = (self.k, self.padding, self.stride);
        let op = (
            output_padding(h, ho, k, p, s),
            output_padding(w, wo, k, p, s),
        );
        let dx = x
            .track_op()
            .then(|| transpose_op(dy, grad, p, op, s, self.bf16))
            .transpose()?;
        let ddy = dy
            .track_op()
            .then(|| conv_op(x, grad, p, s, self.bf16))
            .transpose()?;
        Ok((dx, ddy))
    }
}

/// A convolution seen from the conv2d side: an image `[n, cin, h, w]` convolved with a
/// `[cout, cin, k, k]` kernel gives `[n, cout, ho, wo]`.
#[derive(Debug, Clone, Copy)]
struct Geom {
    n: usize,
    cin: usize,
    h: usize,
    w: usize,
    cout: usize,
    ho: usize,
    wo: usize,
    k: usize,
    stride: usize,
    pad: usize,
    /// The products in bf16.
    bf16: bool,
}

impl Geom {
    /// Rows of the im2col matrix: one per (input channel, kernel row, kernel column).
    fn rows(&self) -> usize {
        self.cin * self.k * self.k
    }
    fn image(&self) -> usize {
        self.cin * self.h * self.w
    }
    fn out_hw(&self) -> usize {
        self.ho * self.wo
    }
    /// Output columns `[lo, hi)` whose kernel column `kw` lands inside the image.
    fn valid_cols(&self, kw: usize) -> (usize, usize) {
        let (s, p) = (self.stride, self.pad);
        let lo = p.saturating_sub(kw).div_ceil(s).min(self.wo);
        let hi = if self.w + p > kw {
            (self.w + p - kw).div_ceil(s).min(self.wo)
        } else {
            0
        };
        (lo, hi.max(lo))
    }
    /// Where every output pixel of every kernel tap reads its channel's plane
    /// ([`strided::GatherPlan`]).
    fn gather_plan(&self) -> strided::GatherPlan {
        let taps = (0..self.k).flat_map(|kh| (0..self.k).map(move |kw| (kh, kw)));
        strided::GatherPlan::new(self.cin, self.out_hw(), taps, |(kh, kw), p| {
            let (oh, ow) = (p / self.wo, p % self.wo);
            let ih = self.in_row(oh, kh)?;
            let iw = (ow * self.stride + kw).checked_sub(self.pad)?;
            (iw < self.w).then_some(ih * self.w + iw)
        })
    }
    /// The image row that output row `oh` reads with kernel row `kh`, if inside.
    fn in_row(&self, oh: usize, kh: usize) -> Option<usize> {
        (oh * self.stride + kh)
            .checked_sub(self.pad)
            .filter(|&r| r < self.h)
    }
}

/// im2col of one convolution's images. With AVX-512 every 16 values of the matrix are
/// one masked gather, their offsets planned once per convolution ([`strided::GatherPlan`]:
/// the maps of a 32x32 GAN are 4–16 pixels wide, and row by row the copies cost more in
/// bookkeeping than in values); elsewhere, and with `EASEL_CONV_KERNEL=gemm`, row copies.
struct Unfold<'a> {
    g: &'a Geom,
    plan: Option<strided::GatherPlan>,
}

impl<'a> Unfold<'a> {
    fn new(g: &'a Geom) -> Self {
        let plan = strided::avx512().then(|| g.gather_plan());
        Unfold { g, plan }
    }

    /// Writes the im2col matrix of one image (`[cin, h, w]`) to `dst`: `rows()` rows of
    /// `out_hw()` values each, rows `ld` apart.
    ///
    /// # Safety
    /// `dst` must be valid for writes of `(rows() − 1)·ld + out_hw()` values, and no one
    /// else may access those values meanwhile.
    unsafe fn image(&self, x: &[f32], dst: *mut f32, ld: usize) {
        let g = self.g;
        #[cfg(target_arch = "x86_64")]
        if let Some(plan) = &self.plan {
            // SAFETY: the caller's promises; a plan exists only where AVX-512F does, and
            // its valid lanes index within one channel's plane.
            unsafe { strided::avx512::im2col(plan, x, g.h * g.w, dst, ld) };
            return;
        }
        // SAFETY: the caller's promises.
        unsafe { im2col_rows(g, x, dst, ld) }
    }
}

/// [`Unfold::image`] row by row: every output row of every (channel, kernel row, kernel
/// column) is a strided copy of an input row, or zeros.
///
/// # Safety
/// As [`Unfold::image`]'s.
unsafe fn im2col_rows(g: &Geom, x: &[f32], dst: *mut f32, ld: usize) {
    let (k, s) = (g.k, g.stride);
    let (hw, wo) = (g.h * g.w, g.wo);
    for ci in 0..g.cin {
        let xc = &x[ci * hw..(ci + 1) * hw];
        for kh in 0..k {
            for kw in 0..k {
                let r = (ci * k + kh) * k + kw;
                // SAFETY: r < rows(), so the row lies within what the caller vouched for.
                let r = unsafe { std::slice::from_raw_parts_mut(dst.add(r * ld), g.out_hw()) };
                let cols = g.valid_cols(kw);
                // Only read when some column is valid, and then lo·s + kw ≥ pad.
                let first = (cols.0 * s + kw).saturating_sub(g.pad);
                for (oh, seg) in r.chunks_exact_mut(wo).enumerate() {
                    let src = g.in_row(oh, kh).map(|ih| &xc[ih * g.w..(ih + 1) * g.w]);
                    strided::row(seg, src, cols, first, s);
                }
            }
        }
    }
}

/// Adds an im2col-shaped matrix (`rows()` × `out_hw()`) back onto an image `[cin, h, w]`:
/// the adjoint of [`im2col`]. Entry (row, j) is `cols[row·row_step + j·col_step]`: rows
/// `out_hw()` apart as im2col writes them, `ld` apart for an image of a group, or
/// transposed (`(1, rows())`, what [`narrow`] products write).
fn col2im(g: &Geom, cols: &[f32], (row_step, col_step): (usize, usize), x: &mut [f32]) {
    if col_step != 1 {
        return col2im_rows(g, (row_step, col_step), x, |xr, at, n, s| {
            strided::add_iter(xr, s, cols[at..].iter().step_by(col_step).take(n))
        });
    }
    #[cfg(target_arch = "x86_64")]
    if g.stride == 2 && strided::avx512() {
        // SAFETY: AVX-512F is present.
        unsafe { col2im_avx512(g, cols, row_step, x) };
        return;
    }
    col2im_rows(g, (row_step, 1), x, |xr, at, n, s| {
        strided::add(xr, s, &cols[at..at + n])
    });
}

/// [`col2im`] of a stride-2 convolution from rows of contiguous columns, with AVX-512's
/// row adds compiled inline.
///
/// # Safety
/// The CPU has AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn col2im_avx512(g: &Geom, cols: &[f32], row_step: usize, x: &mut [f32]) {
    col2im_rows(g, (row_step, 1), x, |xr, at, n, _| {
        // SAFETY: AVX-512F is present (the caller's promise).
        unsafe { strided::avx512::add_s2(xr, &cols[at..at + n]) }
    });
}

/// col2im's loops: `add(image row from the first column read, offset of the row's first
/// valid value in cols, how many, stride)` for every output row of every (channel, kernel
/// row, kernel column) that lands inside the image.
#[inline(always)]
fn col2im_rows(
    g: &Geom,
    (row_step, col_step): (usize, usize),
    x: &mut [f32],
    add: impl Fn(&mut [f32], usize, usize, usize),
) {
    let (k, s) = (g.k, g.stride);
    let (hw, wo) = (g.h * g.w, g.wo);
    for ci in 0..g.cin {
        let xc = &mut x[ci * hw..(ci + 1) * hw];
        for kh in 0..k {
            for kw in 0..k {
                let row = (ci * k + kh) * k + kw;
                let (lo, hi) = g.valid_cols(kw);
                if lo == hi {
                    continue;
                }
                let first = lo * s + kw - g.pad;
                for oh in 0..g.ho {
                    let Some(ih) = g.in_row(oh, kh) else {
                        continue;
                    };
                    let xr = &mut xc[ih * g.w + first..(ih + 1) * g.w];
                    add(xr, row * row_step + (oh * wo + lo) * col_step, hi - lo, s);
                }
            }
        }
    }
}

/// Whether an image's input-gradient product (`Wᵀ · dy`), when `gemm` computes it (not
/// packed), is written transposed: gemm runs its micro-kernel along the destination's
/// contiguous side, and with `out_hw` pixels contiguous a 4x4 map is one vector wide
/// (gemm's narrow edge kernel, at a fraction of the main kernel's rate). Written
/// rows-fastest, the kernel runs along the im2col rows instead: 1.6x faster for the 32x32
/// DCGAN's 4x4 → 8x8 layer. Not for the forward product (`W · cols`): there gemm would
/// pack the whole weight again for every image, 2.4x slower.
fn narrow(g: &Geom, packed: Option<&PackedA>) -> bool {
    packed.is_none() && g.out_hw() < NARROW_OUT
}

/// Output pixels per image below which [`narrow`] products are written transposed: 64 is
/// four AVX-512 vectors of f32, gemm's widest micro-kernel.
const NARROW_OUT: usize = 64;

/// `dst = [dst +] lhs · rhs` for row/column-strided f32 matrices (`m`×`k` times `k`×`n`).
///
/// # Safety
/// All three matrices must be valid for their shapes and strides; `dst` must not overlap
/// the others.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn sgemm(
    (m, n, k): (usize, usize, usize),
    dst: *mut f32,
    (dst_rs, dst_cs): (usize, usize),
    accumulate: bool,
    lhs: *const f32,
    (lhs_rs, lhs_cs): (usize, usize),
    rhs: *const f32,
    (rhs_rs, rhs_cs): (usize, usize),
    parallelism: Parallelism,
) {
    // SAFETY: the caller vouches for the shapes, strides and the absence of overlap.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            dst_cs as isize,
            dst_rs as isize,
            accumulate,
            lhs,
            lhs_cs as isize,
            lhs_rs as isize,
            rhs,
            rhs_cs as isize,
            rhs_rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        )
    }
}

/// [`sgemm`] for the convolutions, or `packed_gemm`'s when the left matrix comes packed
/// for it ([`packed_lhs`]; then `dst`'s columns must be contiguous).
#[allow(clippy::too_many_arguments)]
unsafe fn product(
    packed: Option<&PackedA>,
    mnk: (usize, usize, usize),
    dst: *mut f32,
    (dst_rs, dst_cs): (usize, usize),
    accumulate: bool,
    lhs: *const f32,
    lhs_strides: (usize, usize),
    rhs: *const f32,
    (rhs_rs, rhs_cs): (usize, usize),
    parallelism: Parallelism,
) {
    match packed {
        Some(a) => {
            let b = Mat {
                ptr: rhs,
                rs: rhs_rs,
                cs: rhs_cs,
            };
            let parallel = !matches!(parallelism, Parallelism::None);
            assert_eq!(dst_cs, 1, "packed products write contiguous columns");
            // SAFETY: the caller's; `a` is packed only where the CPU has its instructions.
            unsafe { packed_gemm::gemm(mnk, dst, dst_rs, accumulate, a, b, parallel) }
        }
        // SAFETY: the caller's.
        None => unsafe {
            sgemm(
                mnk,
                dst,
                (dst_rs, dst_cs),
                accumulate,
                lhs,
                lhs_strides,
                rhs,
                (rhs_rs, rhs_cs),
                parallelism,
            )
        },
    }
}

/// Rows below which an f32 product goes to `gemm`: the packed kernel's register tile is
/// 12 or 24 rows, so a thinner product would be mostly padding.
const PACKED_F32_MIN_ROWS: usize = 12;

/// Depth below which an f32 product goes to `gemm`, which was faster there (the 64x64
/// DCGAN's last transposed layer, k = 64: 4.2–6.4 ms against 6.4–9.9 packed).
const PACKED_F32_MIN_DEPTH: usize = 128;

/// How an image's forward or input-gradient product (`m`×`k` by `k`×`out_hw`) is computed:
/// packed in bf16 when the convolution runs in bf16 (`Geom::bf16`); packed in f32 where
/// the CPU has AVX-512, the map is under 64 pixels (what `gemm` does worst: 1.1–1.6x
/// faster packed and grouped, `cargo bench --bench gan -- "convT_256|conv_128"`; on the
/// 64x64 DCGAN's 16x16 maps the two measured level) and the product neither thin nor
/// shallow; else (`None`) by `gemm`.
fn packs(g: &Geom, (m, k): (usize, usize)) -> Option<Format> {
    if g.bf16 {
        Some(Format::Bf16)
    } else if Format::f32_available()
        && g.out_hw() < NARROW_OUT
        && m >= PACKED_F32_MIN_ROWS
        && k >= PACKED_F32_MIN_DEPTH
    {
        Some(Format::F32)
    } else {
        None
    }
}

/// The left matrix of a product (`m`×`k` in `a`, strides `(rs, cs)`, times `k`×`n`),
/// packed once for all the batch's products in `format` (from [`packs`], or bf16 for the
/// weight gradient); `None` (no format): `gemm` computes it.
fn packed_lhs(
    format: Option<Format>,
    a: &[f32],
    (rs, cs): (usize, usize),
    (m, k, n): (usize, usize, usize),
) -> Option<PackedA> {
    let format = format?;
    assert!(m == 0 || k == 0 || (m - 1) * rs + (k - 1) * cs < a.len());
    let lhs = Mat {
        ptr: a.as_ptr(),
        rs,
        cs,
    };
    // SAFETY: the matrix lies inside `a` (asserted); each format only where the CPU has
    // its instructions (`Geom::bf16`, `Format::f32_available`).
    Some(unsafe { PackedA::new(format, lhs, m, k, n) })
}

fn threads() -> usize {
    rayon::current_num_threads().max(1)
}

/// Runs `f(first item, items, output, scratch, gemm parallelism)` for every group of
/// `group` batch items (the last may have fewer): groups in parallel (each GEMM
/// single-threaded) when there are enough of them, else one after the other with
/// multi-threaded GEMMs. Each group's output (`out_len` values an item) is written by one
/// call only.
fn per_group<F>(n: usize, group: usize, out: &mut [f32], out_len: usize, f: F)
where
    F: Fn(usize, usize, &mut [f32], &mut Vec<f32>, Parallelism) + Sync,
{
    if out.is_empty() || out_len == 0 {
        return;
    }
    let t = threads();
    let chunk = out_len * group;
    let call = |(c, o): (usize, &mut [f32]), scratch: &mut Vec<f32>, par| {
        f(c * group, o.len() / out_len, o, scratch, par)
    };
    if n > group && t > 1 {
        out.par_chunks_mut(chunk)
            .enumerate()
            .for_each_init(Vec::new, |scratch, c| call(c, scratch, Parallelism::None));
    } else {
        let par = if t > 1 {
            Parallelism::Rayon(t)
        } else {
            Parallelism::None
        };
        let mut scratch = Vec::new();
        for c in out.chunks_mut(chunk).enumerate() {
            call(c, &mut scratch, par);
        }
    }
}

/// Output columns a packed product is given at least: the images of a small map are
/// multiplied together, their im2col matrices side by side, so that the weight (streamed
/// from L2 or beyond) serves 64 columns, not one 4x4 image's 16.
const GROUP_COLS: usize = 64;

/// Batch items per product: one, or for a packed product on a small map, enough for
/// [`GROUP_COLS`].
fn images_per_product(g: &Geom, packed: bool) -> usize {
    if packed {
        (GROUP_COLS / g.out_hw().max(1)).clamp(1, g.n.max(1))
    } else {
        1
    }
}

/// conv2d forward: `y[n] = W [cout, rows] · im2col(x[n]) [rows, out_hw]`, images of small
/// maps grouped ([`images_per_product`]).
fn conv_fwd(g: &Geom, x: &[f32], w: &[f32]) -> Vec<f32> {
    let (rows, ohw) = (g.rows(), g.out_hw());
    let mut y = vec![0f32; g.n * g.cout * ohw];
    let format = packs(g, (g.cout, rows));
    let group = images_per_product(g, format.is_some());
    // The weight is packed (in bf16: rounded) once for the whole batch.
    let packed = packed_lhs(format, w, (rows, 1), (g.cout, rows, group * ohw));
    let unfold = Unfold::new(g);
    per_group(
        g.n,
        group,
        &mut y,
        g.cout * ohw,
        |first, count, y_g, scratch, par| {
            let ld = count * ohw;
            let grouped = count > 1;
            scratch.resize(rows * ld + if grouped { g.cout * ld } else { 0 }, 0.0);
            let (cols, out) = scratch.split_at_mut(rows * ld);
            for j in 0..count {
                let x_n = &x[(first + j) * g.image()..(first + j + 1) * g.image()];
                // SAFETY: image j's columns [j·ohw, (j+1)·ohw) of rows `ld` apart lie in `cols`.
                unsafe { unfold.image(x_n, cols.as_mut_ptr().add(j * ohw), ld) };
            }
            // A group's product goes to `out` ([cout, count·ohw]), then to each image.
            let dst = if grouped {
                out.as_mut_ptr()
            } else {
                y_g.as_mut_ptr()
            };
            // SAFETY: `cols` holds rows·ld values; `dst` cout·ld, `w` cout·rows.
            unsafe {
                product(
                    packed.as_ref(),
                    (g.cout, ld, rows),
                    dst,
                    (ld, 1),
                    false,
                    w.as_ptr(),
                    (rows, 1),
                    cols.as_ptr(),
                    (ld, 1),
                    par,
                );
            }
            if grouped {
                for (j, y_n) in y_g.chunks_mut(g.cout * ohw).enumerate() {
                    for (o, row) in y_n.chunks_mut(ohw).enumerate() {
                        row.copy_from_slice(&out[o * ld + j * ohw..][..ohw]);
                    }
                }
            }
        },
    );
    y
}

/// conv2d input gradient (= conv_transpose2d forward):
/// `dx[n] = col2im(Wᵀ [rows, cout] · dy[n] [cout, out_hw])`, images of small maps grouped
/// ([`images_per_product`]).
fn conv_bwd_input(g: &Geom, dy: &[f32], w: &[f32]) -> Vec<f32> {
    let (rows, ohw) = (g.rows(), g.out_hw());
    let mut dx = vec![0f32; g.n * g.image()];
    let format = packs(g, (rows, g.cout));
    let group = images_per_product(g, format.is_some());
    // `w` (cout×rows) read transposed.
    let packed = packed_lhs(format, w, (1, rows), (rows, g.cout, group * ohw));
    let narrow = narrow(g, packed.as_ref());
    per_group(
        g.n,
        group,
        &mut dx,
        g.image(),
        |first, count, dx_g, scratch, par| {
            let ld = count * ohw;
            let grouped = count > 1;
            scratch.resize(rows * ld + if grouped { g.cout * ld } else { 0 }, 0.0);
            let (cols, dy_g) = scratch.split_at_mut(rows * ld);
            let dy_n = |j: usize| &dy[(first + j) * g.cout * ohw..(first + j + 1) * g.cout * ohw];
            // A group's dy side by side: [cout, count·ohw].
            let rhs = if grouped {
                for j in 0..count {
                    for (o, row) in dy_n(j).chunks(ohw).enumerate() {
                        dy_g[o * ld + j * ohw..][..ohw].copy_from_slice(row);
                    }
                }
                dy_g.as_ptr()
            } else {
                dy_n(0).as_ptr()
            };
            // A narrow product is written transposed (`[out_hw, rows]`); col2im reads it so.
            let dst_strides = if narrow { (1, rows) } else { (ld, 1) };
            // SAFETY: `cols` holds rows·ld values, `rhs` cout·ld, `w` cout·rows.
            unsafe {
                product(
                    packed.as_ref(),
                    (rows, ld, g.cout),
                    cols.as_mut_ptr(),
                    dst_strides,
                    false,
                    w.as_ptr(),
                    (1, rows),
                    rhs,
                    (ld, 1),
                    par,
                );
            }
            for (j, dx_n) in dx_g.chunks_mut(g.image()).enumerate() {
                col2im(g, &cols[j * ohw..], dst_strides, dx_n);
            }
        },
    );
    dx
}

/// Values of im2col matrix per weight-gradient chunk (8 MiB): big enough for long GEMMs,
/// small enough to stay out of the way.
const WEIGHT_GRAD_CHUNK: usize = 1 << 21;

/// A pointer that rayon tasks may share; each task writes a disjoint part.
#[derive(Clone, Copy)]
pub(super) struct SharedPtr(pub(super) *mut f32);
// SAFETY: only used for writes to disjoint regions, joined before the buffer is read.
unsafe impl Send for SharedPtr {}
unsafe impl Sync for SharedPtr {}
impl SharedPtr {
    pub(super) fn get(self) -> *mut f32 {
        self.0
    }
}

/// Weight gradients with fewer values than this are too small for a GEMM to split
/// among threads; their batch chunks run in parallel instead, each into its own partial
/// sum.
const SMALL_WEIGHT_GRAD: usize = 1 << 16;

/// conv2d weight gradient: `dW [cout, rows] = Σₙ dy[n] [cout, out_hw] · im2col(x[n])ᵀ`.
///
/// The batch goes in chunks: each chunk's items are unfolded side by side and multiplied
/// in one GEMM. A large `dW` is accumulated chunk after chunk by a GEMM whose threads
/// split `dW`, never the sum; a small one gets a partial sum per chunk, chunks in
/// parallel, partials added in chunk order. Chunks and mode depend on the shapes only, so
/// the summation order, and the result, are the same on every run and machine.
fn conv_bwd_weight(g: &Geom, x: &[f32], dy: &[f32]) -> Vec<f32> {
    let (rows, ohw) = (g.rows(), g.out_hw());
    let size = g.cout * rows;
    if g.n == 0 || size == 0 || ohw == 0 {
        return vec![0f32; size];
    }
    let small = size < SMALL_WEIGHT_GRAD;
    let mut chunks = g.n.div_ceil((WEIGHT_GRAD_CHUNK / (rows * ohw)).max(1));
    if small {
        chunks = chunks.max(8).min(g.n);
    }
    let per_chunk = g.n.div_ceil(chunks);
    let chunks = g.n.div_ceil(per_chunk);
    let t = threads();
    let par = if t > 1 {
        Parallelism::Rayon(t)
    } else {
        Parallelism::None
    };
    let cap = per_chunk * ohw;
    let unfolded = rows * cap;
    let range = |c: usize| c * per_chunk..((c + 1) * per_chunk).min(g.n);
    let unfolding = Unfold::new(g);
    // The mode depends on the shapes alone (not on the threads), so the sum is taken in the
    // same order on every machine.
    if small && chunks > 1 {
        let partials: Vec<Vec<f32>> = (0..chunks)
            .into_par_iter()
            .map(|c| {
                let mut cols = vec![0f32; unfolded];
                let mut dyt = vec![0f32; g.cout * cap];
                let mut dw = vec![0f32; size];
                weight_grad_chunk(
                    &unfolding,
                    x,
                    dy,
                    range(c),
                    (&mut cols, &mut dyt),
                    &mut dw,
                    false,
                    Parallelism::None,
                );
                dw
            })
            .collect();
        let mut parts = partials.into_iter();
        let mut dw = parts.next().expect("one chunk at least");
        for p in parts {
            for (a, b) in dw.iter_mut().zip(&p) {
                *a += *b;
            }
        }
        dw
    } else {
        let mut cols = vec![0f32; unfolded];
        let mut dyt = vec![0f32; g.cout * cap];
        let mut dw = vec![0f32; size];
        for c in 0..chunks {
            weight_grad_chunk(
                &unfolding,
                x,
                dy,
                range(c),
                (&mut cols, &mut dyt),
                &mut dw,
                c > 0,
                par,
            );
        }
        dw
    }
}

/// `dw [+]= dyᵀ · colsᵀ` over the batch items `items`, using the scratch buffers `cols`
/// (≥ rows·items·out_hw values) and `dyt` (≥ cout·items·out_hw). With a parallel GEMM, the
/// unfolding runs in parallel too.
#[allow(clippy::too_many_arguments)]
fn weight_grad_chunk(
    unfolding: &Unfold,
    x: &[f32],
    dy: &[f32],
    items: std::ops::Range<usize>,
    (cols, dyt): (&mut [f32], &mut [f32]),
    dw: &mut [f32],
    accumulate: bool,
    par: Parallelism,
) {
    let g = unfolding.g;
    let (rows, ohw) = (g.rows(), g.out_hw());
    let first = items.start;
    let ld = items.len() * ohw;
    assert!(cols.len() >= rows * ld && dyt.len() >= g.cout * ld && dw.len() == g.cout * rows);
    let parallel = !matches!(par, Parallelism::None);
    let cols_ptr = SharedPtr(cols.as_mut_ptr());
    let unfold = |j: usize| {
        let i = first + j;
        let x_i = &x[i * g.image()..(i + 1) * g.image()];
        // SAFETY: item j writes columns [j·ohw, (j+1)·ohw) of rows `ld` apart, inside
        // `cols` (asserted above) and disjoint from other items.
        unsafe { unfolding.image(x_i, cols_ptr.get().add(j * ohw), ld) };
    };
    let transpose = |(o, row): (usize, &mut [f32])| {
        for (j, seg) in row.chunks_mut(ohw).enumerate() {
            let at = ((first + j) * g.cout + o) * ohw;
            seg.copy_from_slice(&dy[at..at + ohw]);
        }
    };
    if parallel {
        (0..items.len()).into_par_iter().for_each(unfold);
    } else {
        (0..items.len()).for_each(unfold);
    }
    if parallel {
        dyt[..g.cout * ld]
            .par_chunks_mut(ld)
            .enumerate()
            .for_each(transpose);
    } else {
        dyt[..g.cout * ld]
            .chunks_mut(ld)
            .enumerate()
            .for_each(transpose);
    }
    // In bf16, dyt is packed once (not once per thread of a split product). In f32 `gemm`
    // computes it: dyt serves one product, and packed f32 measured no faster here.
    let format = g.bf16.then_some(Format::Bf16);
    let packed = packed_lhs(format, dyt, (ld, 1), (g.cout, ld, rows));
    // SAFETY: `dw` is cout×rows, `dyt` cout×ld, `cols` rows×ld (read transposed).
    unsafe {
        product(
            packed.as_ref(),
            (g.cout, rows, ld),
            dw.as_mut_ptr(),
            (rows, 1),
            accumulate,
            dyt.as_ptr(),
            (ld, 1),
            cols.as_ptr(),
            (1, ld),
            par,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The gathers write the matrix the row copies write, for every stride, padding and
    /// map size a GAN here uses and some odd ones (the rest of the convolution is checked
    /// against Candle in tests/kernels.rs, with and without them).
    #[test]
    fn gathered_im2col_matches_the_row_copies() {
        if !strided::avx512() {
            return;
        }
        for (cin, h, w, k, stride, pad) in [
            (3, 32, 32, 3, 2, 1),
            (5, 8, 8, 4, 2, 1),
            (2, 16, 16, 4, 2, 1),
            (3, 7, 5, 3, 1, 1),
            (2, 9, 6, 5, 2, 2),
            (1, 4, 4, 4, 1, 0),
            (2, 3, 3, 5, 1, 2),
        ] {
            let (ho, wo) = (
                out_size(h, k, pad, stride).unwrap(),
                out_size(w, k, pad, stride).unwrap(),
            );
            let g = Geom {
                n: 1,
                cin,
                h,
                w,
                cout: 1,
                ho,
                wo,
                k,
                stride,
                pad,
                bf16: false,
            };
            let x: Vec<f32> = (0..g.image()).map(|i| i as f32 + 0.5).collect();
            // Rows wider than the matrix, as a group of images lays them out.
            let ld = g.out_hw() + 3;
            let mut want = vec![f32::NAN; g.rows() * ld];
            let mut got = want.clone();
            // SAFETY: both buffers hold rows() rows of ld ≥ out_hw() values.
            unsafe {
                im2col_rows(&g, &x, want.as_mut_ptr(), ld);
                Unfold::new(&g).image(&x, got.as_mut_ptr(), ld);
            }
            for (r, (a, b)) in want.chunks(ld).zip(got.chunks(ld)).enumerate() {
                let n = g.out_hw();
                assert_eq!(
                    a[..n],
                    b[..n],
                    "{cin}x{h}x{w} k{k} s{stride} p{pad}, row {r}"
                );
                assert!(b[n..].iter().all(|v| v.is_nan()), "wrote past the row");
            }
        }
    }
}
