use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::recipe;
use crate::sketch::Knobs;
use crate::spec;

#[derive(Args, Debug)]
pub struct RenderArgs {
    /// The sketch to render (a .rhai file).
    #[arg(required_unless_present = "from", conflicts_with = "from")]
    pub sketch: Option<PathBuf>,
    /// Re-render from the recipe inside a PNG that easel wrote.
    #[arg(long, value_name = "IMAGE.png")]
    pub from: Option<PathBuf>,
    /// Output image, by extension: .png (with the recipe, so `--from` makes it again),
    /// .jpg, .webp or .gif. Defaults to <sketch>.png, or to nothing with --show.
    #[arg(short, long, value_name = "FILE.png")]
    pub output: Option<PathBuf>,
    /// Image size, N or WxH (overrides the sketch's `size`).
    #[arg(long, value_parser = super::size_arg, value_name = "WxH")]
    pub size: Option<(u32, u32)>,
    /// Random seed (overrides the sketch's `seed`).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Set a knob the sketch declares in `params` (repeatable): --set hue=0.5 --set tile=16.
    #[arg(long = "set", value_name = "NAME=VALUE", value_parser = knob_arg)]
    pub set: Vec<(String, f64)>,
    /// Render one of the sketch's classes instead of the base sketch.
    #[arg(long, value_name = "NAME")]
    pub class: Option<String>,
    /// Where a `fit:` CPPN trains its network: cpu, cuda, cuda:N or auto (see `easel
    /// train --help`); rendering runs on the CPU.
    #[arg(long, default_value = "cpu", value_name = "DEVICE")]
    pub device: crate::device::DeviceArg,
    /// Print the image to the terminal (truecolour half-blocks, or a graphics protocol).
    #[arg(long)]
    pub show: bool,
}

/// clap value parser for `NAME=VALUE` (a knob and a number).
fn knob_arg(text: &str) -> Result<(String, f64), String> {
    let (name, value) = text
        .split_once('=')
        .ok_or_else(|| format!("\"{text}\": expected NAME=VALUE, e.g. hue=0.5"))?;
    let value: f64 = value
        .trim()
        .parse()
        .map_err(|_| format!("\"{text}\": the value of knob {name} must be a number"))?;
    Ok((name.trim().to_string(), value))
}

pub(crate) fn run(args: RenderArgs) -> Result<()> {
    // --set goes on top of the knobs a recipe recorded.
    let set_knobs = |mut knobs: Knobs| {
        knobs.extend(args.set.iter().cloned());
        knobs
    };
    // A favourite saved from an upscaled picture records the upscale: made again here.
    let upscaling = match &args.from {
        Some(png) => spec::Upscaling::of_png(png)?,
        None => None,
    };
    let (mut sketch, mut class, mut seed, mut size) = match (&args.sketch, &args.from) {
        (_, Some(png)) => {
            let r = recipe::read_recipe(png)?;
            // Errors in an embedded sketch point into the PNG's copy of the source.
            let sketch = spec::load_knobs(
                &png.with_file_name(format!("{}.rhai", r.name)),
                r.source.clone(),
                &set_knobs(r.knobs.clone()),
            )
            .map_err(|e| anyhow::anyhow!("{e}\n(in the recipe stored in {})", png.display()))?;
            (
                sketch,
                r.class.clone(),
                Some(r.seed),
                Some((r.width, r.height)),
            )
        }
        (Some(path), None) => {
            let beside = Path::new("sketches").join(path);
            if !path.exists() && path.is_relative() && beside.is_file() {
                bail!(
                    "{} does not exist; did you mean {}?",
                    path.display(),
                    beside.display()
                );
            }
            let source = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read sketch {}", path.display()))?;
            let sketch = spec::load_knobs(path, source, &set_knobs(Knobs::new()))?;
            (sketch, None, None, None)
        }
        (None, None) => bail!("give a sketch to render, or --from IMAGE.png"),
    };
    sketch.set_fit_device(args.device);
    if args.class.is_some() {
        class = args.class.clone();
    }
    if args.seed.is_some() {
        seed = args.seed;
    }
    if args.size.is_some() {
        size = args.size;
    }
    if let Some(out) = &args.output {
        // Before rendering: a 16k canvas should not be made to find out the name is wrong.
        recipe::StillFormat::of(out)?;
    }
    let started = Instant::now();
    super::prepare(&sketch.spec_for(class.as_deref(), seed, size)?);
    let (mut img, recipe) = sketch.render(class.as_deref(), seed, size)?;
    let mut tags = vec![];
    if let Some(up) = &upscaling {
        img = up.apply(&img, &mut |_, _| {})?;
        tags.push(up.tag(&format!("{} as rendered", recipe.name))?);
        eprintln!("upscaled with {} (as the recipe records)", up.model);
    }
    let took = started.elapsed();

    let output = match (&args.output, args.show) {
        (Some(o), _) => Some(o.clone()),
        (None, true) => None,
        (None, false) => Some(PathBuf::from(format!("{}.png", recipe.name))),
    };
    if let Some(out) = &output {
        recipe::write_image_tagged(out, &img, Some(&recipe), &tags)?;
        eprintln!(
            "wrote {} ({}x{}, seed {}, {} ms)",
            out.display(),
            img.width(),
            img.height(),
            recipe.seed,
            took.as_millis()
        );
        if recipe::StillFormat::of(out)? != recipe::StillFormat::Png {
            eprintln!("note: only a .png keeps the recipe that `render --from` needs");
        }
    }
    if args.show {
        super::gallery::show(&img, None)?;
    }
    Ok(())
}
