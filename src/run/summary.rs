//! One line about a run, read cheaply: status.json, the last lines of metrics.jsonl and
//! the header of the best checkpoint — never a whole file, so `easel runs` stays fast on
//! hundreds of runs. `easel runs`, the studio's run list and `easel watch` share it.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{process_alive, sketch_name_of_run, Metric, RunDir, State, Status};

/// What a run is doing, as a person reads it: the recorded state, corrected by whether
/// its process still exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Liveness {
    Starting,
    Running,
    Paused,
    Stopped,
    Finished,
    Failed,
    /// Says running, but its process is gone (killed, machine rebooted): resumable.
    Killed,
    /// No readable status.json.
    Unknown,
}

impl Liveness {
    pub fn of(status: Option<&Status>, alive: bool) -> Self {
        let Some(s) = status else {
            return Liveness::Unknown;
        };
        match s.state {
            State::Starting | State::Running | State::Paused if !alive => Liveness::Killed,
            ref state => Liveness::from_state(state),
        }
    }

    /// The recorded state as it reads while its process lives.
    pub fn from_state(state: &State) -> Self {
        match state {
            State::Starting => Liveness::Starting,
            State::Running => Liveness::Running,
            State::Paused => Liveness::Paused,
            State::Stopped => Liveness::Stopped,
            State::Done => Liveness::Finished,
            State::Failed => Liveness::Failed,
        }
    }

    pub fn word(self) -> &'static str {
        match self {
            Liveness::Starting => "starting",
            Liveness::Running => "running",
            Liveness::Paused => "paused",
            Liveness::Stopped => "stopped",
            Liveness::Finished => "finished",
            Liveness::Failed => "failed",
            Liveness::Killed => "killed",
            Liveness::Unknown => "unknown",
        }
    }

    /// Its process is alive and working or waiting.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            Liveness::Starting | Liveness::Running | Liveness::Paused
        )
    }
}

/// A run at a glance.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunSummary {
    pub path: PathBuf,
    /// The sketch's name (from the folder name, else the folder name itself).
    pub sketch: String,
    pub state: Liveness,
    pub pid: Option<u32>,
    pub step: u64,
    pub total_steps: u64,
    /// The lowest SWD so far (of the EMA or raw generator) and its step.
    pub best_swd: Option<f64>,
    pub best_step: Option<u64>,
    /// Images per second of the newest step.
    pub imgs_per_s: Option<f64>,
    pub device: String,
    /// Seconds since the Unix epoch.
    pub started: Option<f64>,
    /// Why it stopped or failed.
    pub message: String,
}

impl RunSummary {
    /// Reads the summary of the run in `path` (a folder without status.json reads as
    /// `unknown`, not as an error: a run listing shows it).
    pub fn read(path: &Path) -> Self {
        let run = RunDir {
            path: path.to_path_buf(),
        };
        let status = run.read_status().ok();
        let alive = status.as_ref().is_some_and(|s| process_alive(s.pid));
        let folder = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let last = last_metric(&run.metrics());
        let (best_swd, best_step) = best_recorded(&run.best_checkpoint());
        RunSummary {
            path: path.to_path_buf(),
            sketch: sketch_name_of_run(&folder).unwrap_or(&folder).to_string(),
            state: Liveness::of(status.as_ref(), alive),
            pid: status.as_ref().map(|s| s.pid),
            step: status.as_ref().map_or(0, |s| s.step),
            total_steps: status.as_ref().map_or(0, |s| s.total_steps),
            best_swd,
            best_step,
            imgs_per_s: last.as_ref().map(|m| m.imgs_per_s),
            device: status
                .as_ref()
                .map(|s| s.device.clone())
                .filter(|d| !d.is_empty())
                .unwrap_or_else(|| "cpu".into()),
            started: started_of(&folder).or_else(|| first_metric_time(&run.metrics())),
            message: status.map(|s| s.message).unwrap_or_default(),
        }
    }
}

/// Every run directory under `runs` (folders holding a status.json or a spec.json),
/// newest first.
pub fn list(runs: &Path) -> std::io::Result<Vec<RunSummary>> {
    let mut out: Vec<RunSummary> = std::fs::read_dir(runs)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("status.json").is_file() || p.join("spec.json").is_file())
        .map(|p| RunSummary::read(&p))
        .collect();
    out.sort_by(|a, b| {
        b.started
            .unwrap_or(0.0)
            .total_cmp(&a.started.unwrap_or(0.0))
            .then_with(|| b.path.cmp(&a.path))
    });
    Ok(out)
}

/// The start time in a folder name `<sketch>-<yyyymmdd>-<hhmmss>[-k]` (UTC).
fn started_of(folder: &str) -> Option<f64> {
    let name = sketch_name_of_run(folder)?;
    let stamp = folder.get(name.len() + 1..name.len() + 16)?;
    let t = chrono::NaiveDateTime::parse_from_str(stamp, "%Y%m%d-%H%M%S").ok()?;
    Some(t.and_utc().timestamp() as f64)
}

/// The newest complete line of metrics.jsonl, read from its last 16 KB.
fn last_metric(path: &Path) -> Option<Metric> {
    let mut f = File::open(path).ok()?;
    let len = f.metadata().ok()?.len();
    f.seek(SeekFrom::Start(len.saturating_sub(16 * 1024)))
        .ok()?;
    let mut text = String::new();
    f.read_to_string(&mut text).ok()?;
    text.lines()
        .rev()
        .find_map(|l| serde_json::from_str::<Metric>(l).ok())
}

fn first_metric_time(path: &Path) -> Option<f64> {
    let mut head = vec![0u8; 16 * 1024];
    let n = File::open(path).ok()?.read(&mut head).ok()?;
    let text = String::from_utf8_lossy(&head[..n]);
    let first: Metric = serde_json::from_str(text.lines().next()?).ok()?;
    Some(first.time)
}

/// The SWD and step recorded in a best-generator file's header (only the header is read:
/// the file is megabytes of weights).
pub fn best_recorded(path: &Path) -> (Option<f64>, Option<u64>) {
    let read = || -> Option<(Option<f64>, Option<u64>)> {
        let mut f = File::open(path).ok()?;
        let mut n = [0u8; 8];
        f.read_exact(&mut n).ok()?;
        let n = u64::from_le_bytes(n);
        if n > 1 << 24 {
            return None;
        }
        let mut header = vec![0u8; n as usize];
        f.read_exact(&mut header).ok()?;
        let json: serde_json::Value = serde_json::from_slice(&header).ok()?;
        let meta = json.get("__metadata__")?;
        let number = |k: &str| meta.get(k)?.as_str()?.parse::<f64>().ok();
        Some((number("swd"), number("step").map(|s| s as u64)))
    };
    read().unwrap_or((None, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_reads_as_its_state_step_best_and_speed() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::at(&dir.path().join("gan_x-20260102-030405")).unwrap();
        run.write_status(&Status {
            state: State::Running,
            message: String::new(),
            pid: 0, // no process: a killed run
            step: 7,
            total_steps: 10,
            checkpoint_step: Some(6),
            device: "cpu".into(),
            gpu: None,
            updated: 0.0,
            ranks: 1,
        })
        .unwrap();
        for s in 1..=7 {
            run.append_metric(&Metric {
                step: s,
                imgs_per_s: 10.0 * s as f64,
                time: 100.0,
                ..Default::default()
            })
            .unwrap();
        }
        let s = RunSummary::read(&run.path);
        assert_eq!(s.sketch, "gan_x");
        assert_eq!(s.state, Liveness::Killed);
        assert_eq!((s.step, s.total_steps), (7, 10));
        assert_eq!(s.imgs_per_s, Some(70.0));
        assert_eq!(s.best_swd, None);
        assert_eq!(s.started, Some(1_767_323_045.0));

        // A second, newer run and a folder that is not a run.
        let newer = RunDir::at(&dir.path().join("gan_y-20260103-000000")).unwrap();
        newer
            .write_status(&Status {
                state: State::Done,
                step: 10,
                total_steps: 10,
                ..run.read_status().unwrap()
            })
            .unwrap();
        std::fs::create_dir(dir.path().join("notes")).unwrap();
        let all = list(dir.path()).unwrap();
        let names: Vec<&str> = all.iter().map(|s| s.sketch.as_str()).collect();
        assert_eq!(names, ["gan_y", "gan_x"]);
        assert_eq!(all[0].state, Liveness::Finished);
    }
}
