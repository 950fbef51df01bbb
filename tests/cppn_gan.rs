//! CPPN-GAN (`model: "cppn"`): the generator is a CPPN, so what it learns at the training
//! size renders at any size through the CPPN renderer and exports as a CPPN sketch.

mod common;

use std::process::Command;

use candle_core::{Device, Tensor};
use common::{easel_in, gan_spec, mse, weights};
use easel::gan::data::Dataset;
use easel::gan::layers::Ctx;
use easel::gan::model::Generator;
use easel::gan::train::Trainer;
use easel::gan::ModelKind;

const TINY: &str = r#"model: "cppn", image_size: 32, channels: 1, latent: 5,
    cppn: #{ layers: [12, 10], activation: ["tanh", "sin"], fourier: #{ count: 4, scale: 1.5 },
             mapping: [7], scale: 1.5 },
    d_widths: [8, 16], batch: 4, lr: 2e-3, ema: 0.9, seed: 3, d_norm: "none","#;

#[test]
fn the_generator_draws_what_the_cppn_renderer_draws_from_its_weights() {
    // Plain, with the code's factors folded into each sample's weights, and with the code
    // at the first layer only.
    for (modulate, z_every_layer) in [(false, true), (true, true), (true, false)] {
        draws_what_the_renderer_draws(modulate, z_every_layer);
    }
}

fn draws_what_the_renderer_draws(modulate: bool, z_every_layer: bool) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    let tiny = TINY.replace(
        "mapping: [7], scale: 1.5 },",
        &format!(
            "mapping: [7], scale: 1.5, modulate: {modulate}, z_every_layer: {z_every_layer} }},"
        ),
    );
    let (spec, _) = gan_spec(
        dir.path(),
        &format!(r#"{tiny} data: #{{ folder: "data" }}"#),
    );
    assert_eq!(spec.cppn.as_ref().unwrap().modulate, modulate);
    assert_eq!(spec.cppn.as_ref().unwrap().z_every_layer, z_every_layer);
    assert_eq!(spec.model, ModelKind::Cppn);
    let g = Generator::new(&spec, 0, &Device::Cpu, 11).unwrap();
    let z = Tensor::randn(0f32, 1.0, (3, 5), &Device::Cpu).unwrap();
    let ctx = Ctx {
        train: false,
        dropout_seed: 0,
        first_row: 0,
    };
    let images = g.forward(&z, &[], &ctx).unwrap();
    assert_eq!(images.dims(), &[3, 1, 32, 32]);
    let body = g.cppn().expect("a CPPN body");
    let codes: Vec<Vec<f32>> = body.codes(&g.params, &z).unwrap().to_vec2().unwrap();
    assert_eq!(codes[0].len(), 7, "z′ has the mapping's last width");
    let render_spec = body.shape().render_spec(&spec, 32, 32);
    let mut spread = 0.0f32;
    for (k, code) in codes.iter().enumerate() {
        let net = body.network(&g.params, code).unwrap();
        let drawn = easel::cppn::render::render(&render_spec, &net, code).to_luma8();
        let trained: Vec<f32> = images
            .get(k)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        for (i, (&t, &d)) in trained.iter().zip(drawn.as_raw()).enumerate() {
            let want = ((t + 1.0) * 0.5 * 255.0).clamp(0.0, 255.0);
            assert!(
                (want - d as f32).abs() <= 1.5,
                "modulate {modulate}, z_every_layer {z_every_layer}, sample {k}, pixel {i}: \
                 generator {want:.1}, renderer {d}"
            );
        }
        let (lo, hi) = trained
            .iter()
            .fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
        spread = spread.max(hi - lo);
    }
    // CPPN initialisation, not DCGAN's tiny weights: the pixels differ from the start.
    assert!(spread > 0.2, "a flat picture: spread {spread}");
}

#[test]
fn a_cppn_gan_trains_and_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    let (spec, _) = gan_spec(
        dir.path(),
        &format!(r#"{TINY} data: #{{ folder: "data" }}"#),
    );
    let data = checkers(8);
    let mut a = Trainer::new(&spec, vec![], &Device::Cpu).unwrap();
    for _ in 0..4 {
        let m = a.train_step(&data).unwrap();
        assert!(m.d_loss.is_finite() && m.g_loss.is_finite(), "{m:?}");
    }
    let path = dir.path().join("ckpt.safetensors");
    a.save_checkpoint(&path).unwrap();
    let mut b = Trainer::new(&spec, vec![], &Device::Cpu).unwrap();
    b.load_checkpoint(&path).unwrap();
    assert!(weights(&a) == weights(&b), "loaded tensors differ");
    for _ in 0..2 {
        let (ma, mb) = (a.train_step(&data).unwrap(), b.train_step(&data).unwrap());
        assert_eq!((ma.d_loss, ma.g_loss), (mb.d_loss, mb.g_loss));
    }
}

/// `n` 32x32 checkerboards of 8-pixel squares, alternately of either phase.
fn checkers(n: usize) -> Dataset {
    let mut pixels = vec![];
    for i in 0..n {
        for y in 0..32usize {
            for x in 0..32usize {
                pixels.push(if (x / 8 + y / 8 + i) % 2 == 0 {
                    230u8
                } else {
                    20
                });
            }
        }
    }
    Dataset::from_pixels(pixels, vec![0; n], vec![], 1, 32, &Device::Cpu).unwrap()
}

#[test]
fn a_vae_gan_learns_to_redraw_each_image_from_its_code_and_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    let tiny = TINY
        .replace(
            "mapping: [7], scale: 1.5 },",
            "mapping: [7], scale: 1.5, modulate: true },",
        )
        .replace("lr: 2e-3", "lr: 5e-3");
    let (spec, _) = gan_spec(
        dir.path(),
        &format!(
            r#"{tiny} vae: #{{ weight: 10.0, beta: 0.1, warmup: 1000 }}, data: #{{ folder: "data" }}"#
        ),
    );
    // Two pictures that are each other's negative: one G output for both (what a
    // collapsed generator gives) redraws neither.
    let data = checkers(2);
    let mut t = Trainer::new(&spec, vec![], &Device::Cpu).unwrap();
    let mut last = 0.0;
    for _ in 0..200 {
        last = t
            .train_step(&data)
            .unwrap()
            .reconstruction
            .expect("reported");
    }
    // Mean squared error per value: 0.67 for the flat grey that fits both equally.
    assert!(last < 0.5, "reconstruction error {last}");
    let ctx = Ctx {
        train: false,
        dropout_seed: 0,
        first_row: 0,
    };
    // Each image's own code (the posterior mean) redraws it, not the other one.
    let real = data.images().unwrap();
    let codes = t
        .encoder
        .as_ref()
        .unwrap()
        .0
        .forward(&real, &ctx)
        .unwrap()
        .mean;
    let redrawn = t.g.forward(&codes, &[], &ctx).unwrap();
    for k in 0..2 {
        let drawn = redrawn.get(k).unwrap();
        let own = mse(&drawn, &real.get(k).unwrap());
        let other = mse(&drawn, &real.get(1 - k).unwrap());
        assert!(
            own < other / 2.0,
            "image {k}: {own} from its own, {other} from the other"
        );
    }

    // The fitted prior: sampling noise is moved to where the encoder put the images
    // (their codes' mean and spread), so noise 0 draws what the codes' mean draws.
    t.fit_prior(&data).unwrap();
    let shift = t.g.params.buffer("prior.shift").unwrap();
    let means: Vec<Vec<f32>> = codes.to_vec2().unwrap();
    for (j, s) in shift.to_vec1::<f32>().unwrap().iter().enumerate() {
        let m = (means[0][j] + means[1][j]) / 2.0;
        assert!((s - m).abs() < 1e-4, "prior mean {s}, codes' mean {m}");
    }
    let zero = Tensor::zeros((1, spec.latent), candle_core::DType::F32, &Device::Cpu).unwrap();
    let sampled = t.g.forward(&zero, &[], &ctx).unwrap();
    let at_mean = t.g.draw(&shift.unsqueeze(0).unwrap(), &[], &ctx).unwrap();
    assert!(mse(&sampled, &at_mean) < 1e-10, "sampling skips the prior");
    assert!(mse(&sampled, &t.g.draw(&zero, &[], &ctx).unwrap()) > 1e-6);

    // The encoder and its optimiser are in the checkpoint: resume is exact.
    let path = dir.path().join("ckpt.safetensors");
    t.save_checkpoint(&path).unwrap();
    let mut b = Trainer::new(&spec, vec![], &Device::Cpu).unwrap();
    b.load_checkpoint(&path).unwrap();
    for _ in 0..2 {
        let (ma, mb) = (t.train_step(&data).unwrap(), b.train_step(&data).unwrap());
        assert_eq!(
            (ma.g_loss, ma.reconstruction),
            (mb.g_loss, mb.reconstruction)
        );
    }
}

#[test]
fn samples_render_at_any_size_and_export_as_a_sketch_that_draws_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let run = common::trained_run(
        dir.path(),
        32,
        &format!("{TINY} steps: 3, sample_every: 3, checkpoint_every: 3, eval_every: 0,"),
    );
    // A CPPN-GAN without `vae` collapses (README): training says so and names the recipe.
    let again = easel_in(
        dir.path(),
        &["train", "sketches/g.rhai", "--runs", "runs", "--resume"],
    );
    let log = String::from_utf8_lossy(&again.stderr);
    assert!(
        log.contains("without `vae`") && log.contains("sketches/gan_cppn.rhai"),
        "{log}"
    );
    let run = run.to_str().unwrap();
    easel_in(
        dir.path(),
        &[
            "sample",
            run,
            "-o",
            "big.png",
            "-n",
            "2",
            "--size",
            "96x64",
            "--export-sketch",
            "one.rhai",
        ],
    );
    let grid = image::open(dir.path().join("big.png")).unwrap().to_rgb8();
    // Two 96x64 samples side by side, 2-pixel gaps.
    assert_eq!(grid.dimensions(), (2 + 2 * 98, 2 + 66));
    // The exported sketch is sample 0: rendered at that size, the same pixels.
    let source = std::fs::read_to_string(dir.path().join("one.rhai")).unwrap();
    assert!(source.contains("kind: \"cppn\"") && source.contains("weights:"));
    easel_in(
        dir.path(),
        &["render", "one.rhai", "-o", "one.png", "--size", "96x64"],
    );
    let one = image::open(dir.path().join("one.png")).unwrap().to_luma8();
    assert_eq!(one.dimensions(), (96, 64));
    for y in 0..64 {
        for x in 0..96 {
            let a = grid.get_pixel(2 + x, 2 + y).0[0] as i32;
            let b = one.get_pixel(x, y).0[0] as i32;
            assert!((a - b).abs() <= 1, "({x}, {y}): sample {a}, sketch {b}");
        }
    }
    // A convolutional generator has one size: asking for another says so.
    let out = Command::new(env!("CARGO_BIN_EXE_easel"))
        .args([
            "sample",
            concat!(env!("CARGO_MANIFEST_DIR"), "/models/truchet32"),
            "-o",
            "x.png",
            "--size",
            "64",
        ])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("CPPN generator"),
        "{err}"
    );
}

#[test]
fn cppn_keys_are_checked_where_they_are_written() {
    let dir = tempfile::tempdir().unwrap();
    let load = |body: &str| {
        let path = dir.path().join("g.rhai");
        std::fs::write(
            &path,
            format!("#{{ kind: \"gan\", {body} data: #{{ folder: \".\" }} }}"),
        )
        .unwrap();
        easel::spec::load(&path)
            .map(|_| ())
            .unwrap_err()
            .to_string()
    };
    let err = load(r#"model: "dcgan", cppn: #{ layers: [8] },"#);
    assert!(err.contains("needs model \"cppn\""), "{err}");
    let err = load(r#"model: "cppn", cppn: #{ layers: [8], activation: "sign" },"#);
    assert!(err.contains("\"sign\" cannot be trained"), "{err}");
    let err = load(r#"model: "cppn", channels: 4,"#);
    assert!(err.contains("1 (grayscale) or 3"), "{err}");
    let err = load(r#"model: "cppn", cppn: #{ mapping: [] },"#);
    assert!(err.contains("size of z′"), "{err}");
    let err = load(r#"model: "cppn", vae: #{ fakes: "all" },"#);
    assert!(
        err.contains("reconstructions") && err.contains("both"),
        "{err}"
    );
    let err = load(r#"model: "cppn", vae: #{ weight: -1.0 },"#);
    assert!(err.contains("weight"), "{err}");
    let err = load(r#"model: "cppn", g_clip_from: 5000,"#);
    assert!(err.contains("needs g_clip"), "{err}");
    let err = load(r#"model: "cppn", cppn: #{ jitter: 0.7 },"#);
    assert!(err.contains("jitter") && err.contains("0.7"), "{err}");
}

#[test]
fn jitter_moves_training_points_within_their_pixels_and_never_samples() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    let tiny = TINY.replace(
        "mapping: [7], scale: 1.5 },",
        "mapping: [7], scale: 1.5, jitter: 0.25 },",
    );
    let (spec, _) = gan_spec(
        dir.path(),
        &format!(r#"{tiny} data: #{{ folder: "data" }}"#),
    );
    assert_eq!(spec.cppn.as_ref().unwrap().jitter, 0.25);
    let g = Generator::new(&spec, 0, &Device::Cpu, 11).unwrap();
    let z = Tensor::randn(0f32, 1.0, (4, 5), &Device::Cpu).unwrap();
    let ctx = |train, dropout_seed, first_row| Ctx {
        train,
        dropout_seed,
        first_row,
    };
    let centres = g.forward(&z, &[], &ctx(false, 7, 0)).unwrap();
    let jittered = g.forward(&z, &[], &ctx(true, 7, 0)).unwrap();
    // Sampling draws pixel centres whatever the seed: what the renderer draws.
    assert_eq!(
        mse(&centres, &g.forward(&z, &[], &ctx(false, 8, 0)).unwrap()),
        0.0
    );
    // Training moves the points a little: the pictures change, but stay close.
    let moved = mse(&centres, &jittered);
    let spread = mse(
        &centres,
        &centres
            .mean_all()
            .unwrap()
            .broadcast_as(centres.shape())
            .unwrap(),
    );
    assert!(
        moved > 0.0 && moved < 0.2 * spread,
        "moved {moved}, spread {spread}"
    );
    // The same step draws the same points; another step others.
    assert_eq!(
        mse(&jittered, &g.forward(&z, &[], &ctx(true, 7, 0)).unwrap()),
        0.0
    );
    assert!(mse(&jittered, &g.forward(&z, &[], &ctx(true, 9, 0)).unwrap()) > 0.0);
    // A rank drawing rows 2..4 gets the points one process draws for them.
    let rows = g
        .forward(&z.narrow(0, 2, 2).unwrap(), &[], &ctx(true, 7, 2))
        .unwrap();
    assert_eq!(mse(&rows, &jittered.narrow(0, 2, 2).unwrap()), 0.0);
}

#[test]
fn g_clip_scales_only_gradients_above_it_and_logs_their_norm() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    let data = checkers(4);
    let run = |clip: &str| {
        let (spec, _) = gan_spec(
            dir.path(),
            &format!(
                r#"{TINY} {clip} vae: #{{ weight: 10.0, warmup: 10 }}, data: #{{ folder: "data" }}"#
            ),
        );
        let mut t = Trainer::new(&spec, vec![], &Device::Cpu).unwrap();
        let norms: Vec<Option<f64>> = (0..3)
            .map(|_| t.train_step(&data).unwrap().g_grad_norm)
            .collect();
        (weights(&t), norms)
    };
    let (plain, none) = run("");
    assert!(none.iter().all(Option::is_none), "no clip, no norm logged");
    // A bound no gradient reaches changes nothing, to the bit; the norms are logged.
    let (loose, norms) = run("g_clip: 1e9,");
    assert!(
        loose == plain,
        "a clip that never bites changed the weights"
    );
    let norms: Vec<f64> = norms.into_iter().map(Option::unwrap).collect();
    assert!(norms.iter().all(|&n| n > 0.0 && n.is_finite()), "{norms:?}");
    // A bound below every step's norm scales each step's gradient by a different factor:
    // Adam's moments then differ, and so do the weights.
    let smallest = norms.iter().cloned().fold(f64::INFINITY, f64::min);
    let (tight, tight_norms) = run(&format!("g_clip: {},", smallest / 10.0));
    assert!(tight != plain, "clipping changed nothing");
    assert_eq!(
        tight_norms[0],
        Some(norms[0]),
        "the norm logged is before clipping"
    );
    // `g_clip_from`: the steps before it train as if there were no clip.
    let bound = smallest / 10.0;
    let (late, late_norms) = run(&format!("g_clip: {bound}, g_clip_from: 3,"));
    assert!(late == plain, "a clip from step 3 changed steps 0-2");
    assert!(late_norms.iter().all(Option::is_none), "{late_norms:?}");
    let (from2, from2_norms) = run(&format!("g_clip: {bound}, g_clip_from: 2,"));
    assert!(from2 != plain, "a clip from step 2 did not clip step 2");
    assert_eq!(from2_norms[..2], [None, None]);
    assert!(from2_norms[2].is_some(), "{from2_norms:?}");
}
