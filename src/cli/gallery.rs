use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use image::DynamicImage;

use crate::sketch;

#[derive(Args, Debug)]
pub struct GalleryArgs {
    /// Folder of sketches.
    #[arg(default_value = "sketches")]
    pub dir: PathBuf,
    /// Width of each preview in terminal columns (default: fits the terminal).
    #[arg(long)]
    pub width: Option<u32>,
}

/// Lists every sketch in the folder with a preview, or its error.
pub fn run(args: GalleryArgs) -> Result<()> {
    let sketches = sketch::list(&args.dir)?;
    if sketches.is_empty() {
        anyhow::bail!("no .rhai sketches in {}", args.dir.display());
    }
    for path in sketches {
        match sketch::load(&path).and_then(|s| s.spec.render().map(|img| (s, img))) {
            Ok((s, img)) => {
                let (w, h) = s.spec.size();
                println!("{}  ({}, {w}x{h})", path.display(), s.spec.kind());
                show(&img, args.width)?;
            }
            Err(e) => println!("{e}"),
        }
        println!();
    }
    Ok(())
}

/// Prints an image in the terminal with viuer. Truecolour is forced on: tmux and SSH
/// hide `$COLORTERM`, and every terminal worth using handles it.
pub fn show(img: &DynamicImage, width: Option<u32>) -> Result<()> {
    if !std::io::stdout().is_terminal() {
        eprintln!("(not a terminal: skipping the preview)");
        return Ok(());
    }
    let (cols, rows) = crossterm_size();
    let width = width.unwrap_or(cols.saturating_sub(2).clamp(8, 64));
    let config = viuer::Config {
        width: Some(width),
        height: Some(rows.saturating_sub(2).max(4)),
        absolute_offset: false,
        truecolor: true,
        ..Default::default()
    };
    viuer::print(img, &config).context("cannot print the image to the terminal")?;
    Ok(())
}

fn crossterm_size() -> (u32, u32) {
    let (c, r) = viuer::terminal_size();
    (c as u32, r as u32)
}
