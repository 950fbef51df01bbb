//! The run panels' state and training control: the newest run of each sketch, the
//! followed run's status, metrics and samples, starting or resuming a run, pause and stop,
//! and what a save of a training GAN sketch pushes to its run (or asks about).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use image::DynamicImage;

use super::{App, Effect, Level, Mode, Reason};
use crate::gan::GanSpec;
use crate::run::summary::Liveness;
use crate::run::{Control, Metric, State, Status, Wanted};
use crate::spec::Kind;

/// The newest run of one sketch, as found in the runs folder.
#[derive(Debug, Clone, PartialEq)]
pub struct RunInfo {
    pub path: PathBuf,
    pub status: Option<Status>,
    /// The training process still exists (a `running` status from a killed process
    /// would otherwise look live forever).
    pub alive: bool,
}

impl RunInfo {
    /// Running, paused or starting (or just spawned, before its first status.json),
    /// with its process alive.
    /// Its state as `easel runs` reads it (a live-looking status of a dead process is
    /// `killed`).
    pub fn liveness(&self) -> Liveness {
        Liveness::of(self.status.as_ref(), self.alive)
    }

    pub fn is_active(&self) -> bool {
        self.alive
            && self
                .status
                .as_ref()
                .is_none_or(|s| matches!(s.state, State::Starting | State::Running | State::Paused))
    }
}

/// What changed in the followed run since the last look.
#[derive(Debug, Clone)]
pub struct RunTail {
    pub path: PathBuf,
    pub status: Option<Status>,
    pub alive: bool,
    /// New metric lines; with `reset` they replace all earlier ones.
    pub metrics: Vec<Metric>,
    pub reset: bool,
    pub spec: Option<GanSpec>,
    /// The newest sample grid, when it changed.
    pub sample: Option<(PathBuf, Arc<DynamicImage>)>,
}

/// The followed run, as the panels show it.
#[derive(Debug, Clone, Default)]
pub struct RunView {
    pub path: PathBuf,
    pub status: Option<Status>,
    pub alive: bool,
    pub metrics: Vec<Metric>,
    pub spec: Option<GanSpec>,
    pub sample: Option<(PathBuf, Arc<DynamicImage>)>,
}

impl RunView {
    pub fn info(&self) -> RunInfo {
        RunInfo {
            path: self.path.clone(),
            status: self.status.clone(),
            alive: self.alive,
        }
    }
}

/// A question waiting for y/n.
#[derive(Debug, Clone, PartialEq)]
pub enum Confirm {
    /// The GAN sketch changed structurally while its run trains.
    Restart { sketch: PathBuf, run: PathBuf },
}

/// The word `easel runs` uses for a recorded state.
pub fn state_word(state: &State) -> &'static str {
    Liveness::from_state(state).word()
}

impl App {
    pub(super) fn on_gan_loaded(
        &mut self,
        id: u64,
        path: PathBuf,
        spec: GanSpec,
        reason: Reason,
    ) -> Vec<Effect> {
        self.kinds.insert(path.clone(), Kind::Gan);
        let previous = self.gan_specs.insert(path.clone(), spec.clone());
        let mut effects = vec![];
        if id == self.current_id {
            if self.error.take().is_some() {
                self.info(format!("{}: fixed", Self::sketch_name(&path)));
            }
            self.animation = None;
            // The picture of a GAN sketch is its run's newest sample grid, or the
            // studio's own noise drawn by the run's generator.
            self.picture = None;
            if self.has_gan_noise(&path) {
                effects = self.sample_gan(&path);
            } else if let Some((sample_path, img)) = self
                .run
                .as_ref()
                .filter(|r| self.run_of(&path).is_some_and(|i| i.path == r.path))
                .and_then(|r| r.sample.clone())
            {
                self.show_sample(&path, sample_path, img);
            }
        }
        if reason == Reason::Saved {
            effects.extend(self.push_to_run(path, spec, previous));
        }
        effects
    }

    /// A GAN sketch saved while its run trains: push what can change live (learning
    /// rates, sample_every) to the run, and ask before restarting for anything else.
    fn push_to_run(
        &mut self,
        path: PathBuf,
        spec: GanSpec,
        previous: Option<GanSpec>,
    ) -> Vec<Effect> {
        let Some(run) = self.run_of(&path).filter(|r| r.is_active()).cloned() else {
            return vec![];
        };
        let running_spec = self
            .run
            .as_ref()
            .filter(|v| v.path == run.path)
            .and_then(|v| v.spec.clone())
            .or(previous);
        let Some(running) = running_spec else {
            return vec![];
        };
        let mut same_structure = spec.clone();
        same_structure.lr_g = running.lr_g;
        same_structure.lr_d = running.lr_d;
        same_structure.sample_every = running.sample_every;
        if same_structure != running {
            self.confirm = Some(Confirm::Restart {
                sketch: path,
                run: run.path,
            });
            return vec![];
        }
        let mut patch = Control::default();
        let mut changes = vec![];
        if spec.lr_g != running.lr_g {
            patch.lr_g = Some(spec.lr_g);
            changes.push(format!("lr_g {}", spec.lr_g));
        }
        if spec.lr_d != running.lr_d {
            patch.lr_d = Some(spec.lr_d);
            changes.push(format!("lr_d {}", spec.lr_d));
        }
        if spec.sample_every != running.sample_every {
            patch.sample_every = Some(spec.sample_every as u64);
            changes.push(format!("sample_every {}", spec.sample_every));
        }
        if changes.is_empty() {
            return vec![];
        }
        if let Some(v) = self.run.as_mut().filter(|v| v.path == run.path) {
            if let Some(s) = v.spec.as_mut() {
                s.lr_g = spec.lr_g;
                s.lr_d = spec.lr_d;
                s.sample_every = spec.sample_every;
            }
        }
        self.info(format!("pushed to the run: {}", changes.join(", ")));
        vec![Effect::Control {
            run: run.path,
            patch,
        }]
    }

    pub(super) fn confirmed(&mut self, confirm: Confirm) -> Vec<Effect> {
        match confirm {
            Confirm::Restart { sketch, run } => {
                self.info(format!(
                    "restarting: stopping {} and starting a new run",
                    run.display()
                ));
                vec![
                    Effect::set_state(run, Wanted::Stop),
                    Effect::StartTraining {
                        sketch,
                        resume: None,
                    },
                ]
            }
        }
    }

    /// The run the panels should follow: the watched one, or the selected sketch's newest.
    fn wanted_run(&self) -> Option<PathBuf> {
        match &self.mode {
            Mode::Watch { run } => Some(run.clone()),
            Mode::Studio { .. } => self
                .selected_path()
                .and_then(|p| self.run_of(p))
                .map(|r| r.path.clone()),
        }
    }

    pub(super) fn refollow(&mut self) -> Vec<Effect> {
        let wanted = self.wanted_run();
        self.follow(wanted)
    }

    pub(super) fn follow(&mut self, run: Option<PathBuf>) -> Vec<Effect> {
        if run == self.followed {
            return vec![];
        }
        self.followed = run.clone();
        self.run = run.clone().map(|path| RunView {
            path,
            ..RunView::default()
        });
        vec![Effect::Follow(run)]
    }

    pub(super) fn on_run_tail(&mut self, tail: RunTail) -> Vec<Effect> {
        let Some(view) = self.run.as_mut().filter(|v| v.path == tail.path) else {
            return vec![];
        };
        let old_state = view.status.as_ref().map(|s| s.state.clone());
        if tail.reset {
            view.metrics = tail.metrics;
        } else {
            view.metrics.extend(tail.metrics);
        }
        view.alive = tail.alive;
        if tail.spec.is_some() {
            view.spec = tail.spec;
        }
        let new_state = tail.status.as_ref().map(|s| s.state.clone());
        let message = tail
            .status
            .as_ref()
            .map(|s| s.message.clone())
            .unwrap_or_default();
        view.status = tail.status;
        let run_path = view.path.clone();
        if let Some(sample) = tail.sample.clone() {
            view.sample = Some(sample);
        }
        // Keep the runs index in step with what we see.
        if let Mode::Studio { .. } = self.mode {
            if let Some(path) = self.selected_path().cloned() {
                let info = self.run.as_ref().map(RunView::info);
                if let (Some(info), Some(entry)) =
                    (info, self.runs.get_mut(&Self::sketch_name(&path)))
                {
                    if entry.path == run_path {
                        *entry = info;
                    }
                }
            }
        }
        if old_state.is_some() && new_state != old_state {
            if let Some(state) = &new_state {
                let name = run_path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let text = if message.is_empty() {
                    format!("{name}: {}", state_word(state))
                } else {
                    format!("{name}: {} ({message})", state_word(state))
                };
                let level = if *state == State::Failed {
                    Level::Error
                } else {
                    Level::Info
                };
                self.log_line(level, text);
            }
        }
        if let Some((sample_path, img)) = tail.sample {
            let showing_this_run = match &self.mode {
                Mode::Watch { .. } => true,
                Mode::Studio { .. } => self.selected_kind() == Some(Kind::Gan),
            };
            if showing_this_run {
                let owner = self
                    .selected_path()
                    .cloned()
                    .unwrap_or_else(|| run_path.clone());
                if self.has_gan_noise(&owner) {
                    // Newer weights: the same noise, drawn again.
                    return self.sample_gan(&owner);
                }
                self.show_sample(&owner, sample_path, img);
            }
        }
        vec![]
    }

    fn show_sample(&mut self, owner: &Path, sample_path: PathBuf, img: Arc<DynamicImage>) {
        let step = sample_path
            .file_stem()
            .map(|s| {
                s.to_string_lossy()
                    .trim_start_matches("step_")
                    .trim_start_matches('0')
                    .to_string()
            })
            .unwrap_or_default();
        let caption = format!(
            "samples · step {} · {}x{}",
            if step.is_empty() { "0".into() } else { step },
            img.width(),
            img.height()
        );
        self.show(owner.to_path_buf(), img, caption, None);
    }

    pub(super) fn train(&mut self) -> Vec<Effect> {
        let Some(path) = self.selected_path().cloned() else {
            self.info(
                "t trains the selected GAN sketch (in `easel watch`, use `easel train --resume`)"
                    .into(),
            );
            return vec![];
        };
        let name = Self::sketch_name(&path);
        match self.kinds.get(&path) {
            Some(&Kind::Gan) => {}
            Some(kind) => {
                self.info(format!("{name} is a {kind} sketch: t trains GAN sketches"));
                return vec![];
            }
            None => {
                self.info(format!("{name} has not loaded yet"));
                return vec![];
            }
        }
        if self.error.is_some() {
            self.info(format!("fix {name} first: it has an error"));
            return vec![];
        }
        if let Some(run) = self.run_of(&path).cloned() {
            if run.is_active() {
                self.info(format!(
                    "{name} is already training ({}): p pauses, x stops",
                    run.path.display()
                ));
                return vec![];
            }
            let resumable = run
                .status
                .as_ref()
                .is_some_and(|s| s.checkpoint_step.is_some() && s.state != State::Done);
            if resumable {
                self.info(format!("resuming {}", run.path.display()));
                return vec![Effect::StartTraining {
                    sketch: path,
                    resume: Some(run.path.clone()),
                }];
            }
        }
        self.info(format!("starting training of {name}"));
        vec![Effect::StartTraining {
            sketch: path,
            resume: None,
        }]
    }

    fn active_run(&mut self) -> Option<RunView> {
        let run = self.run.clone();
        match run {
            Some(r) if r.info().is_active() => Some(r),
            Some(r) => {
                let state = r
                    .status
                    .as_ref()
                    .map_or("not started", |s| state_word(&s.state));
                self.info(format!("the run is {state}: nothing to control"));
                None
            }
            None => {
                self.info("no run to control: t starts one on a GAN sketch".into());
                None
            }
        }
    }

    pub(super) fn pause_or_resume(&mut self) -> Vec<Effect> {
        let Some(run) = self.active_run() else {
            return vec![];
        };
        let paused = run
            .status
            .as_ref()
            .is_some_and(|s| s.state == State::Paused);
        let state = if paused { Wanted::Run } else { Wanted::Pause };
        self.info(format!(
            "{} requested",
            if paused { "resume" } else { "pause" }
        ));
        vec![Effect::set_state(run.path, state)]
    }

    pub(super) fn stop(&mut self) -> Vec<Effect> {
        let Some(run) = self.active_run() else {
            return vec![];
        };
        self.info("stop requested: it checkpoints first; t resumes it".into());
        vec![Effect::set_state(run.path, Wanted::Stop)]
    }
}
