//! The run directory: the interface between a training process and everything that
//! watches it (the CLI, the studio, `easel watch`). Training writes; others read, and
//! talk back only through `control.json`.
//!
//! ```text
//! runs/<sketch>-<yyyymmdd-hhmmss>/
//!   sketch.rhai  spec.json  metrics.jsonl  status.json  control.json
//!   samples/step_000500.png  checkpoints/latest.safetensors  generator.safetensors
//!   timelapse.gif  events.out.tfevents.<time>.easel (TensorBoard)
//! ```

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::recipe::write_atomically;

pub mod summary;
pub mod tensorboard;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Starting,
    Running,
    Paused,
    Stopped,
    Done,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub state: State,
    #[serde(default)]
    pub message: String,
    pub pid: u32,
    pub step: u64,
    pub total_steps: u64,
    /// Last checkpointed step, if any.
    #[serde(default)]
    pub checkpoint_step: Option<u64>,
    /// Where it trains: "cpu", "cuda:0", …
    #[serde(default)]
    pub device: String,
    /// The GPU's name and memory in use, refreshed with every status write (CUDA only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<crate::device::Gpu>,
    /// Seconds since the Unix epoch.
    pub updated: f64,
    /// Processes training the run together (MPI ranks); 1 but under mpirun or srun.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub ranks: usize,
}

fn one() -> usize {
    1
}

fn is_one(n: &usize) -> bool {
    *n == 1
}

/// One line of `metrics.jsonl`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Metric {
    pub step: u64,
    pub epoch: f64,
    pub d_loss: f64,
    pub g_loss: f64,
    /// Mean D(x) on real images, as a probability.
    pub d_real: f64,
    /// Mean D(G(z)).
    pub d_fake: f64,
    pub lr_g: f64,
    pub lr_d: f64,
    pub imgs_per_s: f64,
    /// Seconds since the Unix epoch.
    pub time: f64,
    /// DiffAugment's probability this step (when augmenting).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aug_p: Option<f64>,
    /// SWD ×10³ of the EMA generator's samples against the data (on evaluation steps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swd: Option<f64>,
    /// SWD ×10³ of the raw (trained, not averaged) generator's samples.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swd_raw: Option<f64>,
    /// Per-class SWD and diversity of a conditional generator (on evaluation steps).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub classes: Vec<ClassScore>,
    /// CAN: how unsure a classifier of the real classes is of each sample (mean entropy of
    /// its prediction over ln K, 0–1; higher is further from any one style).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub style_ambiguity: Option<f64>,
    /// VAE-GAN: G's mean squared error redrawing the real batch from its codes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconstruction: Option<f64>,
    /// With `g_clip`: the global L2 norm of G's (and the encoder's) gradient before
    /// clipping.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub g_grad_norm: Option<f64>,
    /// VAE-GAN: KL divergence of the encoder's codes from N(0, I), nats per image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kl: Option<f64>,
}

/// One class's figures in an evaluation of a conditional generator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassScore {
    pub name: String,
    /// SWD ×10³ of the class's samples against its real images.
    pub swd: f64,
    /// Mean pairwise distance of its samples over that of its real images.
    pub diversity: f64,
    /// Fraction of its samples a classifier trained on the real images puts in it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fidelity: Option<f64>,
}

impl ClassScore {
    /// Below this a class is flagged: its samples vary less than half as much as its
    /// pictures do.
    pub const LOW_DIVERSITY: f64 = 0.5;
    /// Below this a class is shown in red: the classifier of the real classes puts fewer
    /// than 9 in 10 of its samples in it.
    pub const LOW_FIDELITY: f64 = 0.9;
}

/// What a run is asked to do through `control.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Wanted {
    Run,
    Pause,
    Stop,
}

/// What the studio (or a person with an editor) asks of a running training.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Control {
    #[serde(default)]
    pub state: Option<Wanted>,
    #[serde(default)]
    pub lr_g: Option<f64>,
    #[serde(default)]
    pub lr_d: Option<f64>,
    #[serde(default)]
    pub sample_every: Option<u64>,
}

/// The sketch name of a run folder `<name>-<yyyymmdd>-<hhmmss>[-k]`.
pub fn sketch_name_of_run(folder: &str) -> Option<&str> {
    let (stamped, _) = split_suffix(folder);
    let parts: Vec<&str> = stamped.rsplitn(3, '-').collect();
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    (parts.len() == 3 && digits(parts[1], 8) && digits(parts[0], 6) && !parts[2].is_empty())
        .then(|| parts[2])
}

/// `name-yyyymmdd-hhmmss-k` → (`name-yyyymmdd-hhmmss`, k); without a suffix k is 1.
fn split_suffix(folder: &str) -> (&str, u64) {
    let parts: Vec<&str> = folder.rsplitn(4, '-').collect();
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    if parts.len() == 4 && digits(parts[2], 8) && digits(parts[1], 6) {
        if let Ok(k) = parts[0].parse() {
            return (&folder[..folder.len() - parts[0].len() - 1], k);
        }
    }
    (folder, 1)
}

/// Whether process `pid` exists. A pid of 0 (never a training process; `kill(0, …)`
/// would signal our own process group) reads as gone.
pub fn process_alive(pid: u32) -> bool {
    if pid == 0 || pid > i32::MAX as u32 {
        return false;
    }
    #[cfg(unix)]
    {
        // Signal 0 checks existence; EPERM means it exists but is not ours.
        // SAFETY: kill with signal 0 sends nothing; pid is a positive pid_t.
        let r = unsafe { libc::kill(pid as libc::pid_t, 0) };
        r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
    }
    #[cfg(not(unix))]
    {
        true
    }
}

pub fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[derive(Debug, Clone)]
pub struct RunDir {
    pub path: PathBuf,
}

impl RunDir {
    /// A new run folder `<base>/<name>-<yyyymmdd-hhmmss>` (a suffix is added if taken).
    pub fn create(base: &Path, name: &str) -> Result<Self> {
        let stamp = chrono::Utc::now().format("%Y%m%d-%H%M%S").to_string();
        let mut path = base.join(format!("{name}-{stamp}"));
        let mut k = 2;
        while path.exists() {
            path = base.join(format!("{name}-{stamp}-{k}"));
            k += 1;
        }
        Self::at(&path)
    }

    /// Opens (creating folders as needed) a run directory at `path`.
    pub fn at(path: &Path) -> Result<Self> {
        let run = RunDir {
            path: path.to_path_buf(),
        };
        for dir in [run.path.clone(), run.samples_dir(), run.checkpoints_dir()] {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        Ok(run)
    }

    /// The newest run of sketch `name` under `base`, if any (runs of `name-b` are not
    /// runs of `name`).
    pub fn latest(base: &Path, name: &str) -> Option<Self> {
        let mut runs: Vec<PathBuf> = std::fs::read_dir(base)
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.is_dir()
                    && p.file_name()
                        .and_then(|n| n.to_str())
                        .and_then(sketch_name_of_run)
                        == Some(name)
            })
            .collect();
        // Same stamp: `-2` comes after the plain one; `-10` after `-9`.
        runs.sort_by_key(|p| {
            let n = p.file_name().map(|n| n.to_string_lossy().into_owned());
            let n = n.unwrap_or_default();
            let (stamp, k) = split_suffix(&n);
            (stamp.to_string(), k)
        });
        runs.pop().map(|path| RunDir { path })
    }

    pub fn sketch(&self) -> PathBuf {
        self.path.join("sketch.rhai")
    }
    pub fn spec(&self) -> PathBuf {
        self.path.join("spec.json")
    }
    pub fn metrics(&self) -> PathBuf {
        self.path.join("metrics.jsonl")
    }
    pub fn status_path(&self) -> PathBuf {
        self.path.join("status.json")
    }
    pub fn control_path(&self) -> PathBuf {
        self.path.join("control.json")
    }
    pub fn samples_dir(&self) -> PathBuf {
        self.path.join("samples")
    }
    pub fn checkpoints_dir(&self) -> PathBuf {
        self.path.join("checkpoints")
    }
    pub fn latest_checkpoint(&self) -> PathBuf {
        self.checkpoints_dir().join("latest.safetensors")
    }
    /// The generator (EMA or raw) with the lowest SWD so far.
    pub fn best_checkpoint(&self) -> PathBuf {
        self.checkpoints_dir().join("best.safetensors")
    }
    /// The class-fidelity check's classifier, trained on the run's data (a cache).
    pub fn classifier(&self) -> PathBuf {
        self.path.join("classifier.safetensors")
    }
    pub fn generator(&self) -> PathBuf {
        self.path.join("generator.safetensors")
    }
    pub fn timelapse(&self) -> PathBuf {
        self.path.join("timelapse.gif")
    }

    pub fn write_json<T: Serialize>(&self, path: &Path, value: &T) -> Result<()> {
        write_atomically(path, |f| Ok(serde_json::to_writer_pretty(f, value)?))
    }

    pub fn write_status(&self, status: &Status) -> Result<()> {
        self.write_json(&self.status_path(), status)
    }

    pub fn read_status(&self) -> Result<Status> {
        if !self.path.exists() {
            anyhow::bail!("{} does not exist", self.path.display());
        }
        let text = std::fs::read_to_string(self.status_path()).with_context(|| {
            format!(
                "{} has no status.json (not a run directory?)",
                self.path.display()
            )
        })?;
        serde_json::from_str(&text)
            .with_context(|| format!("{}: bad status.json", self.path.display()))
    }

    pub fn append_metric(&self, m: &Metric) -> Result<()> {
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.metrics())?;
        writeln!(f, "{}", serde_json::to_string(m)?)?;
        Ok(())
    }

    /// All metrics lines; a line cut short by a crash is skipped.
    pub fn read_metrics(&self) -> Vec<Metric> {
        let Ok(f) = std::fs::File::open(self.metrics()) else {
            return vec![];
        };
        BufReader::new(f)
            .lines()
            .map_while(|l| l.ok())
            .filter_map(|l| serde_json::from_str(&l).ok())
            .collect()
    }

    /// Drops metric lines past `step` (after resuming from an earlier checkpoint).
    pub fn truncate_metrics(&self, step: u64) -> Result<()> {
        let kept: Vec<Metric> = self
            .read_metrics()
            .into_iter()
            .filter(|m| m.step <= step)
            .collect();
        write_atomically(&self.metrics(), |f| {
            for m in &kept {
                writeln!(f, "{}", serde_json::to_string(m)?)?;
            }
            Ok(())
        })
    }

    /// The control file, or the default (run) when there is none. It is written
    /// atomically, so a file that does not parse is a mistake to report, not a torn write.
    pub fn read_control(&self) -> Result<Control> {
        let path = self.control_path();
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).with_context(|| {
                format!(
                    "{}: expected {{\"state\": \"run\" | \"pause\" | \"stop\", \"lr_g\": number, \"lr_d\": number, \"sample_every\": number}}",
                    path.display()
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Control::default()),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// Removes control.json; returns what it said, if it said anything readable.
    pub fn clear_control(&self) -> Result<Option<Control>> {
        let old = self
            .read_control()
            .ok()
            .filter(|c| *c != Control::default());
        match std::fs::remove_file(self.control_path()) {
            Ok(()) => Ok(old),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => {
                Err(e).with_context(|| format!("cannot remove {}", self.control_path().display()))
            }
        }
    }

    /// Written by the studio's UI thread: atomic, but not fsynced (a lost control file
    /// costs nothing; a UI that waits for the disk does).
    pub fn write_control(&self, c: &Control) -> Result<()> {
        crate::recipe::write_atomically_unsynced(&self.control_path(), |f| {
            Ok(serde_json::to_writer_pretty(f, c)?)
        })
    }

    /// Sample grids in step order.
    pub fn samples(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(self.samples_dir())
            .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        v.retain(|p| p.extension().is_some_and(|e| e == "png"));
        v.sort();
        v
    }
}
