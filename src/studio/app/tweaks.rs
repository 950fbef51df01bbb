//! Seeds and knob values set in the studio on top of a sketch file (`n`/`N`, `[`/`]`,
//! `-`/`=`, and `w` to write them into the file), and a picked CPPN mutation: what the
//! renderer applies, and when an edit of the file wins over them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use super::{App, Effect, Level, Reason};
use crate::sketch::{Knobs, Params};
use crate::spec::CppnNetwork as Network;
use crate::spec::Kind;

/// A value the studio sets on top of the file's, remembering what the file said when it
/// was set: when the file itself changes that value (an edit, or `w`), the file wins.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tweak<T> {
    pub file: T,
    pub value: T,
}

/// The studio-side settings of one sketch: another seed (`n`/`N`) and knob values,
/// neither written to the file (until `w`, for knobs).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Tweaks {
    pub seed: Option<Tweak<u64>>,
    pub knobs: BTreeMap<String, Tweak<f64>>,
    /// A picked CPPN mutation: explicit weights in place of the sketch's own network.
    pub mutant: Option<Mutant>,
}

/// A CPPN network bred in the studio (`v`, then a digit). It counts only while the file
/// is the source it was bred from: an edit of the file wins, as it does for seeds.
#[derive(Debug, Clone, PartialEq)]
pub struct Mutant {
    pub network: Arc<Network>,
    /// The sketch file's text the network was bred against.
    pub bred_from: Arc<String>,
    /// How it came about, e.g. "mutation 3 · strength 0.25 · generation 2" (a comment in
    /// the file it is saved as).
    pub lineage: String,
    pub generation: u32,
}

impl Tweaks {
    /// The seed to render with, given the file's own.
    pub fn seed_for(&self, file_seed: u64) -> u64 {
        match self.seed {
            Some(t) if t.file == file_seed => t.value,
            _ => file_seed,
        }
    }

    /// The knob values to render with, given what the file declares: a tweak counts
    /// while the file's default is still the one it was made against, kept in range.
    pub fn knobs_for(&self, params: &Params) -> Knobs {
        params
            .0
            .iter()
            .map(|p| {
                let value = match self.knobs.get(&p.name) {
                    Some(t) if t.file == p.default => p.clamp(t.value),
                    _ => p.default,
                };
                (p.name.clone(), value)
            })
            .collect()
    }

    /// Forgets what the file has since changed itself, or no longer declares.
    pub fn reconcile(&mut self, file_seed: u64, params: &Params) {
        if self
            .seed
            .is_some_and(|t| t.file != file_seed || t.value == t.file)
        {
            self.seed = None;
        }
        let values = self.knobs_for(params);
        self.knobs.retain(|name, t| {
            params.get(name).is_some_and(|p| p.default == t.file)
                && values.get(name) != Some(&t.file)
        });
        for (name, t) in self.knobs.iter_mut() {
            if let Some(&v) = values.get(name) {
                t.value = v;
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.seed.is_none() && self.knobs.is_empty() && self.mutant.is_none()
    }
}

impl App {
    /// The selected sketch, if it is a Truchet or CPPN sketch that has rendered (so its
    /// file's seed and knobs are known); otherwise says why not.
    pub(super) fn tweakable(&mut self, what: &str) -> Option<PathBuf> {
        let path = self.selected_path().cloned()?;
        match self.kinds.get(&path) {
            Some(&Kind::Gan) => {
                // A GAN's preview is drawn from its run's generator: it has no seed of
                // its own to vary or knobs to write.
                self.info(format!(
                    "{what} Truchet and CPPN sketches; on a GAN sketch n draws other noise and - = turn the truncation (easel sample RUN --seed N --truncation T)"
                ));
                None
            }
            Some(_) if self.file_seeds.contains_key(&path) => Some(path),
            _ => {
                self.info(format!("{} has not rendered yet", Self::sketch_name(&path)));
                None
            }
        }
    }

    /// `n`/`N`: the next or previous seed, rendered at once; the file is not touched.
    pub(super) fn step_seed(&mut self, delta: i64) -> Vec<Effect> {
        let Some(path) = self.tweakable("n and N change the seed of") else {
            return vec![];
        };
        let file = self.file_seeds[&path];
        let tweaks = self.tweaks.entry(path.clone()).or_default();
        let value = tweaks.seed_for(file).wrapping_add_signed(delta);
        tweaks.seed = (value != file).then_some(Tweak { file, value });
        self.select(self.selected, Reason::Asked)
    }

    /// The selected sketch's declared knobs and their current values, if it has any.
    pub fn knob_values(&self) -> Option<(&Params, Knobs)> {
        let path = self.selected_path()?;
        let params = self.params.get(path).filter(|p| !p.is_empty())?;
        let values = self
            .tweaks
            .get(path)
            .map(|t| t.knobs_for(params))
            .unwrap_or_else(|| params.defaults());
        Some((params, values))
    }

    fn knobbed(&mut self) -> Option<(PathBuf, Params)> {
        let path = self.tweakable("knobs turn")?;
        match self.params.get(&path).filter(|p| !p.is_empty()) {
            Some(p) => Some((path, p.clone())),
            None => {
                self.info(format!(
                    "{} has no knobs: declare some in its map, e.g. params: #{{ hue: [0.0, 1.0, 0.3] }}",
                    Self::sketch_name(&path)
                ));
                None
            }
        }
    }

    pub(super) fn select_knob(&mut self, delta: i64) -> Vec<Effect> {
        if let Some((_, params)) = self.knobbed() {
            let last = params.0.len() as i64 - 1;
            self.knob = (self.knob as i64 + delta).clamp(0, last) as usize;
        }
        vec![]
    }

    /// Turns the selected knob by one fine or coarse step (kept in range) and renders.
    pub(super) fn turn_knob(&mut self, direction: i32, coarse: bool) -> Vec<Effect> {
        let Some((path, params)) = self.knobbed() else {
            return vec![];
        };
        let p = &params.0[self.knob.min(params.0.len() - 1)];
        let tweaks = self.tweaks.entry(path.clone()).or_default();
        let now = tweaks.knobs_for(&params)[&p.name];
        let step = if coarse {
            p.coarse_step()
        } else {
            p.fine_step()
        };
        let value = p.nudge(now, step, direction);
        if value == now {
            return vec![]; // at the end of its range
        }
        if tweaks.mutant.is_some() {
            // Knobs may change the network's shape: the picked weights no longer apply.
            let before = tweaks.clone();
            tweaks.mutant = None;
            self.history.push((path.clone(), before));
            self.info("a knob turned: left the picked mutation (Backspace goes back)".into());
        }
        let tweaks = self.tweaks.entry(path).or_default();
        if value == p.default {
            tweaks.knobs.remove(&p.name);
        } else {
            tweaks.knobs.insert(
                p.name.clone(),
                Tweak {
                    file: p.default,
                    value,
                },
            );
        }
        self.select(self.selected, Reason::Asked)
    }

    /// `w`: the knobs' values become the file's defaults.
    pub(super) fn write_knobs(&mut self) -> Vec<Effect> {
        let Some((path, _)) = self.knobbed() else {
            return vec![];
        };
        let Some((_, knobs)) = self.knob_values() else {
            return vec![];
        };
        vec![Effect::WriteKnobs { path, knobs }]
    }

    pub(super) fn on_knobs_written(
        &mut self,
        path: PathBuf,
        result: Result<Knobs, String>,
    ) -> Vec<Effect> {
        match result {
            Ok(written) => {
                // The file says these now: the tweaks are its values (the reload that
                // the write sets off would find the same).
                if let Some(tweaks) = self.tweaks.get_mut(&path) {
                    tweaks
                        .knobs
                        .retain(|name, t| written.get(name) != Some(&t.value));
                    for (name, t) in tweaks.knobs.iter_mut() {
                        if let Some(&v) = written.get(name) {
                            t.file = v;
                        }
                    }
                }
                if let Some(params) = self.params.get_mut(&path) {
                    for p in params.0.iter_mut() {
                        if let Some(&v) = written.get(&p.name) {
                            p.default = v;
                        }
                    }
                }
                let text: Vec<String> = written.iter().map(|(k, v)| format!("{k} {v}")).collect();
                self.info(format!(
                    "wrote {} into {} as defaults",
                    text.join(", "),
                    Self::sketch_name(&path)
                ));
            }
            Err(e) => self.log_line(Level::Error, format!("knobs not written: {e}")),
        }
        vec![]
    }
}
