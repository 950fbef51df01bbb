use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use image::{DynamicImage, Rgb, RgbImage};
use rayon::prelude::*;

use crate::gan::saved::{load_generator, sample_grid};
use crate::run::RunDir;
use crate::sketch;
use crate::spec;

#[derive(Args, Debug)]
#[command(after_help = "\
On a terminal: a contact sheet, a row of small previews at a time with the sketches' names
under them; errors are listed at the end with file, line and column. GAN sketches show the
newest sample grid of their newest run (in the folder's sibling runs/), else samples of a
shipped model trained from the same sketch (models/*/sketch.rhai), else say they are not
trained yet. Piped or redirected, it lists the sketches and their kinds and renders nothing.")]
pub struct GalleryArgs {
    /// Folder of sketches.
    #[arg(default_value = "sketches")]
    pub dir: PathBuf,
    /// Width of each preview in terminal columns.
    #[arg(long, default_value_t = 24)]
    pub width: u32,
}

/// Pixels per preview on the sheet (square; pictures are letterboxed into it).
const CELL: u32 = 128;
const PAD: u32 = 8;
const BACKGROUND: Rgb<u8> = Rgb([24, 24, 28]);

/// Shows every sketch in the folder, a row of previews at a time, or lists them when
/// nothing would be shown.
pub(crate) fn run(args: GalleryArgs) -> Result<()> {
    let sketches = sketch::list(&args.dir)?;
    if sketches.is_empty() {
        anyhow::bail!("no .rhai sketches in {}", args.dir.display());
    }
    if !std::io::stdout().is_terminal() {
        let mut failed = 0;
        for path in &sketches {
            match spec::load(path) {
                Ok(s) => println!("{}  ({})", path.display(), s.spec.kind()),
                Err(e) => {
                    failed += 1;
                    println!("{e}");
                }
            }
        }
        eprintln!(
            "(not a terminal: nothing rendered; `easel render SKETCH -o FILE.png` writes a picture{})",
            if failed > 0 { ", `easel check` checks them" } else { "" }
        );
        return Ok(());
    }
    let cols = args.width.clamp(8, 200);
    let (term_cols, _) = crossterm_size();
    let per_row = (term_cols.saturating_sub(1) / (cols + 1)).max(1) as usize;
    let mut errors = vec![];
    for row in sketches.chunks(per_row) {
        let cells: Vec<Cell> = row.par_iter().map(|p| cell(p, &args.dir)).collect();
        let mut strip =
            RgbImage::from_pixel(cells.len() as u32 * (CELL + PAD) - PAD, CELL, BACKGROUND);
        let mut names = String::new();
        for (k, c) in cells.iter().enumerate() {
            image::imageops::replace(&mut strip, &c.image, (k as u32 * (CELL + PAD)) as i64, 0);
            let label: String = c.label.chars().take(cols as usize).collect();
            names.push_str(&format!("{label:<w$}", w = cols as usize + 1));
            errors.extend(c.error.clone());
        }
        let width = cells.len() as u32 * (cols + 1) - 1;
        print_image(&DynamicImage::ImageRgb8(strip), width, None)?;
        println!("{}", names.trim_end());
    }
    for e in &errors {
        println!("\n{e}");
    }
    Ok(())
}

/// One sketch on the sheet.
struct Cell {
    image: RgbImage,
    label: String,
    error: Option<String>,
}

/// The preview of `path`: its render, or for a GAN sketch its newest samples; a grey
/// square with the reason when there is none.
fn cell(path: &Path, dir: &Path) -> Cell {
    let name = path
        .file_stem()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let blank = |label: String, error: Option<String>| Cell {
        image: RgbImage::from_pixel(CELL, CELL, Rgb([48, 48, 54])),
        label,
        error,
    };
    let sketch = match spec::load(path) {
        Ok(s) => s,
        Err(e) => return blank(format!("{name} ✗ error"), Some(e.to_string())),
    };
    let picture = if sketch.spec.kind() == spec::Kind::Gan {
        match gan_samples(&sketch, dir) {
            Some((img, from)) => Ok((img, format!("{name} · {from}"))),
            None => return blank(format!("{name} · untrained"), None),
        }
    } else {
        let mut spec = sketch.spec.clone();
        let (w, h) = spec.size();
        let scale = CELL as f64 / w.max(h) as f64;
        let (w, h) = ((w as f64 * scale).round(), (h as f64 * scale).round());
        spec.set_size((w as u32).max(1), (h as u32).max(1));
        super::prepare(&spec);
        spec.render()
            .map_err(|e| e.or_file(path).to_string())
            .map(|img| (img, name.clone()))
    };
    match picture {
        Ok((img, label)) => Cell {
            image: letterbox(&img),
            label,
            error: None,
        },
        Err(e) => blank(format!("{name} ✗ error"), Some(e)),
    }
}

/// `img` scaled to fit the cell, centred on the sheet's background.
fn letterbox(img: &DynamicImage) -> RgbImage {
    let fitted = img.resize(CELL, CELL, image::imageops::FilterType::Triangle);
    let mut out = RgbImage::from_pixel(CELL, CELL, BACKGROUND);
    let (x, y) = ((CELL - fitted.width()) / 2, (CELL - fitted.height()) / 2);
    image::imageops::replace(&mut out, &fitted.to_rgb8(), x as i64, y as i64);
    out
}

/// A GAN sketch's newest samples: the newest grid of its newest run in the sketch
/// folder's sibling `runs/`, else 16 samples of a model in the sibling `models/` whose
/// `sketch.rhai` is this sketch; with where they came from (the run's step, or the
/// model's folder name).
fn gan_samples(sketch: &spec::Sketch, dir: &Path) -> Option<(DynamicImage, String)> {
    let parent = dir.parent().unwrap_or(Path::new("."));
    if let Some(run) = RunDir::latest(&parent.join("runs"), &sketch.name()) {
        if let Some(grid) = run.samples().pop() {
            if let Ok(img) = image::open(&grid) {
                let stem = grid.file_stem()?.to_string_lossy().into_owned();
                let step = stem.trim_start_matches("step_").trim_start_matches('0');
                return Some((img, format!("step {step}")));
            }
        }
    }
    let models = std::fs::read_dir(parent.join("models")).ok()?;
    for model in models.flatten().map(|e| e.path()) {
        if std::fs::read_to_string(model.join("sketch.rhai"))
            .ok()
            .as_deref()
            != Some(sketch.source.as_str())
        {
            continue;
        }
        let loaded = load_generator(&model, None, false, &candle_core::Device::Cpu).ok()?;
        let grid = sample_grid(&loaded, 16, 0, 1.0).ok()?;
        let folder = model.file_name()?.to_string_lossy().into_owned();
        return Some((grid, folder));
    }
    None
}

/// Prints an image in the terminal with viuer. Truecolour is forced on: tmux and SSH
/// hide `$COLORTERM`, and every terminal worth using handles it.
pub(crate) fn show(img: &DynamicImage, width: Option<u32>) -> Result<()> {
    if !std::io::stdout().is_terminal() {
        eprintln!("(not a terminal: skipping the preview)");
        return Ok(());
    }
    let (cols, rows) = crossterm_size();
    let width = width.unwrap_or(cols.saturating_sub(2).clamp(8, 64));
    print_image(img, width, Some(rows.saturating_sub(2).max(4)))
}

/// Prints `img` `width` columns wide; its height follows the picture's shape unless
/// `height` (rows) bounds it.
fn print_image(img: &DynamicImage, width: u32, height: Option<u32>) -> Result<()> {
    let (use_kitty, use_iterm) = protocols(|k| std::env::var(k).ok());
    let config = viuer::Config {
        width: Some(width),
        height,
        absolute_offset: false,
        truecolor: true,
        use_kitty,
        use_iterm,
        ..Default::default()
    };
    viuer::print(img, &config).context("cannot print the image to the terminal")?;
    Ok(())
}

/// Which graphics protocols to try: (kitty, iTerm2). viuer finds out by sending queries
/// and reading the answers; where the terminal (or tmux in between) answers only the
/// fallback query late, the answer lands on the command line as `^[[?1;2c`. So only
/// terminals that say who they are, outside tmux/screen, are asked.
pub(crate) fn protocols(env: impl Fn(&str) -> Option<String>) -> (bool, bool) {
    let term = env("TERM").unwrap_or_default();
    let multiplexed =
        env("TMUX").is_some() || term.starts_with("screen") || term.starts_with("tmux");
    if multiplexed {
        return (false, false);
    }
    let kitty = term == "xterm-kitty" || env("KITTY_WINDOW_ID").is_some();
    let iterm = matches!(
        env("TERM_PROGRAM").as_deref(),
        Some("iTerm.app" | "WezTerm")
    );
    (kitty, iterm)
}

fn crossterm_size() -> (u32, u32) {
    let (c, r) = viuer::terminal_size();
    (c as u32, r as u32)
}

#[cfg(test)]
mod tests {
    use super::protocols;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn terminals_are_asked_about_graphics_only_when_they_say_who_they_are() {
        assert_eq!(
            protocols(env(&[("TERM", "xterm-256color")])),
            (false, false)
        );
        assert_eq!(protocols(env(&[("TERM", "xterm-kitty")])), (true, false));
        assert_eq!(
            protocols(env(&[
                ("TERM", "xterm-kitty"),
                ("TMUX", "/tmp/tmux-0/default,1,0")
            ])),
            (false, false)
        );
        assert_eq!(
            protocols(env(&[
                ("TERM", "screen-256color"),
                ("TERM_PROGRAM", "iTerm.app")
            ])),
            (false, false)
        );
        assert_eq!(
            protocols(env(&[
                ("TERM", "xterm-256color"),
                ("TERM_PROGRAM", "WezTerm")
            ])),
            (false, true)
        );
    }
}
