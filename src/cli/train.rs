use std::io::IsTerminal;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use signal_hook::consts::{SIGINT, SIGTERM};

use crate::device::DeviceArg;
use crate::gan::train::{self, Outcome, Progress, TrainOptions};
use crate::gan::{GanSpec, Precision};
use crate::ranks::Ranks;
use crate::run::{Metric, RunDir};
use crate::spec::{self, Spec};
use crate::studio::view::format_duration;

#[derive(Args, Debug)]
#[command(after_help = "\
Stopping and resuming:
  Ctrl-C or SIGTERM stops after the step in flight, with a checkpoint (exit 130 or 143);
  so does {\"state\": \"stop\"} in the run's control.json (or x in the studio).
  --resume continues from the last checkpoint to the run's target (its --steps, else the
  sketch's steps), with the sketch's learning rates; an old control.json is cleared.
  A run that failed on a NaN loss resumes from its last checkpoint: lower `lr` first.

Several processes (MPI ranks), in a build with `--features mpi`:
  mpirun -np 4 easel train SKETCH          srun --mpi=pmix -n 8 easel train SKETCH
  Each rank trains its rows of every batch (the sketch's `batch` is the whole batch); rank 0
  writes the run directory. A run resumes on any number of ranks. See docs/ranks.md.")]
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
    /// cpu, cuda, cuda:N or auto (CUDA when this build has it and a GPU answers).
    /// CUDA needs a build with `--features cuda` (see scripts/build_cuda.sh).
    #[arg(long, default_value = "cpu", value_name = "DEVICE")]
    pub device: DeviceArg,
    /// Arithmetic of convolutions and matrix products (overrides the sketch's
    /// `precision`): bf16 multiplies bfloat16 copies and sums in f32, on CPUs with
    /// AVX512_BF16 and on CUDA (else it runs fp32 and says so). Weights and checkpoints
    /// stay f32: --resume takes the sketch's precision unless this is given again.
    #[arg(long, value_enum)]
    pub precision: Option<Precision>,
}

pub(crate) fn run(args: TrainArgs) -> Result<()> {
    // Under mpirun or srun, this process is one rank of several training one run.
    let ranks = crate::ranks::from_environment()?;
    let outcome = match train_as(args, ranks.clone()) {
        Ok(outcome) => outcome,
        Err(e) if ranks.size() > 1 => {
            // The failure is in status.json by now (rank 0 records its own; another rank
            // records its own when rank 0 is stuck waiting for it). Another rank gives rank
            // 0 a moment to finish writing, then MPI ends every rank.
            if ranks.rank() != 0 {
                std::thread::sleep(Duration::from_secs(2));
            }
            ranks.abandon(&format!("{e:#}"));
            return Err(e);
        }
        Err(e) => return Err(e),
    };
    // MPI is finalised before the process exits, so the launcher sees a clean end.
    drop(ranks);
    match outcome {
        Outcome::Interrupted(signal) => std::process::exit(128 + signal),
        Outcome::Done | Outcome::Stopped => Ok(()),
    }
}

fn train_as(args: TrainArgs, ranks: Rc<dyn Ranks>) -> Result<Outcome> {
    let root = ranks.rank() == 0;
    let sketch = spec::load(&args.sketch)?;
    let Spec::Gan(spec) = &sketch.spec else {
        bail!(
            "{}: `train` needs a GAN sketch (this one is {})",
            args.sketch.display(),
            sketch.spec.kind()
        );
    };
    let spec = &GanSpec {
        precision: args.precision.unwrap_or(spec.precision),
        ..(**spec).clone()
    };
    // Ranks on one machine take one GPU each: `cuda:N` is rank r's GPU N + r there, and
    // `auto` the rank's own GPU in a CUDA build (the ranks check they agree on the kind).
    let device = match args.device {
        DeviceArg::Cuda(n) => DeviceArg::Cuda(n + ranks.local_rank()),
        DeviceArg::Auto if ranks.size() > 1 && crate::device::cuda_built() => {
            DeviceArg::Cuda(ranks.local_rank())
        }
        other => other,
    };
    let device = device.open()?;
    // Rank 0 picks (or makes) the run directory and tells the others.
    let mut path = Vec::new();
    if root {
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
        path = run.path.as_os_str().as_bytes().to_vec();
    }
    ranks.broadcast(&mut path)?;
    let run = RunDir::at(Path::new(std::ffi::OsStr::from_bytes(&path)))?;
    if root {
        let across = match ranks.size() {
            1 => String::new(),
            _ => format!(", {}", ranks.describe()),
        };
        eprintln!(
            "run directory: {} (device {}{across}; follow it with `easel watch {}` or `tensorboard --logdir {}`)",
            run.path.display(),
            crate::device::describe(&device),
            run.path.display(),
            // A run directory given as "r1" has the parent "": TensorBoard needs ".".
            run.path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .map_or(".".into(), |p| p.display().to_string()),
        );
    }
    let opts = TrainOptions {
        steps: args.steps,
        resume: args.resume,
        device,
        interrupt: Arc::default(),
        open_sketch: Some(spec::data_sketch),
        ranks,
    };
    // Ctrl-C or SIGTERM: finish the step in flight, checkpoint, say "stopped", exit
    // 130/143. A second signal while that happens exits at once (the last checkpoint
    // stays; `--resume` continues from it).
    for signal in [SIGINT, SIGTERM] {
        // Order matters: the conditional shutdown checks the flag before this
        // signal sets it, so only a second signal exits at once.
        let seen = Arc::new(std::sync::atomic::AtomicBool::new(false));
        signal_hook::flag::register_conditional_shutdown(signal, 128 + signal, seen.clone())?;
        signal_hook::flag::register(signal, seen)?;
        signal_hook::flag::register_usize(signal, opts.interrupt.clone(), signal as usize)?;
    }
    let mut progress: Box<dyn Progress> = if !root {
        Box::new(train::Silent)
    } else if std::io::stderr().is_terminal() {
        Box::new(Bar::default())
    } else {
        Box::new(LogLines::new())
    };
    let resume_hint = format!(
        "resume with: easel train {} --resume --run-dir {}",
        args.sketch.display(),
        run.path.display()
    );
    let outcome = train::train(&run, &sketch.source, spec, &opts, progress.as_mut())?;
    if root {
        match outcome {
            Outcome::Done => eprintln!("done: {}", run.path.display()),
            Outcome::Stopped => eprintln!("stopped; {resume_hint}"),
            Outcome::Interrupted(_) => eprintln!("interrupted, checkpointed; {resume_hint}"),
        }
    }
    Ok(outcome)
}

/// After the first few steps, one line saying how long the whole run will take, from
/// their measured pace (the first step, which warms caches up, is not counted).
#[derive(Default)]
struct Forecast {
    total: u64,
    /// When the first step ended, and its number.
    first: Option<(Instant, u64)>,
    said: bool,
}

impl Forecast {
    const STEPS: u64 = 5;

    fn start(&mut self, total: u64) {
        *self = Forecast {
            total,
            ..Forecast::default()
        };
    }

    /// The line to print at step `step`, once.
    fn line(&mut self, step: u64) -> Option<String> {
        let Some((t0, s0)) = self.first else {
            self.first = Some((Instant::now(), step));
            return None;
        };
        let measured = step.saturating_sub(s0);
        if self.said || measured < Self::STEPS || step >= self.total {
            return None;
        }
        self.said = true;
        let per_step = t0.elapsed().as_secs_f64() / measured as f64;
        let left = self.total.saturating_sub(step) as f64 * per_step;
        Some(format!(
            "{} steps left at {per_step:.2} s a step (measured over steps {}..{step}): about {}",
            self.total.saturating_sub(step),
            s0 + 1,
            format_duration(left)
        ))
    }
}

/// A progress bar with step, losses, D(x)/D(G(z)), images/s and ETA.
#[derive(Default)]
struct Bar(Option<ProgressBar>, Forecast);

impl Progress for Bar {
    fn start(&mut self, from: u64, total: u64) {
        let bar = ProgressBar::new(total).with_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len}  {msg}  eta {eta}")
                .expect("template"),
        );
        bar.set_position(from);
        self.0 = Some(bar);
        self.1.start(total);
    }
    fn step(&mut self, m: &Metric) {
        if let Some(line) = self.1.line(m.step) {
            self.note(&line);
        }
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

/// Plain lines for logs (no terminal): every 10 steps, and at least every 30 s when
/// steps are slow (a 64x64 step on a CPU takes seconds).
pub(crate) struct LogLines {
    last: Instant,
    forecast: Forecast,
}

impl LogLines {
    const EVERY_STEPS: u64 = 10;
    const EVERY: Duration = Duration::from_secs(30);

    fn new() -> Self {
        LogLines {
            last: Instant::now(),
            forecast: Forecast::default(),
        }
    }

    /// Whether step `step` gets a line, `since` the last line.
    pub(crate) fn due(step: u64, since: Duration) -> bool {
        step.is_multiple_of(Self::EVERY_STEPS) || since >= Self::EVERY
    }
}

impl Progress for LogLines {
    fn start(&mut self, from: u64, total: u64) {
        eprintln!("training steps {from}..{total}");
        self.last = Instant::now();
        self.forecast.start(total);
    }
    fn step(&mut self, m: &Metric) {
        if let Some(line) = self.forecast.line(m.step) {
            eprintln!("{line}");
        }
        if Self::due(m.step, self.last.elapsed()) {
            self.last = Instant::now();
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

#[cfg(test)]
mod tests {
    use super::{Forecast, LogLines};
    use std::time::Duration;

    #[test]
    fn the_forecast_comes_once_after_five_measured_steps() {
        let mut f = Forecast::default();
        f.start(1000);
        let lines: Vec<Option<String>> = (1..=8).map(|s| f.line(s)).collect();
        assert!(lines[..5].iter().all(Option::is_none), "{lines:?}");
        let line = lines[5].as_deref().unwrap();
        assert!(line.starts_with("994 steps left at "), "{line}");
        assert!(line.contains("measured over steps 2..6"), "{line}");
        assert!(lines[6..].iter().all(Option::is_none));
        // A run over before the measurement has nothing to forecast.
        f.start(4);
        assert!((1..=4).all(|s| f.line(s).is_none()));
    }

    #[test]
    fn slow_steps_are_logged_at_least_every_30_seconds() {
        assert!(LogLines::due(10, Duration::ZERO));
        assert!(!LogLines::due(3, Duration::from_secs(29)));
        assert!(LogLines::due(3, Duration::from_secs(30)));
    }
}
