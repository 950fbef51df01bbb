//! Training on little data: DiffAugment and mirroring in the trainer (deterministic, so
//! resume stays exact), ADA's adaptive probability, and the quality number in the loop
//! (SWD of the EMA and raw generators, the best one kept, `easel sample` and `easel eval`).

use std::path::Path;
use std::process::Command;

use candle_core::Device;
use easel::gan::train::{self, Outcome, Silent, TrainOptions};
use easel::gan::GanSpec;
use easel::run::RunDir;
use easel::spec::{self, Spec};

fn folder(dir: &Path) {
    let d = dir.join("data");
    std::fs::create_dir_all(&d).unwrap();
    for k in 0..12u32 {
        image::RgbImage::from_fn(16, 16, |x, y| {
            let stripe = ((x + k) / 4 + y / 4) % 2 == 0;
            if stripe {
                image::Rgb([200, 60 + 10 * k as u8, 40])
            } else {
                image::Rgb([20, 30, 90])
            }
        })
        .save(d.join(format!("{k}.png")))
        .unwrap();
    }
}

fn spec(dir: &Path, extra: &str) -> (GanSpec, String) {
    let src = format!(
        r#"#{{ kind: "gan", image_size: 32, channels: 3, latent: 8, g_widths: [16, 8, 8],
              d_widths: [8, 16], batch: 8, lr: 2e-3, ema: 0.9, seed: 9,
              data: #{{ folder: "data" }}, {extra} }}"#
    );
    let path = dir.join("gan.rhai");
    std::fs::write(&path, &src).unwrap();
    match spec::load(&path).unwrap_or_else(|e| panic!("{e}")).spec {
        Spec::Gan(g) => (*g, src),
        other => panic!("not a gan: {other:?}"),
    }
}

/// Runs `easel ARGS` in `dir`, which must succeed; its stdout and stderr.
fn easel(dir: &Path, args: &[&str]) -> (String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_easel"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "easel {args:?}: {stderr}");
    (stdout, stderr)
}

fn train_to(run: &RunDir, src: &str, spec: &GanSpec, steps: usize, resume: bool) {
    let opts = TrainOptions {
        steps: Some(steps),
        resume,
        ..Default::default()
    };
    assert_eq!(
        train::train(run, src, spec, &opts, &mut Silent).unwrap(),
        Outcome::Done
    );
}

fn checkpoint(run: &RunDir) -> Vec<(String, Vec<f32>)> {
    let (t, meta) = train::load_safetensors(&run.latest_checkpoint(), Device::Cpu).unwrap();
    let mut v: Vec<(String, Vec<f32>)> = t
        .into_iter()
        .map(|(n, t)| (n, t.flatten_all().unwrap().to_vec1().unwrap()))
        .collect();
    if let Some(ada) = meta.get("ada") {
        // The controller's state, compared as bytes of its JSON.
        v.push(("ada".into(), ada.bytes().map(f32::from).collect()));
    }
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[test]
fn augmented_mirrored_adaptive_training_resumes_bit_exactly() {
    let dir = tempfile::tempdir().unwrap();
    folder(dir.path());
    let (spec, src) = spec(
        dir.path(),
        r#"augment: #{ policy: "color,translation,cutout", p: "auto" }, mirror: true,
           dropout: 0.2, checkpoint_every: 4, eval_every: 0"#,
    );
    let straight = RunDir::at(&dir.path().join("straight")).unwrap();
    train_to(&straight, &src, &spec, 12, false);
    let halves = RunDir::at(&dir.path().join("halves")).unwrap();
    train_to(&halves, &src, &spec, 4, false);
    train_to(&halves, &src, &spec, 12, true);
    let (a, b) = (checkpoint(&straight), checkpoint(&halves));
    assert_eq!(a.len(), b.len());
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        assert!(x == y, "{name} differs after resume");
    }
    // ADA's p is logged every step and moves (D is sure of real images early on).
    let m = straight.read_metrics();
    let p: Vec<f64> = m.iter().map(|m| m.aug_p.expect("aug_p logged")).collect();
    assert_eq!(p[0], 0.0);
    assert!(p.iter().any(|&p| p > 0.0), "{p:?}");
    let mb = halves.read_metrics();
    assert_eq!(
        m.iter().map(|m| m.aug_p).collect::<Vec<_>>(),
        mb.iter().map(|m| m.aug_p).collect::<Vec<_>>()
    );
}

#[test]
fn augmentation_changes_training_and_p_zero_does_not() {
    let dir = tempfile::tempdir().unwrap();
    folder(dir.path());
    let weights = |extra: &str, name: &str| {
        let (spec, src) = spec(dir.path(), &format!("eval_every: 0, {extra}"));
        let run = RunDir::at(&dir.path().join(name)).unwrap();
        train_to(&run, &src, &spec, 3, false);
        checkpoint(&run)
            .into_iter()
            .filter(|(n, _)| n != "ada")
            .collect::<Vec<_>>()
    };
    let plain = weights("", "plain");
    let off = weights(
        r#"augment: #{ policy: "color,translation,cutout", p: 0.0 }"#,
        "off",
    );
    let on = weights(r#"augment: "color,translation,cutout""#, "on");
    assert_eq!(plain, off, "p = 0 is no augmentation");
    assert_ne!(plain, on, "p = 1 changes what D sees");
}

#[test]
fn evaluations_log_swd_of_both_generators_and_keep_the_best() {
    let dir = tempfile::tempdir().unwrap();
    folder(dir.path());
    let (spec, src) = spec(
        dir.path(),
        "eval_every: 3, eval_images: 16, keep_every: 3, checkpoint_every: 3",
    );
    let run = RunDir::at(&dir.path().join("run")).unwrap();
    train_to(&run, &src, &spec, 9, false);
    let m = run.read_metrics();
    let scored: Vec<_> = m.iter().filter(|m| m.swd.is_some()).collect();
    assert_eq!(
        scored.iter().map(|m| m.step).collect::<Vec<_>>(),
        vec![3, 6, 9]
    );
    let best_logged = scored
        .iter()
        .flat_map(|m| [m.swd.unwrap(), m.swd_raw.unwrap()])
        .fold(f64::MAX, f64::min);
    assert!(best_logged > 0.0 && best_logged.is_finite());
    let bytes = std::fs::read(run.best_checkpoint()).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let meta = header.metadata().clone().unwrap();
    let kept: f64 = meta["swd"].parse().unwrap();
    assert_eq!(kept, best_logged);
    assert!(["ema", "raw"].contains(&meta["weights"].as_str()));

    // `easel sample` says which generator it uses; `easel eval` scores it.
    let err = easel(
        dir.path(),
        &[
            "sample",
            "run",
            "-o",
            "b.png",
            "-n",
            "4",
            "--checkpoint",
            "best",
        ],
    )
    .1;
    assert!(
        err.contains("sampling checkpoints/best.safetensors (") && err.contains("SWD"),
        "{err}"
    );
    let args = [
        "sample",
        "run",
        "-o",
        "s3.png",
        "-n",
        "4",
        "--checkpoint",
        "step_3",
        "--raw",
    ];
    let err = easel(dir.path(), &args).1;
    assert!(err.contains("(raw weights, step 3)"), "{err}");
    let text = easel(dir.path(), &["eval", "run", "-n", "16"]).0;
    let swd: f64 = text
        .strip_prefix("SWD ")
        .and_then(|t| t.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{text}"));
    assert!(swd > 0.0, "{text}");
}

#[test]
fn augment_settings_are_checked_where_they_are_written() {
    let dir = tempfile::tempdir().unwrap();
    folder(dir.path());
    let (s, _) = spec(dir.path(), r#"augment: "translation""#);
    let a = s.augment.unwrap();
    assert!(a.policy.translation && !a.policy.color && a.p == 1.0 && !a.adaptive);
    let (s, _) = spec(dir.path(), r#"augment: #{ p: "auto" }"#);
    let a = s.augment.unwrap();
    assert!(a.adaptive && a.ada_images == easel::gan::augment::AdaptiveP::IMAGES_TO_FULL);
    let (s, _) = spec(dir.path(), r#"augment: #{ p: "auto", ada_images: 100000 }"#);
    assert_eq!(s.augment.as_ref().unwrap().ada_images, 100_000.0);
    // A run's spec.json from before the key: the speed it trained with.
    let mut json: serde_json::Value = serde_json::to_value(&s).unwrap();
    json["augment"]
        .as_object_mut()
        .unwrap()
        .remove("ada_images");
    let old: GanSpec = serde_json::from_value(json).unwrap();
    assert_eq!(
        old.augment.unwrap().ada_images,
        easel::gan::augment::AdaptiveP::IMAGES_TO_FULL_BEFORE
    );
    let path = dir.path().join("bad.rhai");
    for (body, expected) in [
        (r#"augment: "colour""#, "colour"),
        (
            r#"augment: #{ p: "often" }"#,
            "\"p\" must be a probability 0–1 or \"auto\"",
        ),
        (r#"augment: #{ p: 2.0 }"#, "\"p\""),
        (
            r#"augment: #{ p: 0.5, ada_images: 1000 }"#,
            "it needs p: \"auto\"",
        ),
        (
            r#"augment: #{ p: "auto", ada_images: 0 }"#,
            "\"ada_images\"",
        ),
        ("augment: 3", "augment"),
    ] {
        std::fs::write(
            &path,
            format!("#{{ kind: \"gan\", data: #{{ folder: \"data\" }},\n  {body} }}"),
        )
        .unwrap();
        let e = spec::load(&path).unwrap_err().to_string();
        assert!(
            e.contains(expected) && e.contains("bad.rhai:2:"),
            "{body}: {e}"
        );
    }
}

#[test]
fn a_conditional_run_reports_every_class_in_its_evaluations() {
    let dir = tempfile::tempdir().unwrap();
    for (class, colour) in [("red", [220u8, 30, 30]), ("blue", [30, 30, 220])] {
        let d = dir.path().join("data").join(class);
        std::fs::create_dir_all(&d).unwrap();
        for k in 0..6u32 {
            image::RgbImage::from_fn(16, 16, |x, y| {
                if (x + y + k) % 5 == 0 {
                    image::Rgb([255, 255, 255])
                } else {
                    image::Rgb(colour)
                }
            })
            .save(d.join(format!("{k}.png")))
            .unwrap();
        }
    }
    let (spec, src) = spec(
        dir.path(),
        r#"model: "cdcgan", g_norm: "layer", d_norm: "layer", eval_every: 2, eval_images: 32"#,
    );
    let run = RunDir::at(&dir.path().join("run")).unwrap();
    train_to(&run, &src, &spec, 2, false);
    let m = run.read_metrics();
    let classes = &m[1].classes;
    assert_eq!(
        classes.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
        vec!["blue", "red"]
    );
    for c in classes {
        assert!(
            c.swd > 0.0 && c.diversity.is_finite() && c.diversity >= 0.0,
            "{c:?}"
        );
        let f = c.fidelity.unwrap_or_else(|| panic!("no fidelity: {c:?}"));
        assert!((0.0..=1.0).contains(&f), "{c:?}");
    }
    // The class check was trained once and kept beside the run for `easel eval`.
    let cached = std::fs::metadata(run.classifier())
        .unwrap()
        .modified()
        .unwrap();
    let text = easel(
        dir.path(),
        &["eval", "run", "-n", "32", "--checkpoint", "latest"],
    )
    .0;
    assert!(
        text.contains("  class blue: SWD ") && text.contains("  class red: SWD "),
        "{text}"
    );
    assert!(
        text.contains(", fidelity ") && text.contains("class check: "),
        "{text}"
    );
    let again = std::fs::metadata(run.classifier())
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(cached, again, "easel eval retrained the cached class check");
}
