//! The fused CPU trainer for fits: forward pass, MSE backward pass and Adam for the
//! coordinate MLP, written out by hand.
//!
//! Why it exists: a fit trains a small network (a few layers of width ~32) on a few
//! thousand pixels, full batch, for hundreds of steps. Through Candle's autograd every
//! step is dozens of separate tensor ops on 4096×32 matrices, each allocating its result
//! and making a pass over memory, plus Adam's dozen ops per parameter tensor — overhead
//! dominates, and the fit took several times longer than PyTorch's. Here one chunk of
//! pixels goes forward through every layer, back again, and into its own gradient
//! buffer while it is in cache, with the renderer's register-blocked kernels
//! (feature-major `[feature][pixel]` buffers, see `render.rs`).
//!
//! Deterministic: pixels are cut into fixed chunks of [`CHUNK`] whatever the thread
//! count, every chunk sums in a fixed order into its own gradient buffer, and the
//! buffers are added up in chunk order — the same bits on every run and any number of
//! threads on one machine (the AVX-512, AVX2+FMA and plain kernels round differently).
//!
//! Candle remains the trainer on a GPU (`fit_candle.rs`); both compute the same loss
//! and the same Adam step (Candle's `AdamW` with weight decay 0).

use anyhow::{bail, Result};
use rayon::prelude::*;

use super::blocks::{self, madd};
use super::fastmath;
use super::fit::{psnr, FitReport, FitSpec};
use super::net::{Activation, Dense, Network};
use super::{CppnSpec, OutputMode};

/// Pixels per chunk: the unit of work, of parallelism and of the summation order.
const CHUNK: usize = 256;

/// Register blocking of the kernels, per instruction set (const generic parameters
/// `<FMA, PB, OB, LN, KB, GB>` below): the forward kernel holds `OB` outputs × `PB`
/// pixels in registers, the weight-gradient kernel `KB` inputs × `GB` outputs dot
/// products of `LN` lanes. AVX-512 has twice AVX2's lanes and registers.
macro_rules! with_blocking {
    ($f:ident, plain) => {
        $f::<false, 16, 4, 8, 4, 2>
    };
    ($f:ident, avx2) => {
        $f::<true, 16, 4, 8, 4, 2>
    };
    ($f:ident, avx512) => {
        $f::<true, 32, 8, 16, 4, 4>
    };
}

/// Adam's constants: candle_nn's `ParamsAdamW` defaults (fits set weight decay 0).
const BETA1: f64 = 0.9;
const BETA2: f64 = 0.999;
const EPS: f64 = 1e-8;

/// A fit's training data: the network's inputs and the target for every pixel of the
/// target image (pixel-major), and which pixels are trained on.
#[derive(Debug, Clone)]
pub struct FitData {
    /// `[pixel][input]`: the renderer's coordinates, then the latent z.
    pub inputs: Vec<f32>,
    /// `[pixel][channel]`, in [0, 1].
    pub target: Vec<f32>,
    pub n_in: usize,
    pub channels: usize,
    /// The rows trained on, and (with hold_out) the rest.
    pub train_rows: Vec<u32>,
    pub held_rows: Vec<u32>,
}

impl FitData {
    /// The target resized image as training data, with the renderer's own coordinates
    /// so the fitted network renders the image at any size.
    pub fn new(spec: &CppnSpec, fit: &FitSpec) -> Result<FitData> {
        if !matches!(spec.output, OutputMode::Rgb | OutputMode::Gray) {
            bail!("fitting works with output \"rgb\" or \"gray\"");
        }
        let (tw, th) = fit.target.dimensions();
        let mut probe = spec.clone();
        (probe.width, probe.height) = (tw, th);
        let coords = super::render::input_coordinates(&probe);
        let z = spec.z();
        let n = (tw * th) as usize;
        let n_in = spec.inputs.coordinate_count() + z.len();
        let mut inputs = Vec::with_capacity(n * n_in);
        for c in coords.chunks_exact(spec.inputs.coordinate_count()) {
            inputs.extend_from_slice(c);
            inputs.extend_from_slice(&z);
        }
        let channels = spec.output.outputs();
        let target = fit
            .target
            .pixels()
            .flat_map(|p| {
                let [r, g, b] = p.0.map(|v| v as f32 / 255.0);
                match channels {
                    1 => vec![0.299 * r + 0.587 * g + 0.114 * b],
                    _ => vec![r, g, b],
                }
            })
            .collect();
        let (train_rows, held_rows) = (0..n as u32).partition(|&i| {
            let (px, py) = (i % tw, i / tw);
            !fit.hold_out || (px % 2 == 0 && py % 2 == 0)
        });
        Ok(FitData {
            inputs,
            target,
            n_in,
            channels,
            train_rows,
            held_rows,
        })
    }

    /// Data for the given inputs and targets (pixel-major), every row trained on.
    pub fn from_rows(inputs: Vec<f32>, target: Vec<f32>, n_in: usize, channels: usize) -> Self {
        let n = inputs.len() / n_in;
        assert_eq!(target.len(), n * channels, "one target row per input row");
        FitData {
            inputs,
            target,
            n_in,
            channels,
            train_rows: (0..n as u32).collect(),
            held_rows: Vec::new(),
        }
    }

    pub fn rows(&self) -> usize {
        self.inputs.len() / self.n_in
    }
}

/// Trains `start` on `data` for `steps` Adam steps at learning rate `lr`: full-batch MSE
/// (in [0, 1] units) over the training rows. `progress(step, loss)` is called after
/// every step with the loss before that step's update.
pub fn fit_fused(
    start: &Network,
    data: &FitData,
    steps: usize,
    lr: f64,
    progress: &mut dyn FnMut(usize, f32),
) -> Result<(Network, FitReport)> {
    fit_fused_with(Kernel::best(), start, data, steps, lr, progress)
}

/// [`fit_fused`] with a chosen kernel (tests run every kernel this CPU has, so a machine
/// with fewer features is covered too).
pub fn fit_fused_with(
    kernel: Kernel,
    start: &Network,
    data: &FitData,
    steps: usize,
    lr: f64,
    progress: &mut dyn FnMut(usize, f32),
) -> Result<(Network, FitReport)> {
    let model = Model::new(start, data, kernel)?;
    let mut theta = model.parameters(start);
    let train = chunks(data, &data.train_rows);
    let count = (data.train_rows.len() * data.channels) as f64;
    let mut per_chunk = vec![(vec![0f32; model.n_params], 0f64); train.len()];
    let mut grad = vec![0f32; model.n_params];
    let mut adam = Adam::new(model.n_params, lr);
    let mut losses = Vec::with_capacity(steps);
    for step in 0..steps {
        let loss = model.gradient(&theta, &train, count, &mut per_chunk, &mut grad) as f32;
        if !loss.is_finite() {
            bail!("fitting diverged at step {step} (loss {loss}); lower fit.lr");
        }
        adam.step(&mut theta, &grad);
        losses.push(loss);
        progress(step, loss);
    }
    let mse = |rows: &[u32]| model.mse(&theta, &chunks(data, rows), rows.len());
    let all: Vec<u32> = (0..data.rows() as u32).collect();
    let psnr_held_out = (!data.held_rows.is_empty()).then(|| psnr(mse(&data.held_rows)));
    Ok((
        model.network(start, &theta),
        FitReport {
            losses,
            psnr: psnr(mse(&all)),
            psnr_held_out,
        },
    ))
}

/// The training loss (MSE over every row of `data`, after the output mapping, before
/// clamping) and its gradient, shaped as a network: `w` and `b` of each layer hold
/// d loss / d w and d loss / d b, computed with `kernel`. For tests against Candle's
/// autograd.
pub fn loss_and_gradients(net: &Network, data: &FitData, kernel: Kernel) -> Result<(f32, Network)> {
    let model = Model::new(net, data, kernel)?;
    let theta = model.parameters(net);
    let rows: Vec<u32> = (0..data.rows() as u32).collect();
    let train = chunks(data, &rows);
    let count = (rows.len() * data.channels) as f64;
    let mut per_chunk = vec![(vec![0f32; model.n_params], 0f64); train.len()];
    let mut grad = vec![0f32; model.n_params];
    let loss = model.gradient(&theta, &train, count, &mut per_chunk, &mut grad);
    Ok((loss as f32, model.network(net, &grad)))
}

/// Where one layer's weights live in the flat parameter vector.
#[derive(Debug, Clone, Copy)]
struct Layer {
    inputs: usize,
    outputs: usize,
    activation: Activation,
    /// Offsets of `w` (`[input][output]`) and `b`.
    w: usize,
    b: usize,
}

struct Model {
    kernel: Kernel,
    layers: Vec<Layer>,
    n_params: usize,
    max_width: usize,
    /// Output values are mapped from [−1, 1] to [0, 1] (as the renderer does) by
    /// `(v + 1) / 2`, so training happens in colour units.
    half_range: bool,
}

impl Model {
    fn new(net: &Network, data: &FitData, kernel: Kernel) -> Result<Model> {
        if !Kernel::available().contains(&kernel) {
            bail!("this CPU cannot run the {kernel:?} kernel");
        }
        if net.inputs() != data.n_in || net.outputs() != data.channels {
            bail!(
                "network of {} inputs and {} outputs for data of {} and {}",
                net.inputs(),
                net.outputs(),
                data.n_in,
                data.channels
            );
        }
        let mut offset = 0;
        let mut layers = Vec::with_capacity(net.layers.len());
        for l in &net.layers {
            if l.activation == Activation::Sign {
                bail!("sign has no gradient, so a network using it cannot be fitted; use tanh instead");
            }
            layers.push(Layer {
                inputs: l.inputs,
                outputs: l.outputs,
                activation: l.activation,
                w: offset,
                b: offset + l.inputs * l.outputs,
            });
            offset += (l.inputs + 1) * l.outputs;
        }
        Ok(Model {
            kernel,
            layers,
            n_params: offset,
            max_width: net
                .layers
                .iter()
                .map(|l| l.inputs.max(l.outputs))
                .max()
                .unwrap_or(1),
            half_range: net
                .layers
                .last()
                .is_some_and(|l| l.activation.ranges_over_minus_one_to_one()),
        })
    }

    fn parameters(&self, net: &Network) -> Vec<f32> {
        net.layers
            .iter()
            .flat_map(|l| l.w.iter().chain(&l.b).copied())
            .collect()
    }

    /// `theta` as a network of `like`'s shape.
    fn network(&self, like: &Network, theta: &[f32]) -> Network {
        Network {
            layers: like
                .layers
                .iter()
                .zip(&self.layers)
                .map(|(l, at)| Dense {
                    w: theta[at.w..at.b].to_vec(),
                    b: theta[at.b..at.b + at.outputs].to_vec(),
                    ..l.clone()
                })
                .collect(),
        }
    }

    /// Each layer's weights transposed (`[output][input]`), for the backward pass.
    fn transposed(&self, theta: &[f32]) -> Vec<Vec<f32>> {
        self.layers
            .iter()
            .map(|l| {
                let w = &theta[l.w..l.b];
                let mut t = vec![0f32; w.len()];
                for k in 0..l.inputs {
                    for o in 0..l.outputs {
                        t[o * l.inputs + k] = w[k * l.outputs + o];
                    }
                }
                t
            })
            .collect()
    }

    /// The loss over `chunks` (squared error summed, over `count`) and its gradient into
    /// `grad`. Chunks run in parallel, each into its own buffer in `per_chunk`; the
    /// buffers are then summed in chunk order, so the result does not depend on threads.
    fn gradient(
        &self,
        theta: &[f32],
        chunks: &[Chunk],
        count: f64,
        per_chunk: &mut [(Vec<f32>, f64)],
        grad: &mut [f32],
    ) -> f64 {
        let wt = self.transposed(theta);
        // d loss / d output = 2 (output − target) / count, times the mapping's slope.
        let scale = (2.0 / count * if self.half_range { 0.5 } else { 1.0 }) as f32;
        chunks
            .par_iter()
            .zip(per_chunk.par_iter_mut())
            .for_each_init(
                || Scratch::new(self),
                |scratch, (chunk, (g, sq))| {
                    g.fill(0.0);
                    *sq = train_chunk(self, theta, &wt, chunk, scratch, g, scale);
                },
            );
        grad.fill(0.0);
        let mut total = 0f64;
        for (g, sq) in per_chunk.iter() {
            for (a, b) in grad.iter_mut().zip(g) {
                *a += b;
            }
            total += sq;
        }
        total / count
    }

    /// Mean squared error of the clamped outputs against the targets over `rows` rows.
    fn mse(&self, theta: &[f32], chunks: &[Chunk], rows: usize) -> f64 {
        let sums: Vec<f64> = chunks
            .par_iter()
            .map_init(
                || Scratch::new(self),
                |scratch, chunk| eval_chunk(self, theta, chunk, scratch),
            )
            .collect();
        let channels = self.layers.last().map_or(1, |l| l.outputs);
        sums.iter().sum::<f64>() / (rows * channels).max(1) as f64
    }
}

/// Up to [`CHUNK`] pixels, feature-major; padding pixels (past `len`) are zeros and
/// carry no loss.
struct Chunk {
    /// `[input][pixel]`.
    x: Vec<f32>,
    /// `[channel][pixel]`.
    y: Vec<f32>,
    len: usize,
}

fn chunks(data: &FitData, rows: &[u32]) -> Vec<Chunk> {
    let (n_in, ch) = (data.n_in, data.channels);
    rows.chunks(CHUNK)
        .map(|rows| {
            let mut x = vec![0f32; n_in * CHUNK];
            let mut y = vec![0f32; ch * CHUNK];
            for (p, &r) in rows.iter().enumerate() {
                let r = r as usize;
                for k in 0..n_in {
                    x[k * CHUNK + p] = data.inputs[r * n_in + k];
                }
                for c in 0..ch {
                    y[c * CHUNK + p] = data.target[r * ch + c];
                }
            }
            Chunk {
                x,
                y,
                len: rows.len(),
            }
        })
        .collect()
}

/// Per-thread working memory: each layer's outputs and activation slopes, and two
/// gradient buffers, all `[feature][pixel]`.
struct Scratch {
    h: Vec<Vec<f32>>,
    slope: Vec<Vec<f32>>,
    g: Vec<f32>,
    g2: Vec<f32>,
}

impl Scratch {
    fn new(model: &Model) -> Self {
        let per_layer = || {
            model
                .layers
                .iter()
                .map(|l| vec![0f32; l.outputs * CHUNK])
                .collect()
        };
        Scratch {
            h: per_layer(),
            slope: per_layer(),
            g: vec![0f32; model.max_width * CHUNK],
            g2: vec![0f32; model.max_width * CHUNK],
        }
    }
}

/// The kernels this CPU can run, best first: AVX-512, AVX2+FMA, plain. They round
/// differently, so each is deterministic on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    Plain,
    Avx2,
    Avx512,
}

impl Kernel {
    pub fn available() -> Vec<Kernel> {
        let mut all = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                all.push(Kernel::Avx512);
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                all.push(Kernel::Avx2);
            }
        }
        all.push(Kernel::Plain);
        all
    }

    /// The best kernel this CPU runs, unless `EASEL_FIT_KERNEL` (avx512, avx2 or plain)
    /// names another it can run: to check what a machine with fewer features computes.
    pub fn best() -> Kernel {
        static BEST: std::sync::OnceLock<Kernel> = std::sync::OnceLock::new();
        *BEST.get_or_init(|| {
            let available = Kernel::available();
            let wanted = std::env::var("EASEL_FIT_KERNEL").ok();
            available
                .iter()
                .copied()
                .find(|k| wanted.as_deref() == Some(k.name()))
                .unwrap_or(available[0])
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Kernel::Plain => "plain",
            Kernel::Avx2 => "avx2",
            Kernel::Avx512 => "avx512",
        }
    }
}

/// Forward and backward pass of one chunk: adds its gradient to `grad` and returns its
/// squared error (unclamped, as trained).
fn train_chunk(
    model: &Model,
    theta: &[f32],
    wt: &[Vec<f32>],
    chunk: &Chunk,
    scratch: &mut Scratch,
    grad: &mut [f32],
    scale: f32,
) -> f64 {
    match model.kernel {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: Model::new checked that the CPU has the function's features.
        Kernel::Avx512 => unsafe {
            train_chunk_avx512(model, theta, wt, chunk, scratch, grad, scale)
        },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Kernel::Avx2 => unsafe { train_chunk_avx2(model, theta, wt, chunk, scratch, grad, scale) },
        _ => {
            let kernel = with_blocking!(train_chunk_generic, plain);
            kernel(model, theta, wt, chunk, scratch, grad, scale)
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn train_chunk_avx2(
    model: &Model,
    theta: &[f32],
    wt: &[Vec<f32>],
    chunk: &Chunk,
    scratch: &mut Scratch,
    grad: &mut [f32],
    scale: f32,
) -> f64 {
    let kernel = with_blocking!(train_chunk_generic, avx2);
    kernel(model, theta, wt, chunk, scratch, grad, scale)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn train_chunk_avx512(
    model: &Model,
    theta: &[f32],
    wt: &[Vec<f32>],
    chunk: &Chunk,
    scratch: &mut Scratch,
    grad: &mut [f32],
    scale: f32,
) -> f64 {
    let kernel = with_blocking!(train_chunk_generic, avx512);
    kernel(model, theta, wt, chunk, scratch, grad, scale)
}

/// Squared error of one chunk's clamped outputs (for the final PSNR).
fn eval_chunk(model: &Model, theta: &[f32], chunk: &Chunk, scratch: &mut Scratch) -> f64 {
    match model.kernel {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: Model::new checked that the CPU has the function's features.
        Kernel::Avx512 => unsafe { eval_chunk_avx512(model, theta, chunk, scratch) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Kernel::Avx2 => unsafe { eval_chunk_avx2(model, theta, chunk, scratch) },
        _ => {
            let kernel = with_blocking!(eval_chunk_generic, plain);
            kernel(model, theta, chunk, scratch)
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn eval_chunk_avx2(
    model: &Model,
    theta: &[f32],
    chunk: &Chunk,
    scratch: &mut Scratch,
) -> f64 {
    let kernel = with_blocking!(eval_chunk_generic, avx2);
    kernel(model, theta, chunk, scratch)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn eval_chunk_avx512(
    model: &Model,
    theta: &[f32],
    chunk: &Chunk,
    scratch: &mut Scratch,
) -> f64 {
    let kernel = with_blocking!(eval_chunk_generic, avx512);
    kernel(model, theta, chunk, scratch)
}

#[inline(always)]
fn eval_chunk_generic<
    const FMA: bool,
    const PB: usize,
    const OB: usize,
    const LN: usize,
    const KB: usize,
    const GB: usize,
>(
    model: &Model,
    theta: &[f32],
    chunk: &Chunk,
    scratch: &mut Scratch,
) -> f64 {
    forward::<FMA, PB, OB>(model, theta, chunk, scratch, false);
    let out = scratch.h.last().expect("layers");
    let mut sum = 0f64;
    for (c, y) in chunk.y.chunks_exact(CHUNK).enumerate() {
        for p in 0..chunk.len {
            let v = unit(out[c * CHUNK + p], model.half_range);
            let v = if v.is_nan() { 0.0 } else { v.clamp(0.0, 1.0) };
            let e = (v - y[p]) as f64;
            sum += e * e;
        }
    }
    sum
}

#[inline(always)]
fn unit(v: f32, half_range: bool) -> f32 {
    if half_range {
        v * 0.5 + 0.5
    } else {
        v
    }
}

/// Every layer forward, keeping outputs (and with `slopes`, activation derivatives).
#[inline(always)]
fn forward<const FMA: bool, const PB: usize, const OB: usize>(
    model: &Model,
    theta: &[f32],
    chunk: &Chunk,
    scratch: &mut Scratch,
    slopes: bool,
) {
    for (i, l) in model.layers.iter().enumerate() {
        let (done, rest) = scratch.h.split_at_mut(i);
        let input = if i == 0 { &chunk.x } else { &done[i - 1] };
        let out = &mut rest[0];
        matmul::<FMA, PB, OB>(
            &theta[l.w..l.b],
            Some(&theta[l.b..l.b + l.outputs]),
            l.inputs,
            l.outputs,
            input,
            out,
        );
        if slopes {
            activate_with_slope(l.activation, out, &mut scratch.slope[i]);
        } else {
            l.activation.apply(out);
        }
    }
}

#[inline(always)]
fn train_chunk_generic<
    const FMA: bool,
    const PB: usize,
    const OB: usize,
    const LN: usize,
    const KB: usize,
    const GB: usize,
>(
    model: &Model,
    theta: &[f32],
    wt: &[Vec<f32>],
    chunk: &Chunk,
    scratch: &mut Scratch,
    grad: &mut [f32],
    scale: f32,
) -> f64 {
    forward::<FMA, PB, OB>(model, theta, chunk, scratch, true);
    let last = model.layers.len() - 1;
    let out = &scratch.h[last];
    let channels = model.layers[last].outputs;
    // d loss / d output (before the mapping to colour units), zero on padding.
    let mut sq = 0f64;
    for c in 0..channels {
        for p in 0..CHUNK {
            let i = c * CHUNK + p;
            let e = if p < chunk.len {
                unit(out[i], model.half_range) - chunk.y[i]
            } else {
                0.0
            };
            sq += (e * e) as f64;
            scratch.g[i] = scale * e;
        }
    }
    for (i, l) in model.layers.iter().enumerate().rev() {
        let n = l.outputs * CHUNK;
        // Through the activation: g becomes d loss / d pre-activation.
        for (g, s) in scratch.g[..n].iter_mut().zip(&scratch.slope[i][..n]) {
            *g *= s;
        }
        let input = if i == 0 { &chunk.x } else { &scratch.h[i - 1] };
        weight_gradient::<FMA, LN, KB, GB>(
            input,
            &scratch.g[..n],
            l.inputs,
            l.outputs,
            &mut grad[l.w..l.b],
        );
        bias_gradient::<LN>(&scratch.g[..n], &mut grad[l.b..l.b + l.outputs]);
        if i > 0 {
            // d loss / d input = Wᵀ-weighted sum, the forward kernel on the transpose.
            matmul::<FMA, PB, OB>(
                &wt[i],
                None,
                l.outputs,
                l.inputs,
                &scratch.g[..n],
                &mut scratch.g2,
            );
            std::mem::swap(&mut scratch.g, &mut scratch.g2);
        }
    }
    sq
}

/// The activation in place, with its derivative (with respect to its input) in `slope`.
/// Where Candle's derivative picks a side (relu and abs at 0), the same side.
#[inline(always)]
fn activate_with_slope(act: Activation, h: &mut [f32], slope: &mut [f32]) {
    macro_rules! each {
        (|$z:ident| $value:expr, |$v:ident| $slope:expr) => {
            for (h, s) in h.iter_mut().zip(slope.iter_mut()) {
                let $z = *h;
                let $v = $value;
                *h = $v;
                *s = $slope;
            }
        };
    }
    match act {
        Activation::Tanh => each!(|z| fastmath::tanh(z), |v| 1.0 - v * v),
        Activation::Sin => each!(|z| fastmath::sin(z), |_v| fastmath::cos(z)),
        Activation::Cos => each!(|z| fastmath::cos(z), |_v| -fastmath::sin(z)),
        // Candle trains tan as sin / cos.
        Activation::Tan => each!(|z| fastmath::sin(z) / fastmath::cos(z), |v| 1.0 + v * v),
        Activation::Sigmoid => each!(|z| fastmath::sigmoid(z), |v| v * (1.0 - v)),
        Activation::Relu => each!(|z| z.max(0.0), |_v| if z >= 0.0 { 1.0 } else { 0.0 }),
        Activation::Gaussian => each!(|z| fastmath::exp(-z * z), |v| -2.0 * z * v),
        Activation::Abs => each!(|z| z.abs(), |_v| if z >= 0.0 { 1.0 } else { -1.0 }),
        Activation::Softplus => each!(|z| fastmath::softplus(z), |_v| fastmath::sigmoid(z)),
        Activation::Identity => slope.fill(1.0),
        // Refused in Model::new.
        Activation::Sign => unreachable!("sign cannot be trained"),
    }
}

/// `out[o][p] = bias[o] + Σ_k w[k][o] · inp[k][p]` over a chunk, feature-major; `w` is
/// `[ni][no]` row-major.
#[inline(always)]
fn matmul<const FMA: bool, const PB: usize, const OB: usize>(
    w: &[f32],
    bias: Option<&[f32]>,
    ni: usize,
    no: usize,
    inp: &[f32],
    out: &mut [f32],
) {
    let full = no / OB * OB;
    for o in (0..full).step_by(OB) {
        output_block::<FMA, OB, PB>(w, bias, ni, no, inp, out, o);
    }
    for o in full..no {
        output_block::<FMA, 1, PB>(w, bias, ni, no, inp, out, o);
    }
}

/// Outputs `o..o+B` for every pixel of the chunk: the AVX-512 kernel, or the shared
/// portable one.
#[inline(always)]
fn output_block<const FMA: bool, const B: usize, const PB: usize>(
    w: &[f32],
    bias: Option<&[f32]>,
    ni: usize,
    no: usize,
    inp: &[f32],
    out: &mut [f32],
    o: usize,
) {
    #[cfg(target_arch = "x86_64")]
    if PB == avx512::PIXELS {
        // SAFETY: only the AVX-512 blocking has PB == avx512::PIXELS, and it runs only
        // where the CPU has AVX-512F (`train_chunk` and `eval_chunk` check).
        unsafe { avx512::output_block::<B>(w, bias, ni, no, inp, out, o) };
        return;
    }
    blocks::output_block::<FMA, B, PB, CHUNK>(w, bias, ni, no, inp, out, o);
}

/// `gw[k][o] += Σ_p inp[k][p] · dz[o][p]`: one dot product over the chunk's pixels per
/// weight, in blocks of inputs × outputs with 8-lane accumulators.
#[inline(always)]
fn weight_gradient<const FMA: bool, const LN: usize, const KB: usize, const GB: usize>(
    inp: &[f32],
    dz: &[f32],
    ni: usize,
    no: usize,
    gw: &mut [f32],
) {
    let k_full = ni / KB * KB;
    let o_full = no / GB * GB;
    for k in (0..k_full).step_by(KB) {
        for o in (0..o_full).step_by(GB) {
            dot_block::<FMA, LN, KB, GB>(inp, dz, no, k, o, gw);
        }
        for o in o_full..no {
            dot_block::<FMA, LN, KB, 1>(inp, dz, no, k, o, gw);
        }
    }
    for k in k_full..ni {
        for o in (0..o_full).step_by(GB) {
            dot_block::<FMA, LN, 1, GB>(inp, dz, no, k, o, gw);
        }
        for o in o_full..no {
            dot_block::<FMA, LN, 1, 1>(inp, dz, no, k, o, gw);
        }
    }
}

#[inline(always)]
fn dot_block<const FMA: bool, const LN: usize, const KB: usize, const OB: usize>(
    inp: &[f32],
    dz: &[f32],
    no: usize,
    k: usize,
    o: usize,
    gw: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if LN == avx512::LANES {
        // SAFETY: only the AVX-512 blocking has LN == avx512::LANES, and it runs only
        // where the CPU has AVX-512F (`train_chunk` checks).
        unsafe { avx512::dot_block::<KB, OB>(inp, dz, no, k, o, gw) };
        return;
    }
    let mut acc = [[[0f32; LN]; OB]; KB];
    for p in (0..CHUNK).step_by(LN) {
        let x: [[f32; LN]; KB] = std::array::from_fn(|i| {
            inp[(k + i) * CHUNK + p..(k + i) * CHUNK + p + LN]
                .try_into()
                .expect("lanes")
        });
        let y: [[f32; LN]; OB] = std::array::from_fn(|j| {
            dz[(o + j) * CHUNK + p..(o + j) * CHUNK + p + LN]
                .try_into()
                .expect("lanes")
        });
        for i in 0..KB {
            for j in 0..OB {
                for lane in 0..LN {
                    acc[i][j][lane] = madd::<FMA>(x[i][lane], y[j][lane], acc[i][j][lane]);
                }
            }
        }
    }
    for i in 0..KB {
        for j in 0..OB {
            gw[(k + i) * no + o + j] += lane_sum(&acc[i][j]);
        }
    }
}

/// `gb[o] += Σ_p dz[o][p]`.
#[inline(always)]
fn bias_gradient<const LN: usize>(dz: &[f32], gb: &mut [f32]) {
    for (row, b) in dz.chunks_exact(CHUNK).zip(gb.iter_mut()) {
        let mut acc = [0f32; LN];
        for lanes in row.chunks_exact(LN) {
            for lane in 0..LN {
                acc[lane] += lanes[lane];
            }
        }
        *b += lane_sum(&acc);
    }
}

/// The lanes' sum, pairwise in a fixed order.
#[inline(always)]
fn lane_sum<const LN: usize>(a: &[f32; LN]) -> f32 {
    let mut a = *a;
    let mut n = LN;
    while n > 1 {
        n /= 2;
        for i in 0..n {
            a[i] += a[i + n];
        }
    }
    a[0]
}

/// Adam as candle_nn's `AdamW` computes it, with weight decay 0.
struct Adam {
    m: Vec<f32>,
    v: Vec<f32>,
    t: i32,
    lr: f32,
}

impl Adam {
    fn new(n: usize, lr: f64) -> Self {
        Adam {
            m: vec![0.0; n],
            v: vec![0.0; n],
            t: 0,
            lr: lr as f32,
        }
    }

    fn step(&mut self, theta: &mut [f32], grad: &[f32]) {
        self.t += 1;
        let scale_m = (1.0 / (1.0 - BETA1.powi(self.t))) as f32;
        let scale_v = (1.0 / (1.0 - BETA2.powi(self.t))) as f32;
        let (b1, b2) = (BETA1 as f32, BETA2 as f32);
        let (c1, c2) = ((1.0 - BETA1) as f32, (1.0 - BETA2) as f32);
        let eps = EPS as f32;
        for (((w, g), m), v) in theta.iter_mut().zip(grad).zip(&mut self.m).zip(&mut self.v) {
            *m = *m * b1 + g * c1;
            *v = *v * b2 + g * g * c2;
            let (m_hat, v_hat) = (*m * scale_m, *v * scale_v);
            *w -= m_hat / (v_hat.sqrt() + eps) * self.lr;
        }
    }
}

/// The two hot kernels in AVX-512 intrinsics: written out by hand because LLVM
/// vectorises the portable code at 256 bits, where AVX-512's register blocking
/// (16 accumulators of 16 lanes) spills.
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::CHUNK;

    /// Pixels per block of [`output_block`] (two registers).
    pub(super) const PIXELS: usize = 32;
    /// Lanes of [`dot_block`]'s accumulators.
    pub(super) const LANES: usize = 16;

    /// [`super::output_block`]: outputs `o..o+B` of every pixel of the chunk, B × 32
    /// accumulators.
    #[target_feature(enable = "avx512f")]
    #[inline]
    pub(super) unsafe fn output_block<const B: usize>(
        w: &[f32],
        bias: Option<&[f32]>,
        ni: usize,
        no: usize,
        inp: &[f32],
        out: &mut [f32],
        o: usize,
    ) {
        assert!(o + B <= no && w.len() >= ni * no && inp.len() >= ni * CHUNK);
        assert!(out.len() >= (o + B) * CHUNK && CHUNK.is_multiple_of(PIXELS));
        let bias: [f32; B] = match bias {
            Some(b) => b[o..o + B].try_into().expect("bias block"),
            None => [0.0; B],
        };
        let (w, inp, out) = (w.as_ptr(), inp.as_ptr(), out.as_mut_ptr());
        for p in (0..CHUNK).step_by(PIXELS) {
            let mut acc = [[_mm512_setzero_ps(); 2]; B];
            for j in 0..B {
                acc[j] = [_mm512_set1_ps(bias[j]); 2];
            }
            for k in 0..ni {
                // SAFETY: k < ni and p + 32 <= CHUNK, so the reads stay in inp's
                // ni × CHUNK floats (asserted above); k·no + o + j < ni·no <= w.len().
                let (x0, x1, wk) = unsafe {
                    let x = inp.add(k * CHUNK + p);
                    (
                        _mm512_loadu_ps(x),
                        _mm512_loadu_ps(x.add(16)),
                        w.add(k * no + o),
                    )
                };
                for (j, acc) in acc.iter_mut().enumerate() {
                    // SAFETY: as above.
                    let wj = _mm512_set1_ps(unsafe { *wk.add(j) });
                    acc[0] = _mm512_fmadd_ps(wj, x0, acc[0]);
                    acc[1] = _mm512_fmadd_ps(wj, x1, acc[1]);
                }
            }
            for (j, acc) in acc.iter().enumerate() {
                // SAFETY: o + j < o + B and p + 32 <= CHUNK: inside out's (o + B) × CHUNK.
                unsafe {
                    let y = out.add((o + j) * CHUNK + p);
                    _mm512_storeu_ps(y, acc[0]);
                    _mm512_storeu_ps(y.add(16), acc[1]);
                }
            }
        }
    }

    /// [`super::dot_block`]: `gw[k+i][o+j] += Σ_p inp[k+i][p] · dz[o+j][p]`, KB × OB dot
    /// products of 16 lanes, each reduced once per chunk.
    #[target_feature(enable = "avx512f")]
    #[inline]
    pub(super) unsafe fn dot_block<const KB: usize, const OB: usize>(
        inp: &[f32],
        dz: &[f32],
        no: usize,
        k: usize,
        o: usize,
        gw: &mut [f32],
    ) {
        assert!(inp.len() >= (k + KB) * CHUNK && dz.len() >= (o + OB) * CHUNK);
        assert!(gw.len() >= (k + KB - 1) * no + o + OB && o + OB <= no);
        let (inp, dz) = (inp.as_ptr(), dz.as_ptr());
        let mut acc = [[_mm512_setzero_ps(); OB]; KB];
        for p in (0..CHUNK).step_by(LANES) {
            // SAFETY: rows k..k+KB of inp and o..o+OB of dz, lanes p..p+16 <= CHUNK:
            // inside the lengths asserted above.
            let x: [__m512; KB] =
                std::array::from_fn(|i| unsafe { _mm512_loadu_ps(inp.add((k + i) * CHUNK + p)) });
            // SAFETY: as above.
            let y: [__m512; OB] =
                std::array::from_fn(|j| unsafe { _mm512_loadu_ps(dz.add((o + j) * CHUNK + p)) });
            for i in 0..KB {
                for j in 0..OB {
                    acc[i][j] = _mm512_fmadd_ps(x[i], y[j], acc[i][j]);
                }
            }
        }
        for i in 0..KB {
            for j in 0..OB {
                gw[(k + i) * no + o + j] += _mm512_reduce_add_ps(acc[i][j]);
            }
        }
    }
}
