//! The sketch list: moving the selection, asking the renderer for the selected sketch's
//! picture, and following the folder (sketches added and removed, a save selecting the
//! saved sketch).

use std::path::PathBuf;

use super::{App, Effect, Mode, Reason, RenderRequest};
use crate::spec::Kind;

impl App {
    pub(super) fn move_selection(&mut self, delta: i64) -> Vec<Effect> {
        if self.sketches.is_empty() || !matches!(self.mode, Mode::Studio { .. }) {
            return vec![];
        }
        let last = self.sketches.len() as i64 - 1;
        let to = (self.selected as i64 + delta).clamp(0, last) as usize;
        if to == self.selected {
            return vec![];
        }
        self.select(to, Reason::Selected)
    }

    /// Selects sketch `index` and asks for its picture.
    pub(super) fn select(&mut self, index: usize, reason: Reason) -> Vec<Effect> {
        let Some(path) = self.sketches.get(index).cloned() else {
            return self.refollow();
        };
        if self.selected_path() != Some(&path) {
            // Another sketch: its errors (and knobs) are its own.
            self.error = None;
            self.knob = 0;
        }
        self.selected = index;
        // A new current (or another sketch): the grid's children are of the old one.
        self.variations = None;
        if self.picture.as_ref().is_some_and(|p| p.path != path) {
            // Keep the old picture on screen until the new one arrives, unless the new
            // sketch is a GAN (its picture is its run's samples).
            if self.kinds.get(&path) == Some(&Kind::Gan) {
                self.picture = None;
            }
        }
        if self.animation.as_ref().is_some_and(|a| a.path != path) {
            self.animation = None;
        }
        let mut effects = vec![self.request(path, reason, None)];
        effects.extend(self.refollow());
        effects
    }

    pub(super) fn request(
        &mut self,
        path: PathBuf,
        reason: Reason,
        frame: Option<(u32, u32)>,
    ) -> Effect {
        self.next_id += 1;
        if frame.is_none() {
            self.current_id = self.next_id;
        }
        let tweaks = self.tweaks.get(&path).cloned().unwrap_or_default();
        Effect::Render(RenderRequest {
            id: self.next_id,
            path,
            reason,
            frame,
            tweaks,
        })
    }

    pub(super) fn on_listed(&mut self, mut list: Vec<PathBuf>) -> Vec<Effect> {
        list.sort();
        if list == self.sketches {
            return vec![];
        }
        let current = self.selected_path().cloned();
        let added: Vec<String> = list
            .iter()
            .filter(|p| !self.sketches.contains(p))
            .map(|p| Self::sketch_name(p))
            .collect();
        let removed: Vec<String> = self
            .sketches
            .iter()
            .filter(|p| !list.contains(p))
            .map(|p| Self::sketch_name(p))
            .collect();
        if !added.is_empty() {
            self.info(format!("new: {}", added.join(", ")));
        }
        if !removed.is_empty() {
            self.info(format!("gone: {}", removed.join(", ")));
        }
        let was_empty = self.sketches.is_empty();
        self.sketches = list;
        match current.and_then(|c| self.sketches.iter().position(|p| *p == c)) {
            Some(i) => {
                self.selected = i;
                vec![]
            }
            None if self.sketches.is_empty() => {
                self.selected = 0;
                self.picture = None;
                self.animation = None;
                self.refollow()
            }
            None => {
                // The selected sketch went away (or the list was empty): select its
                // neighbour.
                let i = if was_empty {
                    0
                } else {
                    self.selected.min(self.sketches.len() - 1)
                };
                self.select(i, Reason::Selected)
            }
        }
    }

    /// A save selects the saved sketch (the one the artist is editing) and re-renders it.
    pub(super) fn on_files_changed(&mut self, paths: Vec<PathBuf>) -> Vec<Effect> {
        let Mode::Studio { .. } = self.mode else {
            return vec![];
        };
        let saved = paths
            .iter()
            .rev()
            .find_map(|p| self.sketches.iter().position(|s| s == p));
        let breeding = self.variations.as_ref().map(|g| g.path.clone());
        match saved {
            Some(i) => {
                let mut effects = self.select(i, Reason::Saved);
                // Live-coding with the grid open: breed again from the saved file.
                if breeding.as_ref() == Some(&self.sketches[i]) {
                    effects.extend(self.open_variations());
                }
                effects
            }
            None => vec![],
        }
    }
}
