use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use image::{Rgb, RgbImage};
use rayon::prelude::*;
use rhai::Dynamic;
use serde::{Deserialize, Serialize};

use crate::recipe;
use crate::spec;

#[derive(Args, Debug)]
#[command(after_help = "\
The sheet records the sketch's text and the varied keys: `easel sweep --from SHEET.png`
makes it again, even after the sketch file changed.")]
pub struct SweepArgs {
    /// The sketch to vary.
    #[arg(required_unless_present = "from", conflicts_with = "from")]
    pub sketch: Option<PathBuf>,
    /// A key and its values: `depth=2..9` (integers, inclusive) or `width=8,16,32`.
    /// The first --vary runs across the sheet, a second one down.
    #[arg(
        long = "vary",
        value_name = "KEY=VALUES",
        required_unless_present = "from"
    )]
    pub vary: Vec<String>,
    /// Output PNG. Defaults to <sketch>-sweep.png (with --from, <sheet>-again.png).
    #[arg(short, long, value_name = "SHEET.png")]
    pub output: Option<PathBuf>,
    /// Width of each image on the sheet, in pixels.
    #[arg(long, default_value_t = 192)]
    pub cell: u32,
    /// Make a sheet again from the recipe in a PNG that `easel sweep` wrote (its
    /// sketch text, keys and cell width).
    #[arg(long, value_name = "SHEET.png", conflicts_with_all = ["vary"])]
    pub from: Option<PathBuf>,
}

/// What a sheet records (PNG chunk `easel:sweep`), so `--from` makes it again.
#[derive(Debug, Serialize, Deserialize)]
struct SweepRecipe {
    /// The sketch's path (its name and the folder its relative paths start from) and
    /// its text when the sheet was made.
    sketch: PathBuf,
    source: String,
    vary: Vec<String>,
    cell: u32,
}

/// The sketch, its text, the keys, the cell width and the output of this sweep.
fn resolve(args: &SweepArgs) -> Result<(SweepRecipe, PathBuf)> {
    if let Some(png) = &args.from {
        let r: SweepRecipe =
            recipe::read_json_tag(png, recipe::KEY_SWEEP, "sweep")?.with_context(|| {
                format!(
                    "{} carries no sweep recipe (sheets written by `easel sweep` do)",
                    png.display()
                )
            })?;
        let stem = png.file_stem().unwrap_or_default().to_string_lossy();
        let out = args
            .output
            .clone()
            .unwrap_or_else(|| png.with_file_name(format!("{stem}-again.png")));
        return Ok((r, out));
    }
    let sketch = args.sketch.clone().context("a sketch to vary")?;
    let source = std::fs::read_to_string(&sketch)
        .with_context(|| format!("cannot read {}", sketch.display()))?;
    let stem = sketch.file_stem().unwrap_or_default().to_string_lossy();
    let out = args
        .output
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{stem}-sweep.png")));
    Ok((
        SweepRecipe {
            sketch,
            source,
            vary: args.vary.clone(),
            cell: args.cell,
        },
        out,
    ))
}

struct Axis {
    key: String,
    values: Vec<(String, Dynamic)>,
}

fn parse_axis(text: &str) -> Result<Axis> {
    let Some((key, values)) = text.split_once('=') else {
        bail!("--vary {text}: expected KEY=VALUES, e.g. depth=2..9 or width=8,16,32");
    };
    let number = |v: &str| -> Result<(String, Dynamic)> {
        let v = v.trim();
        if let Ok(i) = v.parse::<i64>() {
            Ok((v.to_string(), Dynamic::from_int(i)))
        } else if let Ok(f) = v.parse::<f64>() {
            Ok((v.to_string(), Dynamic::from_float(f)))
        } else {
            bail!("--vary {text}: \"{v}\" is not a number")
        }
    };
    let values = if let Some((a, b)) = values.split_once("..") {
        let (a, b) = (a.trim().parse::<i64>(), b.trim().parse::<i64>());
        match (a, b) {
            (Ok(a), Ok(b)) if a <= b && b - a < 64 => (a..=b)
                .map(|i| (i.to_string(), Dynamic::from_int(i)))
                .collect(),
            _ => bail!(
                "--vary {text}: a range is two integers lo..hi (inclusive, at most 64 values)"
            ),
        }
    } else {
        values.split(',').map(number).collect::<Result<Vec<_>>>()?
    };
    Ok(Axis {
        key: key.trim().to_string(),
        values,
    })
}

/// Renders a contact sheet: the sketch once per combination of values, labelled.
pub(crate) fn run(args: SweepArgs) -> Result<()> {
    let (made, output) = resolve(&args)?;
    recipe::StillFormat::of(&output)?;
    let axes: Vec<Axis> = made
        .vary
        .iter()
        .map(|v| parse_axis(v))
        .collect::<Result<_>>()?;
    if axes.len() > 2 {
        bail!("at most two --vary keys (one across, one down)");
    }
    let source = made.source.clone();
    let base = spec::load_source(&made.sketch, source.clone())?;
    let (bw, bh) = base.spec.size();
    let cell_w = made.cell.clamp(16, 2048);
    let cell_h = (cell_w as u64 * bh as u64 / bw as u64).max(1) as u32;

    let across = &axes[0];
    let down_values = axes
        .get(1)
        .map_or(vec![None], |a| a.values.iter().map(Some).collect());
    let mut jobs = Vec::new();
    for (row, down) in down_values.iter().enumerate() {
        for (col, value) in across.values.iter().enumerate() {
            let mut overrides = vec![(across.key.clone(), value.1.clone())];
            let mut label = format!("{}={}", across.key, value.0);
            if let (Some(d), Some(axis)) = (down, axes.get(1)) {
                overrides.push((axis.key.clone(), d.1.clone()));
                label = format!("{label} {}={}", axis.key, d.0);
            }
            jobs.push((col, row, overrides, label));
        }
    }
    let images = jobs
        .par_iter()
        .map(|(_, _, overrides, label)| -> Result<RgbImage> {
            let sketch = spec::load_with(&made.sketch, source.clone(), overrides)
                .map_err(|e| anyhow::anyhow!("{e} (with {label})"))?;
            let mut spec = sketch.spec.clone();
            spec.set_size(cell_w, cell_h);
            super::prepare(&spec);
            Ok(spec.render()?.to_rgb8())
        })
        .collect::<Result<Vec<_>>>()?;

    const PAD: u32 = 8;
    const LABEL: u32 = 14;
    let cols = across.values.len() as u32;
    let rows = down_values.len() as u32;
    let mut sheet = RgbImage::from_pixel(
        cols * (cell_w + PAD) + PAD,
        rows * (cell_h + LABEL + PAD) + PAD,
        Rgb([24, 24, 28]),
    );
    for ((col, row, _, label), img) in jobs.iter().zip(&images) {
        let x = PAD + *col as u32 * (cell_w + PAD);
        let y = PAD + *row as u32 * (cell_h + LABEL + PAD);
        image::imageops::replace(&mut sheet, img, x as i64, y as i64);
        draw_text(&mut sheet, x, y + cell_h + 4, label, cell_w);
    }
    let tags = [(recipe::KEY_SWEEP, serde_json::to_string(&made)?)];
    let sheet = image::DynamicImage::ImageRgb8(sheet);
    recipe::write_image_tagged(&output, &sheet, None, &tags)?;
    eprintln!("wrote {} ({} images)", output.display(), images.len());
    Ok(())
}

/// Draws `text` with the 8x8 public-domain bitmap font, clipped to `max_width`.
fn draw_text(img: &mut RgbImage, x: u32, y: u32, text: &str, max_width: u32) {
    use font8x8::UnicodeFonts;
    for (k, c) in text.chars().enumerate() {
        let cx = x + k as u32 * 8;
        if cx + 8 > x + max_width {
            break;
        }
        let Some(glyph) = font8x8::BASIC_FONTS.get(c) else {
            continue;
        };
        for (gy, bits) in glyph.iter().enumerate() {
            for gx in 0..8 {
                if bits >> gx & 1 == 1 {
                    let (px, py) = (cx + gx, y + gy as u32);
                    if px < img.width() && py < img.height() {
                        img.put_pixel(px, py, Rgb([230, 230, 230]));
                    }
                }
            }
        }
    }
}
