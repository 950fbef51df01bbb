use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use crate::device::DeviceArg;
use crate::gan::saved::{load_generator, Pick};
use indicatif::ProgressBar;

use crate::gan::classifier::{self, Classifier};
use crate::gan::train::samples;
use crate::gan::{data, quality, swd, DataSource};
use crate::run::RunDir;

#[derive(Args, Debug)]
#[command(
    after_help = "SWD (sliced Wasserstein distance, Karras et al. 2018) compares local patches of the
generated and the real images at every scale of a Laplacian pyramid; it is reported x1000,
lower is better, and 0 means the same set. Scores of one data set and image size compare
across runs; the same run scores a few percent differently with another --seed."
)]
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

pub(crate) fn run(args: EvalArgs) -> Result<()> {
    let device = args.device.open()?;
    let loaded = load_generator(&args.run, args.checkpoint, args.raw, &device)?;
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
    let data =
        data::load(&spec, &device, Some(crate::spec::data_sketch)).with_context(|| {
            match (&args.data, &spec.data) {
                (None, DataSource::Folder { path, .. }) => format!(
                    "loading the real images from {} (the folder the model was trained on, as \
                 its spec names it); give another with --data FOLDER",
                    path.display()
                ),
                _ => "loading the real images".to_string(),
            }
        })?;
    let n = args.count.clamp(16, 8192).min(data.len());
    let reference = data.reference(n, args.seed)?;
    // What `easel sample` draws: noise at the generator's own scale.
    let scale = loaded.g.spec.sample_scale;
    let fake = samples(
        &loaded.g,
        n,
        loaded.classes.len(),
        args.seed ^ 0xE7A1,
        scale,
    )?;
    let score = swd::swd_tensors(&reference, &fake, args.seed)?;
    // With labelled data: a classifier of the real classes judges the samples (cached in
    // the run directory when it scores the run's own data).
    let judge = if data.class_names.len() >= 2 {
        let run = RunDir {
            path: args.run.clone(),
        };
        let own_data = args.data.is_none();
        // A shipped model's folder may carry the classifier of its data (read, never
        // written); a run directory caches its own.
        let shipped = if own_data && !run.checkpoints_dir().is_dir() {
            Classifier::load(&run.classifier(), &classifier::data_key(&data), &data)
                .ok()
                .flatten()
        } else {
            None
        };
        let c = match shipped {
            Some(c) => c,
            None => {
                let cache = (own_data && run.checkpoints_dir().is_dir()).then(|| run.classifier());
                let bar =
                    ProgressBar::new(classifier::STEPS).with_message("training the class check");
                let c = Classifier::cached(cache.as_deref(), &data, args.seed, Some(&bar))?;
                bar.finish_and_clear();
                c
            }
        };
        Some(c)
    } else {
        None
    };
    // Conditional models: each class against its own pictures.
    let classes = if loaded.g.conditional() {
        let per_class = (n / loaded.classes.len().max(1)).clamp(16, 256);
        quality::class_scores(
            &loaded.g,
            &loaded.classes,
            &data,
            per_class,
            args.seed,
            scale,
            judge.as_ref(),
        )?
    } else {
        vec![]
    };
    // Unconditional models on labelled data (CAN, or DCGAN to compare with): how sure the
    // classifier is of each sample's style.
    let style = match judge.as_ref() {
        Some(c) if !loaded.g.conditional() => {
            Some(classifier::style_entropy(&c.probabilities(&fake)?)?)
        }
        _ => None,
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
        let fidelity = c
            .fidelity
            .map(|f| format!(", fidelity {f:.2}"))
            .unwrap_or_default();
        println!(
            "  class {}: SWD {:.1}, diversity {:.2}{fidelity}{flag}",
            c.name, c.swd, c.diversity
        );
    }
    if let Some(c) = &judge {
        println!(
            "class check: a classifier of the real classes names {:.0}% of held-out real images right (chance {:.0}%)",
            100.0 * c.accuracy,
            100.0 / c.classes.len() as f64
        );
    }
    if let Some(e) = style {
        println!(
            "style entropy: ambiguity {:.2} (mean over samples; 0: each plainly one class, 1: none), spread {:.2} (of the mean prediction; 1: even over classes)",
            e.ambiguity, e.spread
        );
    }
    Ok(())
}
