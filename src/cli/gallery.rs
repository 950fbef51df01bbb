use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use image::DynamicImage;

use crate::sketch;
use crate::spec;

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
pub(crate) fn run(args: GalleryArgs) -> Result<()> {
    let sketches = sketch::list(&args.dir)?;
    if sketches.is_empty() {
        anyhow::bail!("no .rhai sketches in {}", args.dir.display());
    }
    for path in sketches {
        match spec::load(&path).and_then(|s| {
            super::prepare(&s.spec);
            s.spec
                .render()
                .map_err(|e| e.or_file(&s.path))
                .map(|img| (s, img))
        }) {
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
pub(crate) fn show(img: &DynamicImage, width: Option<u32>) -> Result<()> {
    if !std::io::stdout().is_terminal() {
        eprintln!("(not a terminal: skipping the preview)");
        return Ok(());
    }
    let (cols, rows) = crossterm_size();
    let width = width.unwrap_or(cols.saturating_sub(2).clamp(8, 64));
    let (use_kitty, use_iterm) = protocols(|k| std::env::var(k).ok());
    let config = viuer::Config {
        width: Some(width),
        height: Some(rows.saturating_sub(2).max(4)),
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
