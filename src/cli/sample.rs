use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use clap::Args;
use rand::SeedableRng;
use rand_pcg::Pcg64Mcg;
use serde::{Deserialize, Serialize};

use crate::device::DeviceArg;
use crate::gan::layers::{normal, Ctx};
use crate::gan::saved::{load_generator, sample_sketch, truncated_noise, LoadedGenerator, Pick};
use crate::gan::train::{grid, grid_with_alpha, labels_in_turn};
use crate::recipe;
use crate::upscale::{Tiling, Upscaler};

#[derive(Args, Debug)]
#[command(after_help = "\
A grid written as .png records how it was drawn (generator, checkpoint, seed, count,
truncation, class, threshold, size, upscale): `easel sample --from GRID.png -o again.png`
draws it again.")]
pub struct SampleArgs {
    /// A run directory, a model folder (models/NAME), or a generator/checkpoint
    /// .safetensors file.
    #[arg(required_unless_present = "from", conflicts_with = "from")]
    pub source: Option<PathBuf>,
    /// Draw a grid again from the recipe in a PNG that `easel sample` wrote (its
    /// generator, seed, count and options; -o and --device are this command's).
    #[arg(long, value_name = "GRID.png")]
    pub from: Option<PathBuf>,
    /// Output: a grid as .png, .jpg or .webp; with --interpolate, a .gif. Defaults to
    /// <source>-samples.png (or .gif) in the current folder.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Number of samples in the grid.
    #[arg(short = 'n', long, default_value_t = 64)]
    pub count: usize,
    /// Only this class (conditional DCGAN models; a CAN's generator is unconditional,
    /// so it has no classes to pick).
    #[arg(long, value_name = "NAME")]
    pub class: Option<String>,
    /// Noise scale, times the model's own `sample_scale` (1 unless its sketch set one;
    /// the command says when it is not): below 1 trades variety for fidelity.
    #[arg(long, default_value_t = 1.0)]
    pub truncation: f64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// A looping latent walk as a GIF (each frame a grid).
    #[arg(long)]
    pub interpolate: bool,
    /// Frames of the --interpolate loop.
    #[arg(long, default_value_t = 48)]
    pub frames: u32,
    /// Pixels above this (0–1) become white, the rest black.
    #[arg(long, value_name = "V")]
    pub threshold: Option<f64>,
    /// Sample the generator's raw weights instead of their moving average (needs a run
    /// directory or checkpoint: generator.safetensors holds only the average).
    #[arg(long)]
    pub raw: bool,
    /// Which of a run's generators: best (lowest SWD of the EMA and raw weights, kept
    /// while training), latest (checkpoint), or step_N (a kept checkpoint). Default: the
    /// run's generator.safetensors, else its latest checkpoint.
    #[arg(long, value_name = "best|latest|step_N")]
    pub checkpoint: Option<Pick>,
    /// CPPN generators (model "cppn") only: render each sample at this size (N or WxH)
    /// through the CPPN renderer instead of at the training size.
    #[arg(long, value_name = "N|WxH", value_parser = super::size_arg)]
    pub size: Option<(u32, u32)>,
    /// CPPN generators only: also write the first sample as a CPPN sketch (its weights
    /// and code written out), to render at any size, animate or remix.
    #[arg(long, value_name = "FILE.rhai")]
    pub export_sketch: Option<PathBuf>,
    /// Upscale every sample with an ESRGAN model before the grid is made: a shipped
    /// model's name, an ncnn .param, a .pth or a .safetensors (see `easel upscale --help`).
    #[arg(long, value_name = "MODEL")]
    pub upscale: Option<String>,
    /// cpu, cuda, cuda:N or auto (see `easel train --help`).
    #[arg(long, default_value = "cpu", value_name = "DEVICE")]
    pub device: DeviceArg,
    /// The generator's `sample_scale` as a recipe recorded it (`--from`), else the file's.
    #[arg(skip)]
    pub sample_scale: Option<f64>,
}

/// What a sample grid records (PNG chunk `easel:sample`), so `--from` draws it again.
#[derive(Debug, Serialize, Deserialize)]
struct SampleRecipe {
    /// The source as it was given, and made absolute (tried when the given one is not
    /// there, e.g. from another folder).
    source: PathBuf,
    source_absolute: Option<PathBuf>,
    count: usize,
    class: Option<String>,
    truncation: f64,
    seed: u64,
    threshold: Option<f64>,
    raw: bool,
    checkpoint: Option<String>,
    size: Option<(u32, u32)>,
    upscale: Option<String>,
    /// The generator's own noise scale the grid was drawn at; absent in recipes written
    /// before generators had one, which were all drawn at 1.
    #[serde(default)]
    sample_scale: Option<f64>,
}

impl SampleArgs {
    /// The generator to sample (`--from` has filled it in by now).
    fn source(&self) -> &std::path::Path {
        self.source.as_deref().unwrap_or(std::path::Path::new("?"))
    }

    /// The output file: `-o`, else `<source>-samples.png` (or .gif) here; from a recipe,
    /// `<grid>-again.png`, so the original is never overwritten.
    fn out(&self) -> PathBuf {
        self.output.clone().unwrap_or_else(|| {
            if let Some(from) = &self.from {
                let stem = from.file_stem().unwrap_or_default().to_string_lossy();
                return from.with_file_name(format!("{stem}-again.png"));
            }
            let name = self
                .source()
                .file_stem()
                .map_or_else(|| "samples".into(), |n| n.to_string_lossy());
            let ext = if self.interpolate { "gif" } else { "png" };
            PathBuf::from(format!("{name}-samples.{ext}"))
        })
    }

    fn recipe(&self) -> Result<String> {
        let source = self.source().to_path_buf();
        Ok(serde_json::to_string(&SampleRecipe {
            source_absolute: std::fs::canonicalize(&source).ok(),
            source,
            count: self.count,
            class: self.class.clone(),
            truncation: self.truncation,
            seed: self.seed,
            threshold: self.threshold,
            raw: self.raw,
            checkpoint: self.checkpoint.map(|p| p.to_string()),
            size: self.size,
            upscale: self.upscale.clone(),
            sample_scale: self.sample_scale,
        })?)
    }

    /// These arguments with what the grid `png` recorded.
    fn with_recipe(mut self, png: &std::path::Path) -> Result<Self> {
        let r: SampleRecipe = recipe::read_json_tag(png, recipe::KEY_SAMPLE, "sample")?
            .with_context(|| {
                format!(
                    "{} carries no sample recipe (grids written as .png by `easel sample` do; \
                     for a rendered picture use `easel render --from`)",
                    png.display()
                )
            })?;
        let source = match &r.source_absolute {
            Some(abs) if !r.source.exists() && abs.exists() => abs.clone(),
            _ if r.source.exists() => r.source.clone(),
            _ => bail!(
                "{}: the generator it was drawn from, {}, is not here{}",
                png.display(),
                r.source.display(),
                r.source_absolute
                    .as_ref()
                    .map(|a| format!(" (nor at {})", a.display()))
                    .unwrap_or_default()
            ),
        };
        eprintln!("drawing again what {} records", png.display());
        self.source = Some(source);
        self.count = r.count;
        self.class = r.class;
        self.truncation = r.truncation;
        self.seed = r.seed;
        self.threshold = r.threshold;
        self.raw = r.raw;
        self.checkpoint = r
            .checkpoint
            .map(|c| c.parse().map_err(anyhow::Error::msg))
            .transpose()?;
        self.size = r.size;
        self.upscale = r.upscale;
        self.sample_scale = Some(r.sample_scale.unwrap_or(1.0));
        self.interpolate = false;
        Ok(self)
    }
}

pub(crate) fn run(mut args: SampleArgs) -> Result<()> {
    if let Some(png) = args.from.clone() {
        args = args.with_recipe(&png)?;
    }
    let out = args.out();
    let is_gif = recipe::StillFormat::of(&out)? == recipe::StillFormat::Gif;
    match (args.interpolate, is_gif) {
        (true, false) => bail!(
            "{}: --interpolate writes a looping GIF; name the output .gif",
            out.display()
        ),
        (false, true) => bail!(
            "{}: one grid is a still image (.png, .jpg or .webp); add --interpolate for a looping .gif",
            out.display()
        ),
        _ => {}
    }
    let device = args.device.open()?;
    let mut loaded = load_generator(args.source(), args.checkpoint, args.raw, &device)?;
    // A grid drawn again keeps the scale it was drawn at, whatever the file says now.
    let model_scale = *args.sample_scale.get_or_insert(loaded.g.spec.sample_scale);
    loaded.g.spec.sample_scale = model_scale;
    eprintln!("sampling {}", loaded.from);
    if args.class.is_some() && loaded.g.spec.model == crate::gan::ModelKind::Can {
        bail!(
            "--class: {} is a CAN, whose generator is unconditional (its classes only train the discriminator's style head); sample it without --class",
            args.source().display()
        );
    }
    let latent = loaded.g.spec.latent;
    let n = args.count.clamp(1, 1024);
    let labels: Vec<usize> = match &args.class {
        Some(name) => {
            let k = loaded
                .classes
                .iter()
                .position(|c| c == name)
                .with_context(|| {
                    if loaded.classes.is_empty() {
                        format!("--class {name}: this model has no classes")
                    } else {
                        format!(
                            "--class {name}: expected one of {}",
                            loaded.classes.join(", ")
                        )
                    }
                })?;
            vec![k; n]
        }
        None => labels_in_turn(n, loaded.classes.len()),
    };
    let scale = args.truncation * loaded.g.spec.sample_scale;
    if loaded.g.spec.sample_scale != 1.0 {
        eprintln!(
            "noise scale {scale} (the model's sample_scale {} × --truncation {})",
            loaded.g.spec.sample_scale, args.truncation
        );
    }
    let mut rng = Pcg64Mcg::seed_from_u64(args.seed);
    let mut draw = |count: usize| -> Vec<f32> {
        (0..count)
            .map(|_| normal(&mut rng) * scale as f32)
            .collect()
    };
    let ctx = Ctx {
        train: false,
        dropout_seed: 0,
        first_row: 0,
    };
    if (args.size.is_some() || args.export_sketch.is_some()) && loaded.g.cppn().is_none() {
        bail!(
            "--size and --export-sketch need a CPPN generator (model \"cppn\"); {} is a {} model drawing {} px",
            args.source().display(),
            loaded.g.spec.model,
            loaded.g.spec.image_size
        );
    }
    if args.upscale.is_some() && (args.size.is_some() || args.export_sketch.is_some()) {
        bail!("--upscale enlarges a generator's pixels; a CPPN generator renders at any --size directly");
    }
    let upscaler = match &args.upscale {
        Some(model) => {
            let up = Upscaler::load(model, &device)?;
            eprintln!("upscaling each sample with {model} ({})", up.summary());
            Some(up)
        }
        None => None,
    };
    let finish = |images: Tensor| -> Result<Tensor> {
        match &upscaler {
            Some(up) => upscale_samples(&images, up),
            None => Ok(images),
        }
    };
    if args.size.is_some() && args.interpolate {
        bail!(
            "--size renders stills; for a large animation, --export-sketch and `easel animate` it"
        );
    }
    if !args.interpolate {
        let z = truncated_noise(&loaded.g.spec, args.seed, n, args.truncation, &device)?;
        if args.size.is_some() || args.export_sketch.is_some() {
            return render_cppn_samples(&args, &out, &loaded, &z);
        }
        let images = finish(loaded.g.forward(&z, &labels, &ctx)?)?;
        let tags = [(recipe::KEY_SAMPLE, args.recipe()?)];
        recipe::write_image_tagged(
            &out,
            &still_grid(&out, &images, args.threshold)?,
            None,
            &tags,
        )?;
        eprintln!("wrote {} ({})", out.display(), super::count(n, "sample"));
        return Ok(());
    }
    // A closed loop: z(θ) = a·cos θ + b·sin θ keeps each sample's noise norm steady.
    let (a, b) = (draw(n * latent), draw(n * latent));
    let mut frames = Vec::new();
    for k in 0..args.frames.max(2) {
        let theta = std::f32::consts::TAU * k as f32 / args.frames.max(2) as f32;
        let z: Vec<f32> = a
            .iter()
            .zip(&b)
            .map(|(x, y)| x * theta.cos() + y * theta.sin())
            .collect();
        let images = finish(loaded.g.forward(
            &Tensor::from_vec(z, (n, latent), &device)?,
            &labels,
            &ctx,
        )?)?;
        frames.push(grid(&images, args.threshold)?.to_rgb8());
    }
    recipe::write_gif(&out, &frames, 6)?;
    eprintln!(
        "wrote {} ({} frames of {n} samples, loops)",
        out.display(),
        frames.len()
    );
    Ok(())
}

/// The grid of a still: RGBA samples keep their transparency in formats that have it
/// (PNG, WebP); a JPEG shows them over the preview's checkerboard.
fn still_grid(
    out: &std::path::Path,
    images: &Tensor,
    threshold: Option<f64>,
) -> Result<image::DynamicImage> {
    if recipe::StillFormat::of(out)? == recipe::StillFormat::Jpeg {
        grid(images, threshold)
    } else {
        grid_with_alpha(images, threshold)
    }
}

/// A CPPN generator's samples through the CPPN renderer, at `--size` (and the first as a
/// sketch with `--export-sketch`).
fn render_cppn_samples(
    args: &SampleArgs,
    out: &std::path::Path,
    loaded: &LoadedGenerator,
    z: &Tensor,
) -> Result<()> {
    let g = &loaded.g;
    let body = g.cppn().context("a CPPN generator")?;
    let codes: Vec<Vec<f32>> = body.codes(&g.params, &g.prior(z)?)?.to_vec2()?;
    let side = g.spec.image_size as u32;
    let (w, h) = args.size.unwrap_or((side, side));
    let spec = body.shape().render_spec(&g.spec, w, h);
    if let Some(path) = &args.export_sketch {
        let source = sample_sketch(loaded, args.seed, args.truncation, 0, (w, h))?
            .context("a CPPN generator")?;
        recipe::write_atomically(path, |f| {
            Ok(std::io::Write::write_all(f, source.as_bytes())?)
        })?;
        eprintln!("wrote {} (sample 0 as a CPPN sketch)", path.display());
    }
    let mut values = Vec::with_capacity(codes.len() * (w * h) as usize * g.spec.channels);
    for code in &codes {
        let net = body.network(&g.params, code)?;
        let img = crate::cppn::render::render(&spec, &net, code);
        // Back to the generator's [−1, 1] planes, so the grid (and --threshold) is the
        // one every sample gets.
        unit_planes(&img, g.spec.channels, &mut values);
    }
    let images = Tensor::from_vec(
        values,
        (codes.len(), g.spec.channels, h as usize, w as usize),
        &Device::Cpu,
    )?;
    let tags = [(recipe::KEY_SAMPLE, args.recipe()?)];
    recipe::write_image_tagged(out, &still_grid(out, &images, args.threshold)?, None, &tags)?;
    eprintln!(
        "wrote {} ({} at {w}x{h})",
        out.display(),
        super::count(codes.len(), "sample")
    );
    Ok(())
}

/// Each sample of `images` (`[N, C, H, W]` in [−1, 1]) through the upscaler, back in the
/// same form (grey samples stay grey: the luma of the upscaled picture; RGBA keeps its
/// alpha).
fn upscale_samples(images: &Tensor, up: &Upscaler) -> Result<Tensor> {
    let (n, c, h, w) = images.dims4()?;
    let values: Vec<f32> = images.flatten_all()?.to_device(&Device::Cpu)?.to_vec1()?;
    let s = up.scale() as usize;
    let (ho, wo) = (h * s, w * s);
    let mut out = Vec::with_capacity(n * c * ho * wo);
    let level = |v: f32| ((v + 1.0) * 127.5).round().clamp(0.0, 255.0) as u8;
    for sample in values.chunks_exact(c * h * w) {
        let plane = |k: usize| &sample[k * h * w..(k + 1) * h * w];
        let img = match c {
            1 => image::DynamicImage::ImageLuma8(
                image::GrayImage::from_raw(
                    w as u32,
                    h as u32,
                    plane(0).iter().map(|&v| level(v)).collect(),
                )
                .context("sample size")?,
            ),
            3 | 4 => {
                let values: Vec<u8> = (0..h * w)
                    .flat_map(|i| (0..c).map(move |k| level(sample[k * h * w + i])))
                    .collect();
                let (w, h) = (w as u32, h as u32);
                if c == 3 {
                    image::DynamicImage::ImageRgb8(
                        image::RgbImage::from_raw(w, h, values).context("sample size")?,
                    )
                } else {
                    image::DynamicImage::ImageRgba8(
                        image::RgbaImage::from_raw(w, h, values).context("sample size")?,
                    )
                }
            }
            other => bail!("--upscale takes grey, RGB or RGBA samples, not {other} channels"),
        };
        // RGBA keeps its alpha (resized beside the network).
        let big = up.upscale(&img, Tiling::default(), &mut |_, _| {})?;
        unit_planes(&big, c, &mut out);
    }
    Ok(Tensor::from_vec(out, (n, c, ho, wo), images.device())?)
}

/// Appends a picture as a generator's `channels` planes of [−1, 1] values (1: its luma;
/// 3: RGB; 4: RGBA).
fn unit_planes(img: &image::DynamicImage, channels: usize, out: &mut Vec<f32>) {
    let to_unit = |v: u8| f32::from(v) / 127.5 - 1.0;
    if channels == 1 {
        out.extend(img.to_luma8().pixels().map(|p| to_unit(p.0[0])));
        return;
    }
    let rgba = img.to_rgba8();
    for k in 0..channels.min(4) {
        out.extend(rgba.pixels().map(|p| to_unit(p.0[k])));
    }
}
