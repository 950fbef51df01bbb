//! The run directory: the interface between a training process and everything that
//! watches it (the CLI, the studio, `easel watch`). Training writes; others read, and
//! talk back only through `control.json`.
//!
//! ```text
//! runs/<sketch>-<yyyymmdd-hhmmss>/
//!   sketch.rhai  spec.json  metrics.jsonl  status.json  control.json
//!   samples/step_000500.png  checkpoints/latest.safetensors  generator.safetensors
//!   timelapse.gif
//! ```

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::recipe::write_atomically;

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
    /// Seconds since the Unix epoch.
    pub updated: f64,
}

/// One line of `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
}

/// What the studio (or a person with an editor) asks of a running training.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Control {
    /// "run", "pause" or "stop".
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub lr_g: Option<f64>,
    #[serde(default)]
    pub lr_d: Option<f64>,
    #[serde(default)]
    pub sample_every: Option<u64>,
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

    /// The newest run of sketch `name` under `base`, if any.
    pub fn latest(base: &Path, name: &str) -> Option<Self> {
        let prefix = format!("{name}-");
        let mut runs: Vec<PathBuf> = std::fs::read_dir(base)
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.is_dir()
                    && p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with(&prefix))
            })
            .collect();
        runs.sort();
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

    /// The control file, or the default (run) when absent or unreadable mid-write.
    pub fn read_control(&self) -> Control {
        std::fs::read_to_string(self.control_path())
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default()
    }

    pub fn write_control(&self, c: &Control) -> Result<()> {
        self.write_json(&self.control_path(), c)
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
