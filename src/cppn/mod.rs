//! CPPNs: networks from pixel coordinates (x, y, r and a latent z) to colour. Resolution
//! free, so a favourite renders again at any size.

pub mod animate;
mod blocks;
pub mod fastmath;
pub mod fit;
pub mod fit_candle;
pub mod net;
pub mod render;
pub mod train;

use std::path::Path;
use std::sync::Arc;

use image::{DynamicImage, RgbImage};
use rand::SeedableRng;
use rand_pcg::Pcg64Mcg;

use crate::sketch::{MapReader, SketchError, MAX_PIXELS, MAX_SIDE};
use net::{Activation, Init, Network};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Inputs {
    pub x: bool,
    pub y: bool,
    pub r: bool,
    /// Random Fourier features of (x, y) after x, y and r.
    pub fourier: Option<Fourier>,
}

/// `fourier: #{ count, scale }`: `count` random frequencies b ~ N(0, scale²) per axis
/// (Tancik et al. 2020, "Fourier Features Let Networks Learn High Frequency Functions"),
/// each giving the inputs sin 2π(b·p) and cos 2π(b·p) of the point p = (x, y). They let
/// a small network draw (and a fit learn) detail plain coordinates make it blur.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Fourier {
    pub count: usize,
    /// Spread of the frequencies, in cycles per network-coordinate unit.
    pub scale: f64,
}

impl Fourier {
    /// The frequencies, `count` pairs (bx, by), drawn from the sketch's seed (as its
    /// weights are).
    pub fn frequencies(&self, seed: u64) -> Vec<[f32; 2]> {
        let mut rng = Pcg64Mcg::seed_from_u64(seed ^ 0xF0_u64.rotate_left(40));
        (0..self.count)
            .map(|_| {
                let bx = crate::noise::normal(&mut rng) * self.scale;
                let by = crate::noise::normal(&mut rng) * self.scale;
                [bx as f32, by as f32]
            })
            .collect()
    }
}

impl Inputs {
    pub fn coordinate_count(&self) -> usize {
        self.x as usize
            + self.y as usize
            + self.r as usize
            + self.fourier.map_or(0, |f| 2 * f.count)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Symmetry {
    None,
    X,
    Y,
    XY,
}

#[derive(Debug, Clone)]
pub enum OutputMode {
    Gray,
    Rgb,
    /// The three outputs are hue, saturation, value.
    Hsv,
    /// Two outputs choose where to sample the texture.
    Uv(Arc<RgbImage>),
}

impl OutputMode {
    pub fn outputs(&self) -> usize {
        match self {
            OutputMode::Gray => 1,
            OutputMode::Uv(_) => 2,
            _ => 3,
        }
    }
}

/// A latent walk: `z(t) = z + radius · (cos 2πt · a + sin 2πt · b)` for t in [0, 1),
/// a closed loop, so the animation repeats seamlessly.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Animation {
    pub frames: u32,
    pub fps: f64,
    pub radius: f64,
}

#[derive(Debug, Clone)]
pub struct CppnSpec {
    pub width: u32,
    pub height: u32,
    pub inputs: Inputs,
    /// Latent size; its values come from `z_values` or the seed.
    pub z_dims: usize,
    pub z_values: Option<Vec<f32>>,
    /// Half the shorter side, in network coordinates (bigger = zoomed out).
    pub scale: f64,
    pub hidden: Vec<usize>,
    pub activations: Vec<Activation>,
    pub output: OutputMode,
    pub output_activation: Activation,
    pub init: Init,
    pub init_std: f64,
    pub biases: bool,
    pub symmetry: Symmetry,
    pub seed: u64,
    pub animation: Animation,
    /// Train the network on an image instead of using random weights.
    pub fit: Option<fit::FitSpec>,
    /// Weights written out in the sketch (`weights: [#{ w: [...], b: [...] }, ...]`, as
    /// the studio saves a picked mutation): they win over the seed's and over `fit`.
    pub weights: Option<Arc<Network>>,
}

const KEYS_NOTE: &str = "x, y, r";

impl CppnSpec {
    pub fn parse(map: &mut MapReader, sketch_dir: &Path) -> Result<Self, SketchError> {
        let (width, height) = map.size("size", (512, 512), MAX_SIDE, MAX_PIXELS)?;
        let inputs = parse_inputs(map)?;
        let (z_dims, z_values) = match map.raw("z") {
            None => (8, None),
            Some(v) if v.is_array() => {
                let items = v.clone().into_array().unwrap_or_default();
                let vals = items
                    .iter()
                    .map(|d| map.check_float("z", d, -1e3..=1e3).map(|f| f as f32))
                    .collect::<Result<Vec<f32>, _>>()?;
                (vals.len(), Some(vals))
            }
            Some(_) => (map.int("z", 8, 0..=64)? as usize, None),
        };
        let scale = map.float("scale", 1.0, 1e-3..=1e4)?;
        let hidden = parse_layers(map)?;
        let activations = parse_activations(map, hidden.len())?;
        let output_activation = match map.raw("output_activation") {
            None => Activation::Sigmoid,
            Some(v) => activation_of(map, "output_activation", &v)?,
        };
        let mode = map.choice("output", "output", &["rgb", "gray", "hsv", "uv"], "rgb")?;
        let texture_path = map.string("texture", "")?;
        let output = match mode.as_str() {
            "gray" => OutputMode::Gray,
            "hsv" => OutputMode::Hsv,
            "uv" => {
                if texture_path.is_empty() {
                    return Err(map.error_at(
                        "output",
                        None,
                        "output \"uv\" needs a `texture: \"image.png\"` to sample",
                    ));
                }
                let path = sketch_dir.join(&texture_path);
                let img = image::open(&path).map_err(|e| {
                    map.error_at(
                        "texture",
                        None,
                        format!("cannot read texture {}: {e}", path.display()),
                    )
                })?;
                OutputMode::Uv(Arc::new(img.to_rgb8()))
            }
            _ => OutputMode::Rgb,
        };
        let init = match map
            .choice(
                "init",
                "weight init",
                &["normal", "uniform", "siren"],
                "normal",
            )?
            .as_str()
        {
            "uniform" => Init::Uniform,
            "siren" => Init::Siren,
            _ => Init::Normal,
        };
        let init_std = map.float("init_std", 1.0, 0.0..=100.0)?;
        let biases = map.bool("biases", true)?;
        let symmetry = match map
            .choice("symmetry", "symmetry", &["none", "x", "y", "xy"], "none")?
            .as_str()
        {
            "x" => Symmetry::X,
            "y" => Symmetry::Y,
            "xy" => Symmetry::XY,
            _ => Symmetry::None,
        };
        let seed = map.int("seed", 0, 0..=i64::MAX)? as u64;
        let animation = match map.map("animate")? {
            None => Animation {
                frames: 48,
                fps: 24.0,
                radius: 1.0,
            },
            Some(anim) => {
                let mut a = MapReader::new(map.file(), map.locator(), anim);
                let out = Animation {
                    frames: a.int("frames", 48, 2..=10_000)? as u32,
                    fps: a.float("fps", 24.0, 0.1..=100.0)?,
                    radius: a.float("radius", 1.0, 0.0..=100.0)?,
                };
                a.finish()?;
                out
            }
        };
        let fit = match map.map("fit")? {
            None => None,
            Some(m) => Some(parse_fit(map, m, sketch_dir)?),
        };
        if inputs.coordinate_count() == 0 {
            return Err(map.error_at(
                "inputs",
                None,
                format!("a CPPN needs at least one of {KEYS_NOTE} as input"),
            ));
        }
        let mut spec = CppnSpec {
            width,
            height,
            inputs,
            z_dims,
            z_values,
            scale,
            hidden,
            activations,
            output,
            output_activation,
            init,
            init_std,
            biases,
            symmetry,
            seed,
            animation,
            fit,
            weights: None,
        };
        if let Some(value) = map.raw("weights") {
            spec.weights = Some(Arc::new(parse_weights(map, &spec, &value)?));
        }
        Ok(spec)
    }

    /// Layer sizes from inputs to outputs.
    pub fn sizes(&self) -> Vec<usize> {
        let mut s = vec![self.inputs.coordinate_count() + self.z_dims];
        s.extend(&self.hidden);
        s.push(self.output.outputs());
        s
    }

    /// The network to render: fitted to the `fit` image if there is one (trained on
    /// first use), else the seeded random one.
    pub fn render_network(&self) -> anyhow::Result<Network> {
        if let Some(w) = &self.weights {
            return Ok((**w).clone());
        }
        match &self.fit {
            Some(f) => fit::fitted_network(self, f),
            None => Ok(self.network()),
        }
    }

    /// The fit [`render_network`](Self::render_network) would train before it returns:
    /// a `fit:` without explicit weights that this process has not fitted (or tried to).
    pub fn pending_fit(&self) -> Option<&fit::FitSpec> {
        self.fit
            .as_ref()
            .filter(|f| self.weights.is_none() && !fit::is_fitted(self, f))
    }

    /// The activations of the hidden layers and the output, in layer order.
    pub fn layer_activations(&self) -> Vec<Activation> {
        let mut acts = self.activations.clone();
        acts.push(self.output_activation);
        acts
    }

    /// Whether `net` has this spec's shape (layer sizes and activations), so it can
    /// stand in for the spec's own network.
    pub fn fits_network(&self, net: &Network) -> bool {
        let sizes = self.sizes();
        net.layers.len() + 1 == sizes.len()
            && net
                .layers
                .iter()
                .zip(sizes.windows(2))
                .zip(self.layer_activations())
                .all(|((l, io), a)| {
                    l.inputs == io[0]
                        && l.outputs == io[1]
                        && l.activation == a
                        && l.w.len() == l.inputs * l.outputs
                        && l.b.len() == l.outputs
                })
    }

    /// The seeded (untrained) network.
    pub fn network(&self) -> Network {
        Network::random(
            &self.sizes(),
            &self.layer_activations(),
            self.init_std,
            self.init,
            self.biases,
            self.seed,
        )
    }

    /// The latent vector: given in the sketch, or drawn from the seed.
    pub fn z(&self) -> Vec<f32> {
        if let Some(z) = &self.z_values {
            return z.clone();
        }
        let mut rng = Pcg64Mcg::seed_from_u64(self.seed ^ 0x005E_ED0F_2A7E);
        (0..self.z_dims)
            .map(|_| crate::noise::normal(&mut rng) as f32)
            .collect()
    }

    pub fn render(&self) -> anyhow::Result<DynamicImage> {
        Ok(render::render(self, &self.render_network()?, &self.z()))
    }
}

fn parse_fit(
    map: &MapReader,
    m: rhai::Map,
    sketch_dir: &Path,
) -> Result<fit::FitSpec, SketchError> {
    let mut f = MapReader::new(map.file(), map.locator(), m);
    let image = f.string("image", "")?;
    if image.is_empty() {
        return Err(f.error_at(
            "fit",
            None,
            "fit needs `image: \"path.png\"` (relative to the sketch)",
        ));
    }
    let steps = f.int("steps", 500, 1..=100_000)? as usize;
    let lr = f.float("lr", 0.01, 1e-6..=1.0)?;
    let size = f.int("size", 64, 8..=512)? as u32;
    let hold_out = f.bool("hold_out", false)?;
    f.finish()?;
    let path = sketch_dir.join(&image);
    let img = image::open(&path).map_err(|e| {
        map.error_at(
            "image",
            None,
            format!("cannot read fit image {}: {e}", path.display()),
        )
    })?;
    // Train at `size` pixels on the longer side: enough detail, seconds not minutes.
    let scale = size as f64 / img.width().max(img.height()) as f64;
    let (w, h) = (
        ((img.width() as f64 * scale).round() as u32).max(1),
        ((img.height() as f64 * scale).round() as u32).max(1),
    );
    let target = img
        .resize_exact(w, h, image::imageops::FilterType::Triangle)
        .to_rgb8();
    Ok(fit::FitSpec {
        image_path: path,
        target: Arc::new(target),
        steps,
        lr,
        hold_out,
        device: Default::default(),
    })
}

/// `weights: [#{ w: [...], b: [...] }, ...]`: one map per layer (the hidden layers, then
/// the output), `w` row-major `[input][output]`. The shape must be the one the rest of
/// the sketch describes; errors say which layer and what was expected.
fn parse_weights(
    map: &MapReader,
    spec: &CppnSpec,
    value: &rhai::Dynamic,
) -> Result<Network, SketchError> {
    const EXPECTED: &str = "an array with one #{ w: [...], b: [...] } per layer";
    let layers = value
        .clone()
        .into_array()
        .map_err(|_| map.type_error("weights", value, EXPECTED))?;
    let sizes = spec.sizes();
    if layers.len() + 1 != sizes.len() {
        return Err(map.error_at(
            "weights",
            None,
            format!(
                "\"weights\" has {} layers, but the sketch's network has {} (sizes {:?})",
                layers.len(),
                sizes.len() - 1,
                sizes
            ),
        ));
    }
    let numbers = |layer: usize, name: &str, v: Option<&rhai::Dynamic>, want: usize| {
        let what = format!("layer {} of \"weights\": {name}", layer + 1);
        let items = v.and_then(|v| v.clone().into_array().ok()).ok_or_else(|| {
            map.error_at(
                "weights",
                None,
                format!("{what} must be an array of {want} numbers"),
            )
        })?;
        if items.len() != want {
            return Err(map.error_at(
                "weights",
                None,
                format!("{what} has {} numbers, expected {want}", items.len()),
            ));
        }
        items
            .iter()
            .enumerate()
            .map(|(k, d)| match (d.as_float(), d.as_int()) {
                (Ok(f), _) if f.is_finite() && f.abs() <= 1e30 => Ok(f as f32),
                (_, Ok(i)) => Ok(i as f32),
                _ => Err(map.error_at(
                    "weights",
                    None,
                    format!("{what}[{k}] must be a finite number, got {d}"),
                )),
            })
            .collect::<Result<Vec<f32>, SketchError>>()
    };
    let mut dense = Vec::with_capacity(layers.len());
    for (k, ((layer, io), activation)) in layers
        .iter()
        .zip(sizes.windows(2))
        .zip(spec.layer_activations())
        .enumerate()
    {
        let Some(m) = layer.clone().try_cast::<rhai::Map>() else {
            return Err(map.error_at(
                "weights",
                None,
                format!(
                    "layer {} of \"weights\" must be a map #{{ w: [...], b: [...] }}, got {}",
                    k + 1,
                    crate::sketch::reader::describe(layer)
                ),
            ));
        };
        if let Some(extra) = m.keys().find(|key| !matches!(key.as_str(), "w" | "b")) {
            return Err(map.error_at(
                "weights",
                None,
                format!(
                    "layer {} of \"weights\" has an unknown key \"{extra}\"; expected w and b",
                    k + 1
                ),
            ));
        }
        let (inputs, outputs) = (io[0], io[1]);
        dense.push(net::Dense {
            inputs,
            outputs,
            w: numbers(k, "w", m.get("w"), inputs * outputs)?,
            b: numbers(k, "b", m.get("b"), outputs)?,
            activation,
        });
    }
    Ok(Network { layers: dense })
}

/// `layers: [w, …]` (or `depth` × `width`): the hidden layers' widths.
pub fn parse_layers(map: &mut MapReader) -> Result<Vec<usize>, SketchError> {
    Ok(match map.raw("layers") {
        Some(v) => {
            let items = v
                .clone()
                .into_array()
                .map_err(|_| map.type_error("layers", &v, "an array of layer widths"))?;
            items
                .iter()
                .map(|d| match d.as_int() {
                    Ok(n) if (1..=512).contains(&n) => Ok(n as usize),
                    _ => Err(map.error_at(
                        "layers",
                        Some(d),
                        format!("layer widths must be integers 1–512, got {d}"),
                    )),
                })
                .collect::<Result<_, _>>()?
        }
        None => {
            let depth = map.int("depth", 4, 0..=64)? as usize;
            let width = map.int("width", 16, 1..=512)? as usize;
            vec![width; depth]
        }
    })
}

/// `activation: "name"` (every hidden layer) or `["name", …]` (one per layer).
pub fn parse_activations(
    map: &mut MapReader,
    hidden: usize,
) -> Result<Vec<Activation>, SketchError> {
    Ok(match map.raw("activation") {
        None => vec![Activation::Tanh; hidden],
        Some(v) if v.is_array() => {
            let items = v.clone().into_array().unwrap_or_default();
            if items.len() != hidden {
                return Err(map.error_at(
                    "activation",
                    None,
                    format!(
                        "{} activations for {} hidden layers; give one per layer or a single name",
                        items.len(),
                        hidden
                    ),
                ));
            }
            items
                .iter()
                .map(|d| activation_of(map, "activation", d))
                .collect::<Result<_, _>>()?
        }
        Some(v) => vec![activation_of(map, "activation", &v)?; hidden],
    })
}

/// `fourier: #{ count, scale }`, if given.
pub fn parse_fourier(map: &mut MapReader) -> Result<Option<Fourier>, SketchError> {
    let Some(m) = map.map("fourier")? else {
        return Ok(None);
    };
    let mut f = MapReader::new(map.file(), map.locator(), m);
    let count = f.int("count", 16, 1..=64)? as usize;
    let scale = f.float("scale", 2.0, 1e-3..=1e3)?;
    f.finish()?;
    Ok(Some(Fourier { count, scale }))
}

fn parse_inputs(map: &mut MapReader) -> Result<Inputs, SketchError> {
    let fourier = parse_fourier(map)?;
    let Some(v) = map.raw("inputs") else {
        return Ok(Inputs {
            x: true,
            y: true,
            r: true,
            fourier,
        });
    };
    let items = v
        .clone()
        .into_array()
        .map_err(|_| map.type_error("inputs", &v, "an array like [\"x\", \"y\", \"r\"]"))?;
    let mut inputs = Inputs {
        x: false,
        y: false,
        r: false,
        fourier,
    };
    for item in &items {
        match item.clone().into_string().unwrap_or_default().as_str() {
            "x" => inputs.x = true,
            "y" => inputs.y = true,
            "r" => inputs.r = true,
            _ => {
                return Err(map.error_at(
                    "inputs",
                    Some(item),
                    format!(
                    "unknown input \"{item}\"; expected any of {KEYS_NOTE} (the latent is `z: N`)"
                ),
                ))
            }
        }
    }
    Ok(inputs)
}

fn activation_of(map: &MapReader, key: &str, v: &rhai::Dynamic) -> Result<Activation, SketchError> {
    let name = v
        .clone()
        .into_string()
        .map_err(|_| map.type_error(key, v, "an activation name"))?;
    Activation::from_name(&name).ok_or_else(|| {
        map.error_at(
            key,
            Some(v),
            format!(
                "unknown activation \"{name}\"; expected one of {}",
                Activation::NAMES.join(", ")
            ),
        )
    })
}
