use std::path::PathBuf;

use anyhow::{Context, Result};
use candle_core::Tensor;
use clap::Args;

use super::sample::{load_generator, Pick};
use crate::device::DeviceArg;
use crate::gan::layers::{normal, Ctx};
use crate::gan::{data, quality, swd, DataSource};

#[derive(Args, Debug)]
#[command(after_help = "\\
SWD (sliced Wasserstein distance, Karras et al. 2018) compares local patches of the
generated and the real images at every scale of a Laplacian pyramid; it is reported x1000,
lower is better, and 0 means the same set. Scores of one data set and image size compare
across runs; the same run scores a few percent differently with another --seed.")]
pub struct EvalArgs {
    /// A run directory (or model folder) to score.
    pub run: PathBuf,
    /// Real images to compare with (a folder; subfolders are classes). Default: the
    /// run's own training data.
    #[arg(long, value_name = "FOLDER")]
    pub data: Option<PathBuf>,
    /// Images per side.
    #[arg(short = 'n', long, default_value_t = 512)]
    pub count: usize,
    /// Which generator (see `easel sample --help`).
    #[arg(long, value_name = "best|latest|step_N")]
    pub checkpoint: Option<Pick>,
    /// The trained weights instead of their moving average.
    #[arg(long)]
    pub raw: bool,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// cpu, cuda, cuda:N or auto.
    #[arg(long, default_value = "cpu", value_name = "DEVICE")]
    pub device: DeviceArg,
}

pub fn run(args: EvalArgs) -> Result<()> {
    let device = args.device.open()?;
    let mut loaded = load_generator(&args.run, args.checkpoint, args.raw, &device)?;
    let mut spec = loaded.g.spec.clone();
    if let Some(folder) = &args.data {
        // Another folder, prepared as the run prepared its own (crop or resize, the
        // background under transparency).
        let (crop, background) = match &spec.data {
            DataSource::Folder {
                crop, background, ..
            } => (*crop, *background),
            DataSource::Sketch { .. } => (true, [255, 255, 255]),
        };
        spec.data = DataSource::Folder {
            path: folder.clone(),
            crop,
            background,
        };
    }
    let data = data::load(&spec, &device).context("loading the real images")?;
    let n = args.count.clamp(16, 8192).min(data.len());
    let reference = data.reference(n, args.seed)?;
    let mut rng = <rand_pcg::Pcg64Mcg as rand::SeedableRng>::seed_from_u64(args.seed ^ 0xE7A1);
    let z: Vec<f32> = (0..n * spec.latent).map(|_| normal(&mut rng)).collect();
    let z = Tensor::from_vec(z, (n, spec.latent), &device)?;
    let k = loaded.classes.len().max(1);
    let labels: Vec<usize> = (0..n).map(|i| i % k).collect();
    let ctx = Ctx {
        train: false,
        dropout_seed: 0,
    };
    let mut parts = vec![];
    for start in (0..n).step_by(64) {
        let len = 64.min(n - start);
        parts.push(loaded.g.forward(
            &z.narrow(0, start, len)?,
            &labels[start..start + len],
            &ctx,
        )?);
    }
    let fake = Tensor::cat(&parts, 0)?;
    let score = swd::swd_tensors(&reference, &fake, args.seed)?;
    // Conditional models: each class against its own pictures.
    let classes = if loaded.g.conditional() {
        let per_class = (n / loaded.classes.len().max(1)).clamp(16, 256);
        quality::class_scores(&mut loaded.g, &loaded.classes, &data, per_class, args.seed)?
    } else {
        vec![]
    };
    let levels: Vec<String> = score
        .resolutions
        .iter()
        .zip(&score.per_level)
        .map(|((h, w), v)| format!("{h}x{w} {v:.1}"))
        .collect();
    println!(
        "SWD {:.1}  ({})  {} samples of {} vs {} real images",
        score.mean,
        levels.join(", "),
        n,
        loaded.from,
        n
    );
    for c in &classes {
        let flag = if c.diversity < quality::LOW_DIVERSITY {
            "  low diversity: collapsing?"
        } else {
            ""
        };
        println!(
            "  class {}: SWD {:.1}, diversity {:.2}{flag}",
            c.name, c.swd, c.diversity
        );
    }
    Ok(())
}
