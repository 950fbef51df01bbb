//! Truchet geometry and determinism, through the library API.

use std::path::Path;

use easel::spec::{self, Spec};
use easel::truchet::Layout;
use image::DynamicImage;

fn load(src: &str) -> spec::Sketch {
    spec::load_source(Path::new("test.rhai"), src.to_string()).unwrap_or_else(|e| panic!("{e}"))
}

fn render(src: &str) -> DynamicImage {
    load(src).spec.render().unwrap_or_else(|e| panic!("{e}"))
}

fn truchet(spec: &Spec) -> &easel::truchet::TruchetSpec {
    match spec {
        Spec::Truchet(t) => t,
        other => panic!("not a truchet spec: {other:?}"),
    }
}

/// Mean of the gray image in [0, 1].
fn mean_gray(img: &DynamicImage) -> f64 {
    let g = img.to_luma8();
    g.pixels().map(|p| p.0[0] as f64).sum::<f64>() / (255.0 * g.len() as f64)
}

#[test]
fn same_sketch_and_seed_give_the_same_bytes() {
    for family in ["triangles", "arcs", "diagonals", "multiscale"] {
        let src = format!(
            r#"#{{ kind: "truchet", family: "{family}", size: 200, tile: 32, seed: 42,
                 rule: |i, j, rng| rng.int(4) }}"#
        );
        let a = render(&src);
        let b = render(&src);
        assert_eq!(a.as_bytes(), b.as_bytes(), "{family} is not deterministic");
        let other = render(&src.replace("seed: 42", "seed: 43"));
        assert_ne!(a.as_bytes(), other.as_bytes(), "{family} ignores the seed");
    }
}

#[test]
fn a_triangle_tile_is_half_foreground() {
    for rotation in 0..4 {
        let img = render(&format!(
            r#"#{{ kind: "truchet", family: "triangles", size: 64, tile: 64, channels: 1,
                 rule: |i, j, rng| {rotation} }}"#
        ));
        let dark = 1.0 - mean_gray(&img);
        assert!(
            (dark - 0.5).abs() < 0.01,
            "rotation {rotation}: {dark} of the tile is foreground"
        );
    }
}

#[test]
fn each_rotation_of_a_triangle_darkens_a_different_corner() {
    // The dark half is a right triangle; its centroid sits a third of the way in from
    // the corner with the right angle.
    let mut corners = Vec::new();
    for rotation in 0..4 {
        let img = render(&format!(
            r#"#{{ kind: "truchet", family: "triangles", size: 60, tile: 60, channels: 1,
                 antialias: false, rule: |i, j, rng| {rotation} }}"#
        ))
        .to_luma8();
        let dark: Vec<(f64, f64)> = img
            .enumerate_pixels()
            .filter(|(_, _, p)| p.0[0] < 128)
            .map(|(x, y, _)| (x as f64, y as f64))
            .collect();
        let n = dark.len() as f64;
        let (cx, cy) = dark
            .iter()
            .fold((0.0, 0.0), |(a, b), (x, y)| (a + x / n, b + y / n));
        let corner = ((cx > 30.0) as u8, (cy > 30.0) as u8);
        assert!(
            (cx - 30.0).abs() > 8.0 && (cy - 30.0).abs() > 8.0,
            "centroid ({cx}, {cy}) not near a corner"
        );
        corners.push(corner);
    }
    corners.sort();
    corners.dedup();
    assert_eq!(corners.len(), 4, "rotations share corners: {corners:?}");
}

#[test]
fn a_constant_rule_gives_identical_cells() {
    for family in ["triangles", "arcs", "diagonals"] {
        let img = render(&format!(
            r#"#{{ kind: "truchet", family: "{family}", size: 96, tile: 24, rule: |i, j, rng| 0 }}"#
        ))
        .to_rgb8();
        let img = &img;
        let cell = |ci: u32, cj: u32| -> Vec<u8> {
            (0..24)
                .flat_map(|y| (0..24).flat_map(move |x| img.get_pixel(ci * 24 + x, cj * 24 + y).0))
                .collect()
        };
        // A 10 PRINT stroke reaches past its tile's corners (so that it keeps its width
        // where it meets the next one); tiles on the canvas border lack some neighbours,
        // so there only the inner cells are alike.
        let cells = if family == "diagonals" { 1..3 } else { 0..4 };
        let first = cell(cells.start, cells.start);
        assert!(
            first.iter().any(|&v| v < 128),
            "{family}: the tile draws nothing"
        );
        for cj in cells.clone() {
            for ci in cells.clone() {
                assert_eq!(cell(ci, cj), first, "{family}: cell ({ci}, {cj}) differs");
            }
        }
    }
}

#[test]
fn arcs_draw_strokes_of_the_requested_width() {
    let thin = render(r#"#{ kind: "truchet", family: "arcs", size: 256, tile: 32, line: 2 }"#);
    let thick = render(r#"#{ kind: "truchet", family: "arcs", size: 256, tile: 32, line: 8 }"#);
    let (a, b) = (1.0 - mean_gray(&thin), 1.0 - mean_gray(&thick));
    // Two quarter-circles of radius 16 px per tile: length π·16 ≈ 50 px of stroke.
    let expected = |w: f64| std::f64::consts::PI * 16.0 * w / (32.0 * 32.0);
    assert!(
        (a - expected(2.0)).abs() < 0.02,
        "line 2: {a} dark vs {}",
        expected(2.0)
    );
    assert!(
        (b - expected(8.0)).abs() < 0.03,
        "line 8: {b} dark vs {}",
        expected(8.0)
    );
}

#[test]
fn filled_arcs_colour_neighbouring_tiles_consistently() {
    // Across every tile edge, the pixel on each side must have the same colour (but at
    // the two points where an arc meets the edge).
    let img = render(
        r#"#{ kind: "truchet", family: "arcs", filled: true, size: 320, tile: 32,
                          channels: 1, antialias: false, seed: 5 }"#,
    )
    .to_luma8();
    let (mut edges, mut mismatches) = (0, 0);
    for k in 1..10u32 {
        let b = k * 32;
        for t in 0..320u32 {
            edges += 2;
            mismatches += (img.get_pixel(b - 1, t) != img.get_pixel(b, t)) as u32;
            mismatches += (img.get_pixel(t, b - 1) != img.get_pixel(t, b)) as u32;
        }
    }
    assert!(
        mismatches * 50 < edges,
        "{mismatches} of {edges} edge pixels disagree"
    );
    let dark = 1.0 - mean_gray(&DynamicImage::ImageLuma8(img));
    assert!(
        (0.2..0.8).contains(&dark),
        "two colours should share the canvas, got {dark}"
    );
}

#[test]
fn multiscale_really_subdivides() {
    let src = |p: &str| {
        format!(
            r#"#{{ kind: "truchet", family: "multiscale", size: 256, tile: 64, levels: 3, subdivide: {p}, seed: 9 }}"#
        )
    };
    let sketch = load(&src("0.5"));
    let layout = Layout::build(truchet(&sketch.spec)).unwrap();
    let placed: Vec<usize> = layout.levels.iter().map(|l| l.placed()).collect();
    assert_eq!(placed.len(), 3);
    assert!(
        placed.iter().all(|&n| n > 0),
        "tiles at every level: {placed:?}"
    );
    // Every pixel is covered by exactly one tile: areas add up to the canvas.
    let area: usize = layout
        .levels
        .iter()
        .map(|l| l.placed() * (l.size * l.size) as usize)
        .sum();
    assert_eq!(area, 256 * 256);

    let all_split = Layout::build(truchet(&load(&src("1.0")).spec)).unwrap();
    assert_eq!(
        all_split
            .levels
            .iter()
            .map(|l| l.placed())
            .collect::<Vec<_>>(),
        vec![0, 0, 256]
    );

    let flat = render(&src("0.0"));
    let mixed = render(&src("0.5"));
    assert_ne!(flat.as_bytes(), mixed.as_bytes());
}

#[test]
fn multiscale_tiles_use_both_colours_at_every_scale() {
    // Colours swap per level: a canvas of only level-1 tiles is the inverse palette of a
    // canvas of only level-0 tiles, so its mean flips around one half.
    let src = |p: &str| {
        format!(
            r#"#{{ kind: "truchet", family: "multiscale", size: 256, tile: 64, levels: 2,
                     subdivide: {p}, tiles: ["cross"], channels: 1 }}"#
        )
    };
    let big = mean_gray(&render(&src("0.0")));
    let small = mean_gray(&render(&src("1.0")));
    assert!(
        (big + small - 1.0).abs() < 0.05,
        "level 0 mean {big}, level 1 mean {small}"
    );
}

#[test]
fn classes_override_the_base_sketch() {
    let sketch = load(
        r#"#{ kind: "truchet", size: 64, tile: 16,
              classes: #{ tri: #{ family: "triangles" }, maze: #{ family: "diagonals", size: 32 } } }"#,
    );
    let names: Vec<&str> = sketch.classes.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, vec!["maze", "tri"]);
    assert_eq!(sketch.class_spec(Some("maze")).unwrap().size(), (32, 32));
    assert_eq!(
        truchet(sketch.class_spec(Some("tri")).unwrap()).family,
        easel::truchet::Family::Triangles
    );
    assert!(sketch
        .class_spec(Some("nope"))
        .unwrap_err()
        .to_string()
        .contains("expected one of maze, tri"));
}

#[test]
fn the_py_truchet_gan_sketch_matches_that_dataset() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("sketches/truchet_dataset.rhai");
    let sketch = spec::load(&path).unwrap();
    let img = sketch.spec.render().unwrap();
    assert_eq!((img.width(), img.height()), (32, 32));
    let gray = img.as_luma8().expect("grayscale");
    assert!(
        gray.pixels().all(|p| p.0[0] == 0 || p.0[0] == 255),
        "pure black and white"
    );
    // 16 tiles, each exactly half black (8x8 tile split on its diagonal: 28 or 36 px).
    let black = gray.pixels().filter(|p| p.0[0] == 0).count();
    assert!((16 * 28..=16 * 36).contains(&black), "{black} black pixels");
}

/// Every place where two tiles meet, at any scale, as (x, y) of the pixel after the
/// edge and whether the edge is vertical (the pixel before it is (x - 1, y)) or
/// horizontal ((x, y - 1)). Right and bottom edges of every drawn tile cover them all:
/// a smaller tile's left edge lies along a larger tile's right edge.
fn tile_edges(layout: &Layout, width: u32, height: u32) -> Vec<(u32, u32, bool)> {
    let mut out = Vec::new();
    for grid in &layout.levels {
        let s = grid.size;
        for j in 0..grid.rows {
            for i in 0..grid.cols {
                if !grid.is_placed(i as i64, j as i64) {
                    continue;
                }
                let (x0, y0) = (i * s, j * s);
                if x0 + s < width {
                    out.extend((y0..(y0 + s).min(height)).map(|y| (x0 + s, y, true)));
                }
                if y0 + s < height {
                    out.extend((x0..(x0 + s).min(width)).map(|x| (x, y0 + s, false)));
                }
            }
        }
    }
    out
}

/// The pixels that differ across a tile edge (non-antialiased render): places where a
/// band stops with a flat cut instead of running on into the next tile.
fn loose_ends(sketch: &spec::Sketch) -> Vec<(u32, u32, bool)> {
    let spec = truchet(&sketch.spec);
    assert!(!spec.antialias);
    let img = sketch.spec.render().unwrap().to_luma8();
    let layout = Layout::build(spec).unwrap();
    tile_edges(&layout, spec.width, spec.height)
        .into_iter()
        .filter(|&(x, y, vertical)| {
            let before = if vertical { (x - 1, y) } else { (x, y - 1) };
            img.get_pixel(before.0, before.1) != img.get_pixel(x, y)
        })
        .collect()
}

#[test]
fn multiscale_bands_run_on_across_every_tile_edge() {
    // The bundled sketch, where bands were cut at y = 128, x = 11–20 and y = 384,
    // x = 491–500 (a small tile's band meeting a large tile's corner, where the wing of
    // the split tile between them was missing).
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("sketches/truchet_multiscale.rhai");
    let source = std::fs::read_to_string(&path).unwrap();
    let bundled = spec::load_with(
        &path,
        source,
        &[
            ("antialias".into(), false.into()),
            ("channels".into(), 1_i64.into()),
        ],
    )
    .unwrap();
    let ends = loose_ends(&bundled);
    assert!(
        ends.is_empty(),
        "bundled sketch: {} loose ends, first {:?}",
        ends.len(),
        &ends[..ends.len().min(8)]
    );

    let motifs = ["arcs", "line", "cross", "dots"];
    let mut sets: Vec<String> = motifs.iter().map(|m| format!("[\"{m}\"]")).collect();
    sets.push(format!("{motifs:?}"));
    let mut checked = 0;
    for levels in 2..=4 {
        for seed in 1..=3 {
            for tiles in &sets {
                let src = format!(
                    r#"#{{ kind: "truchet", family: "multiscale", size: [256, 192], tile: 64,
                         levels: {levels}, subdivide: 0.5, tiles: {tiles}, seed: {seed},
                         channels: 1, antialias: false }}"#
                );
                let sketch = load(&src);
                let layout = Layout::build(truchet(&sketch.spec)).unwrap();
                assert!(
                    layout.levels.iter().all(|l| l.placed() > 0),
                    "{src}: a level is unused"
                );
                let ends = loose_ends(&sketch);
                assert!(
                    ends.is_empty(),
                    "levels {levels}, seed {seed}, tiles {tiles}: {} loose ends, first {:?}",
                    ends.len(),
                    &ends[..ends.len().min(8)]
                );
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 3 * 3 * 5);
}

/// Length of the run of foreground pixels through (x, y), stepping by (dx, dy).
fn run_through(img: &image::GrayImage, x: i64, y: i64, dx: i64, dy: i64) -> usize {
    let dark = |x: i64, y: i64| {
        x >= 0
            && y >= 0
            && x < img.width() as i64
            && y < img.height() as i64
            && img.get_pixel(x as u32, y as u32).0[0] < 128
    };
    if !dark(x, y) {
        return 0;
    }
    let mut n = 1;
    for sign in [-1, 1] {
        let (mut px, mut py) = (x + sign * dx, y + sign * dy);
        while dark(px, py) {
            n += 1;
            px += sign * dx;
            py += sign * dy;
        }
    }
    n
}

#[test]
fn diagonals_keep_their_width_where_tiles_meet() {
    let (tile, line) = (32i64, 6.0);
    let render_gray = |rule: &str| {
        render(&format!(
            r#"#{{ kind: "truchet", family: "diagonals", size: 192, tile: {tile}, line: {line},
                 channels: 1, antialias: false, rule: {rule} }}"#
        ))
        .to_luma8()
    };
    // Straight chains (every tile "\"): across the stroke, along the anti-diagonal, the
    // run is as wide at a corner where two tiles' diagonals meet as mid-tile.
    let img = render_gray("|i, j, rng| 0");
    for k in 1..5 {
        let c = k * tile;
        let mid = run_through(&img, c + tile / 2, c + tile / 2, 1, -1);
        let corner = run_through(&img, c, c, 1, -1);
        let corner_before = run_through(&img, c - 1, c - 1, 1, -1);
        assert!(
            mid as f64 * std::f64::consts::SQRT_2 >= line,
            "mid-tile run {mid}"
        );
        assert!(
            corner >= mid && corner_before >= mid,
            "the stroke pinches at corner ({c}, {c}): {corner}/{corner_before} pixels across vs {mid} mid-tile"
        );
    }
    // Zigzags ("\/\/"): where two diagonals meet at a right angle the stroke is as thick,
    // measured down the column through the meeting point, as in the middle of a tile.
    let img = render_gray("|i, j, rng| i % 2");
    for j in 1..5 {
        for i in 1..5 {
            let (x, y) = (i * tile, j * tile);
            let mid = run_through(&img, x + tile / 2, y + tile / 2, 0, 1);
            assert!(mid as f64 >= line, "mid-tile run {mid}");
            // The corners where two diagonals meet: "\/" below odd columns' left edge,
            // "/\" above even ones.
            for x in [x - 1, x] {
                let joint = run_through(&img, x, y, 0, 1);
                assert!(
                    joint as f64 >= 0.85 * mid as f64,
                    "the stroke pinches at ({x}, {y}): {joint} pixels down vs {mid} mid-tile"
                );
            }
        }
    }
}
