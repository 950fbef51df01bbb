//! The upscaler's network as a small graph of layers, whatever file it came from: ncnn's
//! `.param` + `.bin` are read into it layer by layer, PyTorch and safetensors weights are
//! laid out into it by the architecture their keys name. One interpreter runs them all.

use std::sync::Arc;

use anyhow::{bail, ensure, Context, Result};
use candle_core::{DType, Device, Tensor};

use crate::gan::kernels;

/// The largest resize factor of one layer, and of a whole network.
const MAX_FACTOR: usize = 16;

/// One layer. Every layer makes one value from the values it names.
#[derive(Debug, Clone)]
pub(crate) enum Op {
    /// `act(W * x + b)`, stride 1, `k`×`k` kernel, symmetric zero padding; `slopes` is the
    /// negative-side slope per output channel (a fused LeakyReLU or PReLU), if any.
    /// Reads the channels of all its inputs, in order (a concatenation fused in).
    Conv {
        weight: Tensor,
        bias: Tensor,
        padding: usize,
        slopes: Option<Arc<[f32]>>,
        /// The weights packed for easel's CPU kernels (when the graph runs on them).
        packed: Option<Arc<kernels::PackedConv>>,
        /// Nearest-neighbour upsampling of the inputs first (1: none; fused in).
        upsample: usize,
    },
    /// Parametric ReLU, one slope per channel.
    Prelu(Arc<[f32]>),
    /// Channels of every input, in order.
    Concat,
    /// `Σ coeffs[i] · input[i]`.
    Sum(Vec<f32>),
    /// Nearest-neighbour upsampling by a whole factor.
    Nearest(usize),
    /// Bicubic resampling (a = −0.75, half-pixel centres, edges clamped) by a factor.
    Bicubic(f32),
    /// `[C·r², H, W] → [C, H·r, W·r]` (PyTorch's pixel_shuffle).
    PixelShuffle(usize),
    /// `[C, H·r, W·r] → [C·r², H, W]` (PyTorch's pixel_unshuffle).
    PixelUnshuffle(usize),
}

#[derive(Debug, Clone)]
pub(crate) struct Node {
    /// The layer's name in the file, for errors.
    pub name: String,
    pub op: Op,
    /// Values read: 0 is the input picture, `i + 1` is node `i`'s output.
    pub inputs: Vec<usize>,
}

/// A checked network: every shape fits, and the output is `scale`× the input.
#[derive(Debug, Clone)]
pub struct Graph {
    nodes: Vec<Node>,
    /// The value that is the picture out.
    output: usize,
    /// Input channels (3: RGB).
    in_channels: usize,
    /// Whole-number upscaling factor from input to output.
    scale: usize,
    /// Parameters, for the summary.
    params: usize,
    /// Input sides must be multiples of this (the product of pixel-unshuffle factors).
    multiple: usize,
    /// For each value, the last node that reads it (values are freed after it).
    last_use: Vec<usize>,
}

/// What a value looks like during the shape check: channels and size relative to the input.
#[derive(Debug, Clone, Copy)]
struct Meta {
    channels: usize,
    scale: f64,
    /// Smallest input side (pixels) for which this value is at least one pixel.
    min_side: usize,
}

impl Graph {
    /// Checks the shapes of `nodes` (whose inputs must come before them) for an input of
    /// `in_channels`, and finds the overall scale. `what` names the file for errors.
    pub(crate) fn new(
        nodes: Vec<Node>,
        output: usize,
        in_channels: usize,
        what: &str,
    ) -> Result<Self> {
        let mut metas = vec![Meta {
            channels: in_channels,
            scale: 1.0,
            min_side: 1,
        }];
        let mut params = 0;
        let mut multiple = 1;
        for (i, node) in nodes.iter().enumerate() {
            let at = || format!("{what}: layer {} ({})", node.name, i + 1);
            ensure!(!node.inputs.is_empty(), "{}: has no input", at());
            for &v in &node.inputs {
                ensure!(v <= i, "{}: reads a value made later", at());
            }
            let ins: Vec<Meta> = node.inputs.iter().map(|&v| metas[v]).collect();
            let first = ins[0];
            let one_input = || -> Result<()> {
                ensure!(
                    ins.len() == 1,
                    "{}: {} inputs (one expected)",
                    at(),
                    ins.len()
                );
                Ok(())
            };
            // No upscaler resizes by more than this in one layer (or overall).
            let factor_ok = |r: f64| r > 0.0 && r <= MAX_FACTOR as f64;
            let same_size = || -> Result<()> {
                for m in &ins[1..] {
                    ensure!(
                        (m.scale - first.scale).abs() < 1e-9,
                        "{}: joins values of different sizes ({}x and {}x the input)",
                        at(),
                        first.scale,
                        m.scale
                    );
                }
                Ok(())
            };
            let out = match &node.op {
                Op::Conv {
                    weight,
                    bias,
                    padding,
                    slopes,
                    upsample,
                    ..
                } => {
                    same_size()?;
                    let channels: usize = ins.iter().map(|m| m.channels).sum();
                    let first = Meta {
                        scale: first.scale * *upsample as f64,
                        ..first
                    };
                    let (cout, cin, kh, kw) = weight.dims4().with_context(at)?;
                    ensure!(
                        kh == kw && kh % 2 == 1 && *padding == kh / 2,
                        "{}: only odd square kernels padded to keep the size are supported (kernel {kh}x{kw}, padding {padding})",
                        at()
                    );
                    ensure!(
                        cin == channels,
                        "{}: the weights expect {cin} input channels, the layer gets {channels}",
                        at()
                    );
                    ensure!(
                        bias.dims1().with_context(at)? == cout,
                        "{}: {cout} filters but a bias of {}",
                        at(),
                        bias.elem_count()
                    );
                    if let Some(s) = slopes {
                        ensure!(
                            s.len() == cout,
                            "{}: {cout} filters but {} slopes",
                            at(),
                            s.len()
                        );
                    }
                    params += weight.elem_count() + cout;
                    Meta {
                        channels: cout,
                        ..first
                    }
                }
                Op::Prelu(slopes) => {
                    one_input()?;
                    ensure!(
                        slopes.len() == first.channels || slopes.len() == 1,
                        "{}: {} slopes for {} channels",
                        at(),
                        slopes.len(),
                        first.channels
                    );
                    params += slopes.len();
                    first
                }
                Op::Concat => {
                    same_size()?;
                    Meta {
                        channels: ins.iter().map(|m| m.channels).sum(),
                        ..first
                    }
                }
                Op::Sum(coeffs) => {
                    same_size()?;
                    ensure!(
                        coeffs.len() == ins.len(),
                        "{}: {} coefficients for {} inputs",
                        at(),
                        coeffs.len(),
                        ins.len()
                    );
                    for m in &ins[1..] {
                        ensure!(
                            m.channels == first.channels,
                            "{}: adds {} channels to {}",
                            at(),
                            m.channels,
                            first.channels
                        );
                    }
                    first
                }
                Op::Nearest(r) => {
                    one_input()?;
                    ensure!(
                        *r >= 1 && factor_ok(*r as f64),
                        "{}: upsampling by {r}",
                        at()
                    );
                    Meta {
                        scale: first.scale * *r as f64,
                        ..first
                    }
                }
                Op::Bicubic(s) => {
                    one_input()?;
                    ensure!(
                        s.is_finite() && factor_ok(f64::from(*s)),
                        "{}: resampling by {s}",
                        at()
                    );
                    let scale = first.scale * f64::from(*s);
                    // Exact for every picture size only where the result is a whole
                    // multiple of the input (x4 then x0.75 = x3).
                    ensure!(
                        (scale - scale.round()).abs() < 1e-6 && scale.round() >= 1.0,
                        "{}: resampling to {scale}x the input; only whole factors are supported",
                        at()
                    );
                    let min_side = ((1.0 / scale).ceil() as usize).max(first.min_side);
                    Meta {
                        scale,
                        min_side,
                        ..first
                    }
                }
                Op::PixelShuffle(r) => {
                    one_input()?;
                    ensure!(
                        *r >= 1 && *r <= MAX_FACTOR && first.channels.is_multiple_of(r * r),
                        "{}: pixel shuffle by {r} of {} channels",
                        at(),
                        first.channels
                    );
                    Meta {
                        channels: first.channels / (r * r),
                        scale: first.scale * *r as f64,
                        ..first
                    }
                }
                Op::PixelUnshuffle(r) => {
                    one_input()?;
                    ensure!(
                        *r >= 1 && *r <= MAX_FACTOR,
                        "{}: pixel unshuffle by {r}",
                        at()
                    );
                    multiple *= r;
                    Meta {
                        channels: first.channels * r * r,
                        scale: first.scale / *r as f64,
                        min_side: first.min_side.max(*r),
                    }
                }
            };
            metas.push(out);
        }
        ensure!(
            output < metas.len(),
            "{what}: the output value does not exist"
        );
        let out = metas[output];
        ensure!(
            out.channels == in_channels,
            "{what}: the network makes {} channels from {in_channels}; an upscaler keeps them",
            out.channels
        );
        let scale = out.scale.round();
        ensure!(
            (out.scale - scale).abs() < 1e-6 && scale >= 1.0 && scale <= MAX_FACTOR as f64,
            "{what}: the network scales by {}, not a whole factor",
            out.scale
        );
        let mut last_use = vec![0; metas.len()];
        for (i, node) in nodes.iter().enumerate() {
            for &v in &node.inputs {
                last_use[v] = i;
            }
        }
        last_use[output] = usize::MAX;
        Ok(Graph {
            nodes,
            output,
            in_channels,
            scale: scale as usize,
            params,
            multiple,
            last_use,
        })
    }

    pub fn scale(&self) -> usize {
        self.scale
    }

    pub fn parameters(&self) -> usize {
        self.params
    }

    pub fn in_channels(&self) -> usize {
        self.in_channels
    }

    /// Input sides must be multiples of this.
    pub fn multiple(&self) -> usize {
        self.multiple
    }

    /// Moves the weights to `device` (packing them for easel's kernels on the CPU).
    pub(crate) fn to_device(&self, device: &Device, precision: kernels::Precision) -> Result<Self> {
        let mut g = self.clone();
        for node in &mut g.nodes {
            if let Op::Conv {
                weight,
                bias,
                padding,
                slopes,
                packed,
                ..
            } = &mut node.op
            {
                *weight = weight.to_device(device)?;
                *bias = bias.to_device(device)?;
                if !kernels::enabled(device) {
                    // Candle's ops run in the weights' dtype (activations follow it).
                    *weight = weight.to_dtype(self.dtype_on(device, precision))?;
                    *bias = bias.to_dtype(self.dtype_on(device, precision))?;
                }
                *packed = if kernels::enabled(device) {
                    Some(Arc::new(kernels::PackedConv::with_precision(
                        precision,
                        weight,
                        bias,
                        *padding,
                        slopes.as_deref(),
                    )?))
                } else {
                    None
                };
            }
        }
        Ok(g)
    }

    /// The dtype activations have on `device`: bf16 for [`kernels::Precision::Bf16`] on a
    /// GPU (easel's CPU kernels take f32 in and out).
    pub(crate) fn dtype_on(&self, device: &Device, precision: kernels::Precision) -> DType {
        match precision {
            kernels::Precision::Bf16 if !device.is_cpu() => DType::BF16,
            _ => DType::F32,
        }
    }

    /// Runs the network on `x` (`[1, C, H, W]`, values in [0, 1]).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        // Where the CPU kernels prefer channels-last values (Winograd), the whole network
        // runs on them: one transpose in and one out instead of two per convolution.
        let channels_last = self
            .nodes
            .iter()
            .any(|n| matches!(&n.op, Op::Conv { packed: Some(p), .. } if p.channels_last()));
        let layout = if channels_last {
            Layout::ChannelsLast
        } else {
            Layout::ChannelsFirst
        };
        let mut values: Vec<Option<Tensor>> = vec![None; self.nodes.len() + 1];
        values[0] = Some(layout.of_nchw(x)?);
        for (i, node) in self.nodes.iter().enumerate() {
            let ins: Vec<&Tensor> = node
                .inputs
                .iter()
                .map(|&v| {
                    values[v]
                        .as_ref()
                        .expect("a value is kept until its last use")
                })
                .collect();
            let y = run(&node.op, &ins, layout).with_context(|| format!("layer {}", node.name))?;
            values[i + 1] = Some(y);
            for &v in &node.inputs {
                if self.last_use[v] == i {
                    values[v] = None;
                }
            }
        }
        let y = values[self.output].take().expect("the output is kept");
        Ok(layout.to_nchw(&y)?)
    }
}

/// How the values between layers are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// `[N, C, H, W]`, as the files and Candle's convolutions have them.
    ChannelsFirst,
    /// `[N, H, W, C]`, as the Winograd kernel reads and writes them.
    ChannelsLast,
}

impl Layout {
    fn of_nchw(self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Layout::ChannelsFirst => Ok(x.clone()),
            Layout::ChannelsLast => x.permute((0, 2, 3, 1))?.contiguous(),
        }
    }

    fn to_nchw(self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Layout::ChannelsFirst => Ok(x.clone()),
            Layout::ChannelsLast => x.permute((0, 3, 1, 2))?.contiguous(),
        }
    }
}

/// A layer of the channels-last network: convolutions, sums and the fused layers run on
/// the layout as it is, the rest through the channels-first code.
fn run_channels_last(op: &Op, ins: &[&Tensor]) -> Result<Tensor> {
    let x = ins[0];
    Ok(match op {
        Op::Conv {
            packed: Some(conv),
            upsample,
            ..
        } => conv.forward_channels_last(ins, *upsample)?,
        Op::Sum(coeffs) if x.device().is_cpu() => cpu::sum(ins, coeffs)?,
        Op::Prelu(s) => prelu(x, s, 3)?,
        Op::Concat => Tensor::cat(ins, 3)?,
        Op::PixelShuffle(r) => {
            let (n, h, w, c) = x.dims4()?;
            let c2 = c / (r * r);
            x.reshape((n, h, w, c2, *r, *r))?
                .permute((0, 1, 4, 2, 5, 3))?
                .reshape((n, h * r, w * r, c2))?
        }
        _ => {
            let nchw: Vec<Tensor> = ins
                .iter()
                .map(|t| Layout::ChannelsLast.to_nchw(t))
                .collect::<candle_core::Result<_>>()?;
            let y = run(op, &nchw.iter().collect::<Vec<_>>(), Layout::ChannelsFirst)?;
            Layout::ChannelsLast.of_nchw(&y)?
        }
    })
}

fn run(op: &Op, ins: &[&Tensor], layout: Layout) -> Result<Tensor> {
    if layout == Layout::ChannelsLast {
        return run_channels_last(op, ins);
    }
    let x = ins[0];
    Ok(match op {
        Op::Conv {
            weight,
            bias,
            padding,
            slopes,
            packed,
            upsample,
        } => {
            if let Some(conv) = packed {
                conv.forward_upsampled(ins, *upsample)?
            } else {
                let cout = bias.elem_count();
                let cat;
                let x = if ins.len() > 1 {
                    cat = Tensor::cat(ins, 1)?;
                    &cat
                } else {
                    x
                };
                let big;
                let x = if *upsample > 1 {
                    let (_, _, h, w) = x.dims4()?;
                    big = x.upsample_nearest2d(h * upsample, w * upsample)?;
                    &big
                } else {
                    x
                };
                let y = x
                    .conv2d(weight, *padding, 1, 1, 1)?
                    .broadcast_add(&bias.reshape((1, cout, 1, 1))?)?;
                match slopes {
                    Some(s) => prelu(&y, s, 1)?,
                    None => y,
                }
            }
        }
        Op::Prelu(s) => prelu(x, s, 1)?,
        Op::Concat => Tensor::cat(ins, 1)?,
        Op::Sum(coeffs) if x.device().is_cpu() => cpu::sum(ins, coeffs)?,
        Op::Nearest(r) if x.device().is_cpu() => cpu::nearest(x, *r)?,
        Op::Sum(coeffs) => {
            let mut acc = scaled(x, coeffs[0])?;
            for (t, &c) in ins[1..].iter().zip(&coeffs[1..]) {
                acc = (acc + scaled(t, c)?)?;
            }
            acc
        }
        Op::Nearest(r) => {
            let (_, _, h, w) = x.dims4()?;
            x.upsample_nearest2d(h * r, w * r)?
        }
        Op::Bicubic(s) => super::resize::bicubic_tensor(x, *s)?,
        Op::PixelShuffle(r) => {
            let (n, c, h, w) = x.dims4()?;
            let c2 = c / (r * r);
            x.reshape((n, c2, *r, *r, h, w))?
                .permute((0, 1, 4, 2, 5, 3))?
                .reshape((n, c2, h * r, w * r))?
        }
        Op::PixelUnshuffle(r) => {
            let (n, c, h, w) = x.dims4()?;
            if h % r != 0 || w % r != 0 {
                bail!("pixel unshuffle by {r} of a {w}x{h} picture");
            }
            x.reshape((n, c, h / r, *r, w / r, *r))?
                .permute((0, 1, 3, 5, 2, 4))?
                .reshape((n, c * r * r, h / r, w / r))?
        }
    })
}

fn scaled(t: &Tensor, c: f32) -> candle_core::Result<Tensor> {
    if c == 1.0 {
        Ok(t.clone())
    } else {
        t.affine(f64::from(c), 0.0)
    }
}

/// PReLU with the channels along dimension `dim` (1 or 3) of a 4-dimensional `x`.
fn prelu(x: &Tensor, slopes: &[f32], dim: usize) -> candle_core::Result<Tensor> {
    let c = x.dim(dim)?;
    let mut shape = [1usize; 4];
    shape[dim] = c;
    let a = if slopes.len() == 1 {
        Tensor::full(slopes[0], c, x.device())?
    } else {
        Tensor::new(slopes, x.device())?
    }
    .reshape(shape.as_slice())?
    .to_dtype(x.dtype())?;
    x.relu()? + x.minimum(0f32)?.broadcast_mul(&a)?
}

/// Fuses layers into the convolutions around them: a concatenation read only by a
/// convolution becomes that convolution's inputs (the CPU kernel copies them into its
/// padded buffer side by side anyway), and a PReLU that alone reads a convolution's output
/// becomes its slopes (applied while the output is in cache).
pub(crate) fn fuse(nodes: Vec<Node>, output: &mut usize) -> Vec<Node> {
    let mut readers = vec![0usize; nodes.len() + 1];
    for n in &nodes {
        for &v in &n.inputs {
            readers[v] += 1;
        }
    }
    readers[*output] += 1;
    // new_id[v]: the value v became (a fused-away concatenation keeps its inputs' list).
    let mut new_id: Vec<usize> = vec![0];
    let mut concat_inputs: Vec<Option<Vec<usize>>> = vec![None];
    // For each value made by a nearest upsampling: its factor and (new) input.
    let mut nearest_of: Vec<Option<(usize, usize)>> = vec![None];
    let mut out: Vec<Node> = Vec::with_capacity(nodes.len());
    for node in nodes {
        let mut inputs: Vec<usize> = node.inputs.iter().map(|&v| new_id[v]).collect();
        if let (Op::Conv { .. }, [src]) = (&node.op, node.inputs.as_slice()) {
            if let Some(list) = concat_inputs.get(*src).and_then(|c| c.clone()) {
                if readers[*src] == 1 {
                    inputs = list;
                }
            }
        }
        // A nearest upsampling read only by this convolution: the convolution upsamples
        // as it copies its input (the upsampled tensor is never made).
        let mut node = node;
        if let (Op::Conv { upsample, .. }, [src]) = (&mut node.op, node.inputs.as_slice()) {
            if let Some((r, from)) = nearest_of.get(*src).copied().flatten() {
                if readers[*src] == 1 && *upsample == 1 {
                    *upsample = r;
                    inputs = vec![from];
                }
            }
        }
        if let (Op::Prelu(s), [src]) = (&node.op, node.inputs.as_slice()) {
            if *src > 0 && readers[*src] == 1 {
                if let Some(prev) = out.get_mut(new_id[*src] - 1) {
                    if let Op::Conv {
                        slopes: slot @ None,
                        bias,
                        ..
                    } = &mut prev.op
                    {
                        let cout = bias.elem_count();
                        *slot = Some(if s.len() == 1 {
                            vec![s[0]; cout].into()
                        } else {
                            s.clone()
                        });
                        new_id.push(new_id[*src]);
                        concat_inputs.push(None);
                        nearest_of.push(None);
                        continue;
                    }
                }
            }
        }
        concat_inputs.push(matches!(node.op, Op::Concat).then(|| inputs.clone()));
        nearest_of.push(match node.op {
            Op::Nearest(r) => Some((r, inputs[0])),
            _ => None,
        });
        out.push(Node { inputs, ..node });
        new_id.push(out.len());
    }
    *output = new_id[*output];
    prune(out, output)
}

/// Drops nodes nothing reads any more (concatenations fused into their convolution),
/// renumbering the values.
fn prune(nodes: Vec<Node>, output: &mut usize) -> Vec<Node> {
    let mut used = vec![false; nodes.len() + 1];
    used[*output] = true;
    for (i, n) in nodes.iter().enumerate().rev() {
        if used[i + 1] {
            for &v in &n.inputs {
                used[v] = true;
            }
        }
    }
    let mut new_id = vec![0usize; nodes.len() + 1];
    let mut out = Vec::with_capacity(nodes.len());
    for (i, n) in nodes.into_iter().enumerate() {
        if used[i + 1] {
            let inputs = n.inputs.iter().map(|&v| new_id[v]).collect();
            out.push(Node { inputs, ..n });
            new_id[i + 1] = out.len();
        }
    }
    *output = new_id[*output];
    out
}

/// The element-wise layers on the CPU in one rayon pass each, without Candle's own
/// thread pool (whose spinning workers, beside rayon's, took a core's share on two cores).
mod cpu {
    use candle_core::{bail, Device, Result, Tensor};
    use rayon::prelude::*;

    use crate::gan::kernels::with_f32;

    /// Values per parallel task.
    const CHUNK: usize = 1 << 14;

    /// `Σ coeffs[i] · ins[i]`.
    pub(super) fn sum(ins: &[&Tensor], coeffs: &[f32]) -> Result<Tensor> {
        let n = ins[0].elem_count();
        let mut out = vec![0f32; n];
        for (k, (t, &c)) in ins.iter().zip(coeffs).enumerate() {
            if t.elem_count() != n {
                bail!("adding tensors of {:?} and {:?}", ins[0].dims(), t.dims());
            }
            with_f32(t, |x| {
                out.par_chunks_mut(CHUNK)
                    .zip(x.par_chunks(CHUNK))
                    .for_each(|(o, x)| {
                        if k == 0 {
                            o.iter_mut().zip(x).for_each(|(o, x)| *o = c * x);
                        } else {
                            o.iter_mut().zip(x).for_each(|(o, x)| *o += c * x);
                        }
                    });
                Ok(())
            })?;
        }
        Tensor::from_vec(out, ins[0].shape(), &Device::Cpu)
    }

    /// Nearest-neighbour upsampling by `r`.
    pub(super) fn nearest(x: &Tensor, r: usize) -> Result<Tensor> {
        let (n, c, h, w) = x.dims4()?;
        let wo = w * r;
        let mut out = vec![0f32; n * c * h * r * wo];
        with_f32(x, |src| {
            out.par_chunks_mut(wo * r)
                .zip(src.par_chunks(w))
                .for_each(|(rows, row)| {
                    let (first, rest) = rows.split_at_mut(wo);
                    for (o, v) in first.chunks_exact_mut(r).zip(row) {
                        o.fill(*v);
                    }
                    for copy in rest.chunks_exact_mut(wo) {
                        copy.copy_from_slice(first);
                    }
                });
            Ok(())
        })?;
        Tensor::from_vec(out, (n, c, h * r, wo), &Device::Cpu)
    }
}
