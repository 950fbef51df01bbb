use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use crate::gan::train::{self, Outcome, Progress, TrainOptions};
use crate::run::{Metric, RunDir};
use crate::sketch::{self, Spec};

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// A GAN sketch.
    pub sketch: PathBuf,
    /// Run directory (default: a new runs/<sketch>-<date>-<time>).
    #[arg(long, value_name = "DIR")]
    pub run_dir: Option<PathBuf>,
    /// Folder that holds runs.
    #[arg(long, default_value = "runs", value_name = "DIR")]
    pub runs: PathBuf,
    /// Train this many steps in all (overrides the sketch's `steps`).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Continue from the run's last checkpoint (the newest run of this sketch unless
    /// --run-dir is given).
    #[arg(long)]
    pub resume: bool,
    /// cpu, or cuda (needs a build with `--features cuda`).
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

pub fn run(args: TrainArgs) -> Result<()> {
    let sketch = sketch::load(&args.sketch)?;
    let Spec::Gan(spec) = &sketch.spec else {
        bail!(
            "{}: `train` needs a GAN sketch (this one is {})",
            args.sketch.display(),
            sketch.spec.kind()
        );
    };
    let device = train::device(&args.device)?;
    let run = match (&args.run_dir, args.resume) {
        (Some(dir), _) => RunDir::at(dir)?,
        (None, true) => RunDir::latest(&args.runs, &sketch.name()).with_context(|| {
            format!(
                "--resume: no earlier run of {} in {}",
                sketch.name(),
                args.runs.display()
            )
        })?,
        (None, false) => RunDir::create(&args.runs, &sketch.name())?,
    };
    eprintln!("run directory: {}", run.path.display());
    let opts = TrainOptions {
        steps: args.steps,
        resume: args.resume,
        device,
    };
    let mut progress: Box<dyn Progress> = if std::io::stderr().is_terminal() {
        Box::new(Bar::default())
    } else {
        Box::new(LogLines { every: 10 })
    };
    match train::train(&run, &sketch.source, spec, &opts, progress.as_mut())? {
        Outcome::Done => eprintln!("done: {}", run.path.display()),
        Outcome::Stopped => eprintln!(
            "stopped; resume with: easel train {} --resume --run-dir {}",
            args.sketch.display(),
            run.path.display()
        ),
    }
    Ok(())
}

/// A progress bar with step, losses, D(x)/D(G(z)), images/s and ETA.
#[derive(Default)]
struct Bar(Option<ProgressBar>);

impl Progress for Bar {
    fn start(&mut self, from: u64, total: u64) {
        let bar = ProgressBar::new(total).with_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len}  {msg}  eta {eta}")
                .expect("template"),
        );
        bar.set_position(from);
        self.0 = Some(bar);
    }
    fn step(&mut self, m: &Metric) {
        if let Some(b) = &self.0 {
            b.set_position(m.step);
            b.set_message(format!(
                "D {:.3} G {:.3}  D(x) {:.2} D(G(z)) {:.2}  {:.0} img/s",
                m.d_loss, m.g_loss, m.d_real, m.d_fake, m.imgs_per_s
            ));
        }
    }
    fn note(&mut self, text: &str) {
        match &self.0 {
            Some(b) => b.println(text),
            None => eprintln!("{text}"),
        }
    }
    fn finish(&mut self) {
        if let Some(b) = self.0.take() {
            b.finish_and_clear();
        }
    }
    fn bar(&mut self, len: u64, what: &str) -> ProgressBar {
        ProgressBar::new(len).with_style(
            ProgressStyle::with_template(&format!(
                "{{bar:30}} {{pos}}/{{len}} {what}  eta {{eta}}"
            ))
            .expect("template"),
        )
    }
}

/// Plain lines for logs (no terminal).
struct LogLines {
    every: u64,
}

impl Progress for LogLines {
    fn start(&mut self, from: u64, total: u64) {
        eprintln!("training steps {from}..{total}");
    }
    fn step(&mut self, m: &Metric) {
        if m.step.is_multiple_of(self.every) {
            eprintln!(
                "step {} d_loss {:.4} g_loss {:.4} d_real {:.3} d_fake {:.3} {:.1} img/s",
                m.step, m.d_loss, m.g_loss, m.d_real, m.d_fake, m.imgs_per_s
            );
        }
    }
    fn note(&mut self, text: &str) {
        eprintln!("{text}");
    }
}
