//! GAN training on tiny models: shapes, learning, checkpoints, exact resume, NaN guard,
//! folder datasets, conditioning, live control.

mod common;

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use common::{gan_spec, mse, weights};
use easel::gan::data::{self, Dataset};
use easel::gan::layers::Ctx;
use easel::gan::model::{Discriminator, Generator};
use easel::gan::train::{self, Outcome, Silent, TrainOptions, Trainer};
use easel::gan::GanSpec;
use easel::run::{Control, RunDir, State, Wanted};

/// A folder of flat images: class name → gray level.
fn flat_folder(dir: &Path, classes: &[(&str, u8)], per_class: usize) -> PathBuf {
    let root = dir.join("data");
    for (name, level) in classes {
        std::fs::create_dir_all(root.join(name)).unwrap();
        for k in 0..per_class {
            let img = image::GrayImage::from_pixel(12, 12, image::Luma([*level]));
            img.save(root.join(name).join(format!("{k}.png"))).unwrap();
        }
    }
    root
}

const TINY: &str = r#"image_size: 28, channels: 1, latent: 8, g_widths: [16, 8], d_widths: [8, 16],
    kernel: 4, batch: 8, lr: 2e-3, ema: 0.9, seed: 5"#;

#[test]
fn every_model_and_size_has_the_right_shapes() {
    let dir = tempfile::tempdir().unwrap();
    flat_folder(dir.path(), &[("a", 0), ("b", 255)], 1);
    for model in ["dcgan", "cdcgan", "can"] {
        for (size, widths) in [
            (28, "[8, 8]"),
            (32, "[8, 8, 8]"),
            (64, "[8, 8, 8, 8]"),
            (128, "[4, 4, 4, 4, 4]"),
        ] {
            for upsample in ["transposed", "nearest"] {
                let (spec, _) = gan_spec(
                    dir.path(),
                    &format!(
                        r#"model: "{model}", image_size: {size}, channels: 3, latent: 6, g_widths: {widths},
                           d_widths: [4, 8], kernel: 4, upsample: "{upsample}", g_norm: "layer", data: #{{ folder: "data" }}"#
                    ),
                );
                let classes = if model == "dcgan" { 0 } else { 2 };
                let g = Generator::new(&spec, classes, &Device::Cpu, 1).unwrap();
                let d = Discriminator::new(&spec, classes, &Device::Cpu, 2).unwrap();
                let z = Tensor::randn(0f32, 1.0, (3, 6), &Device::Cpu).unwrap();
                let ctx = Ctx {
                    train: true,
                    dropout_seed: 0,
                    first_row: 0,
                };
                let img = g.forward(&z, &[0, 1, 0], &ctx).unwrap();
                assert_eq!(img.dims(), &[3, 3, size, size], "{model} {size} {upsample}");
                let j = d.forward(&img, &[0, 1, 0], &ctx).unwrap();
                assert_eq!(j.logits.dims(), &[3]);
                assert_eq!(
                    j.style.map(|s| s.dims().to_vec()),
                    (model == "can").then(|| vec![3, 2])
                );
            }
        }
    }
}

#[test]
fn a_folder_dataset_skips_corrupt_files_and_labels_by_subfolder() {
    let dir = tempfile::tempdir().unwrap();
    let root = flat_folder(dir.path(), &[("dark", 10), ("light", 240)], 3);
    std::fs::write(root.join("light/broken.png"), b"definitely not a png").unwrap();
    std::fs::create_dir_all(root.join("light/nested")).unwrap();
    image::GrayImage::from_pixel(20, 10, image::Luma([200]))
        .save(root.join("light/nested/wide.jpg"))
        .unwrap();
    let (spec, _) = gan_spec(
        dir.path(),
        &format!(r#"{TINY}, data: #{{ folder: "data" }}"#),
    );
    let data = data::load(&spec, &Device::Cpu, None).unwrap();
    assert_eq!(data.class_names, vec!["dark", "light"]);
    assert_eq!(data.len(), 7);
    assert_eq!(data.report.skipped.len(), 1);
    assert_eq!(data.report.skipped[0].file, "light/broken.png");
    assert_eq!(
        data.labels.iter().filter(|&&l| l == 1).count(),
        4,
        "nested files belong to their top folder"
    );
    let images = data.images().unwrap();
    assert_eq!(images.dims(), &[7, 1, 28, 28]);
    // Pixel values scaled to [-1, 1]: a dark image is near -1.
    let first: f32 = images
        .get(0)
        .unwrap()
        .mean_all()
        .unwrap()
        .to_scalar()
        .unwrap();
    assert!((first - (10.0 / 127.5 - 1.0)).abs() < 0.01, "{first}");
}

#[test]
fn a_sketch_dataset_takes_its_classes_as_labels() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("tiles.rhai"),
        r#"#{ kind: "truchet", tile: 7, classes: #{ tri: #{ family: "triangles" }, maze: #{ family: "diagonals" } } }"#,
    )
    .unwrap();
    let (spec, _) = gan_spec(
        dir.path(),
        &format!(r#"{TINY}, data: #{{ from: "tiles.rhai", count: 10 }}"#),
    );
    let data = data::load(&spec, &Device::Cpu, Some(easel::spec::data_sketch)).unwrap();
    assert_eq!(data.class_names, vec!["maze", "tri"]);
    assert_eq!(data.labels, vec![0, 1, 0, 1, 0, 1, 0, 1, 0, 1]);
    assert_eq!(data.images().unwrap().dims(), &[10, 1, 28, 28]);
}

/// The tiny model with batch norm in G, on a folder of one white picture.
fn batch_norm_spec(dir: &Path) -> GanSpec {
    flat_folder(dir, &[("x", 255)], 1);
    let body = format!(r#"{TINY}, g_norm: "batch", data: #{{ folder: "data" }}"#);
    gan_spec(dir, &body).0
}

fn white_dataset(n: usize) -> Dataset {
    Dataset::from_pixels(
        vec![255; n * 28 * 28],
        vec![0; n],
        vec![],
        1,
        28,
        &Device::Cpu,
    )
    .unwrap()
}

fn sample_mean(t: &mut Trainer) -> f32 {
    let z = Tensor::randn(0f32, 1.0, (16, t.spec.latent), &Device::Cpu).unwrap();
    let img = t
        .ema
        .forward(
            &z,
            &[0; 16],
            &Ctx {
                train: false,
                dropout_seed: 0,
                first_row: 0,
            },
        )
        .unwrap();
    img.mean_all().unwrap().to_scalar().unwrap()
}

#[test]
fn losses_stay_finite_and_the_generator_learns_a_trivial_dataset() {
    let dir = tempfile::tempdir().unwrap();
    flat_folder(dir.path(), &[("x", 255)], 1);
    let (spec, _) = gan_spec(
        dir.path(),
        &format!(r#"{TINY}, data: #{{ folder: "data" }}"#),
    );
    let data = white_dataset(32);
    let mut t = Trainer::new(&spec, vec![], &Device::Cpu).unwrap();
    let before = sample_mean(&mut t);
    let mut metrics = Vec::new();
    for _ in 0..60 {
        metrics.push(t.train_step(&data).unwrap());
    }
    assert!(metrics
        .iter()
        .all(|m| m.d_loss.is_finite() && m.g_loss.is_finite()));
    let after = sample_mean(&mut t);
    assert!(
        after > before + 0.5 && after > 0.5,
        "samples' mean went from {before} to {after}; the data is all 1"
    );
    // D told real from fake at some point.
    assert!(metrics.iter().any(|m| m.d_real > m.d_fake + 0.1));
}

#[test]
fn training_state_holds_no_autograd_graph_between_steps() {
    // A moment or EMA tensor that still tracks its ops keeps the whole step's graph
    // alive, and chains it to the next step: memory grew ~340 MB a step on gan_truchet.
    let dir = tempfile::tempdir().unwrap();
    let spec = batch_norm_spec(dir.path());
    let data = white_dataset(16);
    let mut t = Trainer::new(&spec, vec![], &Device::Cpu).unwrap();
    for _ in 0..2 {
        t.train_step(&data).unwrap();
    }
    let state = t.opt_g.state("g.").into_iter().chain(t.opt_d.state("d."));
    for (name, tensor) in state {
        assert!(!tensor.track_op(), "{name} still tracks its autograd graph");
    }
}

#[test]
fn the_moving_average_follows_the_generator_from_the_start() {
    // With decay 0.999 and no warm-up, the average would still be ~98% the random initial
    // weights after 20 steps, and early samples grey noise.
    let dir = tempfile::tempdir().unwrap();
    flat_folder(dir.path(), &[("x", 255)], 1);
    let (spec, _) = gan_spec(
        dir.path(),
        &format!(r#"{TINY}, data: #{{ folder: "data" }}"#),
    );
    let mut spec = spec;
    spec.ema = 0.999;
    let data = white_dataset(16);
    let mut t = Trainer::new(&spec, vec![], &Device::Cpu).unwrap();
    let flat = |ts: Vec<(String, Tensor)>| -> Vec<f32> {
        ts.into_iter()
            .filter(|(n, _)| n.ends_with(".w"))
            .flat_map(|(_, v)| v.flatten_all().unwrap().to_vec1::<f32>().unwrap())
            .collect()
    };
    let init = flat(t.g.params.named_tensors(""));
    for _ in 0..20 {
        t.train_step(&data).unwrap();
    }
    let (g, ema) = (
        flat(t.g.params.named_tensors("")),
        flat(t.ema.params.named_tensors("")),
    );
    let dist = |a: &[f32], b: &[f32]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).powi(2))
            .sum::<f32>()
            .sqrt()
    };
    let (moved, lag) = (dist(&init, &g), dist(&ema, &g));
    assert!(
        lag < 0.5 * moved,
        "the average lags {lag} behind a generator that moved {moved}"
    );
}

/// Each sample's output in evaluation mode (running statistics) against the same noise in
/// training mode (each batch of `batch` normalised by its own statistics): mean squared
/// difference.
fn eval_vs_train_mode(g: &Generator, z: &Tensor, batch: usize) -> f32 {
    let mode = |train| Ctx {
        train,
        dropout_seed: 0,
        first_row: 0,
    };
    let n = z.dim(0).unwrap();
    let labels = vec![0; batch];
    let eval = g.forward(z, &vec![0; n], &mode(false)).unwrap();
    // Training mode also moves the running statistics: keep them.
    let kept = g.params.buffers.lock().unwrap().clone();
    let mut train = vec![];
    for start in (0..n).step_by(batch) {
        let part = g.forward(&z.narrow(0, start, batch).unwrap(), &labels, &mode(true));
        train.push(part.unwrap().detach());
    }
    *g.params.buffers.lock().unwrap() = kept;
    mse(&eval, &Tensor::cat(&train, 0).unwrap())
}

#[test]
fn standing_statistics_make_evaluation_agree_with_training_mode() {
    let dir = tempfile::tempdir().unwrap();
    let spec = batch_norm_spec(dir.path());
    // A fresh generator's running statistics (mean 0, variance 1) are nobody's.
    let g = Generator::new(&spec, 0, &Device::Cpu, 3).unwrap();
    // Large batches, so that what is left is mostly their statistics' sampling noise.
    let z = train::seeded_noise(11, 1024, spec.latent, &Device::Cpu).unwrap();
    let before = eval_vs_train_mode(&g, &z, 512);
    train::standing_statistics(&g, 512, 0, 7).unwrap();
    let after = eval_vs_train_mode(&g, &z, 512);
    assert!(
        after < 0.008 * before,
        "evaluation vs training mode: {before} before, {after} after"
    );
    // Deterministic in its seed, whatever the statistics were before.
    let first = g.params.buffers.lock().unwrap().clone();
    train::standing_statistics(&g, 512, 0, 7).unwrap();
    for (name, t) in g.params.buffers.lock().unwrap().iter() {
        let (a, b) = (
            t.to_vec1::<f32>().unwrap(),
            first[name].to_vec1::<f32>().unwrap(),
        );
        assert_eq!(a, b, "{name}");
    }
}

#[test]
fn checkpoints_hold_the_averages_own_statistics() {
    // The moving average's weights are not the generator's, so neither are the batch-norm
    // statistics it should sample with: copying the generator's left real-picture samples
    // off-colour and speckled (held-out SWD 141 → 73 in one 1000-step run).
    let dir = tempfile::tempdir().unwrap();
    let spec = batch_norm_spec(dir.path());
    let data = white_dataset(16);
    let mut t = Trainer::new(&spec, vec![], &Device::Cpu).unwrap();
    for _ in 0..6 {
        t.train_step(&data).unwrap();
    }
    let path = dir.path().join("ckpt.safetensors");
    t.save_checkpoint(&path).unwrap();
    let saved = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
    let stats: Vec<&String> = saved
        .keys()
        .filter(|k| k.starts_with("ema.") && k.contains(".running_"))
        .collect();
    assert!(!stats.is_empty());
    for name in stats {
        let ema = saved[name].to_vec1::<f32>().unwrap();
        let raw = saved[&name.replacen("ema.", "g.", 1)]
            .to_vec1::<f32>()
            .unwrap();
        assert_ne!(ema, raw, "{name}: the generator's statistics, copied");
    }
    // And they are the ones the average's own weights give.
    let z = train::seeded_noise(11, 128, spec.latent, &Device::Cpu).unwrap();
    let mismatch = eval_vs_train_mode(&t.ema, &z, 64);
    assert!(mismatch < 1e-3, "{mismatch}");
}

#[test]
fn a_checkpoint_round_trips_everything() {
    let dir = tempfile::tempdir().unwrap();
    flat_folder(dir.path(), &[("x", 255)], 1);
    let (spec, _) = gan_spec(
        dir.path(),
        &format!(r#"{TINY}, g_norm: "batch", dropout: 0.2, data: #{{ folder: "data" }}"#),
    );
    let data = white_dataset(16);
    let mut a = Trainer::new(&spec, vec![], &Device::Cpu).unwrap();
    for _ in 0..3 {
        a.train_step(&data).unwrap();
    }
    let path = dir.path().join("ckpt.safetensors");
    a.save_checkpoint(&path).unwrap();
    // The file is plain safetensors with the step in its metadata.
    let bytes = std::fs::read(&path).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    assert_eq!(header.metadata().as_ref().unwrap()["step"], "3");

    let mut b = Trainer::new(&spec, vec![], &Device::Cpu).unwrap();
    b.load_checkpoint(&path).unwrap();
    assert_eq!(b.step, 3);
    assert!(weights(&a) == weights(&b), "loaded tensors differ");
    let (ma, mb) = (a.train_step(&data).unwrap(), b.train_step(&data).unwrap());
    assert_eq!((ma.d_loss, ma.g_loss), (mb.d_loss, mb.g_loss));
    assert!(weights(&a) == weights(&b), "a step after loading differs");
}

/// Calls a closure after every step (to act on a run mid-training).
struct OnStep<F: FnMut(u64)>(F);

impl<F: FnMut(u64)> train::Progress for OnStep<F> {
    fn step(&mut self, m: &easel::run::Metric) {
        (self.0)(m.step)
    }
}

fn run_training(run: &RunDir, src: &str, spec: &GanSpec, steps: usize, resume: bool) -> Outcome {
    let opts = TrainOptions {
        steps: Some(steps),
        resume,
        ..Default::default()
    };
    train::train(run, src, spec, &opts, &mut Silent).unwrap()
}

#[test]
fn resuming_gives_exactly_the_weights_of_an_uninterrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    flat_folder(dir.path(), &[("dark", 30), ("light", 220)], 4);
    let (spec, src) = gan_spec(
        dir.path(),
        &format!(
            r#"{TINY}, g_norm: "batch", d_norm: "batch", dropout: 0.3, checkpoint_every: 3, sample_every: 3, data: #{{ folder: "data" }}"#
        ),
    );
    let straight = RunDir::at(&dir.path().join("straight")).unwrap();
    assert_eq!(
        run_training(&straight, &src, &spec, 6, false),
        Outcome::Done
    );

    let halves = RunDir::at(&dir.path().join("halves")).unwrap();
    run_training(&halves, &src, &spec, 3, false);
    // The process "dies" here; a new one resumes from the checkpoint at step 3.
    run_training(&halves, &src, &spec, 6, true);

    let load = |run: &RunDir| {
        let (t, _) = train::load_safetensors(&run.generator(), Device::Cpu).unwrap();
        let mut v: Vec<(String, Vec<f32>)> = t
            .into_iter()
            .map(|(n, t)| (n, t.flatten_all().unwrap().to_vec1().unwrap()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    };
    let (a, b) = (load(&straight), load(&halves));
    assert_eq!(a.len(), b.len());
    for ((na, va), (nb, vb)) in a.iter().zip(&b) {
        assert_eq!(na, nb);
        assert!(va == vb, "{na} differs after resume");
    }
    let (ma, mb) = (straight.read_metrics(), halves.read_metrics());
    assert_eq!(ma.len(), 6);
    assert_eq!(mb.len(), 6);
    for (x, y) in ma.iter().zip(&mb) {
        assert_eq!((x.step, x.d_loss, x.g_loss), (y.step, y.d_loss, y.g_loss));
    }
    assert_eq!(halves.read_status().unwrap().state, State::Done);
    assert!(halves.timelapse().exists());
    assert_eq!(halves.samples().len(), 2);
}

#[test]
fn a_diverging_run_fails_with_the_step_and_keeps_its_last_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    flat_folder(dir.path(), &[("x", 255)], 2);
    let (spec, src) = gan_spec(
        dir.path(),
        &format!(r#"{TINY}, checkpoint_every: 3, data: #{{ folder: "data" }}"#),
    );
    let run = RunDir::at(&dir.path().join("run")).unwrap();
    run_training(&run, &src, &spec, 3, false);
    // Learning rates this large blow the weights up within a step or two. No sketch or
    // control.json may set them (their bound is 1.0), so the test hands the trainer a
    // spec directly.
    let hot = GanSpec {
        lr_g: 1e30,
        lr_d: 1e30,
        ..spec.clone()
    };
    let opts = TrainOptions {
        steps: Some(50),
        resume: true,
        ..Default::default()
    };
    let err = train::train(&run, &src, &hot, &opts, &mut Silent).unwrap_err();
    let status = run.read_status().unwrap();
    assert_eq!(status.state, State::Failed);
    assert!(status.message.contains("loss became"), "{}", status.message);
    let failed_at = status.step + 1;
    assert!(failed_at > 3 && failed_at < 6, "failed at {failed_at}");
    assert!(
        status.message.contains(&format!("at step {failed_at}")),
        "{} / {err}",
        status.message
    );
    // The checkpoint from step 3 is intact and finite.
    let (tensors, meta) = train::load_safetensors(&run.latest_checkpoint(), Device::Cpu).unwrap();
    assert_eq!(meta["step"], "3");
    for (name, t) in tensors {
        let v: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
        assert!(v.iter().all(|x| x.is_finite()), "{name} is not finite");
    }
    // The person lowers the learning rate (the sketch's) and resumes: an old
    // control.json with the hot rates must not be applied again.
    run.write_control(&Control {
        lr_g: Some(1.0),
        lr_d: Some(1.0),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(
        train::train(&run, &src, &spec, &opts, &mut Silent).unwrap(),
        Outcome::Done
    );
    let m = run.read_metrics();
    assert_eq!(m.len(), 50);
    assert!(m[3..]
        .iter()
        .all(|m| m.lr_g == spec.lr_g && m.d_loss.is_finite()));
    assert!(
        !run.control_path().exists(),
        "the old control.json is cleared"
    );
}

#[test]
fn control_json_changes_learning_rates_and_stops_a_run() {
    let dir = tempfile::tempdir().unwrap();
    flat_folder(dir.path(), &[("x", 255)], 2);
    let (spec, src) = gan_spec(
        dir.path(),
        &format!(r#"{TINY}, data: #{{ folder: "data" }}"#),
    );
    let run = RunDir::at(&dir.path().join("run")).unwrap();
    run.write_control(&Control {
        lr_g: Some(5e-4),
        lr_d: Some(7e-4),
        ..Default::default()
    })
    .unwrap();
    run_training(&run, &src, &spec, 2, false);
    let m = run.read_metrics();
    assert_eq!((m[0].lr_g, m[0].lr_d), (5e-4, 7e-4));

    // A stop written while it trains: it stops after the step in flight.
    let mut stop_at_4 = OnStep(|step| {
        if step == 4 {
            run.write_control(&Control {
                state: Some(Wanted::Stop),
                ..Default::default()
            })
            .unwrap();
        }
    });
    let opts = TrainOptions {
        steps: Some(10),
        resume: true,
        ..Default::default()
    };
    assert_eq!(
        train::train(&run, &src, &spec, &opts, &mut stop_at_4).unwrap(),
        Outcome::Stopped
    );
    let status = run.read_status().unwrap();
    assert_eq!(
        (status.state, status.step, status.checkpoint_step),
        (State::Stopped, 4, Some(4))
    );
    // A stopped run leaves its generator for `easel sample`.
    assert!(run.generator().exists());
}

#[test]
fn a_conditional_gan_draws_the_class_it_is_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    flat_folder(dir.path(), &[("black", 0), ("white", 255)], 8);
    let (spec, src) = gan_spec(
        dir.path(),
        &format!(
            r#"{TINY}, model: "cdcgan", g_norm: "layer", d_norm: "layer", data: #{{ folder: "data" }}"#
        ),
    );
    let run = RunDir::at(&dir.path().join("run")).unwrap();
    run_training(&run, &src, &spec, 80, false);

    let bin = env!("CARGO_BIN_EXE_easel");
    let mut means = Vec::new();
    for class in ["black", "white"] {
        let out = dir.path().join(format!("{class}.png"));
        let status = std::process::Command::new(bin)
            .args([
                "sample",
                run.path.to_str().unwrap(),
                "-o",
                out.to_str().unwrap(),
                "-n",
                "16",
                "--class",
                class,
            ])
            .status()
            .unwrap();
        assert!(status.success());
        let img = image::open(&out).unwrap().to_luma8();
        means.push(img.pixels().map(|p| p.0[0] as f64).sum::<f64>() / img.len() as f64);
    }
    // The grid's 2 px gaps are gray (40) in both; the samples decide the difference.
    assert!(
        means[1] > means[0] + 60.0,
        "black samples average {}, white {}",
        means[0],
        means[1]
    );
}
