//! Variations (`v`): a 3x3 grid of children of the current picture — nine other seeds of
//! a Truchet sketch, or nine mutations of a CPPN's weights — to pick from (`1`–`9`),
//! breed from again (`v`), and step back from (Backspace).
//!
//! A child is fully determined by its parent (the sketch file, its seed, knobs and any
//! weights picked before), its seed or mutation seed, and the mutation strength, so the
//! same grid comes back every time and a picked mutation saves as a sketch that renders
//! the same pixels.

use std::path::PathBuf;
use std::sync::Arc;

use image::DynamicImage;

use super::app::{Mutant, Tweaks};
use crate::sketch::{Knobs, Params};

/// The children in a grid.
pub const CHILDREN: usize = 9;

/// Mutation strengths `<` `>` step through: the std of the Gaussian added to each weight,
/// as a fraction of the sketch's `init_std` (the spread of its own random weights).
pub const STRENGTHS: &[f64] = &[0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0];
pub const DEFAULT_STRENGTH: usize = 3;

/// How the children differ from the parent.
#[derive(Debug, Clone, PartialEq)]
pub enum Breed {
    /// Truchet: the same sketch at these seeds.
    Seeds(Vec<u64>),
    /// CPPN: the parent's network plus Gaussian noise drawn from each seed.
    Mutations {
        seeds: Vec<u64>,
        strength: f64,
        /// The children's generation (the parent's plus one).
        generation: u32,
    },
}

impl Breed {
    /// The grid's cell titles, in order.
    pub fn labels(&self) -> Vec<String> {
        match self {
            Breed::Seeds(seeds) => seeds.iter().map(|s| format!("seed {s}")).collect(),
            Breed::Mutations { seeds, .. } => seeds.iter().map(|s| format!("m{s}")).collect(),
        }
    }
}

/// What the breeder thread renders.
#[derive(Debug, Clone, PartialEq)]
pub struct VariationRequest {
    /// Results of older requests are dropped.
    pub id: u64,
    pub path: PathBuf,
    /// The current picture's settings (seed, knobs, picked weights).
    pub parent: Tweaks,
    pub breed: Breed,
}

/// One rendered child: its settings (which become the sketch's on a pick) and picture.
#[derive(Debug, Clone)]
pub struct Variant {
    pub tweaks: Tweaks,
    pub image: Arc<DynamicImage>,
}

/// The grid on screen.
#[derive(Debug, Clone)]
pub struct Grid {
    pub id: u64,
    pub path: PathBuf,
    pub parent: Tweaks,
    pub breed: Breed,
    /// `v` in the grid shows the next nine of the same parent.
    pub round: u64,
    /// Empty until the breeder answers.
    pub children: Vec<Variant>,
    pub coarse: bool,
    /// Changes with every new set of pictures, so the view re-encodes only then.
    pub serial: u64,
}

/// Nine distinct seeds for round `round` of a Truchet parent at `parent`: spread over
/// 0..1_000_000 (short enough to read and type) by a hash, never the parent's own.
pub fn child_seeds(parent: u64, round: u64) -> Vec<u64> {
    let mut seeds = Vec::with_capacity(CHILDREN);
    let mut k = round * CHILDREN as u64;
    while seeds.len() < CHILDREN {
        let s = splitmix64(parent ^ splitmix64(k)) % 1_000_000;
        if s != parent && !seeds.contains(&s) {
            seeds.push(s);
        }
        k += 1;
    }
    seeds
}

/// Mutation seeds for round `round`: 1–9, then 10–18, …
pub fn mutation_seeds(round: u64) -> Vec<u64> {
    (1..=CHILDREN as u64)
        .map(|k| round * CHILDREN as u64 + k)
        .collect()
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The text of a sketch file for a picked mutation: the parent's source with the knob
/// values written in as its defaults, then `+ #{ seed, weights }` after its map (Rhai's
/// map `+` lets the later keys win), so the parent's comments and layout stay readable
/// and the file renders the mutation's pixels on its own.
pub fn mutant_source(
    source: &str,
    params: &Params,
    knobs: &Knobs,
    seed: u64,
    mutant: &Mutant,
    parent_name: &str,
) -> Result<String, String> {
    let mut text = if params.is_empty() || knobs.is_empty() {
        source.to_string()
    } else {
        crate::sketch::params::rewrite_defaults(source, params, knobs)?
    };
    if !text.ends_with('\n') {
        text.push('\n');
    }
    // A newline ends any `//` comment on the parent's last line before the `+`.
    text.push_str(&format!(
        "// Bred in the easel studio from {parent_name}: {}.\n\
         // The weights below replace the network the seed would draw (z still comes from the seed).\n\
         + #{{\n    seed: {seed},\n    weights: {},\n}}\n",
        mutant.lineage,
        mutant.network.weights_source("    ")
    ));
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn child_seeds_are_nine_distinct_and_never_the_parent() {
        for parent in [0, 7, 999_999, u64::MAX] {
            for round in 0..3 {
                let seeds = child_seeds(parent, round);
                assert_eq!(seeds.len(), CHILDREN);
                let mut sorted = seeds.clone();
                sorted.sort();
                sorted.dedup();
                assert_eq!(sorted.len(), CHILDREN, "{seeds:?}");
                assert!(!seeds.contains(&parent));
                assert_eq!(seeds, child_seeds(parent, round), "reproducible");
            }
            assert_ne!(child_seeds(parent, 0), child_seeds(parent, 1));
        }
    }
}
