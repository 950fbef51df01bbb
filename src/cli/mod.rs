//! The command line: `easel [studio] | watch | render | animate | sweep | train | sample |
//! dataset | check | gallery | upscale | eval | init | runs`.

mod animate;
mod check;
mod dataset;
mod eval;
mod gallery;
mod init;
mod render;
mod runs;
mod sample;
mod sweep;
mod train;
mod upscale;

use std::path::{Path, PathBuf};

use crate::studio::{self, Graphics};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "easel",
    version,
    about = "A terminal studio for live-coding generative art",
    long_about = "A terminal studio for live-coding generative art.\n\n\
Sketches are Rhai scripts (see sketches/ and the README) describing Truchet tilings,\nCPPNs or GANs.\n\
A rendered PNG (render, favourites, exports) carries its recipe, so\n\
`easel render --from FILE.png` makes it again; sample grids and sweep sheets too\n\
(`easel sample --from`, `easel sweep --from`).\n\n\
Run with no command to open the studio on ./sketches (`easel init` writes the bundled\nsketches there)."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Render a sketch (or a PNG's recipe) to a PNG file, or to the terminal with --show.
    #[command(
        override_usage = "easel render [OPTIONS] <SKETCH>\n       easel render [OPTIONS] --from <IMAGE.png>"
    )]
    Render(render::RenderArgs),
    /// Render a CPPN latent walk that loops seamlessly, as a GIF or PNG frames.
    Animate(animate::AnimateArgs),
    /// Render a labelled contact sheet of a sketch across parameter values.
    #[command(
        override_usage = "easel sweep [OPTIONS] <SKETCH> --vary <KEY=VALUES>...\n       easel sweep [OPTIONS] --from <SHEET.png>"
    )]
    Sweep(sweep::SweepArgs),
    /// Train a GAN sketch, writing a run directory (resumable, controllable).
    Train(train::TrainArgs),
    /// Sample a trained generator: a grid, one class, or a looping latent walk.
    #[command(
        override_usage = "easel sample [OPTIONS] <SOURCE>\n       easel sample [OPTIONS] --from <GRID.png>"
    )]
    Sample(sample::SampleArgs),
    /// Upscale pictures with an ESRGAN / Real-ESRGAN network (x2-x4).
    Upscale(upscale::UpscaleArgs),
    /// Score a run's generator against real images (sliced Wasserstein distance).
    Eval(eval::EvalArgs),
    /// Write a folder of images from a sketch, one subfolder per class.
    Dataset(dataset::DatasetArgs),
    /// Check sketches (files or folders) for errors: loads and renders each, reports every
    /// one; non-zero exit if any failed.
    Check(check::CheckArgs),
    /// Print a preview of every sketch in a folder to the terminal.
    Gallery(gallery::GalleryArgs),
    /// Write the bundled sketches into DIR/sketches (existing files are kept).
    Init(init::InitArgs),
    /// Open the live studio on a folder of sketches (the default with no command).
    Studio(StudioArgs),
    /// Attach the run panels to one run directory (live or finished), e.g. over SSH.
    Watch(WatchArgs),
    /// List the runs in a folder, newest first: state, step, best SWD, speed, device.
    Runs(runs::RunsArgs),
}

#[derive(clap::Args, Debug)]
pub struct StudioArgs {
    /// Folder of sketches; runs go to its sibling runs/, favourites to favourites/.
    #[arg(default_value = "sketches")]
    pub dir: PathBuf,
    /// How to draw images: half-blocks work everywhere (SSH, tmux); `auto` asks the
    /// terminal and uses kitty graphics (kitty >= 0.28) or sixel where it has them;
    /// `iterm` is used only when named.
    #[arg(long, value_enum, default_value = "halfblocks")]
    pub graphics: Graphics,
    /// Where `t` trains: cpu, cuda, cuda:N or auto (see `easel train --help`).
    #[arg(long, default_value = "cpu", value_name = "DEVICE")]
    pub device: crate::device::DeviceArg,
    /// The ESRGAN model `u` upscales the preview with (see `easel upscale --help`).
    #[arg(long, default_value = crate::spec::Upscaling::DEFAULT_MODEL, value_name = "MODEL")]
    pub upscale: String,
}

#[derive(clap::Args, Debug)]
pub struct WatchArgs {
    /// A run directory written by `easel train` (or by `t` in the studio).
    pub run_dir: PathBuf,
    /// How to draw images (see `easel studio --help`).
    #[arg(long, value_enum, default_value = "halfblocks")]
    pub graphics: Graphics,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Render(a)) => render::run(a),
        Some(Command::Dataset(a)) => dataset::run(a),
        Some(Command::Animate(a)) => animate::run(a),
        Some(Command::Sweep(a)) => sweep::run(a),
        Some(Command::Train(a)) => train::run(a),
        Some(Command::Sample(a)) => sample::run(a),
        Some(Command::Upscale(a)) => upscale::run(a),
        Some(Command::Eval(a)) => eval::run(a),
        Some(Command::Check(a)) => check::run(a),
        Some(Command::Gallery(a)) => gallery::run(a),
        Some(Command::Init(a)) => init::run(a),
        Some(Command::Studio(a)) => studio::studio(&a.dir, a.graphics, a.device, &a.upscale),
        Some(Command::Watch(a)) => studio::watch(&a.run_dir, a.graphics),
        Some(Command::Runs(a)) => runs::run(a),
        None => studio::studio(
            Path::new("sketches"),
            Graphics::Halfblocks,
            crate::device::DeviceArg::Cpu,
            crate::spec::Upscaling::DEFAULT_MODEL,
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// "1 file", "3 files": a count with its noun, for the commands' reports.
fn count(n: usize, noun: &str) -> String {
    match n {
        1 => format!("1 {noun}"),
        _ => format!("{n} {noun}s"),
    }
}

/// A progress bar for `len` units of long work, drawn only on a terminal.
fn progress_bar(len: u64, prefix: &'static str, unit: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len)
        .with_style(
            indicatif::ProgressStyle::with_template(&format!(
                "{{prefix}} {{bar:30}} {{pos}}/{{len}} {unit}  {{msg}}  eta {{eta}}"
            ))
            .expect("template"),
        )
        .with_prefix(prefix);
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    bar
}

/// clap value parser for `N` or `WxH`.
fn size_arg(text: &str) -> Result<(u32, u32), String> {
    crate::recipe::parse_size(text)
}

/// Does the slow work `spec` needs before it renders (a CPPN's fit), with a progress bar
/// on a terminal and a line on stderr saying how it went. A failure is kept with the
/// spec's outcome, so the render that follows reports it where it always has.
fn prepare(spec: &crate::spec::Spec) {
    let Some(prep) = spec.preparation() else {
        return;
    };
    let bar = indicatif::ProgressBar::new(prep.steps)
        .with_style(
            indicatif::ProgressStyle::with_template(
                "{prefix} {bar:30} {pos}/{len} steps  {msg}  eta {eta}",
            )
            .expect("template"),
        )
        .with_prefix(prep.verb.1);
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let done = spec.prepare(&mut |p| {
        bar.set_position(p.done);
        bar.set_message(p.detail.clone());
    });
    bar.finish_and_clear();
    if let Ok(Some(line)) = done {
        eprintln!("{line}");
    }
}
