use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;
use serde_json::json;

use crate::recipe;
use crate::spec::{self, Spec};

#[derive(Args, Debug)]
pub struct DatasetArgs {
    /// The sketch that generates the images.
    pub sketch: PathBuf,
    /// Number of images in all (spread evenly over the sketch's classes).
    #[arg(short = 'n', long, default_value_t = 1000, value_parser = count_arg)]
    pub count: usize,
    /// Output folder (created if missing).
    #[arg(short, long, value_name = "DIR")]
    pub output: PathBuf,
    /// Image size, N or WxH (overrides the sketch's `size`).
    #[arg(long, value_parser = super::size_arg, value_name = "WxH")]
    pub size: Option<(u32, u32)>,
    /// First seed; image k uses seed + k (default: the sketch's seed).
    #[arg(long)]
    pub seed: Option<u64>,
}

/// Writes `count` images, image k with seed `seed + k`, cycling through the classes so
/// each class gets the same number (±1). With classes, images go into one subfolder per
/// class, the layout image-folder dataset readers expect. A `dataset.json` manifest
/// records the sketch and seeds.
pub(crate) fn run(args: DatasetArgs) -> Result<()> {
    let sketch = spec::load(&args.sketch)?;
    let classes: Vec<(Option<String>, Spec)> = if sketch.classes.is_empty() {
        vec![(None, sketch.spec.clone())]
    } else {
        sketch
            .classes
            .iter()
            .map(|(n, s)| (Some(n.clone()), s.clone()))
            .collect()
    };
    for (name, _) in &classes {
        let dir = name
            .as_ref()
            .map_or(args.output.clone(), |n| args.output.join(n));
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let base_seed = args.seed.unwrap_or(sketch.spec.seed());
    let bar = ProgressBar::new(args.count as u64).with_style(
        ProgressStyle::with_template("{spinner} {bar:40} {pos}/{len} images  {per_sec}  eta {eta}")
            .expect("valid template"),
    );
    (0..args.count)
        .into_par_iter()
        .try_for_each(|k| -> Result<()> {
            let (name, spec) = &classes[k % classes.len()];
            let mut spec = spec.clone();
            spec.set_seed(base_seed.wrapping_add(k as u64));
            if let Some((w, h)) = args.size {
                spec.set_size(w, h);
            }
            super::prepare(&spec);
            let img = spec.render()?;
            let dir = name
                .as_ref()
                .map_or(args.output.clone(), |n| args.output.join(n));
            recipe::write_png(&dir.join(format!("{k:06}.png")), &img, None)?;
            bar.inc(1);
            Ok(())
        })?;
    bar.finish_and_clear();

    let (w, h) = args.size.unwrap_or(sketch.spec.size());
    let manifest = json!({
        "sketch": sketch.name(),
        "source": sketch.source,
        "count": args.count,
        "size": [w, h],
        "first_seed": base_seed,
        "classes": classes.iter().filter_map(|(n, _)| n.clone()).collect::<Vec<_>>(),
    });
    let path = args.output.join("dataset.json");
    recipe::write_atomically(&path, |f| Ok(serde_json::to_writer_pretty(f, &manifest)?))?;
    eprintln!("wrote {} images to {}", args.count, args.output.display());
    Ok(())
}

/// At least one image: `-n 0` would write an empty dataset and a manifest that lies.
fn count_arg(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if (1..=10_000_000).contains(&n) => Ok(n),
        Ok(n) => Err(format!("{n} images: give 1 to 10000000")),
        Err(_) => Err(format!("\"{text}\" is not a number of images")),
    }
}
