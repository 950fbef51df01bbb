//! Anti-aliased rasteriser. Every pixel is a blend of just two colours, so it computes
//! one number per pixel, `t` = how much foreground, from signed distances to the tile's
//! shapes (coverage ≈ 0.5 − distance in pixels), then maps `t` through a 256-entry
//! colour table. Rows are shaded in parallel.

use std::f64::consts::FRAC_1_SQRT_2;

use image::{DynamicImage, GrayImage, RgbImage};
use rayon::prelude::*;

use super::layout::{Layout, EMPTY};
use super::{Family, Motif, TruchetSpec};

/// Half the band width of Carlson's tiles: boundaries meet each side at 1/3 and 2/3.
const BAND: f64 = 1.0 / 6.0;
/// Radius of the wings: discs around tile corners that overlap neighbouring tiles.
const WING: f64 = 1.0 / 3.0;

pub(crate) fn rasterise(spec: &TruchetSpec, layout: &Layout) -> DynamicImage {
    rasterise_unless(spec, layout, &|| false)
}

/// [`rasterise`], skipping the rows left once `cancelled()` says so (asked once per
/// row: cheap next to a row of pixels). The caller checks `cancelled()` again after,
/// and throws a cut-short image away.
pub(crate) fn rasterise_unless(
    spec: &TruchetSpec,
    layout: &Layout,
    cancelled: &(dyn Fn() -> bool + Sync),
) -> DynamicImage {
    let (w, h) = (spec.width as usize, spec.height as usize);
    let ch = spec.channels as usize;
    let lut = colour_table(spec);
    let mut buf = vec![0u8; w * h * ch];
    let shade_row = |(y, row): (usize, &mut [u8])| {
        if cancelled() {
            return;
        }
        for x in 0..w {
            let t = foreground_amount(spec, layout, x as u32, y as u32);
            let k = (t.clamp(0.0, 1.0) * 255.0 + 0.5) as usize;
            row[x * ch..x * ch + ch].copy_from_slice(&lut[k][..ch]);
        }
    };
    // Small images (dataset tiles) are made many at a time, one per thread; splitting
    // each one across threads would cost more than it saves.
    if w * h < 128 * 128 {
        buf.chunks_mut(w * ch).enumerate().for_each(shade_row);
    } else {
        buf.par_chunks_mut(w * ch).enumerate().for_each(shade_row);
    }
    match ch {
        1 => DynamicImage::ImageLuma8(
            GrayImage::from_raw(w as u32, h as u32, buf).expect("buffer size"),
        ),
        _ => DynamicImage::ImageRgb8(
            RgbImage::from_raw(w as u32, h as u32, buf).expect("buffer size"),
        ),
    }
}

/// Colour for each of 256 foreground amounts; grayscale images use the luma in slot 0.
fn colour_table(spec: &TruchetSpec) -> Vec<[u8; 3]> {
    let (fg, bg) = (
        spec.foreground.map(f64::from),
        spec.background.map(f64::from),
    );
    (0..256)
        .map(|k| {
            let t = k as f64 / 255.0;
            let c = [0, 1, 2].map(|i| bg[i] + (fg[i] - bg[i]) * t);
            if spec.channels == 1 {
                let luma = 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2];
                [luma.round() as u8; 3]
            } else {
                c.map(|v| v.round() as u8)
            }
        })
        .collect()
}

/// Coverage of a shape at signed distance `d` (tile units, negative inside) for a tile
/// `size` pixels wide.
#[inline]
fn coverage(d: f64, size: f64, antialias: bool) -> f64 {
    if antialias {
        (0.5 - d * size).clamp(0.0, 1.0)
    } else if d < 0.0 {
        1.0
    } else {
        0.0
    }
}

/// Tile-local coordinates turned by `rotation` quarter turns about the tile's centre.
#[inline]
fn rotate(u: f64, v: f64, rotation: u16) -> (f64, f64) {
    match rotation & 3 {
        0 => (u, v),
        1 => (1.0 - v, u),
        2 => (1.0 - u, 1.0 - v),
        _ => (v, 1.0 - u),
    }
}

/// Which cell of a grid of `size`-pixel tiles holds pixel (x, y), and the pixel centre's
/// position inside it in [0, 1]². Integer arithmetic first, so every cell sees exactly
/// the same local coordinates and identical tiles give identical pixels.
#[inline]
fn locate(x: u32, y: u32, size: u32) -> (i64, i64, f64, f64) {
    let (i, j) = (x / size, y / size);
    let s = size as f64;
    let u = ((x - i * size) as f64 + 0.5) / s;
    let v = ((y - j * size) as f64 + 0.5) / s;
    (i as i64, j as i64, u, v)
}

#[inline]
fn foreground_amount(spec: &TruchetSpec, layout: &Layout, x: u32, y: u32) -> f64 {
    if spec.family == Family::Multiscale {
        return multiscale_amount(spec, layout, x, y);
    }
    let grid = &layout.levels[0];
    let s = grid.size as f64;
    let (i, j, u, v) = locate(x, y, grid.size);
    let cell = grid.get(i, j);
    let rotation = cell & 3;
    let (u0, v0) = (u, v);
    let (u, v) = rotate(u, v, rotation);
    let half_line = spec.line * 0.5 / s;
    let aa = spec.antialias;
    match spec.family {
        Family::Triangles => coverage((u + v - 1.0) * FRAC_1_SQRT_2, s, aa),
        Family::Diagonals => coverage(diagonals_distance(grid, i, j, u0, v0, half_line), s, aa),
        Family::Arcs if spec.filled => {
            // Two-colouring of Smith tiles: the corner regions' colour alternates on a
            // checkerboard, flipped again for the rotated tile.
            let d = ((u * u + v * v).sqrt() - 0.5)
                .min(((1.0 - u).powi(2) + (1.0 - v).powi(2)).sqrt() - 0.5);
            let t = coverage(d, s, aa);
            let flip = (i + j + rotation as i64) & 1 == 1;
            if flip {
                1.0 - t
            } else {
                t
            }
        }
        Family::Arcs => {
            let d = arc_distance(u, v) - half_line;
            coverage(d, s, aa)
        }
        Family::Multiscale => unreachable!(),
    }
}

/// Distance to the 10 PRINT strokes near a pixel at (u, v) in cell (i, j): the union of
/// the diagonals of the cell and its eight neighbours, each a bar along its tile's
/// diagonal reaching half the line width past the corners. Clipping each stroke to its
/// own tile would pinch it to a point where two diagonals meet; with the neighbours'
/// bars a stroke keeps its width across the corner, and two strokes meeting at a right
/// angle join in a mitred corner. Inside its own tile a stroke is unchanged.
#[inline]
fn diagonals_distance(
    grid: &super::LevelGrid,
    i: i64,
    j: i64,
    u: f64,
    v: f64,
    half_line: f64,
) -> f64 {
    let own = |cell: u16, u: f64, v: f64| {
        let (u, v) = rotate(u, v, cell & 3);
        diagonal_bar(u, v, half_line)
    };
    let mut d = own(grid.get(i, j), u, v);
    // Only the neighbours whose bars can reach this pixel: those across a side within
    // reach of it.
    let reach = half_line * std::f64::consts::SQRT_2;
    let near = |t: f64| -> (i64, i64) { (-((t < reach) as i64), (t > 1.0 - reach) as i64) };
    let (i_lo, i_hi) = near(u);
    let (j_lo, j_hi) = near(v);
    for dj in j_lo..=j_hi {
        for di in i_lo..=i_hi {
            if di == 0 && dj == 0 {
                continue;
            }
            let cell = grid.get(i + di, j + dj);
            if cell == EMPTY {
                continue;
            }
            d = d.min(own(cell, u - di as f64, v - dj as f64));
        }
    }
    d
}

/// Signed distance to the bar along the diagonal (0,0)–(1,1), `half_line` either side
/// of it and reaching `half_line` past both ends (a stroke with square caps).
#[inline]
fn diagonal_bar(u: f64, v: f64, half_line: f64) -> f64 {
    let along = ((u - 0.5) + (v - 0.5)) * FRAC_1_SQRT_2;
    let across = (u - v) * FRAC_1_SQRT_2;
    let qa = along.abs() - (FRAC_1_SQRT_2 + half_line);
    let qc = across.abs() - half_line;
    qa.max(0.0).hypot(qc.max(0.0)) + qa.max(qc).min(0.0)
}

/// Distance to the nearer of the two quarter-circles of radius ½ about (0,0) and (1,1).
#[inline]
fn arc_distance(u: f64, v: f64) -> f64 {
    let a = ((u * u + v * v).sqrt() - 0.5).abs();
    let b = (((1.0 - u).powi(2) + (1.0 - v).powi(2)).sqrt() - 0.5).abs();
    a.min(b)
}

/// Carlson's winged tiles, painted largest first: the tile that covers the pixel, then
/// the wings of smaller neighbouring tiles on top. Colours swap at each level.
fn multiscale_amount(spec: &TruchetSpec, layout: &Layout, x: u32, y: u32) -> f64 {
    let base = |level: usize| if level.is_multiple_of(2) { 0.0 } else { 1.0 };
    let aa = spec.antialias;
    let (px, py) = (x as f64 + 0.5, y as f64 + 0.5);
    let Some((leaf_level, cell, u, v)) = layout.levels.iter().enumerate().find_map(|(k, g)| {
        let (i, j, u, v) = locate(x, y, g.size);
        g.is_placed(i, j).then(|| (k, g.get(i, j), u, v))
    }) else {
        return 0.0;
    };
    let size = layout.levels[leaf_level].size as f64;
    let (u, v) = rotate(u, v, cell & 3);
    let motif = spec.motifs[(cell >> 2) as usize];
    let d = motif_distance(motif, u, v);
    let mut t = base(leaf_level);
    t += (1.0 - 2.0 * t) * coverage(d, size, aa);

    for (level, grid) in layout.levels.iter().enumerate().skip(leaf_level + 1) {
        let s = grid.size as f64;
        let (gx, gy) = (px / s, py / s);
        let (cx, cy) = (gx.round(), gy.round());
        let d = ((gx - cx).powi(2) + (gy - cy).powi(2)).sqrt() - WING;
        let cov = coverage(d, s, aa);
        if cov <= 0.0 {
            continue;
        }
        let (ci, cj) = (cx as i64, cy as i64);
        // A corner has wings when a tile of this scale touches it, drawn or split: a
        // split tile's wings stay under its children's, where the bands of the larger
        // neighbouring tile must meet them.
        let winged = [(ci - 1, cj - 1), (ci, cj - 1), (ci - 1, cj), (ci, cj)]
            .iter()
            .any(|&(a, b)| grid.is_winged(a, b));
        if winged {
            t += (base(level) - t) * cov;
        }
    }
    t
}

/// Signed distance to a motif's bands (tile units).
#[inline]
fn motif_distance(motif: Motif, u: f64, v: f64) -> f64 {
    let disc = |cx: f64, cy: f64| ((u - cx).powi(2) + (v - cy).powi(2)).sqrt() - BAND;
    match motif {
        Motif::Arcs => arc_distance(u, v) - BAND,
        Motif::Line => ((v - 0.5).abs() - BAND)
            .min(disc(0.5, 0.0))
            .min(disc(0.5, 1.0)),
        Motif::Cross => (u - 0.5).abs().min((v - 0.5).abs()) - BAND,
        Motif::Dots => disc(0.5, 0.0)
            .min(disc(0.5, 1.0))
            .min(disc(0.0, 0.5))
            .min(disc(1.0, 0.5)),
    }
}
