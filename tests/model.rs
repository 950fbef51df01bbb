//! The Truchet generators shipped in models/ work from a fresh clone, and their samples
//! look like the tilings they learned (the py-truchet-gan data): 8x8 tiles, each one of
//! the four half-square triangles, crisp rather than blurred, all four orientations in
//! use. models/truchet32 is a DCGAN (sketches/gan_truchet.rhai); models/cppn_truchet32 a
//! CPPN-GAN (sketches/gan_cppn.rhai), whose samples must stay tilings with sharp edges when
//! rendered 8x larger than it trained.

use std::path::Path;
use std::process::Command;

const MODEL: &str = "models/truchet32";
const CPPN_MODEL: &str = "models/cppn_truchet32";

/// Agreement of an 8x8 tile (values 0..=255, dark = foreground) with the best of the four
/// half-square triangles, ignoring the diagonal pixels; and which triangle that is.
fn best_triangle(tile: &[[u8; 8]; 8]) -> (f64, usize) {
    let masks: [fn(usize, usize) -> bool; 4] = [
        |x, y| x + y < 7, // upper-left half dark
        |x, y| x + y > 7, // lower-right
        |x, y| x > y,     // upper-right
        |x, y| x < y,     // lower-left
    ];
    let on_diagonal = |k: usize, x: usize, y: usize| match k {
        0 | 1 => x + y == 7,
        _ => x == y,
    };
    let mut best = (0.0, 0);
    for (k, dark) in masks.iter().enumerate() {
        let (mut agree, mut total) = (0, 0);
        for (y, row) in tile.iter().enumerate() {
            for (x, &v) in row.iter().enumerate() {
                if on_diagonal(k, x, y) {
                    continue;
                }
                total += 1;
                if (v < 128) == dark(x, y) {
                    agree += 1;
                }
            }
        }
        let score = agree as f64 / total as f64;
        if score > best.0 {
            best = (score, k);
        }
    }
    best
}

/// Scores of every 8x8 tile of a 32x32 grayscale image at (ox, oy) of `img`.
fn tile_scores(img: &image::GrayImage, ox: u32, oy: u32) -> Vec<(f64, usize)> {
    let mut out = vec![];
    for ty in 0..4 {
        for tx in 0..4 {
            let mut tile = [[0u8; 8]; 8];
            for (y, row) in tile.iter_mut().enumerate() {
                for (x, v) in row.iter_mut().enumerate() {
                    *v = img
                        .get_pixel(ox + tx * 8 + x as u32, oy + ty * 8 + y as u32)
                        .0[0];
                }
            }
            out.push(best_triangle(&tile));
        }
    }
    out
}

#[test]
fn the_tile_score_recognises_the_training_data() {
    // The scorer itself: the dataset the model learned scores (almost) perfectly.
    let sketch = easel::spec::load(Path::new("sketches/truchet_dataset.rhai")).unwrap();
    let mut orientations = [0usize; 4];
    for seed in 0..16 {
        let (img, _) = sketch.render(None, Some(seed), None).unwrap();
        for (score, k) in tile_scores(&img.to_luma8(), 0, 0) {
            assert!(score >= 0.99, "a training tile scored {score}");
            orientations[k] += 1;
        }
    }
    assert!(orientations.iter().all(|&n| n >= 30), "{orientations:?}");
}

/// The grid `easel sample MODEL ARGS` writes, in gray (the model must be shipped).
fn sampled_grid(model: &str, args: &[&str]) -> image::GrayImage {
    let model = Path::new(model);
    assert!(
        model.join("generator.safetensors").exists()
            || model.join("checkpoints/latest.safetensors").exists(),
        "{}/generator.safetensors is missing",
        model.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("grid.png");
    let status = Command::new(env!("CARGO_BIN_EXE_easel"))
        .arg("sample")
        .arg(model)
        .args(args)
        .arg("-o")
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    image::open(&out).unwrap().to_luma8()
}

#[test]
fn the_shipped_generator_draws_crisp_truchet_tiles() {
    let grid = sampled_grid(MODEL, &["--count", "64", "--seed", "3"]);
    // 8 columns of 32x32 samples with 2-pixel gaps.
    assert_eq!(grid.dimensions(), (8 * 34 + 2, 8 * 34 + 2));
    let (mut scores, mut orientations) = (vec![], [0usize; 4]);
    for i in 0..64u32 {
        for (score, k) in tile_scores(&grid, 2 + (i % 8) * 34, 2 + (i / 8) * 34) {
            scores.push(score);
            orientations[k] += 1;
        }
    }
    // Crisp, not blurred: few mid-grey pixels in the samples (the gaps are excluded).
    let mut blurred = 0usize;
    for i in 0..64u32 {
        let (ox, oy) = (2 + (i % 8) * 34, 2 + (i / 8) * 34);
        for y in 0..32 {
            for x in 0..32 {
                blurred += usize::from((48..208).contains(&grid.get_pixel(ox + x, oy + y).0[0]));
            }
        }
    }
    let pixels = 64 * 32 * 32;
    assert_crisp_tiles(&scores, orientations, blurred as f64 / pixels as f64);
}

/// The shipped models' bar: tiles match a triangle on ≥ 90% of their pixels on average,
/// ≥ 80% of tiles are clean (≥ 0.9), ≤ 10% of pixels are mid-grey, and each orientation
/// has ≥ 10% of the tiles.
fn assert_crisp_tiles(scores: &[f64], orientations: [usize; 4], grey: f64) {
    let tiles = scores.len() as f64;
    let mean = scores.iter().sum::<f64>() / tiles;
    let good = scores.iter().filter(|&&s| s >= 0.9).count() as f64 / tiles;
    eprintln!(
        "mean agreement {mean:.3}, tiles ≥ 0.9: {good:.3}, grey pixels {grey:.3}, orientations {orientations:?}"
    );
    assert!(
        mean >= 0.9,
        "tiles match a triangle on {mean:.3} of their pixels"
    );
    assert!(good >= 0.8, "only {good:.3} of tiles are clean triangles");
    assert!(grey <= 0.1, "{grey:.3} of pixels are grey: blurred");
    assert!(
        orientations.iter().all(|&n| n as f64 >= tiles * 0.1),
        "not all four orientations: {orientations:?}"
    );
}

#[test]
fn the_shipped_cppn_generator_draws_sharp_tilings_at_eight_times_its_size() {
    let count = 16u32;
    // EASEL_CPPN_MODEL=runs/<run> scores a run (its newest checkpoint while it trains) by
    // the same bar, to see whether it is good enough to ship.
    let model = std::env::var("EASEL_CPPN_MODEL").unwrap_or(CPPN_MODEL.into());
    let grid = sampled_grid(
        &model,
        &[
            "--size",
            "256",
            "--seed",
            "5",
            "--count",
            &count.to_string(),
        ],
    );
    // A 4x4 grid of 256x256 samples with 2-pixel gaps.
    assert_eq!(grid.dimensions(), (4 * 258 + 2, 4 * 258 + 2));
    let (mut scores, mut orientations, mut grey) = (vec![], [0usize; 4], 0usize);
    let mut layouts = std::collections::HashSet::new();
    for i in 0..count {
        let (ox, oy) = (2 + (i % 4) * 258, 2 + (i / 4) * 258);
        let big = image::imageops::crop_imm(&grid, ox, oy, 256, 256).to_image();
        // Sharp at 256: an edge is a line of grey pixels, not a ramp.
        grey += big.pixels().filter(|p| (48..208).contains(&p.0[0])).count();
        // Seen at the training size, every tile is a half-square triangle.
        let small = image::imageops::resize(&big, 32, 32, image::imageops::FilterType::Triangle);
        let tiles = tile_scores(&small, 0, 0);
        layouts.insert(tiles.iter().map(|&(_, k)| k).collect::<Vec<_>>());
        for (score, k) in tiles {
            scores.push(score);
            orientations[k] += 1;
        }
    }
    eprintln!("{} layouts in {count} samples; at 256 px:", layouts.len());
    assert_crisp_tiles(
        &scores,
        orientations,
        grey as f64 / (count as f64 * 256.0 * 256.0),
    );
    // Not one tiling for every noise (the collapse a CPPN-GAN falls into).
    assert!(
        layouts.len() as u32 >= count * 3 / 4,
        "only {} different layouts in {count} samples",
        layouts.len()
    );
}
