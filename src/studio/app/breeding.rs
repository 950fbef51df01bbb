//! The variations grid (`v`): breeding nine children of the current picture (seeds of a
//! Truchet sketch, mutations of a CPPN's weights), picking one (1–9), going back
//! (Backspace), and the mutation strength (`<` `>`).

use super::{App, Effect, Reason};
use crate::spec::Kind;
use crate::studio::variations::{self, Breed, Grid, VariationRequest};

impl App {
    /// `v`: a grid of nine children of the current picture (in the grid: the next nine).
    pub(super) fn open_variations(&mut self) -> Vec<Effect> {
        let round = match &self.variations {
            Some(g) if Some(&g.path) == self.selected_path() => g.round + 1,
            _ => 0,
        };
        self.breed(round)
    }

    /// Asks for round `round` of the current picture's children.
    fn breed(&mut self, round: u64) -> Vec<Effect> {
        let Some(path) = self.tweakable("v breeds variations of") else {
            return vec![];
        };
        let parent = self.tweaks.get(&path).cloned().unwrap_or_default();
        let breed = match self.kinds.get(&path) {
            Some(&Kind::Cppn) => Breed::Mutations {
                seeds: variations::mutation_seeds(round),
                strength: variations::STRENGTHS[self.strength],
                generation: parent.mutant.as_ref().map_or(0, |m| m.generation) + 1,
            },
            _ => {
                let seed = parent.seed_for(self.file_seeds[&path]);
                Breed::Seeds(variations::child_seeds(seed, round))
            }
        };
        self.next_id += 1;
        let id = self.next_id;
        self.variations = Some(Grid {
            id,
            path: path.clone(),
            parent: parent.clone(),
            breed: breed.clone(),
            round,
            children: vec![],
            coarse: false,
            serial: 0,
        });
        vec![Effect::RenderVariations(VariationRequest {
            id,
            path,
            parent,
            breed,
        })]
    }

    /// `1`–`9`: child `index` of the grid becomes the current picture.
    pub(super) fn pick(&mut self, index: usize) -> Vec<Effect> {
        let Some(grid) = self.variations.as_ref() else {
            self.info("1–9 pick a variation: v shows nine".into());
            return vec![];
        };
        let Some(child) = grid.children.get(index) else {
            self.info(format!("variation {} has not rendered yet", index + 1));
            return vec![];
        };
        let (path, tweaks) = (grid.path.clone(), child.tweaks.clone());
        let label = grid.breed.labels()[index].clone();
        let Some(at) = self.sketches.iter().position(|p| *p == path) else {
            self.variations = None;
            return vec![];
        };
        let before = self.tweaks.get(&path).cloned().unwrap_or_default();
        self.history.push((path.clone(), before));
        if tweaks.is_empty() {
            self.tweaks.remove(&path);
        } else {
            self.tweaks.insert(path, tweaks);
        }
        self.info(format!(
            "picked {} ({label}): v breeds from it, backspace goes back",
            index + 1
        ));
        self.select(at, Reason::Asked)
    }

    /// Backspace: the current before the last pick comes back.
    pub(super) fn back(&mut self) -> Vec<Effect> {
        let Some((path, tweaks)) = self.history.pop() else {
            self.info("nothing to go back to: backspace undoes a pick".into());
            return vec![];
        };
        let Some(at) = self.sketches.iter().position(|p| *p == path) else {
            self.info(format!("{} is gone", Self::sketch_name(&path)));
            return vec![];
        };
        if tweaks.is_empty() {
            self.tweaks.remove(&path);
        } else {
            self.tweaks.insert(path.clone(), tweaks);
        }
        self.info(format!("back to the earlier {}", Self::sketch_name(&path)));
        self.select(at, Reason::Asked)
    }

    /// `<` `>`: the mutation strength; an open CPPN grid is bred again with it.
    pub(super) fn change_strength(&mut self, delta: i64) -> Vec<Effect> {
        let last = variations::STRENGTHS.len() as i64 - 1;
        self.strength = (self.strength as i64 + delta).clamp(0, last) as usize;
        self.info(format!(
            "mutation strength {} (of the sketch's init_std)",
            variations::STRENGTHS[self.strength]
        ));
        match &self.variations {
            // The same children's seeds, at the new strength.
            Some(g) if matches!(g.breed, Breed::Mutations { .. }) => self.breed(g.round),
            _ => vec![],
        }
    }
}
