//! Conditional GANs that keep every class alive: the class-fidelity check, and the
//! discriminator options (projection, minibatch standard deviation, spectral norm, R1).

mod common;

use candle_core::Device;
use common::{gan_spec, weights};
use easel::gan::classifier::{self, Classifier};
use easel::gan::data::Dataset;
use easel::gan::train::Trainer;
use easel::gan::{Condition, GanSpec};

/// Three classes a glance tells apart at any phase: horizontal stripes, vertical stripes,
/// a checkerboard, each at a random phase and period with pixel noise.
fn patterns(per_class: usize, size: usize, seed: u64) -> Dataset {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(seed);
    let mut pixels = vec![];
    let mut labels = vec![];
    for i in 0..3 * per_class {
        let class = i % 3;
        let period = rng.random_range(3..7usize);
        let (px, py) = (rng.random_range(0..period), rng.random_range(0..period));
        for y in 0..size {
            for x in 0..size {
                let (a, b) = ((x + px) / period % 2, (y + py) / period % 2);
                let on = match class {
                    0 => b == 1,
                    1 => a == 1,
                    _ => a ^ b == 1,
                };
                let noise = rng.random_range(0..40u8);
                pixels.push(if on { 215 + noise } else { noise });
            }
        }
        labels.push(class);
    }
    let names = vec!["horizontal".into(), "vertical".into(), "checks".into()];
    Dataset::from_pixels(pixels, labels, names, 1, size, &Device::Cpu).unwrap()
}

#[test]
fn the_class_check_learns_the_classes_and_judges_samples_by_them() {
    let data = patterns(60, 32, 1);
    let c = Classifier::train(&data, 7, classifier::STEPS, None).unwrap();
    assert!(c.accuracy >= 0.9, "held-out accuracy {}", c.accuracy);

    // New images of each class are recognised as that class, not as another.
    let fresh = patterns(20, 32, 99);
    for label in 0..3 {
        let idx: Vec<usize> = (0..fresh.len())
            .filter(|&i| fresh.labels[i] == label)
            .collect();
        let probs = c.probabilities(&fresh.tensor_of(&idx).unwrap()).unwrap();
        let right = classifier::fidelity(&probs, label).unwrap();
        let wrong = classifier::fidelity(&probs, (label + 1) % 3).unwrap();
        assert!(
            right >= 0.9 && wrong <= 0.1,
            "class {label}: {right} / {wrong}"
        );
        // Plain examples of one style: low ambiguity, no spread over styles.
        let e = classifier::style_entropy(&probs).unwrap();
        assert!(e.ambiguity < 0.5 && e.spread < 0.5, "{e:?}");
    }
}

#[test]
fn the_class_check_is_cached_for_the_same_data_and_retrained_for_other_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("classifier.safetensors");
    let data = patterns(10, 28, 1);
    let a = Classifier::cached(Some(&path), &data, 3, None).unwrap();
    let written = std::fs::metadata(&path).unwrap().modified().unwrap();
    let b = Classifier::cached(Some(&path), &data, 3, None).unwrap();
    assert_eq!(a.accuracy, b.accuracy);
    assert_eq!(
        std::fs::metadata(&path).unwrap().modified().unwrap(),
        written,
        "the same data retrained"
    );
    assert_ne!(
        classifier::data_key(&data),
        classifier::data_key(&patterns(10, 28, 2)),
        "other pictures, same key"
    );
    // A damaged cache is retrained, not an error.
    std::fs::write(&path, b"not a model").unwrap();
    Classifier::cached(Some(&path), &data, 3, None).unwrap();
    assert!(std::fs::read(&path).unwrap().len() > 1000);
}

fn cdcgan(dir: &std::path::Path, options: &str) -> GanSpec {
    std::fs::create_dir_all(dir.join("data")).unwrap();
    gan_spec(
        dir,
        &format!(
            r#"model: "cdcgan", image_size: 28, channels: 1, latent: 8, g_widths: [16, 8],
               d_widths: [8, 16], kernel: 4, batch: 8, lr: 2e-3, ema: 0.9, seed: 5,
               g_norm: "layer", d_norm: "none", dropout: 0.2, {options} data: #{{ folder: "data" }}"#
        ),
    )
    .0
}

#[test]
fn every_conditioning_option_trains_and_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let data = patterns(8, 28, 4);
    let spec = cdcgan(
        dir.path(),
        r#"d_condition: "projection", minibatch_std: true, spectral_norm: true, r1: 10.0,
           g_condition: "norm", mode_seeking: 1.0,"#,
    );
    assert_eq!(spec.d_condition, Condition::Projection);
    let mut a = Trainer::new(&spec, data.class_names.clone(), &Device::Cpu).unwrap();
    // G's norm layers scale and shift by the label: one row per class.
    assert_eq!(a.g.params.vars["g.up0.norm.class_gamma"].dims(), &[3, 8]);
    // The label reaches D through its embedding, not through extra input planes.
    let names: Vec<String> = a.d.params.vars.keys().cloned().collect();
    assert!(names.contains(&"d.embed.w".to_string()), "{names:?}");
    assert_eq!(
        a.d.params.vars["d.down0.w"].dims()[1],
        1,
        "label planes in D's input"
    );
    for _ in 0..5 {
        let m = a.train_step(&data).unwrap();
        assert!(m.d_loss.is_finite() && m.g_loss.is_finite(), "{m:?}");
    }
    let path = dir.path().join("ckpt.safetensors");
    a.save_checkpoint(&path).unwrap();
    let mut b = Trainer::new(&spec, data.class_names.clone(), &Device::Cpu).unwrap();
    b.load_checkpoint(&path).unwrap();
    // Spectral norm's power-iteration vectors travel with the checkpoint.
    assert!(weights(&b).iter().any(|(n, _)| n.ends_with(".sn_u")));
    assert!(weights(&a) == weights(&b), "loaded tensors differ");
    for _ in 0..3 {
        let (ma, mb) = (a.train_step(&data).unwrap(), b.train_step(&data).unwrap());
        assert_eq!((ma.d_loss, ma.g_loss), (mb.d_loss, mb.g_loss));
    }
    assert!(weights(&a) == weights(&b), "steps after loading differ");
}

#[test]
fn r1_penalises_a_steep_discriminator() {
    // The same step with and without R1: the penalty adds to D's loss on step 0 (a
    // multiple of R1_EVERY), and only there.
    let dir = tempfile::tempdir().unwrap();
    let data = patterns(8, 28, 4);
    let plain = cdcgan(dir.path(), "");
    let with_r1 = GanSpec {
        r1: 100.0,
        ..plain.clone()
    };
    let mut a = Trainer::new(&plain, data.class_names.clone(), &Device::Cpu).unwrap();
    let mut b = Trainer::new(&with_r1, data.class_names.clone(), &Device::Cpu).unwrap();
    let (ma, mb) = (a.train_step(&data).unwrap(), b.train_step(&data).unwrap());
    assert!(mb.d_loss > ma.d_loss, "{} vs {}", mb.d_loss, ma.d_loss);
}

#[test]
fn the_mode_seeking_term_is_large_for_a_generator_that_ignores_its_noise() {
    use candle_core::Tensor;
    let dev = Device::Cpu;
    let z = Tensor::randn(0f32, 1.0, (8, 4), &dev).unwrap();
    let one = Tensor::randn(0f32, 1.0, (1, 1, 6, 6), &dev).unwrap();
    let copies = one.repeat((8, 1, 1, 1)).unwrap();
    let varied = Tensor::randn(0f32, 1.0, (8, 1, 6, 6), &dev).unwrap();
    let term = |images: &Tensor| -> f32 {
        easel::gan::train::mode_seeking(images, &z)
            .unwrap()
            .to_scalar()
            .unwrap()
    };
    let (collapsed, alive) = (term(&copies), term(&varied));
    assert!(collapsed > 1e4, "copies: {collapsed}");
    assert!(alive < 10.0, "varied: {alive}");
}

#[test]
fn projection_is_refused_where_there_is_no_label() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    let path = dir.path().join("gan.rhai");
    std::fs::write(
        &path,
        "#{ kind: \"gan\", model: \"dcgan\",\n  d_condition: \"projection\", data: #{ folder: \"data\" } }",
    )
    .unwrap();
    let err = easel::spec::load(&path).unwrap_err().to_string();
    assert!(
        err.contains("d_condition") && err.contains("cdcgan") && err.contains(":2:"),
        "{err}"
    );
    std::fs::write(
        &path,
        "#{ kind: \"gan\", model: \"dcgan\",\n  g_condition: \"norm\", data: #{ folder: \"data\" } }",
    )
    .unwrap();
    let err = easel::spec::load(&path).unwrap_err().to_string();
    assert!(
        err.contains("g_condition") && err.contains("cdcgan") && err.contains(":2:"),
        "{err}"
    );
}
