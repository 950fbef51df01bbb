//! CPPN sketches: the fast renderer against the f64 reference, determinism, symmetry,
//! looping animation, resolution independence and located errors.

mod common;

use std::path::Path;

use common::{cppn_at, only_cppn, soft_disc};
use easel::cppn::net::Activation;
use easel::cppn::{animate, render, CppnSpec};
use easel::spec::{self, Spec};

fn cppn(src: &str) -> CppnSpec {
    only_cppn(spec::load_source(Path::new("test.rhai"), src.to_string()))
}

/// The fast path's outputs against the f64 reference: (max error, share of values
/// within 1e-4).
fn agreement(spec: &CppnSpec) -> (f64, f64) {
    let net = spec.network();
    let z = spec.z();
    let fast = render::render_values(spec, &net, &z);
    let reference = render::render_reference(spec, &net, &z);
    assert_eq!(fast.len(), reference.len());
    let errors: Vec<f64> = fast
        .iter()
        .zip(&reference)
        .map(|(a, b)| (*a as f64 - b).abs())
        .collect();
    let max = errors.iter().cloned().fold(0.0, f64::max);
    let within = errors.iter().filter(|e| **e <= 1e-4).count() as f64 / errors.len() as f64;
    (max, within)
}

#[test]
fn every_activation_matches_the_reference() {
    for act in Activation::NAMES {
        // 70x45: not a multiple of the 64-pixel chunk, not square. Two hidden layers of
        // the activation, except tan: stacked tans blow rounding differences between
        // f32 and f64 up into different images, which says nothing about the renderer.
        let layers = if *act == "tan" { "[12]" } else { "[12, 9]" };
        let spec = cppn(&format!(
            r#"#{{ kind: "cppn", size: [70, 45], z: 3, layers: {layers}, activation: "{act}",
                 scale: 2.0, seed: 3 }}"#
        ));
        let (max, within) = agreement(&spec);
        match *act {
            // Discontinuous: a pre-activation within float rounding of a jump (sign's
            // zero, tan's poles) may land on the other side. Nearly all values agree.
            "sign" | "tan" => assert!(within > 0.995, "{act}: only {within} of values within 1e-4"),
            _ => assert!(max <= 1e-4, "{act}: max error {max}"),
        }
        // And the activation as the output activation too.
        let spec = cppn(&format!(
            r#"#{{ kind: "cppn", size: [33, 20], z: 2, layers: [8], output_activation: "{act}", seed: 4 }}"#
        ));
        let (max, within) = agreement(&spec);
        match *act {
            "sign" | "tan" => assert!(within > 0.995, "{act} output: only {within} within 1e-4"),
            _ => assert!(max <= 1e-4, "{act} output: max error {max}"),
        }
    }
}

#[test]
fn output_modes_and_inputs_match_the_reference() {
    for extra in [
        r#"output: "gray""#,
        r#"output: "hsv""#,
        r#"inputs: ["r"]"#,
        r#"inputs: ["x", "y"], z: 0"#,
        r#"symmetry: "xy""#,
        r#"biases: false, init: "uniform""#,
        r#"fourier: #{ count: 4, scale: 1.5 }"#,
        r#"inputs: ["r"], fourier: #{ count: 3 }, symmetry: "x""#,
    ] {
        let spec = cppn(&format!(
            r#"#{{ kind: "cppn", size: [40, 30], layers: [10, 10], seed: 2, {extra} }}"#
        ));
        let (max, _) = agreement(&spec);
        assert!(max <= 1e-4, "{extra}: max error {max}");
    }
}

#[test]
fn the_same_seed_gives_the_same_image() {
    let src = r#"#{ kind: "cppn", size: 96, depth: 3, width: 16, seed: 12 }"#;
    let a = cppn(src).render().unwrap();
    assert_eq!(a.as_bytes(), cppn(src).render().unwrap().as_bytes());
    assert_ne!(
        a.as_bytes(),
        cppn(&src.replace("seed: 12", "seed: 13"))
            .render()
            .unwrap()
            .as_bytes()
    );
}

#[test]
fn symmetry_really_mirrors() {
    let img = |sym: &str| {
        cppn(&format!(r#"#{{ kind: "cppn", size: [64, 48], depth: 3, width: 12, symmetry: "{sym}", seed: 6 }}"#)).render().unwrap().to_rgb8()
    };
    let mirrored_x = |i: &image::RgbImage| image::imageops::flip_horizontal(i);
    let mirrored_y = |i: &image::RgbImage| image::imageops::flip_vertical(i);
    let x = img("x");
    assert_eq!(x, mirrored_x(&x));
    assert_ne!(x, mirrored_y(&x));
    let y = img("y");
    assert_eq!(y, mirrored_y(&y));
    let xy = img("xy");
    assert_eq!(xy, mirrored_x(&xy));
    assert_eq!(xy, mirrored_y(&xy));
    let none = img("none");
    assert_ne!(none, mirrored_x(&none));
}

fn mean_abs_diff(a: &image::DynamicImage, b: &image::DynamicImage) -> f64 {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - *y as f64).abs())
        .sum::<f64>()
        / a.len() as f64
}

#[test]
fn the_latent_walk_loops_seamlessly() {
    let spec = cppn(
        r#"#{ kind: "cppn", size: 48, z: 6, depth: 3, width: 12, seed: 9,
                          animate: #{ frames: 24, radius: 1.5 } }"#,
    );
    let net = spec.network();
    let frames = spec.animation.frames;
    let first = animate::frame(&spec, &net, 0, frames);
    let last = animate::frame(&spec, &net, frames - 1, frames);
    let after_last = animate::frame(&spec, &net, frames, frames);
    assert_eq!(
        first.as_bytes(),
        after_last.as_bytes(),
        "the loop does not close"
    );
    // The step from the last frame back to the first is an ordinary step.
    let wrap = mean_abs_diff(&last, &first);
    let step = mean_abs_diff(&first, &animate::frame(&spec, &net, 1, frames));
    assert!(
        wrap > 0.0 && wrap < 2.0 * step + 1.0,
        "wrap-around step {wrap}, ordinary step {step}"
    );
    // It moves: the half-way frame is far from the first.
    let half = animate::frame(&spec, &net, frames / 2, frames);
    assert!(mean_abs_diff(&first, &half) > 3.0 * step);
}

#[test]
fn a_cppn_is_resolution_free() {
    let src = r#"#{ kind: "cppn", size: 64, depth: 3, width: 12, init_std: 0.7, seed: 1 }"#;
    let small = cppn(src).render().unwrap();
    let mut big_spec = cppn(src);
    (big_spec.width, big_spec.height) = (256, 256);
    let big = big_spec.render().unwrap();
    let shrunk = big.resize_exact(64, 64, image::imageops::FilterType::Triangle);
    let d = mean_abs_diff(&small, &shrunk);
    assert!(
        d < 4.0,
        "the 256px render shrunk to 64px differs by {d} levels on average"
    );
}

#[test]
fn bad_cppn_values_are_located() {
    let err = |src: &str| spec::load_source(Path::new("c.rhai"), src.to_string()).unwrap_err();
    let e = err("#{ kind: \"cppn\",\n  activation: \"tanhh\" }");
    assert_eq!((e.line, e.col), (2, 15), "{e}");
    assert!(
        e.to_string()
            .contains("unknown activation \"tanhh\"; expected one of tanh, sin"),
        "{e}"
    );
    let e = err("#{ kind: \"cppn\",\n  layers: [8, 0] }");
    assert_eq!(e.line, 2, "{e}");
    let e = err("#{ kind: \"cppn\", depth: 2,\n  activation: [\"tanh\"] }");
    assert!(
        e.to_string().contains("1 activations for 2 hidden layers"),
        "{e}"
    );
    let e = err("#{ kind: \"cppn\",\n  output: \"uv\" }");
    assert!(e.to_string().contains("needs a `texture"), "{e}");
    let e = err("#{ kind: \"cppn\", output: \"uv\",\n  texture: \"missing.png\" }");
    assert_eq!(e.line, 2, "{e}");
    assert!(e.to_string().contains("cannot read texture"), "{e}");
    let e = err("#{ kind: \"cppn\",\n  inputs: [\"x\", \"q\"] }");
    assert!(e.to_string().contains("unknown input \"q\""), "{e}");
    let e = err("#{ kind: \"cppn\",\n  fourier: #{ count: 0 } }");
    assert_eq!(e.line, 2, "{e}");
    assert!(e.to_string().contains("count"), "{e}");
    let e = err("#{ kind: \"cppn\",\n  fourier: #{ scales: 2.0 } }");
    assert!(e.to_string().contains("scales"), "{e}");
    let e = err("#{ kind: \"cppn\",\n  size: [100000, 100000] }");
    assert!(e.to_string().contains("too large"), "{e}");
}

#[test]
fn fitting_learns_an_image() {
    // A smooth 32x32 target: a soft disc on a horizontal gradient. A CPPN of tanh layers
    // represents this kind of image well; a fit that works reaches well above 25 dB
    // (RMS error < 5.6% of the range), while the best constant image (the mean colour)
    // scores ~10 dB here.
    let dir = tempfile::tempdir().unwrap();
    let target = soft_disc();
    target.save(dir.path().join("target.png")).unwrap();
    let spec = cppn_at(
        &dir.path().join("fit.rhai"),
        r#"#{ kind: "cppn", z: 0, depth: 3, width: 16, init_std: 1.0, seed: 1,
              fit: #{ image: "target.png", steps: 400, lr: 0.02, size: 32 } }"#,
    );
    let fit = spec.fit.clone().expect("fit");
    let (net, report) = easel::cppn::fit::fit(&spec, &fit, &mut |_, _| {}).unwrap();
    let first = report.losses[0];
    let last = *report.losses.last().unwrap();
    assert!(last < first / 10.0, "loss fell only from {first} to {last}");
    assert!(report.psnr > 25.0, "PSNR {:.1} dB", report.psnr);

    // The fitted network renders at a larger size and still looks like the target.
    let mut big = spec.clone();
    (big.width, big.height) = (128, 128);
    let img = render::render(&big, &net, &spec.z()).resize_exact(
        32,
        32,
        image::imageops::FilterType::Triangle,
    );
    let d = mean_abs_diff(&img, &image::DynamicImage::ImageRgb8(target));
    assert!(
        d < 12.0,
        "4x render differs from the target by {d} levels on average"
    );
}

/// PSNR of a fit of `extra`'s network to fine diagonal stripes (5 px period at 32x32).
fn stripes_fit_psnr(dir: &Path, extra: &str) -> f64 {
    let target = image::RgbImage::from_fn(32, 32, |x, y| {
        let v = 0.5 + 0.5 * (std::f32::consts::TAU * (x + y) as f32 / 5.0).sin();
        image::Rgb([(255.0 * v) as u8; 3])
    });
    target.save(dir.join("stripes.png")).unwrap();
    let spec = cppn_at(
        &dir.join("stripes.rhai"),
        &format!(
            r#"#{{ kind: "cppn", z: 0, depth: 2, width: 16, init_std: 1.0, seed: 1, {extra}
                  fit: #{{ image: "stripes.png", steps: 300, lr: 0.01, size: 32 }} }}"#
        ),
    );
    let fit = spec.fit.clone().expect("fit");
    easel::cppn::fit::fit(&spec, &fit, &mut |_, _| {})
        .unwrap()
        .1
        .psnr
}

#[test]
fn a_held_out_fit_trains_on_a_quarter_and_scores_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    // A smooth gradient: the unseen pixels sit between seen ones, and a fit fills them in
    // nearly as well as it fits the seen ones.
    image::RgbImage::from_fn(16, 16, |x, y| {
        image::Rgb([(x * 16) as u8, (y * 16) as u8, 128])
    })
    .save(dir.path().join("ramp.png"))
    .unwrap();
    let spec = cppn_at(
        &dir.path().join("ramp.rhai"),
        r#"#{ kind: "cppn", z: 0, depth: 2, width: 8, seed: 1,
              fit: #{ image: "ramp.png", steps: 150, lr: 0.02, size: 16, hold_out: true } }"#,
    );
    let fit = spec.fit.clone().expect("fit");
    assert!(fit.hold_out);
    let report = easel::cppn::fit::fit(&spec, &fit, &mut |_, _| {})
        .unwrap()
        .1;
    let held = report.psnr_held_out.expect("held-out PSNR");
    assert!(report.psnr > 20.0 && held > 20.0, "{report:?}");
    assert!((report.psnr - held).abs() < 3.0, "{report:?}");
    // Without hold_out there is no held-out figure.
    let mut all = fit.clone();
    all.hold_out = false;
    assert!(easel::cppn::fit::fit(&spec, &all, &mut |_, _| {})
        .unwrap()
        .1
        .psnr_held_out
        .is_none());
}

#[test]
fn fourier_inputs_fit_detail_plain_coordinates_blur() {
    let dir = tempfile::tempdir().unwrap();
    let plain = stripes_fit_psnr(dir.path(), "");
    let fourier = stripes_fit_psnr(dir.path(), "fourier: #{ count: 16, scale: 2.0 },");
    assert!(
        fourier > plain + 5.0,
        "Fourier features {fourier:.1} dB vs plain {plain:.1} dB"
    );
}

#[test]
fn every_key_that_shapes_the_network_refits_and_the_canvas_size_does_not() {
    let dir = tempfile::tempdir().unwrap();
    image::RgbImage::from_fn(8, 8, |x, y| {
        image::Rgb([(x * 30) as u8, (y * 30) as u8, 90])
    })
    .save(dir.path().join("t.png"))
    .unwrap();
    let load = |extra: &str| -> CppnSpec {
        cppn_at(
            &dir.path().join("k.rhai"),
            &format!(
                r#"#{{ kind: "cppn", layers: [4], seed: 2, {extra}
                      fit: #{{ image: "t.png", steps: 3, size: 8 }} }}"#
            ),
        )
    };
    let base = load("size: 16,");
    base.render_network().unwrap();
    let fitted = |c: &CppnSpec| easel::cppn::fit::is_fitted(c, c.fit.as_ref().unwrap());
    assert!(fitted(&base));
    assert!(
        fitted(&load("size: 512,")),
        "another canvas size is the same network"
    );
    for changed in [
        r#"size: 16, init: "uniform","#,
        "size: 16, biases: false,",
        r#"size: 16, symmetry: "x","#,
        "size: 16, init_std: 0.5,",
    ] {
        assert!(!fitted(&load(changed)), "{changed} must fit again");
    }
}

#[test]
fn a_fit_is_a_preparation_that_reports_progress_and_then_is_done() {
    let dir = tempfile::tempdir().unwrap();
    image::RgbImage::from_fn(8, 8, |x, y| {
        image::Rgb([(x * 30) as u8, (y * 30) as u8, 90])
    })
    .save(dir.path().join("t.png"))
    .unwrap();
    let spec = Spec::Cppn(cppn_at(
        &dir.path().join("p.rhai"),
        r#"#{ kind: "cppn", size: 16, layers: [4], seed: 9,
              fit: #{ image: "t.png", steps: 25, size: 8 } }"#,
    ));
    let prep = spec.preparation().expect("a fit to do");
    assert_eq!(prep.steps, 25);
    assert!(
        prep.task().starts_with("fit the network to"),
        "{}",
        prep.task()
    );
    assert!(
        prep.doing().ends_with("t.png (25 steps)"),
        "{}",
        prep.doing()
    );
    let mut seen = vec![];
    let line = spec.prepare(&mut |p| seen.push((p.done, p.total))).unwrap();
    assert_eq!(seen, [(10, 25), (20, 25), (25, 25)]);
    assert!(line.unwrap().starts_with("fitted "));
    // Done for the process: nothing more to prepare, and rendering does not fit again.
    assert_eq!(spec.preparation(), None);
    assert_eq!(spec.prepare(&mut |_| panic!("no progress")).unwrap(), None);
    // Nothing to prepare for the other kinds.
    let truchet = spec::load_source(Path::new("t.rhai"), r#"#{ kind: "truchet" }"#.into())
        .unwrap()
        .spec;
    assert_eq!(truchet.preparation(), None);
}

#[test]
fn siren_init_draws_every_layer_uniformly_up_to_its_own_bound() {
    let spec = cppn(
        r#"#{ kind: "cppn", size: 8, z: 0, depth: 3, width: 64, activation: "sin",
              init: "siren", seed: 2 }"#,
    );
    let net = spec.network();
    let last = net.layers.len() - 1;
    for (k, layer) in net.layers.iter().enumerate() {
        let fan_in = layer.inputs as f64;
        // ω0 = 30 folded into the weights: the first layer's frequencies, hidden layers'
        // √(6/n), and an output layer small enough not to saturate.
        let bound = match k {
            0 => 30.0 / fan_in,
            k if k == last => (6.0 / fan_in).sqrt() / 30.0,
            _ => (6.0 / fan_in).sqrt(),
        };
        let widest = layer.w.iter().map(|w| w.abs() as f64).fold(0.0, f64::max);
        assert!(
            widest <= bound && widest > 0.9 * bound,
            "layer {k}: weights reach {widest}, bound {bound}"
        );
    }
    // Biases: SIREN's first and hidden layers ±ω0/√n, the output ±1/√n.
    let first = &net.layers[0];
    let b_bound = 30.0 / (first.inputs as f64).sqrt();
    assert!(first.b.iter().all(|b| (b.abs() as f64) <= b_bound));
    let out = &net.layers[last];
    let b_bound = 1.0 / (out.inputs as f64).sqrt();
    assert!(out.b.iter().all(|b| (b.abs() as f64) <= b_bound));
    // A network without hidden layers: its one layer is the output layer.
    let single = cppn(
        r#"#{ kind: "cppn", size: 8, z: 0, depth: 0, activation: "sin", init: "siren", seed: 2 }"#,
    )
    .network();
    let bound = (6.0 / single.layers[0].inputs as f64).sqrt() / 30.0;
    assert!(single.layers[0].w.iter().all(|w| (w.abs() as f64) <= bound));
}

#[test]
fn the_normal_and_uniform_inits_draw_what_they_always_drew() {
    // Pinned values (from before `siren` was added): sketches must keep rendering the
    // same pictures for the same seed.
    for (init, pinned) in [("normal", PINNED_NORMAL), ("uniform", PINNED_UNIFORM)] {
        let net = cppn(&format!(
            r#"#{{ kind: "cppn", size: 8, z: 0, depth: 2, width: 4, init: "{init}", seed: 9 }}"#
        ))
        .network();
        let first: Vec<f32> = net.layers[0].w.iter().take(3).copied().collect();
        let bias = net.layers[1].b[0];
        assert_eq!(
            (first.as_slice(), bias),
            (&pinned.0[..], pinned.1),
            "{init}"
        );
    }
}

const PINNED_NORMAL: ([f32; 3], f32) = ([0.082134895, 1.593501, 0.96836203], -0.09609168);
const PINNED_UNIFORM: ([f32; 3], f32) = ([0.4893781, -0.9141243, -1.3686126], -0.6388666);
