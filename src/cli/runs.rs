use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use crate::run::summary::{self, RunSummary};

#[derive(Args, Debug)]
#[command(after_help = "\
States: running (its process is alive), paused, stopped (by x, Ctrl-C or control.json;
resumable), killed (says running but its process is gone; resumable), failed (the
message says why), finished.
Every run also writes TensorBoard event files: `tensorboard --logdir runs`.")]
pub struct RunsArgs {
    /// Folder that holds runs.
    #[arg(default_value = "runs", value_name = "DIR")]
    pub dir: PathBuf,
    /// One JSON object per run, newest first, for scripts.
    #[arg(long)]
    pub json: bool,
}

pub(crate) fn run(args: RunsArgs) -> Result<()> {
    if !args.dir.is_dir() {
        anyhow::bail!(
            "{} is not a folder of runs (`easel train SKETCH` writes runs/)",
            args.dir.display()
        );
    }
    let runs =
        summary::list(&args.dir).with_context(|| format!("cannot read {}", args.dir.display()))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&runs)?);
        return Ok(());
    }
    if runs.is_empty() {
        println!("no runs in {}", args.dir.display());
        return Ok(());
    }
    let rows: Vec<[String; 7]> = runs.iter().map(row).collect();
    let header = [
        "RUN", "STATE", "STEP", "BEST SWD", "IMG/S", "DEVICE", "STARTED",
    ]
    .map(String::from);
    let mut widths = header.clone().map(|h| h.chars().count());
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for r in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = r
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
    Ok(())
}

fn row(s: &RunSummary) -> [String; 7] {
    let folder = s
        .path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let state = match (s.state.is_active(), s.pid) {
        (true, Some(pid)) => format!("{} (pid {pid})", s.state.word()),
        _ => s.state.word().to_string(),
    };
    let best = match (s.best_swd, s.best_step) {
        (Some(swd), Some(step)) => format!("{swd:.1} @{step}"),
        (Some(swd), None) => format!("{swd:.1}"),
        _ => "-".into(),
    };
    let speed = s.imgs_per_s.map_or("-".into(), |v| format!("{v:.0}"));
    let started = s.started.map_or("-".into(), |t| {
        chrono::DateTime::from_timestamp(t as i64, 0)
            .map(|d| {
                d.with_timezone(&chrono::Local)
                    .format("%Y-%m-%d %H:%M")
                    .to_string()
            })
            .unwrap_or_default()
    });
    [
        folder,
        state,
        format!("{}/{}", s.step, s.total_steps),
        best,
        speed,
        s.device.clone(),
        started,
    ]
}
