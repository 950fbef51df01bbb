//! Which tile goes where: the grid of cells (one grid per scale for multiscale), filled
//! by the rule or the seeded generator. Kept apart from rasterising so the (slow,
//! single-threaded) script calls happen once per render, not once per pixel.

use std::time::Duration;

use rand::Rng as _;
use rhai::{Dynamic, Map};

use super::{Rule, TruchetSpec};
use crate::sketch::engine::{ScriptRng, DEFAULT_TIME_LIMIT};
use crate::sketch::reader::describe;
use crate::sketch::SketchError;

/// One scale of the layout. A cell holds `tile << 2 | rotation`, `SPLIT` where the tile
/// was split into four smaller ones, or `EMPTY` where the area lies inside a larger tile.
#[derive(Debug, Clone)]
pub struct LevelGrid {
    pub cols: u32,
    pub rows: u32,
    /// Tile side in pixels at this scale.
    pub size: u32,
    pub cells: Vec<u16>,
}

pub(crate) const EMPTY: u16 = u16::MAX;
/// A tile that was split: it is not drawn, but its wings are (Carlson's construction
/// paints the parent, wings and all, then its four children over it).
pub(crate) const SPLIT: u16 = u16::MAX - 1;

impl LevelGrid {
    fn new(cols: u32, rows: u32, size: u32) -> Self {
        LevelGrid {
            cols,
            rows,
            size,
            cells: vec![EMPTY; cols as usize * rows as usize],
        }
    }

    /// The cell at (col, row), `EMPTY` outside the grid.
    #[inline]
    pub fn get(&self, col: i64, row: i64) -> u16 {
        if col < 0 || row < 0 || col >= self.cols as i64 || row >= self.rows as i64 {
            EMPTY
        } else {
            self.cells[row as usize * self.cols as usize + col as usize]
        }
    }

    fn set(&mut self, col: u32, row: u32, tile: u16, rotation: u16) {
        self.cells[row as usize * self.cols as usize + col as usize] = tile << 2 | (rotation & 3);
    }

    /// Whether a tile of this scale is drawn at (col, row).
    #[inline]
    pub fn is_placed(&self, col: i64, row: i64) -> bool {
        self.get(col, row) < SPLIT
    }

    /// Whether (col, row) is drawn at this scale or split into smaller tiles, i.e. not
    /// inside a larger tile: the cells whose wings are painted.
    #[inline]
    pub fn is_winged(&self, col: i64, row: i64) -> bool {
        self.get(col, row) != EMPTY
    }

    /// Number of tiles placed at this scale.
    pub fn placed(&self) -> usize {
        self.cells.iter().filter(|&&c| c < SPLIT).count()
    }
}

#[derive(Debug, Clone)]
pub struct Layout {
    /// Level 0 holds the largest tiles; level k tiles are `tile / 2^k` pixels.
    pub levels: Vec<LevelGrid>,
}

/// What the rule (or the generator) chose for one top-level cell.
struct Choice {
    tile: u16,
    rotation: u16,
    split: Option<bool>,
}

impl Layout {
    pub fn build(spec: &TruchetSpec) -> Result<Layout, SketchError> {
        let cols = spec.width.div_ceil(spec.tile);
        let rows = spec.height.div_ceil(spec.tile);
        let mut levels: Vec<LevelGrid> = (0..spec.levels)
            .map(|k| LevelGrid::new(cols << k, rows << k, spec.tile >> k))
            .collect();
        let rng = ScriptRng::new(spec.seed);
        let tiles = spec.tile_count() as u16;
        let mut fill =
            |rng: &ScriptRng, choose: &mut dyn FnMut(u32, u32) -> Result<Choice, SketchError>| {
                for j in 0..rows {
                    for i in 0..cols {
                        let choice = choose(i, j)?;
                        place(&mut levels, spec, rng, 0, i, j, choice);
                    }
                }
                Ok::<(), SketchError>(())
            };
        match &spec.rule {
            None => fill(&rng, &mut |_, _| Ok(random_choice(&rng, tiles)))?,
            Some(rule) => {
                // Budget: the load limit plus 20 µs a cell (~15x a simple rule's cost),
                // enough for honest rules on large canvases, short enough that an
                // endless loop ends promptly.
                let cells = cols as u64 * rows as u64;
                let budget = DEFAULT_TIME_LIMIT + Duration::from_micros(20 * cells);
                rule.script.clone().with_time_limit(budget, |_| {
                    fill(&rng, &mut |i, j| call_rule(rule, &rng, i, j, tiles))
                })?
            }
        }
        Ok(Layout { levels })
    }
}

fn random_choice(rng: &ScriptRng, tiles: u16) -> Choice {
    rng.with(|g| Choice {
        tile: g.random_range(0..tiles),
        rotation: g.random_range(0..4),
        split: None,
    })
}

/// Puts a tile at (i, j) of `level`, or splits it into four at the next level.
fn place(
    levels: &mut [LevelGrid],
    spec: &TruchetSpec,
    rng: &ScriptRng,
    level: usize,
    i: u32,
    j: u32,
    choice: Choice,
) {
    let can_split = level + 1 < levels.len();
    let split = can_split
        && match choice.split {
            Some(s) => s,
            None => rng.with(|g| g.random::<f64>() < spec.subdivide[level]),
        };
    if !split {
        levels[level].set(i, j, choice.tile, choice.rotation);
        return;
    }
    let cols = levels[level].cols as usize;
    levels[level].cells[j as usize * cols + i as usize] = SPLIT;
    let tiles = spec.tile_count() as u16;
    for (di, dj) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
        let child = random_choice(rng, tiles);
        place(levels, spec, rng, level + 1, 2 * i + di, 2 * j + dj, child);
    }
}

fn call_rule(
    rule: &Rule,
    rng: &ScriptRng,
    i: u32,
    j: u32,
    tiles: u16,
) -> Result<Choice, SketchError> {
    let out = rule
        .script
        .call(&rule.f, (i as i64, j as i64, rng.clone()))
        .map_err(|e| SketchError::from_eval_at(&rule.file, &e, rule.pos))?;
    let bad = |msg: String| {
        SketchError::new(
            &rule.file,
            rule.pos,
            format!("rule at cell ({i}, {j}): {msg}"),
        )
    };
    let rotation_of = |v: &Dynamic| -> Result<u16, SketchError> {
        match v.as_int() {
            Ok(r) if (0..4).contains(&r) => Ok(r as u16),
            _ => Err(bad(format!(
                "rotation must be an integer 0–3, got {}",
                describe(v)
            ))),
        }
    };
    if out.is_int() {
        return Ok(Choice {
            tile: 0,
            rotation: rotation_of(&out)?,
            split: None,
        });
    }
    let Some(map) = out.clone().try_cast::<Map>() else {
        return Err(bad(format!(
            "expected a rotation (0–3) or #{{ tile: …, rotation: … }}, got {}",
            describe(&out)
        )));
    };
    let mut choice = Choice {
        tile: 0,
        rotation: 0,
        split: None,
    };
    for (key, v) in map {
        match key.as_str() {
            "rotation" => choice.rotation = rotation_of(&v)?,
            "tile" => match v.as_int() {
                Ok(t) if (0..tiles as i64).contains(&t) => choice.tile = t as u16,
                _ => {
                    return Err(bad(format!(
                        "tile must be an integer 0–{}, got {}",
                        tiles - 1,
                        describe(&v)
                    )))
                }
            },
            "split" => match v.as_bool() {
                Ok(b) => choice.split = Some(b),
                Err(_) => {
                    return Err(bad(format!(
                        "split must be true or false, got {}",
                        describe(&v)
                    )))
                }
            },
            other => {
                return Err(bad(format!(
                    "unknown key \"{other}\" in the returned map; expected tile, rotation, split"
                )))
            }
        }
    }
    Ok(choice)
}
