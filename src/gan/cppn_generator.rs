//! The CPPN-GAN generator (`model: "cppn"`, after hardmaru's cppn-gan-vae): a pixel's
//! colour is a coordinate MLP of (x, y, r, Fourier features of x and y) and the sample's
//! code z′, where z′ is the noise z through a small mapping MLP, once per sample.
//!
//! It trains on the pixel grid of the training size, with exactly the coordinates the
//! CPPN renderer feeds its networks (or, with `jitter`, points near them), so a trained
//! sample is a CPPN: it renders at any size through easel's fast renderer (not Candle),
//! or is written out as a CPPN sketch.

use candle_core::{Result, Tensor};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;

use super::layers::{normal, stable_hash, Ctx, Linear, Params};
use super::GanSpec;
use crate::cppn::net::{Activation, Dense, Network};
use crate::cppn::{self, Animation, CppnSpec, Fourier, Inputs, OutputMode, Symmetry};
use crate::sketch::{MapReader, SketchError};

/// The shape of a CPPN generator: `cppn: #{ … }` in a GAN sketch.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CppnShape {
    /// Widths of the coordinate MLP's hidden layers.
    pub layers: Vec<usize>,
    /// One per hidden layer; the output is tanh (images are in [−1, 1]).
    pub activations: Vec<Activation>,
    /// Half the shorter side, in network coordinates (as a CPPN sketch's `scale`).
    pub scale: f64,
    /// Whether r = √(x² + y²) is an input besides x and y.
    pub radius: bool,
    pub fourier: Option<Fourier>,
    /// Widths of the mapping MLP from the noise to z′ (tanh between layers, the last one
    /// linear); the last width is the size of z′, the CPPN's latent input.
    pub mapping: Vec<usize>,
    /// z′ also shifts every later layer (a per-sample bias, as StyleGAN feeds its code to
    /// every layer), not only the first: with the code at the input alone, the pixel
    /// grid's coordinates drown it out and every sample comes out alike.
    #[serde(default)]
    pub z_every_layer: bool,
    /// z′ also scales every layer's inputs, one factor per input (StyleGAN's modulation,
    /// as CIPS does for a per-pixel generator): the code multiplies what a layer sees
    /// instead of only shifting it, so one network draws quite different pictures. Folded
    /// into each sample's weights on export.
    #[serde(default)]
    pub modulate: bool,
    /// Sub-pixel jitter while training, in pixels of the training size: every pixel of
    /// every training sample is drawn at a point uniform within ±`jitter` of its centre
    /// (a new draw each step), never at sampling time. The training pictures only say
    /// what is at pixel centres; a network whose edges pass close to a centre flips that
    /// pixel from one draw to the next, which D sees and the data never shows, so G
    /// learns edges with room on both sides. 0 (the default): centres only.
    #[serde(default)]
    pub jitter: f64,
}

impl Default for CppnShape {
    fn default() -> Self {
        CppnShape {
            layers: vec![64; 3],
            activations: vec![Activation::Tanh; 3],
            scale: 2.0,
            radius: true,
            fourier: None,
            mapping: vec![32],
            z_every_layer: true,
            modulate: false,
            jitter: 0.0,
        }
    }
}

impl CppnShape {
    /// Reads `cppn: #{ layers, activation, scale, inputs_r, fourier, mapping }`; keys
    /// left out keep their defaults.
    pub fn parse(map: &mut MapReader) -> std::result::Result<Self, SketchError> {
        let Some(m) = map.map("cppn")? else {
            return Ok(CppnShape::default());
        };
        let mut c = MapReader::new(map.file(), map.locator(), m);
        let d = CppnShape::default();
        let layers = match c.raw("layers") {
            Some(_) => cppn::parse_layers(&mut c)?,
            None => d.layers,
        };
        if layers.is_empty() {
            return Err(c.error_at(
                "layers",
                None,
                "a CPPN generator needs at least one hidden layer",
            ));
        }
        let activations = cppn::parse_activations(&mut c, layers.len())?;
        if let Some(a) = activations.iter().find(|a| !a.trainable()) {
            return Err(c.error_at(
                "activation",
                None,
                format!(
                    "\"{}\" cannot be trained (no usable gradient); use tanh, sin, relu, softplus, gaussian, sigmoid, abs, cos or identity",
                    a.name()
                ),
            ));
        }
        let scale = c.float("scale", d.scale, 1e-3..=1e3)?;
        let radius = c.bool("radius", d.radius)?;
        let fourier = cppn::parse_fourier(&mut c)?;
        let mapping = match c.raw("mapping") {
            Some(v) => {
                let items = v
                    .clone()
                    .into_array()
                    .map_err(|_| c.type_error("mapping", &v, "an array of layer widths"))?;
                let widths = items
                    .iter()
                    .map(|w| match w.as_int() {
                        Ok(n) if (1..=512).contains(&n) => Ok(n as usize),
                        _ => Err(c.error_at(
                            "mapping",
                            Some(w),
                            format!("mapping widths must be integers 1–512, got {w}"),
                        )),
                    })
                    .collect::<std::result::Result<Vec<_>, _>>()?;
                if widths.is_empty() {
                    return Err(c.error_at(
                        "mapping",
                        None,
                        "mapping needs at least one layer (its last width is the size of z′)",
                    ));
                }
                widths
            }
            None => d.mapping,
        };
        let z_every_layer = c.bool("z_every_layer", d.z_every_layer)?;
        let modulate = c.bool("modulate", d.modulate)?;
        // Beyond half a pixel a point lands in the next pixel.
        let jitter = c.float("jitter", d.jitter, 0.0..=0.5)?;
        c.finish()?;
        Ok(CppnShape {
            layers,
            activations,
            scale,
            radius,
            fourier,
            mapping,
            z_every_layer,
            modulate,
            jitter,
        })
    }

    /// (inputs, outputs, activation) of every layer after the first: the hidden layers,
    /// then the tanh output of `channels`.
    fn later_layers(&self, channels: usize) -> Vec<(usize, usize, Activation)> {
        (0..self.layers.len())
            .map(|k| {
                let out = self.layers.get(k + 1).copied().unwrap_or(channels);
                let act = self
                    .activations
                    .get(k + 1)
                    .copied()
                    .unwrap_or(Activation::Tanh);
                (self.layers[k], out, act)
            })
            .collect()
    }

    /// The size of z′, the code each sample's CPPN sees.
    pub fn code_size(&self) -> usize {
        *self.mapping.last().expect("mapping has a layer")
    }

    /// The CPPN sketch spec that renders a sample at `width`×`height`: the same inputs,
    /// coordinates, layers and Fourier frequencies (drawn from the GAN's seed) the
    /// generator trained with; weights and z′ come with each sample.
    pub fn render_spec(&self, gan: &GanSpec, width: u32, height: u32) -> CppnSpec {
        CppnSpec {
            width,
            height,
            inputs: Inputs {
                x: true,
                y: true,
                r: self.radius,
                fourier: self.fourier,
            },
            z_dims: self.code_size(),
            z_values: None,
            scale: self.scale,
            hidden: self.layers.clone(),
            activations: self.activations.clone(),
            output: if gan.channels == 1 {
                OutputMode::Gray
            } else {
                OutputMode::Rgb
            },
            output_activation: Activation::Tanh,
            init: cppn::net::Init::Normal,
            init_std: 1.0,
            biases: true,
            symmetry: Symmetry::None,
            seed: gan.seed,
            animation: Animation {
                frames: 48,
                fps: 24.0,
                radius: 0.5,
            },
            fit: None,
            weights: None,
        }
    }
}

/// The generator's layers: mapping MLP, then the coordinate MLP whose first layer's
/// weights are split in two (coordinates, z′), as the renderer's network takes them.
pub struct CppnBody {
    shape: CppnShape,
    /// The training grid's inputs and a column of ones (for the first layer's bias row),
    /// `[pixels, coordinate inputs + 1]`.
    coords: Tensor,
    /// The training grid as the renderer sees it (for jittered coordinates; boxed, as
    /// the generator's other body is far smaller).
    grid: Box<CppnSpec>,
    side: usize,
    channels: usize,
    mapping: Vec<Linear>,
    first_xy: Linear,
    first_z: Linear,
    /// Hidden layers after the first, then the output layer, each with its share of z′
    /// when `z_every_layer`.
    rest: Vec<(Linear, Option<Linear>)>,
    /// With `modulate`: per layer (the first, then `rest`'s), z′ → one factor − 1 per
    /// input of that layer.
    styles: Vec<Linear>,
}

/// `act` on a training tensor: tanh through easel's CPU kernel where it runs (libm's
/// tanh per element was a fifth of a CPPN-GAN step; see `kernels`), else Candle's ops.
fn activate(act: Activation, x: &Tensor) -> Result<Tensor> {
    match act {
        Activation::Tanh if super::kernels::enabled(x.device()) => super::kernels::tanh(x),
        _ => act.tensor(x),
    }
}

/// `act` on a training tensor `[…, k]` with a column of ones after it (`[…, k + 1]`): the
/// next layer's input, whose ones meet its bias row.
fn activate_with_ones(act: Activation, x: &Tensor) -> Result<Tensor> {
    if act == Activation::Tanh && super::kernels::enabled(x.device()) {
        return super::kernels::tanh_with_ones(x);
    }
    let mut dims = x.dims().to_vec();
    let last = dims.len() - 1;
    dims[last] = 1;
    let ones = Tensor::ones(dims, x.dtype(), x.device())?;
    Tensor::cat(&[&act.tensor(x)?, &ones], last)
}

/// Each point's `inputs` coordinate values followed by a 1 (the first layer's bias row).
fn with_ones(points: &[f32], inputs: usize) -> Vec<f32> {
    points
        .chunks(inputs)
        .flat_map(|point| point.iter().copied().chain([1.0]))
        .collect()
}

/// Name prefix of the coordinate MLP's layers (`g.cppn0.xy`, `g.cppn0.z`, `g.cppn1`, …).
const LAYER: &str = "g.cppn";

impl CppnBody {
    pub fn new(p: &mut Params, spec: &GanSpec, shape: &CppnShape) -> Result<Self> {
        let side = spec.image_size;
        let grid = shape.render_spec(spec, side as u32, side as u32);
        let inputs = grid.inputs.coordinate_count();
        let coords = with_ones(&cppn::render::input_coordinates(&grid), inputs);
        let coords = Tensor::from_vec(coords, (side * side, inputs + 1), &p.device)?;
        let mut mapping = vec![];
        let mut width = spec.latent;
        for (k, &w) in shape.mapping.iter().enumerate() {
            mapping.push(Linear::new(p, &format!("g.map{k}"), width, w, true)?);
            width = w;
        }
        let h0 = shape.layers[0];
        let first_xy = Linear::new(p, &format!("{LAYER}0.xy"), inputs, h0, true)?;
        let first_z = Linear::new(p, &format!("{LAYER}0.z"), width, h0, false)?;
        let mut rest = vec![];
        let mut styles = vec![];
        if shape.modulate {
            let name = format!("{LAYER}0.style");
            styles.push(Linear::new(p, &name, width, inputs, true)?);
        }
        for (k, (inp, out, _)) in shape.later_layers(spec.channels).into_iter().enumerate() {
            let name = format!("{LAYER}{}", k + 1);
            if shape.modulate {
                styles.push(Linear::new(p, &format!("{name}.style"), width, inp, true)?);
            }
            let z = shape
                .z_every_layer
                .then(|| Linear::new(p, &format!("{name}.z"), width, out, false))
                .transpose()?;
            rest.push((Linear::new(p, &name, inp, out, true)?, z));
        }
        Ok(CppnBody {
            shape: shape.clone(),
            coords,
            grid: Box::new(grid),
            side,
            channels: spec.channels,
            mapping,
            first_xy,
            first_z,
            rest,
            styles,
        })
    }

    /// CPPN weights want unit-scale pre-activations (as CPPN sketches draw them), not
    /// DCGAN's N(0, 0.02²), which would leave every pixel alike: N(0, 1/fan-in), a
    /// layer's fan-in counting all its inputs (coordinates or features, and z′). Biases
    /// stay 0.
    pub fn initialise(p: &Params, seed: u64) -> Result<()> {
        let mut rng = Pcg64Mcg::seed_from_u64(seed ^ 0xC7_9A_11);
        // "g.cppn1.z.w" → "g.cppn1": a layer's weights, whatever their inputs.
        let layer_of = |name: &str| name.splitn(3, '.').take(2).collect::<Vec<_>>().join(".");
        let style = |name: &str| name.ends_with(".style.w");
        let ours = |name: &str| {
            (name.starts_with(LAYER) || name.starts_with("g.map"))
                && name.ends_with(".w")
                && !style(name)
        };
        let mut fan_in = std::collections::HashMap::<String, usize>::new();
        for (name, var) in p.vars.iter().filter(|(n, _)| ours(n)) {
            *fan_in.entry(layer_of(name)).or_default() += var.dims()[0];
        }
        let mut fill = |var: &candle_core::Var, std: f32| -> Result<()> {
            let values: Vec<f32> = (0..var.elem_count())
                .map(|_| std * normal(&mut rng))
                .collect();
            var.set(&Tensor::from_vec(values, var.shape(), &p.device)?)
        };
        for (name, var) in p.vars.iter().filter(|(n, _)| ours(n)) {
            fill(var, 1.0 / (fan_in[&layer_of(name)] as f32).sqrt())?;
        }
        // Modulation starts moderate: factors 1 ± ~0.5 for unit-scale codes.
        for (_, var) in p.vars.iter().filter(|(n, _)| style(n)) {
            fill(var, 0.5 / (var.dims()[0] as f32).sqrt())?;
        }
        Ok(())
    }

    /// One layer's weights for each sample, `[N, inputs + 1, outputs]`: `w` `[inputs,
    /// outputs]` with its rows scaled by the sample's `factors` `[N, inputs]` (modulation),
    /// then a bias row: `b` plus the sample's `shift` `[N, outputs]` (its share of z′).
    fn sample_weights(
        w: &Tensor,
        b: Option<&Tensor>,
        shift: Option<&Tensor>,
        factors: Option<&Tensor>,
        n: usize,
    ) -> Result<Tensor> {
        let (inputs, outputs) = w.dims2()?;
        let w = match factors {
            Some(f) => w.unsqueeze(0)?.broadcast_mul(&f.unsqueeze(2)?)?,
            None => w.unsqueeze(0)?.broadcast_as((n, inputs, outputs))?,
        };
        let bias = match (b, shift) {
            (Some(b), Some(s)) => s.broadcast_add(b)?,
            (Some(b), None) => b.unsqueeze(0)?.broadcast_as((n, outputs))?,
            (None, Some(s)) => s.clone(),
            (None, None) => Tensor::zeros((n, outputs), w.dtype(), w.device())?,
        };
        Tensor::cat(&[&w, &bias.unsqueeze(1)?], 1)
    }

    /// Each layer's input factors `[N, inputs]` for codes `[N, code]` (none without
    /// `modulate`).
    fn factors(&self, p: &Params, codes: &Tensor) -> Result<Vec<Tensor>> {
        self.styles
            .iter()
            .map(|s| s.forward(p, codes)? + 1.0)
            .collect()
    }

    /// The codes z′ `[N, code size]` of noise `[N, latent]`.
    pub fn codes(&self, p: &Params, z: &Tensor) -> Result<Tensor> {
        let mut x = z.clone();
        for (k, layer) in self.mapping.iter().enumerate() {
            x = layer.forward(p, &x)?;
            // The last layer is linear: codes spread like a CPPN sketch's z ~ N(0, 1)
            // instead of being squashed into (−1, 1).
            if k + 1 < self.mapping.len() {
                x = activate(Activation::Tanh, &x)?;
            }
        }
        Ok(x)
    }

    /// Noise `[N, latent]` to images `[N, C, S, S]` in [−1, 1].
    ///
    /// Each layer is one batched product per sample: its input with a column of ones times
    /// [`Self::sample_weights`]. Modulation, biases and z′'s shifts all live in those small
    /// per-sample matrices, so nothing the size of the pixel grid is broadcast, added or
    /// summed outside the products (those passes, and their backward sums, were most of a
    /// step). The renderer folds a sample's code into its weights the same way.
    pub fn forward(&self, p: &Params, z: &Tensor, ctx: &Ctx) -> Result<Tensor> {
        let n = z.dim(0)?;
        let codes = self.codes(p, z)?;
        let factors = self.factors(p, &codes)?;
        let (pixels, columns) = self.coords.dims2()?;
        let mut x = if ctx.train && self.shape.jitter > 0.0 {
            self.jittered_coords(n, ctx, z.device())?
        } else {
            self.coords
                .unsqueeze(0)?
                .broadcast_as((n, pixels, columns))?
        };
        // Candle's CPU product reads a batch stride of 0 as is; other backends get a copy
        // (small: the grid's few coordinate columns).
        if !x.device().is_cpu() {
            x = x.contiguous()?;
        }
        let later = self.shape.later_layers(self.channels);
        let mut layers = vec![(
            self.first_xy.parts(p)?,
            Some(self.first_z.forward(p, &codes)?),
            self.shape.activations[0],
        )];
        for ((layer, z), (_, _, act)) in self.rest.iter().zip(later) {
            let shift = z.as_ref().map(|z| z.forward(p, &codes)).transpose()?;
            layers.push((layer.parts(p)?, shift, act));
        }
        let last = layers.len() - 1;
        for (k, ((w, b), shift, act)) in layers.into_iter().enumerate() {
            let weights = Self::sample_weights(&w, b.as_ref(), shift.as_ref(), factors.get(k), n)?;
            let pre = super::layers::matmul(p, &x, &weights)?;
            x = if k == last {
                activate(act, &pre)?
            } else {
                activate_with_ones(act, &pre)?
            };
        }
        x.reshape((n, self.side, self.side, self.channels))?
            .permute((0, 3, 1, 2))?
            .contiguous()
    }

    /// `[n, pixels, inputs + 1]`: every pixel of every sample at its own point within
    /// ±`jitter` of its centre, drawn from `ctx` (a rank's rows get the draws one process
    /// makes for them, so runs on several ranks train the same steps).
    fn jittered_coords(&self, n: usize, ctx: &Ctx, device: &candle_core::Device) -> Result<Tensor> {
        let (pixels, columns) = self.coords.dims2()?;
        let mut rng = Pcg64Mcg::seed_from_u64(stable_hash(b"cppn.jitter", ctx.dropout_seed));
        rng.advance((ctx.first_row * pixels * 2) as u128);
        let j = self.shape.jitter;
        let mut out = Vec::with_capacity(n * pixels * columns);
        for _ in 0..n {
            let points = cppn::render::input_coordinates_shifted(&self.grid, |_| {
                let dx = (rng.random::<f64>() * 2.0 - 1.0) * j;
                (dx, (rng.random::<f64>() * 2.0 - 1.0) * j)
            });
            out.extend(with_ones(&points, columns - 1));
        }
        Tensor::from_vec(out, (n, pixels, columns), device)
    }

    /// The coordinate MLP as the renderer's [`Network`] for the sample with code `code`
    /// (inputs: coordinates, then z′). With `z_every_layer`, the code's share of each
    /// later layer is a constant of the sample, folded into that layer's biases.
    pub fn network(&self, p: &Params, code: &[f32]) -> Result<Network> {
        let read = |name: &str| -> Result<Vec<f32>> {
            p.vars
                .get(name)
                .ok_or_else(|| candle_core::Error::Msg(format!("no parameter {name}")))?
                .as_tensor()
                .flatten_all()?
                .to_vec1()
        };
        let inputs = self.coords.dim(1)? - 1 + self.shape.code_size();
        let h0 = self.shape.layers[0];
        let code_t = Tensor::from_slice(code, (1, code.len()), &p.device)?;
        let factors: Vec<Vec<f32>> = self
            .factors(p, &code_t)?
            .iter()
            .map(|f| f.squeeze(0)?.to_vec1())
            .collect::<Result<_>>()?;
        // A sample's input factors are constants: fold them into the rows of its weights
        // (`[inputs, outputs]`, row-major).
        let fold = |w: &mut [f32], layer: usize, outputs: usize| {
            if let Some(f) = factors.get(layer) {
                for (row, &factor) in w.chunks_mut(outputs).zip(f) {
                    row.iter_mut().for_each(|v| *v *= factor);
                }
            }
        };
        // Rows are inputs: the coordinates' rows, then z′'s.
        let mut w = read(&format!("{LAYER}0.xy.w"))?;
        fold(&mut w, 0, h0);
        w.extend(read(&format!("{LAYER}0.z.w"))?);
        let mut layers = vec![Dense {
            inputs,
            outputs: h0,
            w,
            b: read(&format!("{LAYER}0.xy.b"))?,
            activation: self.shape.activations[0],
        }];
        let later = self.shape.later_layers(self.channels);
        for (k, (inp, out, act)) in later.into_iter().enumerate() {
            let name = format!("{LAYER}{}", k + 1);
            let mut b = read(&format!("{name}.b"))?;
            if self.shape.z_every_layer {
                // z.w is [code, out], row-major.
                let zw = read(&format!("{name}.z.w"))?;
                for (o, bias) in b.iter_mut().enumerate() {
                    let shift: f64 = code
                        .iter()
                        .enumerate()
                        .map(|(i, &c)| c as f64 * zw[i * out + o] as f64)
                        .sum();
                    *bias = (*bias as f64 + shift) as f32;
                }
            }
            let mut w = read(&format!("{name}.w"))?;
            fold(&mut w, k + 1, out);
            layers.push(Dense {
                inputs: inp,
                outputs: out,
                w,
                b,
                activation: act,
            });
        }
        Ok(Network { layers })
    }

    pub fn shape(&self) -> &CppnShape {
        &self.shape
    }
}

/// One sample as a CPPN sketch: the generator's weights and the sample's z′ written out,
/// so it renders, animates (a walk around z′) and remixes like any CPPN sketch.
pub fn sketch_source(spec: &CppnSpec, net: &Network, code: &[f32], note: &str) -> String {
    let list = |xs: &[f32]| {
        xs.iter()
            .map(|&x| cppn::net::format_exact(x))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let names = |acts: &[Activation]| {
        acts.iter()
            .map(|a| format!("\"{}\"", a.name()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let inputs = if spec.inputs.r {
        r#"["x", "y", "r"]"#
    } else {
        r#"["x", "y"]"#
    };
    let fourier = spec.inputs.fourier.map_or(String::new(), |f| {
        format!(
            "    fourier: #{{ count: {}, scale: {} }},   // frequencies drawn from the seed\n",
            f.count, f.scale
        )
    });
    let output = match spec.output {
        OutputMode::Gray => "gray",
        _ => "rgb",
    };
    let layers = spec
        .hidden
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "// {note}\n\
         // A CPPN-GAN sample as a CPPN sketch: the generator's weights and this sample's\n\
         // code z. Change `size` for any resolution; `animate` walks around z.\n\
         #{{\n    kind: \"cppn\",\n    size: [{w}, {h}],\n    inputs: {inputs},\n{fourier}    \
         scale: {scale},\n    z: [{z}],\n    layers: [{layers}],\n    activation: [{acts}],\n    \
         output: \"{output}\",\n    output_activation: \"tanh\",\n    seed: {seed},\n    \
         animate: #{{ frames: 48, fps: 24.0, radius: 0.5 }},\n    weights: {weights},\n}}\n",
        w = spec.width,
        h = spec.height,
        scale = spec.scale,
        z = list(code),
        acts = names(&spec.activations),
        seed = spec.seed,
        weights = net.weights_source("    "),
    )
}
