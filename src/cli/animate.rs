use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;

use crate::cppn::animate;
use crate::recipe;
use crate::spec::{self, Spec};

#[derive(Args, Debug)]
pub struct AnimateArgs {
    /// A CPPN sketch.
    pub sketch: PathBuf,
    /// Output: a .gif file, or a folder (ending in /) for numbered PNG frames.
    #[arg(short, long, value_name = "OUT.gif|DIR/")]
    pub output: PathBuf,
    /// Number of frames in the loop (default: the sketch's `animate.frames`).
    #[arg(long)]
    pub frames: Option<u32>,
    /// Frames per second (default: the sketch's `animate.fps`).
    #[arg(long)]
    pub fps: Option<f64>,
    /// Frame size, N or WxH (default: the sketch's `size`).
    #[arg(long, value_parser = super::size_arg, value_name = "WxH")]
    pub size: Option<(u32, u32)>,
    /// Random seed (overrides the sketch's `seed`).
    #[arg(long)]
    pub seed: Option<u64>,
}

/// Renders a latent walk that loops seamlessly: the last frame leads back into the first.
pub(crate) fn run(args: AnimateArgs) -> Result<()> {
    let sketch = spec::load(&args.sketch)?;
    let Spec::Cppn(mut spec) = sketch.spec.clone() else {
        bail!(
            "{}: `animate` needs a CPPN sketch (this one is {})",
            args.sketch.display(),
            sketch.spec.kind()
        );
    };
    if spec.z_dims == 0 {
        bail!(
            "{}: the latent walk needs a latent vector; set `z: 8` (or more) in the sketch",
            args.sketch.display()
        );
    }
    if let Some((w, h)) = args.size {
        (spec.width, spec.height) = (w, h);
    }
    if let Some(s) = args.seed {
        spec.seed = s;
    }
    let to_folder =
        args.output.extension().is_none() || args.output.to_string_lossy().ends_with('/');
    let is_gif = args
        .output
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gif"));
    if !to_folder && !is_gif {
        bail!(
            "{}: `animate` writes a .gif, or numbered PNG frames into a folder (give a path ending in /)",
            args.output.display()
        );
    }
    let frames = args.frames.unwrap_or(spec.animation.frames).max(2);
    let fps = args.fps.unwrap_or(spec.animation.fps).clamp(0.1, 100.0);
    super::prepare(&Spec::Cppn(spec.clone()));
    let net = spec.render_network()?;
    let bar = ProgressBar::new(frames as u64).with_style(
        ProgressStyle::with_template("{spinner} {bar:40} {pos}/{len} frames  eta {eta}")
            .expect("template"),
    );

    if to_folder {
        std::fs::create_dir_all(&args.output)
            .with_context(|| format!("cannot create {}", args.output.display()))?;
        for k in 0..frames {
            let img = animate::frame(&spec, &net, k, frames);
            recipe::write_png(&args.output.join(format!("frame_{k:04}.png")), &img, None)?;
            bar.inc(1);
        }
        bar.finish_and_clear();
        eprintln!("wrote {frames} frames to {}", args.output.display());
        return Ok(());
    }

    let delay = (100.0 / fps).round().max(1.0) as u16;
    let images: Vec<image::RgbImage> = (0..frames)
        .into_par_iter()
        .map(|k| {
            let rgb = animate::frame(&spec, &net, k, frames).to_rgb8();
            bar.inc(1);
            rgb
        })
        .collect();
    bar.finish_and_clear();
    recipe::write_gif(&args.output, &images, delay)?;
    let (w, h) = (spec.width, spec.height);
    eprintln!(
        "wrote {} ({frames} frames, {}x{}, {fps} fps, loops)",
        args.output.display(),
        w,
        h
    );
    Ok(())
}
