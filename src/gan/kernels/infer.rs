//! Inference convolutions for networks that only run forward (the ESRGAN upscaler):
//! `act(W * concat(inputs) + b)` in one call, weights packed once.
//!
//! No im2col: a stride-1 convolution is the sum over its k² taps of products with a
//! shifted view of the zero-padded input, so the input is copied once (into the padded
//! buffer, which is also where a dense block's concatenation happens) and no column
//! buffer grows with the picture (an 880² tile of 64 channels would need 1.8 GB
//! unfolded). The kernels, chosen at run time ([`Kernel::best`]):
//!
//! - AVX-512, 3×3 with padding 1 (every convolution of the ESRGAN networks):
//!   [`super::winograd`]'s F(4×4, 3×3) on channels-last values
//!   ([`PackedConv::forward_channels_last`]; the upscaler's graph keeps its values so);
//! - AVX-512, other shapes: a direct convolution, 32 pixels × 12 output channels in 24
//!   registers (`EASEL_CONV_KERNEL=direct`: for 3×3 too);
//! - any CPU: one `gemm` call per tap (the crate training's convolutions use), pixels as
//!   the long dimension;
//! - opt-in ([`Precision::Bf16`], `easel upscale --precision bf16`): the direct kernel on
//!   bfloat16 channel pairs with `vdpbf16ps` (AVX512_BF16), sums in f32.
//!
//! The bias and the (leaky or parametric) ReLU are applied in the pass that writes the
//! output.

use std::cell::RefCell;

use candle_core::{bail, Device, Result, Storage, Tensor};
use gemm::Parallelism;
use rayon::prelude::*;

use super::conv::{sgemm, SharedPtr};
use super::f32_data;
use super::winograd::{self, Isa, Winograd};

/// A convolution ready to run: `act(conv2d(concat(inputs), W, padding) + b)`, stride 1,
/// where `act(v) = v` for `v ≥ 0` and `slopes[c]·v` below (none when `slopes` is `None`:
/// a leaky ReLU is every slope equal, a PReLU one slope per output channel). The inputs
/// are concatenated along the channels as they are copied into the padded buffer, so a
/// dense block's concatenation costs nothing.
#[derive(Debug)]
pub struct PackedConv {
    cout: usize,
    cin: usize,
    k: usize,
    padding: usize,
    /// The kernel the weights are packed for.
    kernel: Kernel,
    /// GEMM kernel: `[cout, cin, k, k]`. AVX-512 kernel: per block of output channels
    /// ([`out_blocks`]), `[cin, k, k, block]`, so the kernel reads its weights front to
    /// back. (One layout only: x4plus's weights are 67 MB.)
    weight: Vec<f32>,
    /// Bf16 kernel: per block of output channels, `[cin/2 (rounded up), k, k, block]`
    /// pairs of bfloat16 weights (input channels 2c and 2c + 1 in one u32).
    weight_bf16: Vec<u32>,
    bias: Vec<f32>,
    slopes: Option<Vec<f32>>,
    /// Winograd's transformed kernels, where it runs this convolution (then `weight` is
    /// empty).
    winograd: Option<Winograd>,
}

impl PackedConv {
    /// `weight [Cout, Cin, K, K]`, `bias [Cout]`, `slopes` of length Cout if any.
    pub fn new(
        weight: &Tensor,
        bias: &Tensor,
        padding: usize,
        slopes: Option<&[f32]>,
    ) -> Result<Self> {
        Self::for_kernel(Kernel::best(), weight, bias, padding, slopes)
    }

    /// [`Self::new`] in the given arithmetic.
    pub fn with_precision(
        precision: Precision,
        weight: &Tensor,
        bias: &Tensor,
        padding: usize,
        slopes: Option<&[f32]>,
    ) -> Result<Self> {
        Self::for_kernel(
            Kernel::for_precision(precision),
            weight,
            bias,
            padding,
            slopes,
        )
    }

    fn for_kernel(
        kernel: Kernel,
        weight: &Tensor,
        bias: &Tensor,
        padding: usize,
        slopes: Option<&[f32]>,
    ) -> Result<Self> {
        let (cout, cin, k, k2) = weight.dims4()?;
        if k != k2 || bias.dims1()? != cout || slopes.is_some_and(|s| s.len() != cout) {
            bail!(
                "a convolution of {:?} with a bias of {:?} and {:?} slopes does not fit",
                weight.dims(),
                bias.dims(),
                slopes.map(|s| s.len())
            );
        }
        let weight: Vec<f32> = weight.flatten_all()?.to_device(&Device::Cpu)?.to_vec1()?;
        let bias: Vec<f32> = bias.to_device(&Device::Cpu)?.to_vec1()?;
        // Winograd runs the 3×3 convolutions; the others take the direct kernel (AVX-512)
        // or a GEMM per tap.
        let (kernel, winograd) = match kernel {
            Kernel::Winograd(isa) if winograd::applies(k, padding) => (
                kernel,
                Some(Winograd::new(&weight, (cin, cout), &bias, slopes, isa)),
            ),
            Kernel::Winograd(Isa::Avx512) => (Kernel::Avx512, None),
            Kernel::Winograd(Isa::Avx2) => (Kernel::Gemm, None),
            kernel => (kernel, None),
        };
        let weight_bf16 = match kernel {
            Kernel::Bf16 => {
                let pairs = cin.div_ceil(2);
                let at = |co: usize, ci: usize, tap: usize| {
                    (ci < cin).then(|| weight[(co * cin + ci) * k * k + tap])
                };
                let mut blocked = Vec::with_capacity(pairs * k * k * cout);
                for (o, size) in out_blocks(cout) {
                    for cp in 0..pairs {
                        for tap in 0..k * k {
                            blocked.extend((o..o + size).map(|co| {
                                let lo = at(co, 2 * cp, tap).unwrap_or(0.0);
                                let hi = at(co, 2 * cp + 1, tap).unwrap_or(0.0);
                                bf16_pair(lo, hi)
                            }));
                        }
                    }
                }
                blocked
            }
            _ => vec![],
        };
        let weight = match kernel {
            Kernel::Winograd(_) | Kernel::Bf16 => vec![],
            Kernel::Gemm => weight,
            Kernel::Avx512 => {
                let mut blocked = Vec::with_capacity(weight.len());
                for (o, size) in out_blocks(cout) {
                    for i in 0..cin * k * k {
                        blocked.extend((o..o + size).map(|co| weight[co * cin * k * k + i]));
                    }
                }
                blocked
            }
        };
        Ok(PackedConv {
            cout,
            cin,
            k,
            padding,
            kernel,
            weight,
            weight_bf16,
            bias,
            slopes: slopes.map(|s| s.to_vec()),
            winograd,
        })
    }

    /// Runs on CPU tensors `[N, Cᵢ, H, W]` whose channels add up to the weights' `Cin`.
    pub fn forward(&self, inputs: &[&Tensor]) -> Result<Tensor> {
        self.forward_upsampled(inputs, 1)
    }

    /// [`Self::forward`] of the inputs upsampled by `up` (nearest neighbour), which is
    /// done while they are copied into the padded buffer: the upsampled input (4× the
    /// input's memory for `up` 2) is never made.
    pub fn forward_upsampled(&self, inputs: &[&Tensor], up: usize) -> Result<Tensor> {
        if self.winograd.is_some() {
            return in_layout(inputs, (0, 2, 3, 1), (0, 3, 1, 2), |x| {
                self.forward_channels_last(x, up)
            });
        }
        let up = up.max(1);
        let (n, sh, sw, channels) = check_inputs(inputs, 1)?;
        let cin: usize = channels.iter().sum();
        let (h, w) = (sh * up, sw * up);
        let (k, p, cout) = (self.k, self.padding, self.cout);
        if cin != self.cin || h + 2 * p < k || w + 2 * p < k {
            bail!(
                "a convolution of {} input channels, {k}x{k}, padding {p}, given {cin} channels of {w}x{h}",
                self.cin
            );
        }
        let guards: Vec<_> = inputs.iter().map(|t| t.storage_and_layout()).collect();
        let values = borrow_values(&guards)?;
        let items = per_item(&values, &channels, n, sh * sw);
        let (ho, wo) = (h + 2 * p - k + 1, w + 2 * p - k + 1);
        let wp = w + 2 * p;
        // Output pixels are computed in rows of the padded width (the extra columns are
        // dropped at the end), in whole blocks of the AVX-512 kernel.
        let accw = (ho * wp).next_multiple_of(PIXELS);
        // The padded picture, plus spare zeros: the last block's last tap reads past it.
        let plane = (h + 2 * p) * wp + PIXELS + k;
        let g = Taps {
            cin,
            cout,
            k,
            wp,
            plane,
            accw,
        };
        let mut y: Vec<f32> = Vec::with_capacity(n * cout * ho * wo);
        SCRATCH.with_borrow_mut(|s| -> Result<()> {
            let (padded, acc, pairs) = s.get(&g, (h, p));
            for (i, item) in items.iter().enumerate() {
                // Copy every input's planes into the padded buffer, channel after channel.
                let mut c0 = 0;
                for &(src, c) in item {
                    padded[c0 * plane..(c0 + c) * plane]
                        .par_chunks_mut(plane)
                        .zip(src.par_chunks(sh * sw))
                        .for_each(|(dst, src)| {
                            for r in 0..h {
                                let row = &src[(r / up) * sw..][..sw];
                                let dst = &mut dst[(r + p) * wp + p..][..w];
                                if up == 1 {
                                    dst.copy_from_slice(row);
                                } else {
                                    for (o, v) in dst.chunks_exact_mut(up).zip(row) {
                                        o.fill(*v);
                                    }
                                }
                            }
                        });
                    c0 += c;
                }
                match self.kernel {
                    Kernel::Avx512 => g.direct(padded, &self.weight, acc),
                    Kernel::Gemm => g.gemm(padded, &self.weight, acc),
                    Kernel::Bf16 => g.direct_bf16(padded, pairs, &self.weight_bf16, acc),
                    Kernel::Winograd(_) => unreachable!("Winograd convolutions run channels-last"),
                }
                // Drop the padding columns, add the bias, apply the activation.
                let out = &mut y.spare_capacity_mut()[i * cout * ho * wo..(i + 1) * cout * ho * wo];
                out.par_chunks_mut(ho * wo)
                    .zip(acc.par_chunks(accw))
                    .enumerate()
                    .for_each(|(c, (dst, src))| {
                        let (b, a) = (self.bias[c], self.slopes.as_ref().map(|s| s[c]));
                        let rows = dst
                            .chunks_exact_mut(wo)
                            .zip(src[..ho * wp].chunks_exact(wp));
                        for (d, s) in rows {
                            for (o, v) in d.iter_mut().zip(s) {
                                let v = v + b;
                                o.write(match a {
                                    Some(a) if v < 0.0 => v * a,
                                    _ => v,
                                });
                            }
                        }
                    });
            }
            Ok(())
        })?;
        // SAFETY: the loop above wrote every one of the n·cout·ho·wo values.
        unsafe { y.set_len(n * cout * ho * wo) };
        Tensor::from_vec(y, (n, cout, ho, wo), &Device::Cpu)
    }
}

impl PackedConv {
    /// Whether this convolution runs fastest on channels-last values
    /// ([`Self::forward_channels_last`]): the Winograd kernel's.
    pub fn channels_last(&self) -> bool {
        self.winograd.is_some()
    }

    /// [`Self::forward_upsampled`] on channels-last tensors `[N, H, W, Cᵢ]`, giving
    /// `[N, H·up, W·up, Cout]`.
    pub fn forward_channels_last(&self, inputs: &[&Tensor], up: usize) -> Result<Tensor> {
        let Some(wg) = &self.winograd else {
            return in_layout(inputs, (0, 3, 1, 2), (0, 2, 3, 1), |x| {
                self.forward_upsampled(x, up)
            });
        };
        let up = up.max(1);
        let (n, sh, sw, channels) = check_inputs(inputs, 3)?;
        let cin: usize = channels.iter().sum();
        if cin != self.cin {
            bail!(
                "a convolution of {} input channels given {cin} channels",
                self.cin
            );
        }
        let guards: Vec<_> = inputs.iter().map(|t| t.storage_and_layout()).collect();
        let values = borrow_values(&guards)?;
        let (h, w, cout) = (sh * up, sw * up, self.cout);
        let mut y: Vec<f32> = Vec::with_capacity(n * h * w * cout);
        for (i, parts) in per_item(&values, &channels, n, sh * sw).iter().enumerate() {
            let out = &mut y.spare_capacity_mut()[i * h * w * cout..(i + 1) * h * w * cout];
            // SAFETY: the kernel is Winograd only on CPUs with its instructions (Kernel::best).
            unsafe { wg.run(parts, (sh, sw), up, out) };
        }
        // SAFETY: `run` wrote every value of each item.
        unsafe { y.set_len(n * h * w * cout) };
        Tensor::from_vec(y, (n, h, w, cout), &Device::Cpu)
    }
}

/// `f` of the inputs permuted by `to` (made contiguous), its result permuted by `back`:
/// a convolution run in the other layout.
fn in_layout(
    inputs: &[&Tensor],
    to: (usize, usize, usize, usize),
    back: (usize, usize, usize, usize),
    f: impl FnOnce(&[&Tensor]) -> Result<Tensor>,
) -> Result<Tensor> {
    let moved = inputs
        .iter()
        .map(|t| t.permute(to)?.contiguous())
        .collect::<Result<Vec<_>>>()?;
    f(&moved.iter().collect::<Vec<_>>())?
        .permute(back)?
        .contiguous()
}

/// Checks that the convolution's `inputs` (4-dimensional, their channels along `axis`: 1
/// or 3) are on the CPU with the same batch and picture size; gives the batch, the
/// picture's height and width, and each input's channel count.
fn check_inputs(inputs: &[&Tensor], axis: usize) -> Result<(usize, usize, usize, Vec<usize>)> {
    let Some(first) = inputs.first() else {
        bail!("a convolution without input");
    };
    let size = |t: &Tensor| -> Result<(usize, usize, usize)> {
        let d = t.dims4()?;
        Ok(if axis == 1 {
            (d.0, d.2, d.3)
        } else {
            (d.0, d.1, d.2)
        })
    };
    let (n, h, w) = size(first)?;
    let mut channels = Vec::with_capacity(inputs.len());
    for t in inputs {
        if size(t)? != (n, h, w) || !t.device().is_cpu() {
            bail!(
                "convolution inputs of shapes {:?} and {:?} (CPU only)",
                first.dims(),
                t.dims()
            );
        }
        channels.push(t.dim(axis)?);
    }
    Ok((n, h, w, channels))
}

/// Every input's values, borrowed from its storage (copied only if strided).
fn borrow_values<'a, G: std::ops::Deref<Target = Storage>>(
    guards: &'a [(G, &'a candle_core::Layout)],
) -> Result<Vec<std::borrow::Cow<'a, [f32]>>> {
    guards
        .iter()
        .map(|(storage, layout)| match &**storage {
            Storage::Cpu(cpu) => f32_data(cpu, layout, "input"),
            _ => bail!("convolution inputs must be on the CPU"),
        })
        .collect()
}

/// Per batch item, each input's values and channel count, in order (`hw` pixels each).
fn per_item<'a>(
    values: &'a [std::borrow::Cow<'a, [f32]>],
    channels: &[usize],
    n: usize,
    hw: usize,
) -> Vec<Vec<(&'a [f32], usize)>> {
    (0..n)
        .map(|i| {
            let parts = values.iter().zip(channels);
            parts
                .map(|(v, &c)| (&v[i * c * hw..(i + 1) * c * hw], c))
                .collect()
        })
        .collect()
}

/// Buffers kept between calls: fresh pages cost more than the copies (page faults and
/// zeroing were a third of an upscale's time).
#[derive(Default)]
struct Scratch {
    padded: Vec<f32>,
    acc: Vec<f32>,
    /// The bf16 kernel's input: `padded` as channel pairs (sized by the kernel).
    pairs: Vec<u32>,
    /// The geometry (plane, padded width, height, padding) whose zero borders the first
    /// `zeroed` planes of `padded` hold.
    geometry: (usize, usize, usize, usize),
    zeroed: usize,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// bfloat16 of `v`, rounded to nearest even (the activations and weights are finite).
fn bf16_bits(v: f32) -> u32 {
    half::bf16::from_f32(v).to_bits() as u32
}

/// Input channels `2c` (low half) and `2c + 1` (high half) of one pixel, as the bf16
/// kernel reads them.
fn bf16_pair(lo: f32, hi: f32) -> u32 {
    bf16_bits(lo) | bf16_bits(hi) << 16
}

impl Scratch {
    /// The padded input buffer (zero borders, interiors to be overwritten), the
    /// accumulator for `g`, and the bf16 kernel's pairs buffer.
    fn get(&mut self, g: &Taps, (h, p): (usize, usize)) -> (&mut [f32], &mut [f32], &mut Vec<u32>) {
        let geometry = (g.plane, g.wp, h, p);
        if geometry != self.geometry {
            self.geometry = geometry;
            self.zeroed = 0;
        }
        if self.padded.len() < g.cin * g.plane {
            self.padded.resize(g.cin * g.plane, 0.0);
        }
        if self.zeroed < g.cin {
            self.padded[self.zeroed * g.plane..g.cin * g.plane].fill(0.0);
            self.zeroed = g.cin;
        }
        if self.acc.len() < g.cout * g.accw {
            self.acc.resize(g.cout * g.accw, 0.0);
        }
        (
            &mut self.padded[..g.cin * g.plane],
            &mut self.acc[..g.cout * g.accw],
            &mut self.pairs,
        )
    }
}

/// Pixels per block of the AVX-512 kernel: two registers of 16 lanes.
const PIXELS: usize = 32;

/// The kernels of [`PackedConv`]: Winograd for 3×3 convolutions in AVX-512 (or AVX2 where
/// the CPU has no AVX-512) and the direct kernel (or a GEMM per tap) for the rest, unless
/// `EASEL_CONV_KERNEL` names `direct` (the direct AVX-512 kernel for all), `winograd-avx2`
/// or `gemm` (the lesser kernels other machines run, to test what they compute).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kernel {
    /// F(4×4, 3×3) Winograd on channels-last values where it applies (3×3, padding 1),
    /// else [`Kernel::Avx512`] (with AVX-512) or [`Kernel::Gemm`] (AVX2).
    Winograd(Isa),
    /// The direct kernel on bfloat16 inputs and weights, products summed in f32
    /// (`vdpbf16ps`: two multiply-adds per lane and instruction). Only when asked for
    /// ([`Precision::Bf16`]) and the CPU has AVX512_BF16.
    Bf16,
    /// Direct convolution in AVX-512 registers.
    Avx512,
    /// One `gemm` call per tap (any CPU).
    Gemm,
}

/// The arithmetic of convolutions and matrix products (`--precision fp32|bf16`, a GAN
/// sketch's `precision`): weights, statistics, losses and checkpoints stay f32 either way.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// f32 throughout.
    #[default]
    Fp32,
    /// bfloat16 inputs and weights (8 bits of mantissa), sums in f32: about twice as
    /// fast where the CPU has AVX512_BF16, and within a few levels of 255 of fp32.
    Bf16,
}

impl Precision {
    /// Its name on the command line and in recipes.
    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Bf16 => "bf16",
        }
    }

    /// Whether this CPU runs bf16 convolutions (else [`Precision::Bf16`] runs as fp32);
    /// `EASEL_CONV_KERNEL=gemm` (the lesser kernels) turns them off. Decided once.
    pub fn bf16_available() -> bool {
        static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *AVAILABLE.get_or_init(|| {
            #[cfg(target_arch = "x86_64")]
            {
                std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512bf16")
                    && std::env::var("EASEL_CONV_KERNEL").as_deref() != Ok("gemm")
            }
            #[cfg(not(target_arch = "x86_64"))]
            false
        })
    }
}

/// Whether this CPU runs fp32 3×3 convolutions as Winograd F(4×4, 3×3), which is faster
/// than bf16's direct kernel (Winograd in bf16 would amplify its rounding ~20×).
pub fn fp32_winograd() -> bool {
    matches!(Kernel::best(), Kernel::Winograd(_))
}

impl Kernel {
    /// The kernel for `precision`: bf16 where it is asked for and the CPU has it, else
    /// [`Kernel::best`].
    pub(crate) fn for_precision(precision: Precision) -> Kernel {
        match precision {
            Precision::Bf16 if Precision::bf16_available() => Kernel::Bf16,
            _ => Kernel::best(),
        }
    }

    pub(crate) fn best() -> Kernel {
        static BEST: std::sync::OnceLock<Kernel> = std::sync::OnceLock::new();
        *BEST.get_or_init(|| {
            let wanted = std::env::var("EASEL_CONV_KERNEL").unwrap_or_default();
            #[cfg(target_arch = "x86_64")]
            if wanted != "gemm" {
                use std::arch::is_x86_feature_detected as has;
                let avx512 = has!("avx512f");
                let avx2 = has!("avx2") && has!("fma");
                // Winograd F(4×4, 3×3) does 4× fewer multiply-adds than the direct
                // kernel: x4plus on a 128² picture took 2.3–3.0 s against 4.5–5.0 s.
                match wanted.as_str() {
                    "direct" if avx512 => return Kernel::Avx512,
                    "winograd-avx2" if avx2 => return Kernel::Winograd(Isa::Avx2),
                    _ if avx512 => return Kernel::Winograd(Isa::Avx512),
                    _ if avx2 => return Kernel::Winograd(Isa::Avx2),
                    _ => {}
                }
            }
            let _ = wanted;
            Kernel::Gemm
        })
    }
}

/// A stride-1 convolution over a zero-padded input, in padded-width pixel coordinates:
/// output pixel `j` of tap `(kh, kw)` reads padded pixel `j + kh·wp + kw`.
struct Taps {
    cin: usize,
    cout: usize,
    k: usize,
    /// Padded width.
    wp: usize,
    /// Values per padded input channel (with spare zeros at the end).
    plane: usize,
    /// Values per output channel of `acc` (a whole number of blocks).
    accw: usize,
}

impl Taps {
    /// `acc[co][j] = Σ_{ci, tap} W[co, ci, tap] · padded[ci][j + offset(tap)]`, one GEMM
    /// per tap over a shifted view (pixels as rows, input channels inner).
    fn gemm(&self, padded: &[f32], wt: &[f32], acc: &mut [f32]) {
        let (k, cin, cout) = (self.k, self.cin, self.cout);
        let par = match rayon::current_num_threads() {
            0 | 1 => Parallelism::None,
            t => Parallelism::Rayon(t),
        };
        for kh in 0..k {
            for kw in 0..k {
                let first = kh == 0 && kw == 0;
                // SAFETY: every view stays inside `padded` (its spare values cover the
                // last tap's overrun), `wt` ([cout, cin, k, k]) and `acc` ([cout, accw]).
                unsafe {
                    sgemm(
                        (self.accw, cout, cin),
                        acc.as_mut_ptr(),
                        (1, self.accw),
                        !first,
                        padded.as_ptr().add(kh * self.wp + kw),
                        (1, self.plane),
                        wt.as_ptr().add(kh * k + kw),
                        (k * k, cin * k * k),
                        par,
                    );
                }
            }
        }
    }

    /// The same sums with the AVX-512 kernel, blocks of pixels spread over threads.
    fn direct(&self, padded: &[f32], wr: &[f32], acc: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        {
            let blocks = self.accw / PIXELS;
            let per_task = 4;
            assert!(acc.len() >= self.cout * self.accw);
            assert!(padded.len() >= self.cin * self.plane);
            assert!(wr.len() >= self.cin * self.k * self.k * self.cout);
            let out = SharedPtr(acc.as_mut_ptr());
            (0..blocks.div_ceil(per_task))
                .into_par_iter()
                .for_each(|t| {
                    for b in t * per_task..((t + 1) * per_task).min(blocks) {
                        // SAFETY: the CPU has AVX-512 (Kernel::best); the sizes are
                        // asserted above; each block writes only its own pixels.
                        unsafe { avx512::block(self, padded, wr, out.get(), b * PIXELS) };
                    }
                });
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (padded, wr, acc);
            unreachable!("the AVX-512 kernel is chosen only on x86-64");
        }
    }
}

impl Taps {
    /// [`Taps::direct`] in bf16: the padded planes `[cin][plane]` are converted into
    /// `pairs` (`[cin/2 rounded up][plane]`, an odd last channel paired with zeros), then
    /// multiplied by `wb`, the packed pair weights.
    fn direct_bf16(&self, padded: &[f32], pairs: &mut Vec<u32>, wb: &[u32], acc: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        {
            let blocks = self.accw / PIXELS;
            let per_task = 4;
            let cp = self.cin.div_ceil(2);
            assert!(Precision::bf16_available());
            assert!(padded.len() >= self.cin * self.plane);
            pairs.resize(cp * self.plane, 0);
            let plane = self.plane;
            pairs
                .par_chunks_mut(plane)
                .enumerate()
                .for_each(|(c, dst)| {
                    let lo = &padded[2 * c * plane..][..plane];
                    let hi =
                        (2 * c + 1 < self.cin).then(|| &padded[(2 * c + 1) * plane..][..plane]);
                    // SAFETY: AVX-512F is available (asserted); the slices have `plane` values.
                    unsafe { avx512::pairs(lo, hi, dst) };
                });
            let pairs = &pairs[..];
            assert!(acc.len() >= self.cout * self.accw);
            assert!(pairs.len() >= cp * self.plane);
            assert!(wb.len() >= cp * self.k * self.k * self.cout);
            let out = SharedPtr(acc.as_mut_ptr());
            (0..blocks.div_ceil(per_task))
                .into_par_iter()
                .for_each(|t| {
                    for b in t * per_task..((t + 1) * per_task).min(blocks) {
                        // SAFETY: AVX512_BF16 is available (asserted); the sizes are
                        // asserted above; each block writes only its own pixels.
                        unsafe { avx512::block_bf16(self, pairs, wb, out.get(), b * PIXELS) };
                    }
                });
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (padded, pairs, wb, acc);
            unreachable!("the bf16 kernel is chosen only on x86-64");
        }
    }
}

/// Output channels per register block of the AVX-512 kernel (2 × 12 accumulators, 2
/// input loads and 12 weight broadcasts per input channel and tap).
const OUTS: usize = 12;

/// The blocks of output channels the AVX-512 kernel computes at once: (first, count).
fn out_blocks(cout: usize) -> impl Iterator<Item = (usize, usize)> {
    let mut o = 0;
    std::iter::from_fn(move || {
        let size = match cout - o {
            0 => return None,
            OUTS.. => OUTS,
            8..=11 => 8,
            4..=7 => 4,
            l => l,
        };
        o += size;
        Some((o - size, size))
    })
}

/// AVX-512F f32 → bf16 pairs (see [`avx512::pairs`]), also for `bf16_gemm`'s packing.
#[cfg(target_arch = "x86_64")]
pub(super) use avx512::pairs as avx512_pairs;

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{out_blocks, Taps, OUTS};

    /// Input channels per pass, so a pass's input (64 channels × k rows × 32 + k pixels)
    /// stays in L2 while every block of output channels reads it (measured on x4plus at
    /// 128²: 16 → 7.0 s, 32 → 6.2 s, 64 → 6.2 s, all → 6.5 s).
    const CHANNELS: usize = 64;

    /// Output pixels `[j, j + 32)` of every output channel.
    ///
    /// # Safety
    /// AVX-512F must be available; `padded`, `wr` and `acc` must hold what [`Taps`] says
    /// and `j + 32 <= accw`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn block(t: &Taps, padded: &[f32], wr: &[f32], acc: *mut f32, j: usize) {
        let taps = t.k * t.k;
        for c0 in (0..t.cin).step_by(CHANNELS) {
            let c1 = (c0 + CHANNELS).min(t.cin);
            for (o, size) in out_blocks(t.cout) {
                let w = &wr[o * t.cin * taps..(o + size) * t.cin * taps];
                // SAFETY: as the caller vouches; o + size <= cout.
                unsafe {
                    match size {
                        OUTS => outs::<OUTS>(t, padded, w, acc, j, o, c0..c1),
                        8 => outs::<8>(t, padded, w, acc, j, o, c0..c1),
                        4 => outs::<4>(t, padded, w, acc, j, o, c0..c1),
                        3 => outs::<3>(t, padded, w, acc, j, o, c0..c1),
                        2 => outs::<2>(t, padded, w, acc, j, o, c0..c1),
                        _ => outs::<1>(t, padded, w, acc, j, o, c0..c1),
                    }
                }
            }
        }
    }

    /// Adds input channels `cs` of every tap to output channels `[o, o + B)` of pixels
    /// `[j, j + 32)` (starting from zero on the first pass). `w` is the block's
    /// `[cin, k, k, B]` weights.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn outs<const B: usize>(
        t: &Taps,
        padded: &[f32],
        w: &[f32],
        acc: *mut f32,
        j: usize,
        o: usize,
        cs: std::ops::Range<usize>,
    ) {
        let taps = t.k * t.k;
        let first = cs.start == 0;
        let x = padded.as_ptr();
        let mut a = [[_mm512_setzero_ps(); 2]; B];
        if !first {
            for (b, a) in a.iter_mut().enumerate() {
                // SAFETY: o + b < cout and j + 32 <= accw.
                unsafe {
                    let src = acc.add((o + b) * t.accw + j);
                    *a = [_mm512_loadu_ps(src), _mm512_loadu_ps(src.add(16))];
                }
            }
        }
        let mut wk = w[cs.start * taps * B..].as_ptr();
        for ci in cs {
            for kh in 0..t.k {
                for kw in 0..t.k {
                    // SAFETY: j + 32 + (k−1)·wp + k−1 <= plane (Taps::plane's spare
                    // zeros), ci < cin; `wk` walks `w`'s cin·k·k·B values once.
                    unsafe {
                        let src = x.add(ci * t.plane + j + kh * t.wp + kw);
                        let (x0, x1) = (_mm512_loadu_ps(src), _mm512_loadu_ps(src.add(16)));
                        for (b, a) in a.iter_mut().enumerate() {
                            let wb = _mm512_set1_ps(*wk.add(b));
                            a[0] = _mm512_fmadd_ps(wb, x0, a[0]);
                            a[1] = _mm512_fmadd_ps(wb, x1, a[1]);
                        }
                        wk = wk.add(B);
                    }
                }
            }
        }
        for (b, a) in a.iter().enumerate() {
            // SAFETY: o + b < cout and j + 32 <= accw.
            unsafe {
                let dst = acc.add((o + b) * t.accw + j);
                _mm512_storeu_ps(dst, a[0]);
                _mm512_storeu_ps(dst.add(16), a[1]);
            }
        }
    }

    /// [`block`] on bf16 channel pairs: `vdpbf16ps` adds two products per lane.
    ///
    /// # Safety
    /// AVX-512F and AVX512_BF16 must be available; `pairs`, `wb` and `acc` must hold what
    /// [`Taps`] says for `cin/2` (rounded up) pair planes, and `j + 32 <= accw`.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) unsafe fn block_bf16(t: &Taps, pairs: &[u32], wb: &[u32], acc: *mut f32, j: usize) {
        let taps = t.k * t.k;
        let cp = t.cin.div_ceil(2);
        for c0 in (0..cp).step_by(CHANNELS / 2) {
            let c1 = (c0 + CHANNELS / 2).min(cp);
            for (o, size) in out_blocks(t.cout) {
                let w = &wb[o * cp * taps..(o + size) * cp * taps];
                // SAFETY: as the caller vouches; o + size <= cout.
                unsafe {
                    match size {
                        OUTS => outs_bf16::<OUTS>(t, pairs, w, acc, j, o, c0..c1),
                        8 => outs_bf16::<8>(t, pairs, w, acc, j, o, c0..c1),
                        4 => outs_bf16::<4>(t, pairs, w, acc, j, o, c0..c1),
                        3 => outs_bf16::<3>(t, pairs, w, acc, j, o, c0..c1),
                        2 => outs_bf16::<2>(t, pairs, w, acc, j, o, c0..c1),
                        _ => outs_bf16::<1>(t, pairs, w, acc, j, o, c0..c1),
                    }
                }
            }
        }
    }

    /// [`outs`] over channel pairs `cs`: each u32 of `pairs` and `w` holds two bf16.
    /// (A twin of `outs`, not a generic of it: one body would need AVX512_BF16 enabled
    /// for the fp32 instance too, which CPUs without it must still run.)
    #[target_feature(enable = "avx512f,avx512bf16")]
    #[inline]
    unsafe fn outs_bf16<const B: usize>(
        t: &Taps,
        pairs: &[u32],
        w: &[u32],
        acc: *mut f32,
        j: usize,
        o: usize,
        cs: std::ops::Range<usize>,
    ) {
        let taps = t.k * t.k;
        let first = cs.start == 0;
        let x = pairs.as_ptr();
        let mut a = [[_mm512_setzero_ps(); 2]; B];
        if !first {
            for (b, a) in a.iter_mut().enumerate() {
                // SAFETY: o + b < cout and j + 32 <= accw.
                unsafe {
                    let src = acc.add((o + b) * t.accw + j);
                    *a = [_mm512_loadu_ps(src), _mm512_loadu_ps(src.add(16))];
                }
            }
        }
        let mut wk = w[cs.start * taps * B..].as_ptr();
        for cp in cs {
            for kh in 0..t.k {
                for kw in 0..t.k {
                    // SAFETY: as in `outs`, in u32 pair units: j + 32 + (k−1)·wp + k−1
                    // <= plane, cp < cin/2 rounded up; `wk` walks `w` once.
                    unsafe {
                        let src = x.add(cp * t.plane + j + kh * t.wp + kw);
                        let x0: __m512bh = std::mem::transmute(_mm512_loadu_si512(src.cast()));
                        let x1: __m512bh =
                            std::mem::transmute(_mm512_loadu_si512(src.add(16).cast()));
                        for (b, a) in a.iter_mut().enumerate() {
                            let wv: __m512bh =
                                std::mem::transmute(_mm512_set1_epi32(*wk.add(b) as i32));
                            a[0] = _mm512_dpbf16_ps(a[0], x0, wv);
                            a[1] = _mm512_dpbf16_ps(a[1], x1, wv);
                        }
                        wk = wk.add(B);
                    }
                }
            }
        }
        for (b, a) in a.iter().enumerate() {
            // SAFETY: o + b < cout and j + 32 <= accw.
            unsafe {
                let dst = acc.add((o + b) * t.accw + j);
                _mm512_storeu_ps(dst, a[0]);
                _mm512_storeu_ps(dst.add(16), a[1]);
            }
        }
    }

    /// `dst[j] = bf16(lo[j]) | bf16(hi[j]) << 16`, rounded to nearest even (as
    /// `half::bf16::from_f32` for finite values).
    ///
    /// # Safety
    /// AVX-512F must be available; `lo`, `hi` (if any) and `dst` have the same length.
    #[target_feature(enable = "avx512f")]
    pub(in crate::gan::kernels) unsafe fn pairs(lo: &[f32], hi: Option<&[f32]>, dst: &mut [u32]) {
        let n = dst.len();
        let round = |v: __m512i| {
            // bits + 0x7fff + (bit 16 of bits), then the top half.
            let odd = _mm512_and_si512(_mm512_srli_epi32(v, 16), _mm512_set1_epi32(1));
            let r = _mm512_add_epi32(_mm512_add_epi32(v, _mm512_set1_epi32(0x7fff)), odd);
            _mm512_srli_epi32(r, 16)
        };
        let mut j = 0;
        while j + 16 <= n {
            // SAFETY: j + 16 <= n, the slices' common length.
            unsafe {
                let l = round(_mm512_castps_si512(_mm512_loadu_ps(lo.as_ptr().add(j))));
                let h = match hi {
                    Some(hi) => round(_mm512_castps_si512(_mm512_loadu_ps(hi.as_ptr().add(j)))),
                    None => _mm512_setzero_si512(),
                };
                let v = _mm512_or_si512(l, _mm512_slli_epi32(h, 16));
                _mm512_storeu_si512(dst.as_mut_ptr().add(j).cast(), v);
            }
            j += 16;
        }
        for k in j..n {
            dst[k] = super::bf16_pair(lo[k], hi.map_or(0.0, |h| h[k]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kernel this CPU runs (the AVX-512 ones only where it has AVX-512).
    fn kernels_here() -> Vec<Kernel> {
        match Kernel::best() {
            Kernel::Gemm => vec![Kernel::Gemm],
            Kernel::Winograd(Isa::Avx2) => vec![Kernel::Gemm, Kernel::Winograd(Isa::Avx2)],
            _ => vec![
                Kernel::Gemm,
                Kernel::Avx512,
                Kernel::Winograd(Isa::Avx512),
                Kernel::Winograd(Isa::Avx2),
            ],
        }
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    }

    /// Both kernels equal Candle's conv2d of the concatenated inputs followed by the bias
    /// and activation, for channel counts around the AVX-512 kernel's blocks and sizes
    /// whose last pixel block is partial.
    #[test]
    fn matches_candle_conv_bias_and_activation() {
        let dev = Device::Cpu;
        let kernels = kernels_here();
        for (c1, c2, cout, h, w, k, p) in [
            (3, 0, 5, 7, 9, 3, 1),
            (40, 30, 27, 20, 33, 3, 1),
            (2, 1, 3, 6, 5, 1, 0),
            (4, 4, 13, 5, 4, 5, 2),
            // Winograd's shapes (whole vectors of channels), odd sides included.
            (32, 16, 48, 9, 13, 3, 1),
            (16, 0, 16, 8, 2, 3, 1),
        ] {
            let mut parts = vec![Tensor::randn(0f32, 1.0, (2, c1, h, w), &dev).unwrap()];
            if c2 > 0 {
                parts.push(Tensor::randn(0f32, 1.0, (2, c2, h, w), &dev).unwrap());
            }
            let x = Tensor::cat(&parts, 1).unwrap();
            let wt = Tensor::randn(0f32, 0.3, (cout, c1 + c2, k, k), &dev).unwrap();
            let b = Tensor::randn(0f32, 1.0, cout, &dev).unwrap();
            let slopes: Vec<f32> = (0..cout).map(|c| 0.1 * c as f32).collect();
            let lin = x
                .conv2d(&wt, p, 1, 1, 1)
                .unwrap()
                .broadcast_add(&b.reshape((1, cout, 1, 1)).unwrap())
                .unwrap();
            let a = Tensor::new(slopes.as_slice(), &dev)
                .unwrap()
                .reshape((1, cout, 1, 1))
                .unwrap();
            let want = (lin.relu().unwrap()
                + lin.minimum(0f32).unwrap().broadcast_mul(&a).unwrap())
            .unwrap();
            let refs: Vec<&Tensor> = parts.iter().collect();
            // Sums of cin·k² products taken in other orders: rounding grows with their
            // count and size (a wrong tap or channel would be off by whole units).
            let scale = lin.abs().unwrap().flatten_all().unwrap().max(0).unwrap();
            let tol =
                2e-6 * scale.to_scalar::<f32>().unwrap() * (((c1 + c2) * k * k) as f32).sqrt();
            let tol = tol.max(1e-5);
            for &kernel in &kernels {
                let conv = PackedConv::for_kernel(kernel, &wt, &b, p, Some(&slopes)).unwrap();
                let plain = PackedConv::for_kernel(kernel, &wt, &b, p, None).unwrap();
                let got = conv.forward(&refs).unwrap();
                let d = max_diff(&got, &want);
                assert!(
                    d < tol,
                    "{kernel:?} {c1}+{c2}→{cout} {w}x{h} k{k}: max difference {d} (tolerance {tol})"
                );
                let d = max_diff(&plain.forward(&refs).unwrap(), &lin);
                assert!(
                    d < tol,
                    "{kernel:?} without activation: max difference {d} (tolerance {tol})"
                );
            }
        }
    }

    /// The bf16 kernel computes exactly the f32 convolution of bf16-rounded inputs and
    /// weights (products of two bf16 are exact in f32; only the sums' order differs), for
    /// odd and even channel counts, both output blocks and fused upsampling.
    #[test]
    fn the_bf16_kernel_is_the_convolution_of_rounded_values() {
        if !Precision::bf16_available() {
            eprintln!("no AVX512_BF16 here: the bf16 kernel is not run");
            return;
        }
        let dev = Device::Cpu;
        let round = |t: &Tensor| {
            let v: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
            let v: Vec<f32> = v
                .iter()
                .map(|&x| half::bf16::from_f32(x).to_f32())
                .collect();
            Tensor::from_vec(v, t.dims(), &dev).unwrap()
        };
        for (c1, c2, cout, h, w, k, p, up) in [
            (3, 0, 5, 7, 9, 3, 1, 1),
            (40, 31, 27, 20, 33, 3, 1, 1),
            (64, 32, 32, 12, 10, 3, 1, 1),
            (16, 0, 16, 5, 7, 3, 1, 2),
            (4, 4, 13, 5, 4, 5, 2, 1),
        ] {
            let mut parts = vec![Tensor::randn(0f32, 1.0, (1, c1, h, w), &dev).unwrap()];
            if c2 > 0 {
                parts.push(Tensor::randn(0f32, 1.0, (1, c2, h, w), &dev).unwrap());
            }
            let wt = Tensor::randn(0f32, 0.3, (cout, c1 + c2, k, k), &dev).unwrap();
            let b = Tensor::randn(0f32, 1.0, cout, &dev).unwrap();
            let x = Tensor::cat(&parts.iter().map(round).collect::<Vec<_>>(), 1).unwrap();
            let x = x.upsample_nearest2d(h * up, w * up).unwrap();
            let want = x
                .conv2d(&round(&wt), p, 1, 1, 1)
                .unwrap()
                .broadcast_add(&b.reshape((1, cout, 1, 1)).unwrap())
                .unwrap();
            let conv = PackedConv::with_precision(Precision::Bf16, &wt, &b, p, None).unwrap();
            assert_eq!(conv.kernel, Kernel::Bf16);
            let refs: Vec<&Tensor> = parts.iter().collect();
            let got = conv.forward_upsampled(&refs, up).unwrap();
            let scale = want.abs().unwrap().flatten_all().unwrap().max(0).unwrap();
            let tol =
                2e-6 * scale.to_scalar::<f32>().unwrap() * (((c1 + c2) * k * k) as f32).sqrt();
            let d = max_diff(&got, &want);
            assert!(
                d < tol.max(1e-5),
                "bf16 {c1}+{c2}→{cout} {w}x{h} k{k} up{up}: max difference {d} (tolerance {tol})"
            );
        }
    }

    /// Upsampling fused into the copy equals Candle's nearest upsampling first.
    #[test]
    fn a_fused_nearest_upsampling_matches_upsampling_first() {
        let dev = Device::Cpu;
        let kernels = kernels_here();
        let x = Tensor::randn(0f32, 1.0, (1, 16, 5, 7), &dev).unwrap();
        let wt = Tensor::randn(0f32, 0.2, (32, 16, 3, 3), &dev).unwrap();
        let b = Tensor::randn(0f32, 1.0, 32, &dev).unwrap();
        let want = x
            .upsample_nearest2d(10, 14)
            .unwrap()
            .conv2d(&wt, 1, 1, 1, 1)
            .unwrap()
            .broadcast_add(&b.reshape((1, 32, 1, 1)).unwrap())
            .unwrap();
        for kernel in kernels {
            let conv = PackedConv::for_kernel(kernel, &wt, &b, 1, None).unwrap();
            let got = conv.forward_upsampled(&[&x], 2).unwrap();
            assert_eq!(got.dims(), &[1, 32, 10, 14]);
            let d = max_diff(&got, &want);
            assert!(d < 1e-4, "{kernel:?}: max difference {d}");
        }
    }
}
