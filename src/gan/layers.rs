//! Layers built once, in the model's constructor, from a [`Params`] (as candle-nn's are
//! from a `VarBuilder`), then applied with `forward(&self, …)`. Weights are held as `Var`s
//! (trained), normalisation statistics and spectral-norm vectors as plain tensors (not
//! trained, behind a mutex so a forward pass can update them), all under stable names so
//! checkpoints map one to one. Kept in one place so the CPU convolution kernels are
//! swapped in here without touching the models.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use candle_core::{DType, Device, Result, Tensor, Var};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;

/// A model's trainable parameters and running statistics, by name (sorted, so the
/// order, the seeded initialisation and the checkpoint layout never change).
pub struct Params {
    pub device: Device,
    pub vars: BTreeMap<String, Var>,
    pub buffers: Mutex<BTreeMap<String, Tensor>>,
    /// Spectrally normalise every convolution and linear weight (see [`weight`]).
    pub spectral: bool,
    /// The arithmetic convolutions and matrix products run in (see
    /// [`Params::set_precision`]): in bf16, easel's CPU kernels multiply bf16 copies
    /// (AVX512_BF16) and Candle's path (GPUs) multiplies bfloat16 tensors, both returning
    /// f32 (PyTorch's autocast).
    pub precision: super::Precision,
    /// Set while [`Params::frozen`]'s guard lives: layers read their parameters detached.
    frozen: AtomicBool,
}

/// While it lives, its model's forward passes use detached parameters (see
/// [`Params::frozen`]).
pub struct Frozen<'a>(&'a Params);

impl Drop for Frozen<'_> {
    fn drop(&mut self) {
        self.0.frozen.store(false, Ordering::Relaxed);
    }
}

impl Params {
    pub fn new(device: &Device) -> Self {
        Params {
            device: device.clone(),
            vars: BTreeMap::new(),
            buffers: Mutex::new(BTreeMap::new()),
            spectral: false,
            precision: super::Precision::Fp32,
            frozen: AtomicBool::new(false),
        }
    }

    /// Until the guard drops, forward passes read this model's parameters detached, so a
    /// backward pass through them computes no gradients for them: G's step runs D only
    /// for the gradient of its input, and D's weight gradients (as costly as its forward
    /// pass) would be thrown away. Nothing else changes (running statistics still move).
    pub fn frozen(&self) -> Frozen<'_> {
        self.frozen.store(true, Ordering::Relaxed);
        Frozen(self)
    }

    /// A parameter as a forward pass should use it: itself, or detached while frozen.
    pub fn read(&self, t: &Tensor) -> Tensor {
        if self.frozen.load(Ordering::Relaxed) {
            t.detach()
        } else {
            t.clone()
        }
    }

    /// Asks for `precision`'s arithmetic; returns what will run ([`runs_as`]).
    pub fn set_precision(&mut self, precision: super::Precision) -> super::Precision {
        self.precision = runs_as(precision, &self.device);
        self.precision
    }

    fn bf16(&self) -> bool {
        self.precision == super::Precision::Bf16
    }

    /// Creates a parameter (zeros; values are set by [`Params::initialise`]).
    pub fn var(&mut self, name: &str, shape: &[usize]) -> Result<Tensor> {
        if self.vars.contains_key(name) {
            return Err(candle_core::Error::Msg(format!(
                "parameter {name} created twice"
            )));
        }
        let v = Var::zeros(shape, DType::F32, &self.device)?;
        let t = v.as_tensor().clone();
        self.vars.insert(name.to_string(), v);
        Ok(t)
    }

    pub fn buffer(&self, name: &str) -> Option<Tensor> {
        self.buffers.lock().expect("buffers").get(name).cloned()
    }

    pub fn set_buffer(&self, name: &str, t: Tensor) {
        self.buffers
            .lock()
            .expect("buffers")
            .insert(name.to_string(), t);
    }

    /// Seeded DCGAN initialisation: weights N(0, 0.02²), norm scales N(1, 0.02²), biases 0.
    pub fn initialise(&self, seed: u64) -> Result<()> {
        let mut rng = Pcg64Mcg::seed_from_u64(seed);
        for (name, var) in &self.vars {
            let n = var.elem_count();
            let values: Vec<f32> = if name.ends_with(".b") || name.ends_with(".beta") {
                vec![0.0; n]
            } else if name.ends_with(".gamma") {
                (0..n).map(|_| 1.0 + 0.02 * normal(&mut rng)).collect()
            } else {
                (0..n).map(|_| 0.02 * normal(&mut rng)).collect()
            };
            var.set(&Tensor::from_vec(values, var.shape(), &self.device)?)?;
        }
        self.initialise_spectral();
        Ok(())
    }

    /// Drops spectral normalisation's power-iteration vectors: they belong to the old
    /// weights, and new ones are drawn on use.
    pub fn initialise_spectral(&self) {
        self.buffers
            .lock()
            .expect("buffers")
            .retain(|name, _| !name.ends_with(SPECTRAL_U));
    }

    /// Every tensor by name: `var.NAME` for parameters, `buf.NAME` for statistics.
    pub fn named_tensors(&self, prefix: &str) -> Vec<(String, Tensor)> {
        let mut out: Vec<(String, Tensor)> = self
            .vars
            .iter()
            .map(|(n, v)| (format!("{prefix}{n}"), v.as_tensor().clone()))
            .collect();
        for (n, t) in self.buffers.lock().expect("buffers").iter() {
            out.push((format!("{prefix}buf.{n}"), t.clone()));
        }
        out
    }

    /// Loads what `named_tensors` saved; every parameter must be present.
    pub fn load(
        &self,
        prefix: &str,
        tensors: &std::collections::HashMap<String, Tensor>,
    ) -> anyhow::Result<()> {
        for (n, v) in &self.vars {
            let key = format!("{prefix}{n}");
            let t = tensors
                .get(&key)
                .ok_or_else(|| anyhow::anyhow!("checkpoint lacks {key}"))?;
            if t.dims() != v.dims() {
                anyhow::bail!(
                    "checkpoint's {key} has shape {:?}, the model needs {:?}",
                    t.dims(),
                    v.dims()
                );
            }
            v.set(&t.to_device(&self.device)?)?;
        }
        let bufprefix = format!("{prefix}buf.");
        for (k, t) in tensors {
            if let Some(n) = k.strip_prefix(&bufprefix) {
                self.set_buffer(n, t.to_device(&self.device)?);
            }
        }
        Ok(())
    }
}

pub fn normal(rng: &mut impl Rng) -> f32 {
    crate::noise::normal(rng) as f32
}

/// Per-call context: training or evaluation, and the seed for dropout masks (Candle's
/// own dropout draws from an unseeded generator, which would break exact resume).
pub struct Ctx {
    pub train: bool,
    pub dropout_seed: u64,
    /// Which row of the whole batch the input's first row is: a rank training rows
    /// 8..16 draws the masks one process draws for them.
    pub first_row: usize,
}

/// An activation, written in sketches and spec.json as `relu`, `selu` or
/// `leaky_relu(slope)`; a name that is none of these is an error, never a default.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Act {
    Relu,
    Selu,
    LeakyRelu(f64),
}

impl Act {
    pub fn apply(self, x: &Tensor) -> Result<Tensor> {
        let fused = super::kernels::enabled(x.device());
        match self {
            Act::Relu if fused => super::kernels::leaky_relu(x, 0.0),
            Act::Relu => x.relu(),
            Act::Selu => x.elu(1.673_263_242_354_377_3)? * 1.050_700_987_355_480_5,
            // The same bits as below, in one pass each way.
            Act::LeakyRelu(slope) if fused => super::kernels::leaky_relu(x, slope),
            Act::LeakyRelu(slope) => {
                // max(x, slope·x) for 0 < slope < 1.
                x.maximum(&(x * slope)?)
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Norm {
    Batch,
    Layer,
    None,
}

/// Suffix of the buffers that hold spectral normalisation's power-iteration vectors.
const SPECTRAL_U: &str = ".sn_u";

/// A weight `{name}.w`, created (zeros, set by [`Params::initialise`]) when the layer is
/// built; spectrally normalised on use when the model's `Params::spectral` is set.
pub struct Weight {
    name: String,
    w: Tensor,
    /// Rows of the matrix whose largest singular value normalises it.
    rows: usize,
    spectral: bool,
}

impl Weight {
    fn new(p: &mut Params, name: &str, shape: &[usize], rows: usize) -> Result<Self> {
        Ok(Weight {
            name: name.to_string(),
            w: p.var(&format!("{name}.w"), shape)?,
            rows,
            spectral: p.spectral,
        })
    }

    /// The weight, divided by its largest singular value when spectral.
    ///
    /// σ comes from one power-iteration step per call, with the vector `u` kept as a
    /// buffer (so checkpoints hold it and a resumed run continues exactly), and the
    /// gradient flows through σ(W) = uᵀWv with u and v held constant, as in Miyato et al.
    /// 2018 and PyTorch. The discriminator, its only user, is only run while training, so
    /// updating `u` on every call is PyTorch's train-mode behaviour.
    fn get(&self, p: &Params) -> Result<Tensor> {
        let w = p.read(&self.w);
        if !self.spectral {
            return Ok(w);
        }
        let cols = w.elem_count() / self.rows;
        let m = w.reshape((self.rows, cols))?;
        let u_name = format!("{}{SPECTRAL_U}", self.name);
        let u = match p.buffer(&u_name) {
            Some(u) => u,
            None => {
                let mut rng = Pcg64Mcg::seed_from_u64(stable_hash(self.name.as_bytes(), 0x5E));
                let v: Vec<f32> = (0..self.rows).map(|_| normal(&mut rng)).collect();
                Tensor::from_vec(v, (1, self.rows), &p.device)?
            }
        };
        let unit = |t: Tensor| -> Result<Tensor> {
            let norm = (t.sqr()?.sum_all()?.sqrt()? + 1e-12)?;
            t.broadcast_div(&norm)
        };
        let fixed = m.detach();
        let v = unit(u.matmul(&fixed)?)?;
        let u = unit(v.matmul(&fixed.t()?)?)?;
        p.set_buffer(&u_name, u.clone());
        let sigma = u.matmul(&m)?.matmul(&v.t()?)?.reshape(())?;
        w.broadcast_div(&sigma)
    }
}

/// `x·W + b` over the last dimension.
pub struct Linear {
    w: Weight,
    b: Option<Tensor>,
}

impl Linear {
    pub fn new(p: &mut Params, name: &str, inp: usize, out: usize, bias: bool) -> Result<Self> {
        Ok(Linear {
            w: Weight::new(p, name, &[inp, out], inp)?,
            b: bias
                .then(|| p.var(&format!("{name}.b"), &[out]))
                .transpose()?,
        })
    }

    /// The weight `[inputs, outputs]` and bias, for layers that fold them into other
    /// products (the CPPN generator's per-sample weights).
    pub fn parts(&self, p: &Params) -> Result<(Tensor, Option<Tensor>)> {
        Ok((self.w.get(p)?, self.b.as_ref().map(|b| p.read(b))))
    }

    pub fn forward(&self, p: &Params, x: &Tensor) -> Result<Tensor> {
        let y = matmul(p, x, &self.w.get(p)?)?;
        match &self.b {
            Some(b) => y.broadcast_add(&p.read(b)),
            None => Ok(y),
        }
    }
}

/// `x · w` (batched where both have batch dimensions) in the model's precision: bf16 where
/// Candle's product has it; on easel's CPU kernels it stays f32 (Candle's CPU matrix
/// product has no bf16; these products are small).
pub fn matmul(p: &Params, x: &Tensor, w: &Tensor) -> Result<Tensor> {
    if p.bf16() && !super::kernels::enabled(x.device()) {
        bf16(x)?.matmul(&bf16(w)?)?.to_dtype(DType::F32)
    } else {
        x.matmul(w)
    }
}

/// The arithmetic a model asked for `precision` runs on `device`: bf16 on CUDA (and the
/// CPU forced portable) and on CPUs with AVX512_BF16 ([`super::Precision::bf16_available`]),
/// else f32.
pub fn runs_as(precision: super::Precision, device: &Device) -> super::Precision {
    let here = !super::kernels::enabled(device) || super::Precision::bf16_available();
    if precision == super::Precision::Bf16 && here {
        super::Precision::Bf16
    } else {
        super::Precision::Fp32
    }
}

/// Whether convolutions off easel's CPU kernels (GPUs, the portable path) are composed of
/// matrix products ([`super::conv_ops`], `EASEL_GPU_CONV=ops`) or Candle's own.
fn ops_convolutions() -> bool {
    static OPS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *OPS.get_or_init(|| std::env::var("EASEL_GPU_CONV").as_deref() == Ok("ops"))
}

fn portable_conv2d(x: &Tensor, w: &Tensor, pad: usize, stride: usize) -> Result<Tensor> {
    if ops_convolutions() {
        super::conv_ops::conv2d(x, w, pad, stride)
    } else {
        x.conv2d(w, pad, stride, 1, 1)
    }
}

fn portable_conv_transpose2d(
    x: &Tensor,
    w: &Tensor,
    pad: usize,
    out_pad: usize,
    stride: usize,
) -> Result<Tensor> {
    if ops_convolutions() {
        super::conv_ops::conv_transpose2d(x, w, pad, out_pad, stride)
    } else {
        x.conv_transpose2d(w, pad, out_pad, stride, 1)
    }
}

/// A bfloat16 copy (the gradient flows back through it as f32). On CUDA the op that takes
/// it runs Candle's bf16 kernels; Candle's CPU ops have no bf16 matrix product, so on the
/// CPU (the portable path's tests) the values are rounded to bf16 and stay f32, which is
/// what a bf16 product with f32 sums computes.
fn bf16(t: &Tensor) -> Result<Tensor> {
    let b = t.to_dtype(DType::BF16)?;
    if t.device().is_cpu() {
        b.to_dtype(DType::F32)
    } else {
        Ok(b)
    }
}

/// How a [`Conv`] maps sizes.
#[derive(Debug, Clone, Copy, PartialEq)]
enum ConvKind {
    /// Padding (k−1)/2: stride 2 halves even sizes exactly.
    Same { stride: usize },
    /// Transposed, multiplying the size by the stride (1 or 2) for any kernel.
    Transposed {
        stride: usize,
        pad: usize,
        out_pad: usize,
    },
    /// Nearest-neighbour ×2, then a stride-1 `Same` convolution (no checkerboard),
    /// computed as one equivalent transposed convolution ([`fold_nearest_up`]).
    NearestUp,
}

/// A 2-D convolution with its channel bias; easel's CPU kernels on the CPU, Candle's
/// elsewhere (or when forced portable).
pub struct Conv {
    w: Weight,
    b: Option<Tensor>,
    kind: ConvKind,
    k: usize,
}

impl Conv {
    /// Convolution with `stride`, padding (k−1)/2.
    pub fn new(
        p: &mut Params,
        name: &str,
        (inp, out): (usize, usize),
        k: usize,
        stride: usize,
        bias: bool,
    ) -> Result<Self> {
        Conv::build(p, name, (inp, out), k, ConvKind::Same { stride }, bias)
    }

    /// Transposed convolution that multiplies the size by `stride` (1 or 2).
    pub fn transposed(
        p: &mut Params,
        name: &str,
        (inp, out): (usize, usize),
        k: usize,
        stride: usize,
        bias: bool,
    ) -> Result<Self> {
        // out = (in−1)·s − 2·pad + k + out_pad, solved for out = in·s:
        let (pad, out_pad) = match (stride, k % 2) {
            (1, 1) => ((k - 1) / 2, 0),
            (1, _) => {
                return Err(candle_core::Error::Msg(format!(
                    "{name}: stride-1 transposed conv needs an odd kernel, got {k}"
                )))
            }
            (_, 1) => ((k - 1) / 2, 1),
            _ => ((k - 2) / 2, 0),
        };
        let kind = ConvKind::Transposed {
            stride,
            pad,
            out_pad,
        };
        Conv::build(p, name, (inp, out), k, kind, bias)
    }

    /// Nearest-neighbour ×2 upsampling then a stride-1 convolution (kernel made odd).
    pub fn nearest_up(
        p: &mut Params,
        name: &str,
        (inp, out): (usize, usize),
        k: usize,
        bias: bool,
    ) -> Result<Self> {
        Conv::build(p, name, (inp, out), k | 1, ConvKind::NearestUp, bias)
    }

    fn build(
        p: &mut Params,
        name: &str,
        (inp, out): (usize, usize),
        k: usize,
        kind: ConvKind,
        bias: bool,
    ) -> Result<Self> {
        // Candle's layouts: [out, in, k, k] for convolutions, [in, out, k, k] transposed.
        let (shape, rows) = match kind {
            ConvKind::Transposed { .. } => ([inp, out, k, k], inp),
            _ => ([out, inp, k, k], out),
        };
        Ok(Conv {
            w: Weight::new(p, name, &shape, rows)?,
            b: bias
                .then(|| p.var(&format!("{name}.b"), &[out]))
                .transpose()?,
            kind,
            k,
        })
    }

    /// The side of the output for an input side `side` (`None`: smaller than the kernel).
    pub fn out_side(&self, side: usize) -> Option<usize> {
        match self.kind {
            ConvKind::Same { stride } => {
                super::kernels::out_size(side, self.k, (self.k - 1) / 2, stride)
            }
            ConvKind::Transposed { stride, .. } => Some(side * stride),
            ConvKind::NearestUp => Some(2 * side),
        }
    }

    pub fn forward(&self, p: &Params, x: &Tensor) -> Result<Tensor> {
        let w = self.w.get(p)?;
        let fast = super::kernels::enabled(x.device());
        let same = |x: &Tensor, stride: usize| {
            let pad = (self.k - 1) / 2;
            if fast {
                super::kernels::conv2d_with(x, &w, pad, stride, p.precision)
            } else if p.bf16() {
                portable_conv2d(&bf16(x)?, &bf16(&w)?, pad, stride)?.to_dtype(DType::F32)
            } else {
                portable_conv2d(x, &w, pad, stride)
            }
        };
        let transposed = |w: &Tensor, stride: usize, pad: usize, out_pad: usize| {
            if fast {
                super::kernels::conv_transpose2d_with(x, w, pad, out_pad, stride, p.precision)
            } else if p.bf16() {
                portable_conv_transpose2d(&bf16(x)?, &bf16(w)?, pad, out_pad, stride)?
                    .to_dtype(DType::F32)
            } else {
                portable_conv_transpose2d(x, w, pad, out_pad, stride)
            }
        };
        let y = match self.kind {
            ConvKind::Same { stride } => same(x, stride)?,
            ConvKind::NearestUp => {
                // The k×k convolution of the enlarged map is a (k+1)×(k+1) transposed
                // convolution of the map itself: 4k²/(k+1)² times fewer products than
                // convolving the 4× larger map (2.25× fewer for k = 3).
                let folded = fold_nearest_up(&w)?;
                transposed(&folded, 2, (self.k - 1) / 2, 0)?
            }
            ConvKind::Transposed {
                stride,
                pad,
                out_pad,
            } => transposed(&w, stride, pad, out_pad)?,
        };
        match &self.b {
            Some(b) if fast && y.dtype() == DType::F32 => {
                super::kernels::add_channel_bias(&y, &p.read(b))
            }
            Some(b) => y.broadcast_add(&p.read(b).reshape((1, b.dim(0)?, 1, 1))?),
            None => Ok(y),
        }
    }
}

/// The weight `[in, out, k+1, k+1]` of the stride-2 transposed convolution (padding
/// (k−1)/2) that equals nearest-neighbour ×2 upsampling followed by the `Same` convolution
/// with `w` (`[out, in, k, k]`, k odd). Output pixel 2m+a of the enlarged map sees input
/// pixels m−1, m, m+1 through sums of the kernel's taps; tap `t` of the folded kernel is
/// `w[k−1−t] + w[k−t]` along each axis (terms outside 0..k dropped). Differentiable: the
/// gradient reaches `w` through the two products.
fn fold_nearest_up(w: &Tensor) -> Result<Tensor> {
    let (out, inp, k, _) = w.dims4()?;
    let big = k + 1;
    let mut fold = vec![0f32; big * k];
    for t in 0..big {
        for j in [k as isize - 1 - t as isize, k as isize - t as isize] {
            if (0..k as isize).contains(&j) {
                fold[t * k + j as usize] = 1.0;
            }
        }
    }
    let a = Tensor::from_vec(fold, (big, k), w.device())?;
    let flat = w.transpose(0, 1)?.reshape((inp * out, k, k))?;
    let rows = a.broadcast_matmul(&flat)?; // [n, k+1, k]
    let both = rows.broadcast_matmul(&a.t()?)?; // [n, k+1, k+1]
    both.reshape((inp, out, big, big))
}

/// Batch norm (running statistics, momentum 0.1, as PyTorch), layer norm (per sample
/// over all features) or nothing. Works on `[N, C]` and `[N, C, H, W]`.
pub struct NormLayer {
    kind: Norm,
    /// Buffer names of batch norm's running mean and variance.
    running: (String, String),
    /// γ and β, `[C]`.
    affine: Option<(Tensor, Tensor)>,
}

impl NormLayer {
    pub fn new(p: &mut Params, name: &str, channels: usize, kind: Norm) -> Result<Self> {
        let affine = match kind {
            Norm::None => None,
            _ => Some((
                p.var(&format!("{name}.gamma"), &[channels])?,
                p.var(&format!("{name}.beta"), &[channels])?,
            )),
        };
        Ok(NormLayer {
            kind,
            running: (
                format!("{name}.running_mean"),
                format!("{name}.running_var"),
            ),
            affine,
        })
    }

    pub fn forward(&self, p: &Params, x: &Tensor, ctx: &Ctx) -> Result<Tensor> {
        let Some((gamma, beta)) = &self.affine else {
            return Ok(x.clone());
        };
        let (gamma, beta) = (&p.read(gamma), &p.read(beta));
        let c = x.dim(1)?;
        let shape: Vec<usize> = if x.rank() == 4 {
            vec![1, c, 1, 1]
        } else {
            vec![1, c]
        };
        let (mean_name, var_name) = (&self.running.0, &self.running.1);
        let normalised = match self.kind {
            Norm::None => return Ok(x.clone()),
            Norm::Batch if ctx.train && super::kernels::enabled(x.device()) => {
                // One fused op (forward and backward) instead of Candle's strided
                // reductions; same result to rounding.
                let (y, m, v) = super::kernels::batch_norm_train(x, gamma, beta, 1e-5)?;
                update_running_stats(p, mean_name, var_name, c, m, v)?;
                return Ok(y);
            }
            Norm::Batch if ctx.train => {
                let dims: Vec<usize> = if x.rank() == 4 {
                    vec![0, 2, 3]
                } else {
                    vec![0]
                };
                let mean = x.mean_keepdim(dims.as_slice())?;
                let centered = x.broadcast_sub(&mean)?;
                let var = centered.sqr()?.mean_keepdim(dims.as_slice())?;
                let (m, v) = (mean.flatten_all()?.detach(), var.flatten_all()?.detach());
                update_running_stats(p, mean_name, var_name, c, m, v)?;
                centered.broadcast_div(&(var + 1e-5)?.sqrt()?)?
            }
            Norm::Batch => {
                let mean = p
                    .buffer(mean_name)
                    .unwrap_or(Tensor::zeros(c, DType::F32, &p.device)?);
                let var = p
                    .buffer(var_name)
                    .unwrap_or(Tensor::ones(c, DType::F32, &p.device)?);
                x.broadcast_sub(&mean.reshape(shape.as_slice())?)?
                    .broadcast_div(&(var + 1e-5)?.sqrt()?.reshape(shape.as_slice())?)?
            }
            Norm::Layer => {
                let dims: Vec<usize> = (1..x.rank()).collect();
                let mean = x.mean_keepdim(dims.as_slice())?;
                let centered = x.broadcast_sub(&mean)?;
                let var = centered.sqr()?.mean_keepdim(dims.as_slice())?;
                centered.broadcast_div(&(var + 1e-5)?.sqrt()?)?
            }
        };
        normalised
            .broadcast_mul(&gamma.reshape(shape.as_slice())?)?
            .broadcast_add(&beta.reshape(shape.as_slice())?)
    }
}

/// How far one batch moves batch norm's running statistics, as PyTorch's default.
pub const RUNNING_MOMENTUM: f64 = 0.1;

/// Running statistics with momentum 0.1, as PyTorch: `r ← 0.9·r + 0.1·batch`.
fn update_running_stats(
    p: &Params,
    mean_name: &str,
    var_name: &str,
    c: usize,
    mean: Tensor,
    var: Tensor,
) -> Result<()> {
    let old_mean = p
        .buffer(mean_name)
        .unwrap_or(Tensor::zeros(c, DType::F32, &p.device)?);
    let old_var = p
        .buffer(var_name)
        .unwrap_or(Tensor::ones(c, DType::F32, &p.device)?);
    let (keep, take) = (1.0 - RUNNING_MOMENTUM, RUNNING_MOMENTUM);
    p.set_buffer(mean_name, ((old_mean * keep)? + (mean * take)?)?);
    p.set_buffer(var_name, ((old_var * keep)? + (var * take)?)?);
    Ok(())
}

/// FNV-1a over `bytes`, then `seed` mixed in (SplitMix64's finaliser). Unlike std's
/// `DefaultHasher`, whose algorithm may change between Rust releases, this stays the
/// same forever, so dropout masks (and with them "resume is exact") do too.
pub fn stable_hash(bytes: &[u8], seed: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h = (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
    }
    let mut z = h ^ seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Inverted dropout with a mask drawn from `ctx.dropout_seed` and the layer name.
pub fn dropout(name: &str, x: &Tensor, rate: f64, ctx: &Ctx) -> Result<Tensor> {
    if !ctx.train || rate <= 0.0 {
        return Ok(x.clone());
    }
    let mut rng = Pcg64Mcg::seed_from_u64(stable_hash(name.as_bytes(), ctx.dropout_seed));
    // One draw a value: skip the rows before this input's.
    let per_row = x.elem_count() / x.dim(0)?.max(1);
    rng.advance((ctx.first_row * per_row) as u128);
    let keep = 1.0 - rate;
    let mask: Vec<f32> = (0..x.elem_count())
        .map(|_| {
            if rng.random::<f64>() < keep {
                (1.0 / keep) as f32
            } else {
                0.0
            }
        })
        .collect();
    x.mul(&Tensor::from_vec(mask, x.shape(), x.device())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// G's step runs D frozen: the backward pass still reaches D's input (G needs it)
    /// but computes nothing for D's parameters, and they are trainable again after.
    #[test]
    fn a_frozen_model_passes_gradients_through_without_computing_its_own() {
        let dev = Device::Cpu;
        let mut p = Params::new(&dev);
        let conv = Conv::new(&mut p, "c", (3, 4), 3, 2, true).unwrap();
        let norm = NormLayer::new(&mut p, "c.norm", 4, Norm::Batch).unwrap();
        p.initialise(1).unwrap();
        let ctx = Ctx {
            train: true,
            dropout_seed: 0,
            first_row: 0,
        };
        let x = Var::randn(0f32, 1.0, (2, 3, 8, 8), &dev).unwrap();
        let loss = |p: &Params| {
            let y = conv.forward(p, x.as_tensor()).unwrap();
            norm.forward(p, &y, &ctx)
                .unwrap()
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap()
        };
        let frozen = {
            let _frozen = p.frozen();
            loss(&p).backward().unwrap()
        };
        let free = loss(&p).backward().unwrap();
        for (name, var) in &p.vars {
            assert!(
                frozen.get(var.as_tensor()).is_none(),
                "{name} got a gradient"
            );
            assert!(free.get(var.as_tensor()).is_some(), "{name} got none");
        }
        let (a, b) = (frozen.get(x.as_tensor()), free.get(x.as_tensor()));
        let err = (a.unwrap() - b.unwrap())
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap();
        assert_eq!(err.to_scalar::<f32>().unwrap(), 0.0);
    }

    #[test]
    fn nearest_up_is_upsampling_then_convolution_for_odd_kernels() {
        let dev = Device::Cpu;
        for k in [1usize, 3, 5] {
            let x = Tensor::randn(0f32, 1.0, (2, 3, 5, 4), &dev).unwrap();
            let w = Tensor::randn(0f32, 1.0, (6, 3, k, k), &dev).unwrap();
            let up = x.upsample_nearest2d(10, 8).unwrap();
            let direct = portable_conv2d(&up, &w, (k - 1) / 2, 1).unwrap();
            let folded = fold_nearest_up(&w).unwrap();
            let via_fold = portable_conv_transpose2d(&x, &folded, (k - 1) / 2, 0, 2).unwrap();
            let fast = crate::gan::kernels::conv_transpose2d_with(
                &x,
                &folded,
                (k - 1) / 2,
                0,
                2,
                Default::default(),
            )
            .unwrap();
            assert_eq!(via_fold.dims(), [2, 6, 10, 8]);
            for y in [&via_fold, &fast] {
                let err = (y - &direct).unwrap().abs().unwrap().max_all().unwrap();
                assert!(err.to_scalar::<f32>().unwrap() < 1e-4, "k {k}: {err}");
            }
        }
    }

    #[test]
    fn spectral_norm_divides_by_the_largest_singular_value() {
        let mut p = Params::new(&Device::Cpu);
        p.spectral = true;
        let l = Weight::new(&mut p, "l", &[2, 2], 2).unwrap();
        // Singular values 3 and 1 (a rotation would not change them).
        p.vars["l.w"]
            .set(&Tensor::new(&[[3f32, 0.0], [0.0, 1.0]], &Device::Cpu).unwrap())
            .unwrap();
        p.initialise_spectral();
        let mut w = vec![];
        for _ in 0..20 {
            w = l
                .get(&p)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
        }
        let expected = [1.0, 0.0, 0.0, 1.0 / 3.0];
        for (a, b) in w.iter().zip(expected) {
            assert!((a - b).abs() < 1e-3, "{w:?}");
        }
        // Gradients flow to the raw weight.
        let y = l.get(&p).unwrap().sum_all().unwrap();
        let grads = y.backward().unwrap();
        assert!(grads.get(p.vars["l.w"].as_tensor()).is_some());
    }
}
