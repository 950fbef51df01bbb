//! GANs: DCGAN, conditional DCGAN, CAN and CPPN-GAN, trained with Candle in a process of its own
//! that writes a run directory (see `crate::run`).

pub mod adam;
pub mod augment;
pub mod classifier;
pub mod conv_ops;
pub mod cppn_generator;
pub mod data;
pub mod kernels;
pub mod layers;
pub mod model;
pub mod quality;
pub mod saved;
pub mod swd;
pub mod train;

use std::path::{Path, PathBuf};

use crate::sketch::{MapReader, SketchError};
pub use kernels::Precision;
use layers::{Act, Norm};

/// Learning rates a sketch (or control.json, live) may set.
pub const LR_RANGE: std::ops::RangeInclusive<f64> = 1e-7..=1.0;
/// `sample_every` a sketch (or control.json, live) may set.
pub const SAMPLE_EVERY_RANGE: std::ops::RangeInclusive<i64> = 1..=1_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    Dcgan,
    Cdcgan,
    Can,
    /// A DCGAN whose generator is a CPPN (see [`cppn_generator`]).
    Cppn,
}

impl std::fmt::Display for ModelKind {
    /// The word a sketch writes (`model: "cdcgan"`), for messages.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ModelKind::Dcgan => "dcgan",
            ModelKind::Cdcgan => "cdcgan",
            ModelKind::Can => "can",
            ModelKind::Cppn => "cppn",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Loss {
    Bce,
    Hinge,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum DataSource {
    /// A Truchet or CPPN sketch renders `count` images (its classes give labels).
    Sketch { path: PathBuf, count: usize },
    /// Images under a folder, labels from subfolder names; transparency composited onto
    /// `background` (unless `channels` is 4).
    Folder {
        path: PathBuf,
        crop: bool,
        #[serde(default = "white")]
        background: [u8; 3],
    },
}

fn white() -> [u8; 3] {
    [255, 255, 255]
}

/// Everything that defines a training run; written to the run's `spec.json`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GanSpec {
    pub model: ModelKind,
    pub image_size: usize,
    pub channels: usize,
    pub latent: usize,
    /// Side of the generator's first feature map.
    pub start: usize,
    pub g_widths: Vec<usize>,
    pub d_widths: Vec<usize>,
    pub kernel: usize,
    pub g_norm: Norm,
    pub d_norm: Norm,
    pub g_activation: Act,
    pub d_activation: Act,
    pub dropout: f64,
    pub upsample: Upsample,
    pub loss: Loss,
    pub lr_g: f64,
    pub lr_d: f64,
    pub betas_g: (f64, f64),
    pub betas_d: (f64, f64),
    pub batch: usize,
    pub steps: usize,
    pub sample_every: usize,
    pub checkpoint_every: usize,
    /// Keep `step_N` checkpoints every this many steps (besides `latest`).
    pub keep_every: usize,
    /// Decay of the generator's exponential moving average (0 turns it off).
    pub ema: f64,
    pub seed: u64,
    pub data: DataSource,
    /// DiffAugment of real and generated images in D and G steps (none: off).
    #[serde(default)]
    pub augment: Option<AugmentSpec>,
    /// Random horizontal flips of real images.
    #[serde(default)]
    pub mirror: bool,
    /// Score the EMA and raw generators (SWD against the data) every this many steps
    /// (0: never); the best is kept in `checkpoints/best.safetensors`.
    #[serde(default)]
    pub eval_every: usize,
    /// Images per side in an evaluation.
    #[serde(default = "default_eval_images")]
    pub eval_images: usize,
    /// How a conditional D sees the label (cdcgan only).
    #[serde(default)]
    pub d_condition: Condition,
    /// A minibatch standard-deviation feature before D's output (Karras et al. 2018):
    /// D can tell a batch of near-copies from a varied one, so collapse costs G.
    #[serde(default)]
    pub minibatch_std: bool,
    /// Spectral normalisation of every D weight (Miyato et al. 2018).
    #[serde(default)]
    pub spectral_norm: bool,
    /// R1 penalty weight γ on D's gradient at real images (Mescheder et al. 2018); 0: off.
    #[serde(default)]
    pub r1: f64,
    /// Largest global L2 norm of G's (and the encoder's) gradient in a step: a larger one
    /// is scaled down to it before Adam sees it; 0: off.
    #[serde(default)]
    pub g_clip: f64,
    /// The first step `g_clip` applies at: early on G's gradient is large while it learns
    /// fast, and a clip sized for late training would slow that; late in a long run a
    /// rare huge step can throw everything learned away. 0: from the start.
    #[serde(default)]
    pub g_clip_from: u64,
    /// How a conditional G is given the label (cdcgan only).
    #[serde(default)]
    pub g_condition: GCondition,
    /// Weight λ of a mode-seeking term in G's loss (Mao et al. 2019): λ / (|G(z1) − G(z2)|
    /// / |z1 − z2|) over the two halves of each batch, so that different noise must draw
    /// different pictures; 0: off.
    #[serde(default)]
    pub mode_seeking: f64,
    /// The CPPN generator's shape (`model: "cppn"` only).
    #[serde(default)]
    pub cppn: Option<cppn_generator::CppnShape>,
    /// An encoder trained beside G (`vae: #{ … }`): G must also redraw real images from
    /// their codes.
    #[serde(default)]
    pub vae: Option<VaeSpec>,
    /// Arithmetic of the convolutions and matrix products: `bf16` multiplies bfloat16
    /// copies of inputs and weights (sums in f32, as PyTorch's autocast) where the device
    /// has a bf16 path; weights, Adam, statistics and checkpoints stay f32.
    #[serde(default)]
    pub precision: Precision,
    /// Scale of the noise that samples are drawn from (`easel sample`, times its
    /// `--truncation`; `easel eval`; the studio's and the gallery's grids); training and
    /// its own evaluations always draw at 1. A recipe sets it after measuring its model: the VAE-GAN CPPN's
    /// decoder blends neighbouring codes' pictures near the prior's centre, and its
    /// samples come out cleaner drawn farther out (docs/gans.md, CPPN-GAN).
    #[serde(default = "one")]
    pub sample_scale: f64,
}

fn one() -> f64 {
    1.0
}

/// VAE-GAN (Larsen et al. 2016; the recipe of hardmaru's cppn-gan-vae): an encoder maps
/// each real image to a Gaussian over the noise, and G is also trained to redraw the image
/// from a draw of it. The adversarial loss alone lets G answer every noise with the one
/// picture D currently believes; the reconstruction makes every training image need its
/// own code, so G cannot ignore z, and the KL term keeps those codes where sampling's
/// N(0, I) noise lands.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct VaeSpec {
    /// Weight of (reconstruction + β·KL) in G's loss; the reconstruction is the mean
    /// squared error per pixel value in [−1, 1].
    pub weight: f64,
    /// β: the KL divergence to N(0, I) (in nats per image, divided by the pixel values
    /// per image so that it is on the reconstruction's per-value scale).
    pub beta: f64,
    /// Steps over which G's adversarial loss is faded in (0 → 1, linearly): G first
    /// learns to draw the data from codes, as a VAE, before D's verdict can pull every
    /// code to one picture. 0: from the start.
    #[serde(default)]
    pub warmup: u64,
    /// What D is shown as fakes, and G's adversarial loss is about.
    #[serde(default)]
    pub fakes: VaeFakes,
}

/// The fakes of a VAE-GAN.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VaeFakes {
    /// G's redrawings of the real batch (as VQGAN trains its decoder): the adversarial
    /// loss only ever sharpens pictures that must also match a real one, so it cannot
    /// pull every code to one picture; the KL term keeps the codes where N(0, I) noise
    /// lands, so samples drawn from noise look like the redrawings.
    #[default]
    Reconstructions,
    /// Samples from N(0, I) noise (Larsen et al.'s VAE-GAN without its reconstruction
    /// fakes): D judges what sampling draws, but can pull it to one picture.
    Samples,
    /// Half of each: the redrawings keep every code in use while D also judges the
    /// samples themselves.
    Both,
}

impl VaeSpec {
    fn parse(map: &mut MapReader) -> Result<Option<Self>, SketchError> {
        let Some(m) = map.map("vae")? else {
            return Ok(None);
        };
        let mut v = MapReader::new(map.file(), map.locator(), m);
        let weight = v.float("weight", 1.0, 0.0..=1e4)?;
        let beta = v.float("beta", 1.0, 0.0..=1e4)?;
        let warmup = v.int("warmup", 0, 0..=10_000_000)? as u64;
        let fakes = match v
            .choice(
                "fakes",
                "what D sees as fake",
                &["reconstructions", "samples", "both"],
                "reconstructions",
            )?
            .as_str()
        {
            "samples" => VaeFakes::Samples,
            "both" => VaeFakes::Both,
            _ => VaeFakes::Reconstructions,
        };
        v.finish()?;
        Ok(Some(VaeSpec {
            weight,
            beta,
            warmup,
            fakes,
        }))
    }
}

/// How a conditional discriminator is given the label.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Condition {
    /// One-hot label planes concatenated to the image (the Keras article's cDCGAN).
    #[default]
    Concat,
    /// A class embedding dotted with D's features, added to the logit (Miyato & Koyama
    /// 2018, "cGANs with Projection Discriminator").
    Projection,
}

/// How a conditional generator is given the label.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GCondition {
    /// One-hot label concatenated to the noise (the Keras article's cDCGAN).
    #[default]
    Input,
    /// Also class-conditional normalisation: each of G's norm layers scales and shifts
    /// its channels by a learned vector of the label (de Vries et al. 2017; the generator
    /// side of Miyato & Koyama's projection cGAN), so the label acts at every stage.
    Norm,
}

fn default_eval_images() -> usize {
    256
}

/// DiffAugment's policy and how often each transform applies.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AugmentSpec {
    pub policy: augment::Policy,
    /// The probability each transform applies to an image (the start value when adaptive).
    pub p: f64,
    /// Adjust `p` as ADA does, from how sure D is of real images.
    pub adaptive: bool,
    /// Adaptive only: the images over which `p` may go from 0 to 1 (ADA's speed).
    #[serde(default = "ada_images_before")]
    pub ada_images: f64,
}

fn ada_images_before() -> f64 {
    augment::AdaptiveP::IMAGES_TO_FULL_BEFORE
}

fn default_ada_images() -> f64 {
    augment::AdaptiveP::IMAGES_TO_FULL
}

impl GanSpec {
    /// Number of ×2 upsampling stages from `start` to `image_size`.
    pub fn upsamples(&self) -> usize {
        (self.image_size / self.start).trailing_zeros() as usize
    }

    pub fn parse(map: &mut MapReader, sketch_dir: &Path) -> Result<Self, SketchError> {
        let model = match map
            .choice(
                "model",
                "GAN model",
                &["dcgan", "cdcgan", "can", "cppn"],
                "dcgan",
            )?
            .as_str()
        {
            "cdcgan" => ModelKind::Cdcgan,
            "can" => ModelKind::Can,
            "cppn" => ModelKind::Cppn,
            _ => ModelKind::Dcgan,
        };
        let image_size = map.int("image_size", 32, 28..=128)? as usize;
        let default_start = if image_size.is_power_of_two() { 4 } else { 7 };
        let start = map.int("start", default_start, 2..=32)? as usize;
        let ratio = image_size / start;
        if !image_size.is_multiple_of(start) || !ratio.is_power_of_two() || ratio < 2 {
            return Err(map.error_at(
                "image_size",
                None,
                format!("image_size {image_size} must be `start` ({start}) times a power of two (28 = 7·4, 32, 64, 128 = 4·2^k)"),
            ));
        }
        let ups = ratio.trailing_zeros() as usize;
        let channels = map.int("channels", 1, 1..=4)? as usize;
        if channels == 2 {
            return Err(map.error_at(
                "channels",
                None,
                "\"channels\" must be 1 (grayscale), 3 (RGB) or 4 (RGB and alpha)",
            ));
        }
        let latent = map.int("latent", 100, 1..=1024)? as usize;
        let g_base = map.int("g_base", 64, 1..=1024)? as usize;
        let d_base = map.int("d_base", 64, 1..=1024)? as usize;
        let g_widths = match map.raw("g_widths") {
            Some(_) => widths(map, "g_widths")?,
            None => (0..ups).rev().map(|k| g_base << k).collect(),
        };
        if g_widths.len() < ups {
            return Err(map.error_at(
                "g_widths",
                None,
                format!("{} generator widths cannot upsample {start} to {image_size}; need at least {ups}", g_widths.len()),
            ));
        }
        let default_d = (image_size / 4).max(2).ilog2() as usize;
        let d_widths = match map.raw("d_widths") {
            Some(_) => widths(map, "d_widths")?,
            None => (0..default_d).map(|k| d_base << k).collect(),
        };
        if d_widths.is_empty() || image_size >> d_widths.len() < 1 {
            return Err(map.error_at(
                "d_widths",
                None,
                "\"d_widths\" must list 1 or more layers, each halving the image",
            ));
        }
        let kernel = map.int("kernel", 4, 2..=7)? as usize;
        let norms = ["batch", "layer", "none"];
        let g_norm = parse_norm(&map.choice("g_norm", "norm", &norms, "batch")?);
        let d_norm = parse_norm(&map.choice("d_norm", "norm", &norms, "batch")?);
        let g_activation = activation(map, "g_activation", "relu")?;
        let d_activation = activation(map, "d_activation", "leaky_relu(0.2)")?;
        let dropout = map.float("dropout", 0.0, 0.0..=0.9)?;
        let upsample = match map
            .choice(
                "upsample",
                "upsampling",
                &["transposed", "nearest"],
                "transposed",
            )?
            .as_str()
        {
            "nearest" => Upsample::Nearest,
            _ => Upsample::Transposed,
        };
        let loss = match map
            .choice("loss", "loss", &["bce", "hinge"], "bce")?
            .as_str()
        {
            "hinge" => Loss::Hinge,
            _ => Loss::Bce,
        };
        let lr = map.float("lr", 2e-4, LR_RANGE)?;
        let lr_g = map.float("lr_g", lr, LR_RANGE)?;
        let lr_d = map.float("lr_d", lr, LR_RANGE)?;
        let both = betas(map, "betas", (0.5, 0.999))?;
        let betas_g = betas(map, "betas_g", both)?;
        let betas_d = betas(map, "betas_d", both)?;
        let batch = map.int("batch", 64, 1..=4096)? as usize;
        let steps = map.int("steps", 2000, 1..=10_000_000)? as usize;
        let sample_every = map.int("sample_every", 100, SAMPLE_EVERY_RANGE)? as usize;
        let checkpoint_every = map.int("checkpoint_every", 200, 1..=1_000_000)? as usize;
        let keep_every = map.int("keep_every", 1000, 1..=10_000_000)? as usize;
        let ema = map.float("ema", 0.999, 0.0..=0.99999)?;
        let seed = map.int("seed", 0, 0..=i64::MAX)? as u64;
        let data = parse_data(map, sketch_dir)?;
        let augment = parse_augment(map)?;
        let mirror = map.bool("mirror", false)?;
        let eval_every = map.int("eval_every", 500, 0..=10_000_000)? as usize;
        let eval_images = map.int("eval_images", 256, 16..=4096)? as usize;
        let d_condition = match map
            .choice(
                "d_condition",
                "label conditioning",
                &["concat", "projection"],
                "concat",
            )?
            .as_str()
        {
            "projection" => Condition::Projection,
            _ => Condition::Concat,
        };
        if d_condition == Condition::Projection && model != ModelKind::Cdcgan {
            return Err(map.error_at(
                "d_condition",
                None,
                "d_condition \"projection\" gives D the label of a conditional GAN: it needs model \"cdcgan\"",
            ));
        }
        let g_condition = match map
            .choice(
                "g_condition",
                "label conditioning",
                &["input", "norm"],
                "input",
            )?
            .as_str()
        {
            "norm" => GCondition::Norm,
            _ => GCondition::Input,
        };
        if g_condition == GCondition::Norm && (model != ModelKind::Cdcgan || g_norm == Norm::None) {
            return Err(map.error_at(
                "g_condition",
                None,
                "g_condition \"norm\" makes G's norm layers depend on the label: it needs model \"cdcgan\" and a g_norm (batch or layer)",
            ));
        }
        let mode_seeking = map.float("mode_seeking", 0.0, 0.0..=100.0)?;
        let minibatch_std = map.bool("minibatch_std", false)?;
        let spectral_norm = map.bool("spectral_norm", false)?;
        let r1 = map.float("r1", 0.0, 0.0..=1000.0)?;
        let g_clip = map.float("g_clip", 0.0, 0.0..=1e9)?;
        let g_clip_from = map.int("g_clip_from", 0, 0..=1_000_000_000)? as u64;
        if g_clip_from > 0 && g_clip == 0.0 {
            return Err(map.error_at(
                "g_clip_from",
                None,
                "g_clip_from says when clipping starts: it needs g_clip, the norm to clip to",
            ));
        }
        let vae = VaeSpec::parse(map)?;
        let sample_scale = map.float("sample_scale", 1.0, 0.01..=10.0)?;
        let precision = match map
            .choice("precision", "precision", &["fp32", "bf16"], "fp32")?
            .as_str()
        {
            "bf16" => Precision::Bf16,
            _ => Precision::Fp32,
        };
        let cppn = match (model, map.raw("cppn")) {
            (ModelKind::Cppn, _) => Some(cppn_generator::CppnShape::parse(map)?),
            (_, Some(_)) => {
                return Err(map.error_at(
                    "cppn",
                    None,
                    "`cppn: #{ … }` shapes a CPPN generator: it needs model \"cppn\"",
                ))
            }
            _ => None,
        };
        if model == ModelKind::Cppn && channels == 4 {
            return Err(map.error_at(
                "channels",
                None,
                "a CPPN generator draws 1 (grayscale) or 3 (RGB) channels",
            ));
        }
        Ok(GanSpec {
            model,
            image_size,
            channels,
            latent,
            start,
            g_widths,
            d_widths,
            kernel,
            g_norm,
            d_norm,
            g_activation,
            d_activation,
            dropout,
            upsample,
            loss,
            lr_g,
            lr_d,
            betas_g,
            betas_d,
            batch,
            steps,
            sample_every,
            checkpoint_every,
            keep_every,
            ema,
            seed,
            data,
            augment,
            mirror,
            eval_every,
            eval_images,
            d_condition,
            minibatch_std,
            spectral_norm,
            r1,
            g_clip,
            g_clip_from,
            g_condition,
            mode_seeking,
            cppn,
            vae,
            precision,
            sample_scale,
        })
    }
}

fn widths(map: &mut MapReader, key: &str) -> Result<Vec<usize>, SketchError> {
    let v = map.raw(key).expect("present");
    let items = v
        .clone()
        .into_array()
        .map_err(|_| map.type_error(key, &v, "an array of channel counts"))?;
    items
        .iter()
        .map(|d| match d.as_int() {
            Ok(n) if (1..=2048).contains(&n) => Ok(n as usize),
            _ => Err(map.error_at(
                key,
                Some(d),
                format!("channel counts must be integers 1–2048, got {d}"),
            )),
        })
        .collect()
}

fn betas(map: &mut MapReader, key: &str, default: (f64, f64)) -> Result<(f64, f64), SketchError> {
    let Some(v) = map.raw(key) else {
        return Ok(default);
    };
    let items = v
        .clone()
        .into_array()
        .map_err(|_| map.type_error(key, &v, "[beta1, beta2]"))?;
    if items.len() != 2 {
        return Err(map.error_at(key, None, format!("\"{key}\" must be [beta1, beta2]")));
    }
    Ok((
        map.check_float(key, &items[0], 0.0..=0.9999)?,
        map.check_float(key, &items[1], 0.0..=0.99999)?,
    ))
}

fn activation(map: &mut MapReader, key: &str, default: &str) -> Result<Act, SketchError> {
    let name = map.string(key, default)?;
    match parse_act(&name) {
        Some(act) => Ok(act),
        None => {
            let v = rhai::Dynamic::from(name.clone());
            Err(map.error_at(
                key,
                Some(&v),
                format!("unknown activation \"{name}\"; expected relu, selu or leaky_relu(slope), e.g. leaky_relu(0.2)"),
            ))
        }
    }
}

pub fn parse_act(name: &str) -> Option<Act> {
    match name.trim() {
        "relu" => Some(Act::Relu),
        "selu" => Some(Act::Selu),
        "leaky_relu" => Some(Act::LeakyRelu(0.2)),
        other => {
            let slope = other
                .strip_prefix("leaky_relu(")?
                .strip_suffix(')')?
                .trim()
                .parse::<f64>()
                .ok()?;
            (slope > 0.0 && slope < 1.0).then_some(Act::LeakyRelu(slope))
        }
    }
}

/// A name `choice` has already checked against batch, layer, none.
fn parse_norm(name: &str) -> Norm {
    match name {
        "batch" => Norm::Batch,
        "layer" => Norm::Layer,
        _ => Norm::None,
    }
}

/// How the generator doubles its feature maps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Upsample {
    /// Transposed convolutions.
    Transposed,
    /// Nearest-neighbour ×2, then a convolution (no checkerboard artefacts).
    Nearest,
}

impl std::fmt::Display for Act {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Act::Relu => write!(f, "relu"),
            Act::Selu => write!(f, "selu"),
            Act::LeakyRelu(slope) => write!(f, "leaky_relu({slope})"),
        }
    }
}

impl TryFrom<String> for Act {
    type Error = String;
    fn try_from(name: String) -> Result<Self, String> {
        parse_act(&name).ok_or_else(|| {
            format!("unknown activation \"{name}\"; expected relu, selu or leaky_relu(slope)")
        })
    }
}

impl From<Act> for String {
    fn from(a: Act) -> String {
        a.to_string()
    }
}

/// `augment: "color,translation,cutout"` (always applied), or
/// `augment: #{ policy: "…", p: 0.5 }` / `#{ policy: "…", p: "auto" }` (ADA; with
/// `ada_images: N`, `p` may cross [0, 1] in N images).
fn parse_augment(map: &mut MapReader) -> Result<Option<AugmentSpec>, SketchError> {
    let Some(v) = map.raw("augment") else {
        return Ok(None);
    };
    let policy_of = |map: &MapReader, text: &str, v: &rhai::Dynamic| {
        text.parse::<augment::Policy>()
            .map_err(|e| map.error_at("augment", Some(v), e.0))
    };
    if v.is_string() {
        let text = v.clone().into_string().unwrap_or_default();
        let policy = policy_of(map, &text, &v)?;
        return Ok((!policy.is_empty()).then_some(AugmentSpec {
            policy,
            p: 1.0,
            adaptive: false,
            ada_images: default_ada_images(),
        }));
    }
    let (false, Some(m)) = (!v.is_map(), map.map("augment")?) else {
        return Err(map.type_error(
            "augment",
            &v,
            "a policy like \"color,translation,cutout\" or #{ policy: \"…\", p: 0.5 | \"auto\" }",
        ));
    };
    let mut a = MapReader::new(map.file(), map.locator(), m);
    let text = a.string("policy", "color,translation,cutout")?;
    let policy = policy_of(&a, &text, &rhai::Dynamic::from(text.clone()))?;
    let (p, adaptive) = match a.raw("p") {
        Some(p) if p.is_string() => {
            let word = p.clone().into_string().unwrap_or_default();
            if word != "auto" {
                return Err(a.error_at(
                    "p",
                    Some(&p),
                    format!("\"p\" must be a probability 0–1 or \"auto\", got \"{word}\""),
                ));
            }
            (0.0, true)
        }
        Some(p) => (a.check_float("p", &p, 0.0..=1.0)?, false),
        None => (1.0, false),
    };
    let ada_images = match a.raw("ada_images") {
        Some(v) if !adaptive => {
            return Err(a.error_at(
                "ada_images",
                Some(&v),
                "\"ada_images\" sets how fast p adapts: it needs p: \"auto\"",
            ))
        }
        Some(v) => a.check_float("ada_images", &v, 1.0..=1e12)?,
        None => default_ada_images(),
    };
    a.finish()?;
    Ok((!policy.is_empty()).then_some(AugmentSpec {
        policy,
        p,
        adaptive,
        ada_images,
    }))
}

fn parse_data(map: &mut MapReader, sketch_dir: &Path) -> Result<DataSource, SketchError> {
    let Some(m) = map.map("data")? else {
        return Err(SketchError::whole_file(
            map.file(),
            "a GAN sketch needs `data: #{ from: \"sketches/….rhai\" }` or `data: #{ folder: \"path\" }`",
        ));
    };
    let mut d = MapReader::new(map.file(), map.locator(), m);
    let from = d.string("from", "")?;
    let folder = d.string("folder", "")?;
    let count = d.int("count", 2000, 1..=1_000_000)? as usize;
    let fit = d.choice("fit", "fit", &["crop", "resize"], "crop")?;
    let background = d.color("background", white())?;
    d.finish()?;
    // Paths are relative to the sketch's folder; a path that only exists relative to the
    // working directory is taken from there.
    let resolve = |p: &str| {
        let beside = sketch_dir.join(p);
        if beside.exists() || !Path::new(p).exists() {
            beside
        } else {
            PathBuf::from(p)
        }
    };
    match (from.is_empty(), folder.is_empty()) {
        (false, true) => Ok(DataSource::Sketch {
            path: resolve(&from),
            count,
        }),
        (true, false) => Ok(DataSource::Folder {
            path: resolve(&folder),
            crop: fit == "crop",
            background,
        }),
        _ => Err(map.error_at(
            "data",
            None,
            "data needs exactly one of `from: \"sketch.rhai\"` or `folder: \"path\"`",
        )),
    }
}
