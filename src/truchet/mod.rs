//! Truchet tilings: a grid of square tiles, each a motif in one of four rotations,
//! chosen at random or by a scripted rule.
//!
//! Families: `triangles` (Truchet 1704), `arcs` (Smith's quarter circles), `diagonals`
//! ("10 PRINT"), and `multiscale` (Carlson 2018: winged tiles subdivided into four at
//! half scale with colours swapped, so patterns join across scales).

mod layout;
mod raster;

use std::path::PathBuf;
use std::sync::Arc;

use image::DynamicImage;
use rhai::{FnPtr, Position};

use crate::sketch::color::Rgb;
use crate::sketch::{MapReader, Script, SketchError, MAX_PIXELS, MAX_SIDE};

pub use layout::{Layout, LevelGrid};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Triangles,
    Arcs,
    Diagonals,
    Multiscale,
}

impl Family {
    pub const NAMES: &'static [&'static str] = &["triangles", "arcs", "diagonals", "multiscale"];

    fn from_name(name: &str) -> Family {
        match name {
            "triangles" => Family::Triangles,
            "arcs" => Family::Arcs,
            "diagonals" => Family::Diagonals,
            _ => Family::Multiscale,
        }
    }
}

/// The motifs of Carlson's multi-scale tile set. Each meets every tile edge in its
/// middle third, so any two tiles join, at any scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Motif {
    /// Two quarter-circle bands around opposite corners (Smith's tile, widened).
    Arcs,
    /// A straight band across, with half-discs on the other two sides.
    Line,
    /// Straight bands both ways.
    Cross,
    /// Half-discs on all four sides.
    Dots,
}

impl Motif {
    pub const NAMES: &'static [&'static str] = &["arcs", "line", "cross", "dots"];
    const ALL: [Motif; 4] = [Motif::Arcs, Motif::Line, Motif::Cross, Motif::Dots];
}

/// A script closure `|i, j, rng| ...` choosing each cell's tile and rotation.
#[derive(Clone)]
pub struct Rule {
    pub f: FnPtr,
    pub script: Arc<Script>,
    pub file: PathBuf,
    /// Where the rule was written, for errors about what it returned.
    pub pos: Position,
}

impl std::fmt::Debug for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Rule({})", self.f.fn_name())
    }
}

#[derive(Debug, Clone)]
pub struct TruchetSpec {
    pub width: u32,
    pub height: u32,
    /// Tile side in pixels (the largest tiles, for multiscale).
    pub tile: u32,
    pub family: Family,
    pub foreground: Rgb,
    pub background: Rgb,
    /// Stroke width in pixels (arcs and diagonals).
    pub line: f64,
    /// Arcs: fill the two-coloured domains instead of stroking the arcs.
    pub filled: bool,
    /// Multiscale: number of scales (tile, tile/2, tile/4, ...).
    pub levels: u32,
    /// Multiscale: probability that a tile at level k is split into four, per level.
    pub subdivide: Vec<f64>,
    /// Multiscale: the motifs tiles are drawn from (the rule's `tile` indexes this).
    pub motifs: Vec<Motif>,
    pub seed: u64,
    pub antialias: bool,
    /// 1 for a grayscale image, 3 for RGB.
    pub channels: u8,
    pub rule: Option<Rule>,
}

impl TruchetSpec {
    pub fn parse(map: &mut MapReader, script: &Arc<Script>) -> Result<Self, SketchError> {
        let (width, height) = map.size("size", (512, 512), MAX_SIDE, MAX_PIXELS)?;
        let tile = map.int("tile", 32, 2..=4096)? as u32;
        let family =
            Family::from_name(&map.choice("family", "tile family", Family::NAMES, "triangles")?);
        let foreground = map.color("foreground", [0, 0, 0])?;
        let background = map.color("background", [255, 255, 255])?;
        let line = map.float("line", (tile as f64 / 8.0).max(1.0), 0.0..=4096.0)?;
        let filled = map.bool("filled", false)?;
        let levels = map.int(
            "levels",
            if family == Family::Multiscale { 3 } else { 1 },
            1..=6,
        )? as u32;
        let subdivide = parse_subdivide(map, levels)?;
        let motifs = parse_motifs(map)?;
        let seed = map.int("seed", 0, 0..=i64::MAX)? as u64;
        let antialias = map.bool("antialias", true)?;
        let channels = match map.raw("channels") {
            None => 3,
            Some(v) => match v.as_int() {
                Ok(1) => 1,
                Ok(3) => 3,
                _ => {
                    return Err(map.error_at(
                        "channels",
                        Some(&v),
                        "\"channels\" must be 1 (grayscale) or 3 (RGB)",
                    ))
                }
            },
        };
        let rule = match map.fn_ptr("rule")? {
            Some(f) => Some(Rule {
                f,
                script: script.clone(),
                file: map.file().to_path_buf(),
                pos: map.locator().value("rule", None),
            }),
            // A script-level `fn rule(i, j, rng)` works too.
            None if script.has_fn("rule", 3) => Some(Rule {
                f: FnPtr::new("rule").expect("valid name"),
                script: script.clone(),
                file: map.file().to_path_buf(),
                pos: script.fn_position("rule", 3),
            }),
            None => None,
        };
        if family == Family::Multiscale {
            let smallest = tile >> (levels - 1);
            if smallest << (levels - 1) != tile || smallest < 2 {
                return Err(map.error_at(
                    "tile",
                    None,
                    format!("tile {tile} cannot be halved {} times into whole pixels; use a multiple of {}", levels - 1, 1u32 << levels),
                ));
            }
        }
        Ok(TruchetSpec {
            width,
            height,
            tile,
            family,
            foreground,
            background,
            line,
            filled,
            levels: if family == Family::Multiscale {
                levels
            } else {
                1
            },
            subdivide,
            motifs,
            seed,
            antialias,
            channels,
            rule,
        })
    }

    /// How many distinct tiles a rule may choose from (`tile: 0..count`).
    pub fn tile_count(&self) -> usize {
        match self.family {
            Family::Multiscale => self.motifs.len(),
            _ => 1,
        }
    }
}

fn parse_subdivide(map: &mut MapReader, levels: u32) -> Result<Vec<f64>, SketchError> {
    let splits = levels.saturating_sub(1) as usize;
    match map.raw("subdivide") {
        None => Ok(vec![0.5; splits]),
        Some(v) if v.is_array() => {
            let items = v.clone().into_array().unwrap_or_default();
            if items.len() != splits {
                return Err(map.error_at(
                    "subdivide",
                    None,
                    format!("\"subdivide\" lists {} probabilities; {levels} levels need {splits} (one per split)", items.len()),
                ));
            }
            items
                .iter()
                .map(|p| map.check_float("subdivide", p, 0.0..=1.0))
                .collect()
        }
        Some(v) => Ok(vec![map.check_float("subdivide", &v, 0.0..=1.0)?; splits]),
    }
}

/// Most entries `tiles` may list (repeats included).
const MAX_MOTIFS: usize = 4096;

fn parse_motifs(map: &mut MapReader) -> Result<Vec<Motif>, SketchError> {
    let Some(v) = map.raw("tiles") else {
        return Ok(Motif::ALL.to_vec());
    };
    let items = v
        .clone()
        .into_array()
        .map_err(|_| map.type_error("tiles", &v, "an array of motif names"))?;
    if items.is_empty() {
        return Err(map.error_at("tiles", None, "\"tiles\" must list at least one motif"));
    }
    // A cell stores its tile index in 14 bits (see `LevelGrid`).
    if items.len() > MAX_MOTIFS {
        return Err(map.error_at(
            "tiles",
            None,
            format!(
                "\"tiles\" lists {} motifs; at most {MAX_MOTIFS}",
                items.len()
            ),
        ));
    }
    items
        .iter()
        .map(|item| {
            let name = item.clone().into_string().unwrap_or_default();
            Motif::NAMES
                .iter()
                .position(|n| *n == name)
                .map(|k| Motif::ALL[k])
                .ok_or_else(|| {
                    map.error_at(
                        "tiles",
                        Some(item),
                        format!(
                            "unknown motif \"{item}\"; expected one of {}",
                            Motif::NAMES.join(", ")
                        ),
                    )
                })
        })
        .collect()
}

/// Lays out the tiles (running the rule, if any) and rasterises them.
pub fn render(spec: &TruchetSpec) -> Result<DynamicImage, SketchError> {
    let layout = Layout::build(spec)?;
    Ok(raster::rasterise(spec, &layout))
}

/// [`render`] that gives up once `cancelled()` says so (a newer request wants the
/// renderer): `Ok(None)`, promptly, as the rows left are skipped.
pub fn render_unless(
    spec: &TruchetSpec,
    cancelled: &(dyn Fn() -> bool + Sync),
) -> Result<Option<DynamicImage>, SketchError> {
    let layout = Layout::build(spec)?;
    if cancelled() {
        return Ok(None);
    }
    let image = raster::rasterise_unless(spec, &layout, cancelled);
    Ok((!cancelled()).then_some(image))
}
