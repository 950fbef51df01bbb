//! A trained generator from a run directory (its final, best, latest or a kept
//! checkpoint), a model folder or a safetensors file: what `easel sample`, `easel eval`
//! and the studio draw from.

use std::path::Path;

use anyhow::{bail, Context, Result};
use candle_core::Device;

use super::model::Generator;
use super::train::load_safetensors;
use super::GanSpec;

/// A trained generator with its spec and class names.
pub struct LoadedGenerator {
    pub g: Generator,
    pub classes: Vec<String>,
    /// Which file and weights, e.g. "checkpoints/best.safetensors (raw weights, step 1500)".
    pub from: String,
}

/// Which of a run's generators: `best` (lowest SWD), `latest`, or `step_N` (a kept copy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    Best,
    Latest,
    Step(u64),
}

impl std::fmt::Display for Pick {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Pick::Best => f.write_str("best"),
            Pick::Latest => f.write_str("latest"),
            Pick::Step(n) => write!(f, "step_{n}"),
        }
    }
}

impl std::str::FromStr for Pick {
    type Err = String;
    fn from_str(text: &str) -> std::result::Result<Self, String> {
        match text {
            "best" => Ok(Pick::Best),
            "latest" => Ok(Pick::Latest),
            other => other
                .strip_prefix("step_")
                .unwrap_or(other)
                .parse()
                .map(Pick::Step)
                .map_err(|_| {
                    format!("\"{other}\": expected best, latest or step_N (e.g. step_1000)")
                }),
        }
    }
}

/// Loads a generator from a run directory, model folder or safetensors file: by default
/// the run's `generator.safetensors` (the EMA weights when it ended or stopped), else its
/// latest checkpoint; `pick` chooses another; `raw` takes the trained weights instead of
/// their moving average (checkpoints hold both).
pub fn load_generator(
    source: &Path,
    pick: Option<Pick>,
    raw: bool,
    device: &Device,
) -> Result<LoadedGenerator> {
    let checkpoint_prefix = if raw { "g." } else { "ema." };
    if !source.exists() {
        bail!("{} does not exist", source.display());
    }
    let looks_like_run = source.join("generator.safetensors").exists()
        || source.join("checkpoints").is_dir()
        || source.join("status.json").exists();
    if source.is_dir() && !looks_like_run {
        bail!(
            "{} is neither a run directory (runs/NAME, written by `easel train`) nor a model folder (models/NAME): it has no generator.safetensors or checkpoints/",
            source.display()
        );
    }
    let (file, prefix) = if source.is_dir() {
        let checkpoints = source.join("checkpoints");
        let generator = source.join("generator.safetensors");
        let latest = checkpoints.join("latest.safetensors");
        match pick {
            Some(Pick::Best) if raw => bail!(
                "--raw with --checkpoint best: the best file holds one generator (raw or EMA, whichever scored better), and `easel sample` says which"
            ),
            Some(Pick::Best) => (checkpoints.join("best.safetensors"), ""),
            Some(Pick::Latest) => (latest, checkpoint_prefix),
            Some(Pick::Step(n)) => (
                checkpoints.join(format!("step_{n:06}.safetensors")),
                checkpoint_prefix,
            ),
            None if raw => (latest, checkpoint_prefix),
            None if generator.exists() => (generator, ""),
            None => (latest, checkpoint_prefix),
        }
    } else if pick.is_some() {
        bail!(
            "--checkpoint picks a file of a run directory; {} is a file",
            source.display()
        );
    } else if source
        .file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with("generator"))
    {
        if raw {
            bail!(
                "--raw needs a training checkpoint; {} holds only the averaged weights",
                source.display()
            );
        }
        (source.to_path_buf(), "")
    } else {
        (source.to_path_buf(), checkpoint_prefix)
    };
    if !file.exists() {
        let kept = match pick {
            Some(Pick::Best) => " (a run keeps one once it has been evaluated: see eval_every)",
            Some(Pick::Step(_)) => " (runs keep a copy every keep_every steps)",
            _ => "",
        };
        bail!("{} does not exist{kept}", file.display());
    }
    let (tensors, meta) = load_safetensors(&file, device.clone())?;
    let spec: GanSpec = match meta.get("spec") {
        Some(s) => serde_json::from_str(s)
            .with_context(|| format!("{}: the spec it carries does not parse", file.display()))?,
        None => {
            // A checkpoint: the spec is in its run directory.
            let run = file
                .parent()
                .and_then(Path::parent)
                .context("checkpoint outside a run directory")?;
            let text = std::fs::read_to_string(run.join("spec.json"))
                .with_context(|| format!("no spec.json in {}", run.display()))?;
            serde_json::from_str(&text)
                .with_context(|| format!("{}: bad spec.json", run.display()))?
        }
    };
    let classes: Vec<String> = meta
        .get("classes")
        .map(|c| serde_json::from_str(c))
        .transpose()?
        .unwrap_or_default();
    // Samples are drawn in f32 whatever precision trained the weights, so a picture and
    // its recipe come out the same on every CPU (bf16 runs only where AVX512_BF16 is).
    let spec = GanSpec {
        precision: super::Precision::Fp32,
        ..spec
    };
    let g = Generator::new(&spec, classes.len(), device, 0)?;
    g.params
        .load(prefix, &tensors)
        .with_context(|| format!("loading {}", file.display()))?;
    let weights = match (prefix, meta.get("weights").map(String::as_str)) {
        ("g.", _) | (_, Some("raw")) => "raw weights",
        _ => "EMA weights",
    };
    let mut from = format!(
        "{} ({weights}",
        file.strip_prefix(source).unwrap_or(&file).display()
    );
    if let Some(step) = meta.get("step") {
        from.push_str(&format!(", step {step}"));
    }
    if let Some(swd) = meta.get("swd").and_then(|s| s.parse::<f64>().ok()) {
        from.push_str(&format!(", SWD {swd:.1}"));
    }
    from.push(')');
    Ok(LoadedGenerator { g, classes, from })
}

/// Noise for `n` samples drawn from `seed` and scaled by `truncation` (below 1 trades
/// variety for fidelity) times the spec's `sample_scale`: what `easel sample --seed S
/// --truncation T` draws.
pub fn truncated_noise(
    spec: &GanSpec,
    seed: u64,
    n: usize,
    truncation: f64,
    device: &Device,
) -> Result<candle_core::Tensor> {
    let scale = truncation * spec.sample_scale;
    super::train::scaled_noise(seed, n, spec.latent, scale, device)
}

/// Sample `index` of the noise `seed` and `truncation` draw, as a CPPN sketch of
/// `width`×`height` with the generator's weights and the sample's code written out (see
/// [`super::cppn_generator::sketch_source`]); `None` for a convolutional generator.
pub fn sample_sketch(
    loaded: &LoadedGenerator,
    seed: u64,
    truncation: f64,
    index: usize,
    (width, height): (u32, u32),
) -> Result<Option<String>> {
    let g = &loaded.g;
    let Some(body) = g.cppn() else {
        return Ok(None);
    };
    let z = truncated_noise(&g.spec, seed, index + 1, truncation, &g.params.device)?;
    let code: Vec<f32> = body
        .codes(&g.params, &g.prior(&z.get(index)?.unsqueeze(0)?)?)?
        .get(0)?
        .to_vec1()?;
    let spec = body.shape().render_spec(&g.spec, width, height);
    let net = body.network(&g.params, &code)?;
    let note = format!(
        "Sample {index} of {} (seed {seed}, truncation {truncation}).",
        loaded.from
    );
    Ok(Some(super::cppn_generator::sketch_source(
        &spec, &net, &code, &note,
    )))
}

/// `n` samples, the classes in turn, as one grid picture: the same picture as
/// `easel sample SOURCE -n N --seed S --truncation T`.
pub fn sample_grid(
    loaded: &LoadedGenerator,
    n: usize,
    seed: u64,
    truncation: f64,
) -> Result<image::DynamicImage> {
    let g = &loaded.g;
    let z = truncated_noise(&g.spec, seed, n, truncation, &g.params.device)?;
    let labels = super::train::labels_in_turn(n, loaded.classes.len());
    let images = super::train::generate(g, &z, &labels)?;
    super::train::grid(&images, None)
}
