//! The `easel` binary end to end: render, recipes, datasets, check.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::easel_run as easel;

fn ok(out: Output) -> Output {
    assert!(
        out.status.success(),
        "easel failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn bundled(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("sketches")
        .join(name)
        .display()
        .to_string()
}

fn pixels(path: &Path) -> Vec<u8> {
    image::open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .into_bytes()
}

#[test]
fn render_is_byte_identical_across_runs() {
    let dir = tempfile::tempdir().unwrap();
    let sketch = bundled("truchet_multiscale.rhai");
    ok(easel(&["render", &sketch, "-o", "a.png"], dir.path()));
    ok(easel(&["render", &sketch, "-o", "b.png"], dir.path()));
    let a = std::fs::read(dir.path().join("a.png")).unwrap();
    let b = std::fs::read(dir.path().join("b.png")).unwrap();
    assert_eq!(a, b);
}

#[test]
fn a_recipe_renders_the_same_bytes_again() {
    let dir = tempfile::tempdir().unwrap();
    let sketch = bundled("truchet_rule_gradient.rhai");
    ok(easel(
        &[
            "render", &sketch, "-o", "fav.png", "--seed", "77", "--size", "300x200",
        ],
        dir.path(),
    ));
    // The recipe travels inside the PNG: the sketch file is not needed any more.
    ok(easel(
        &["render", "--from", "fav.png", "-o", "again.png"],
        dir.path(),
    ));
    let (a, b) = (dir.path().join("fav.png"), dir.path().join("again.png"));
    assert_eq!(image::image_dimensions(&b).unwrap(), (300, 200));
    assert_eq!(pixels(&a), pixels(&b));
    assert_eq!(
        std::fs::read(&a).unwrap(),
        std::fs::read(&b).unwrap(),
        "file bytes differ"
    );

    // A new size keeps seed and sketch.
    ok(easel(
        &[
            "render", "--from", "fav.png", "-o", "big.png", "--size", "600x400",
        ],
        dir.path(),
    ));
    assert_eq!(
        image::image_dimensions(dir.path().join("big.png")).unwrap(),
        (600, 400)
    );
    let recipe = easel::recipe::read_recipe(&dir.path().join("big.png")).unwrap();
    assert_eq!((recipe.seed, recipe.width, recipe.height), (77, 600, 400));
    assert_eq!(recipe.name, "truchet_rule_gradient");
    assert!(recipe.source.contains("rule: |i, j, rng|"));
}

#[test]
fn from_a_png_without_recipe_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    image::RgbImage::new(4, 4)
        .save(dir.path().join("plain.png"))
        .unwrap();
    let out = easel(
        &["render", "--from", "plain.png", "-o", "x.png"],
        dir.path(),
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("plain.png carries no easel recipe"), "{err}");
}

#[test]
fn dataset_writes_one_folder_per_class() {
    let dir = tempfile::tempdir().unwrap();
    ok(easel(
        &[
            "dataset",
            &bundled("truchet_families.rhai"),
            "--count",
            "30",
            "-o",
            "data",
            "--size",
            "32",
        ],
        dir.path(),
    ));
    let data = dir.path().join("data");
    for class in ["arcs", "maze", "triangles"] {
        let files: Vec<_> = std::fs::read_dir(data.join(class)).unwrap().collect();
        assert_eq!(files.len(), 10, "{class}");
        for f in files {
            let img = image::open(f.unwrap().path()).unwrap();
            assert_eq!((img.width(), img.height()), (32, 32));
            assert!(img.as_luma8().is_some(), "grayscale");
        }
    }
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(data.join("dataset.json")).unwrap()).unwrap();
    assert_eq!(manifest["count"], 30);
    // Images differ from one another (different seeds).
    let a = pixels(&data.join("arcs/000000.png"));
    let b = pixels(&data.join("arcs/000003.png"));
    assert_ne!(a, b);
}

#[test]
fn dataset_without_classes_is_flat_and_reproducible() {
    let dir = tempfile::tempdir().unwrap();
    let sketch = bundled("truchet_dataset.rhai");
    ok(easel(
        &["dataset", &sketch, "-n", "20", "-o", "one"],
        dir.path(),
    ));
    ok(easel(
        &["dataset", &sketch, "-n", "20", "-o", "two"],
        dir.path(),
    ));
    for k in [0, 7, 19] {
        let name = format!("{k:06}.png");
        assert_eq!(
            pixels(&dir.path().join("one").join(&name)),
            pixels(&dir.path().join("two").join(&name))
        );
    }
}

#[test]
fn check_passes_bundled_sketches_and_fails_on_a_broken_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut all: Vec<String> =
        std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("sketches"))
            .unwrap()
            .map(|e| e.unwrap().path().display().to_string())
            .filter(|p| p.ends_with(".rhai"))
            .collect();
    all.sort();
    let mut args = vec!["check"];
    args.extend(all.iter().map(String::as_str));
    let out = ok(easel(&args, dir.path()));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.starts_with("ok"))
            .count(),
        all.len()
    );

    std::fs::write(
        dir.path().join("broken.rhai"),
        "#{\n  kind: \"truchet\",\n  tile: -3,\n}\n",
    )
    .unwrap();
    let out = easel(&["check", "broken.rhai"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("broken.rhai:3:9: \"tile\" must be from 2 to 4096, got -3"),
        "{err}"
    );

    // A broken file among good ones: every file is checked and reported, then exit 1.
    std::fs::write(
        dir.path().join("good.rhai"),
        std::fs::read_to_string(bundled("truchet_arcs.rhai")).unwrap(),
    )
    .unwrap();
    let out = easel(&["check", "broken.rhai", "good.rhai"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("err broken.rhai") && stdout.contains("ok  good.rhai"),
        "{stdout}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 of 2 sketches failed"));
    // A folder: its .rhai files.
    let out = easel(&["check", "."], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().count(), 2, "{stdout}");
}

#[test]
fn help_explains_each_command() {
    let dir = tempfile::tempdir().unwrap();
    for cmd in ["render", "dataset", "check", "eval", "upscale", "sample"] {
        let out = ok(easel(&[cmd, "--help"], dir.path()));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("Usage: easel"), "{cmd}: {text}");
        assert!(
            !text.lines().any(|l| l.trim() == "\\"),
            "{cmd}: a stray \\ line"
        );
    }
}

#[test]
fn animate_writes_a_looping_gif_and_png_frames() {
    let dir = tempfile::tempdir().unwrap();
    let sketch = bundled("cppn_silk.rhai");
    ok(easel(
        &[
            "animate", &sketch, "-o", "loop.gif", "--frames", "6", "--size", "40x30", "--fps", "10",
        ],
        dir.path(),
    ));
    let file = std::fs::File::open(dir.path().join("loop.gif")).unwrap();
    let mut options = gif::DecodeOptions::new();
    options.set_color_output(gif::ColorOutput::RGBA);
    let mut decoder = options.read_info(file).unwrap();
    assert_eq!((decoder.width(), decoder.height()), (40, 30));
    let mut frames = 0;
    while let Some(frame) = decoder.read_next_frame().unwrap() {
        assert_eq!(frame.delay, 10, "10 fps = 10 centiseconds a frame");
        frames += 1;
    }
    assert_eq!(frames, 6);

    ok(easel(
        &[
            "animate", &sketch, "-o", "frames/", "--frames", "4", "--size", "24",
        ],
        dir.path(),
    ));
    let mut names: Vec<String> = std::fs::read_dir(dir.path().join("frames"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec![
            "frame_0000.png",
            "frame_0001.png",
            "frame_0002.png",
            "frame_0003.png"
        ]
    );

    let out = easel(
        &["animate", &bundled("truchet_arcs.rhai"), "-o", "x.gif"],
        dir.path(),
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs a CPPN sketch"));
}

#[test]
fn sweep_makes_a_labelled_contact_sheet() {
    let dir = tempfile::tempdir().unwrap();
    let sketch = bundled("cppn_silk.rhai");
    ok(easel(
        &[
            "sweep",
            &sketch,
            "--vary",
            "depth=2..4",
            "--vary",
            "width=8,16",
            "--cell",
            "48",
            "-o",
            "sheet.png",
        ],
        dir.path(),
    ));
    let (w, h) = image::image_dimensions(dir.path().join("sheet.png")).unwrap();
    // 3 across, 2 down: 8 px padding, 48 px images, 14 px labels.
    assert_eq!((w, h), (3 * (48 + 8) + 8, 2 * (48 + 14 + 8) + 8));

    // The sheet keeps the sketch's text and keys: made again after the sketch changed,
    // it is the same picture.
    let copy = dir.path().join("silk.rhai");
    std::fs::copy(&sketch, &copy).unwrap();
    ok(easel(
        &["sweep", "silk.rhai", "--vary", "depth=2..3", "--cell", "32"],
        dir.path(),
    ));
    std::fs::write(&copy, "#{ broken").unwrap();
    ok(easel(&["sweep", "--from", "silk-sweep.png"], dir.path()));
    assert_eq!(
        pixels(&dir.path().join("silk-sweep-again.png")),
        pixels(&dir.path().join("silk-sweep.png"))
    );
    let out = easel(&["render", "--from", "silk-sweep.png"], dir.path());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("`easel sweep --from silk-sweep.png`"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = easel(
        &["sweep", &sketch, "--vary", "depth=two", "-o", "s.png"],
        dir.path(),
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("\"two\" is not a number"));
}

#[test]
fn huge_sizes_are_refused_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let out = easel(
        &[
            "render",
            &bundled("cppn_silk.rhai"),
            "--size",
            "100000x100000",
            "-o",
            "x.png",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2), "clap rejects the value");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("too large; each side must be at most 16384"),
        "{err}"
    );
}

#[test]
fn training_survives_kill_9_and_resumes_from_its_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data/x");
    std::fs::create_dir_all(&data).unwrap();
    for k in 0..4 {
        image::GrayImage::from_pixel(8, 8, image::Luma([200 + k]))
            .save(data.join(format!("{k}.png")))
            .unwrap();
    }
    std::fs::write(
        dir.path().join("tiny.rhai"),
        r#"#{ kind: "gan", image_size: 28, latent: 8, g_widths: [8, 8], d_widths: [8], batch: 4,
              steps: 100000, checkpoint_every: 2, sample_every: 1000, data: #{ folder: "data" } }"#,
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_easel"))
        .args(["train", "tiny.rhai", "--run-dir", "run"])
        .current_dir(dir.path())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let run = easel::run::RunDir {
        path: dir.path().join("run"),
    };
    let started = std::time::Instant::now();
    loop {
        if let Ok(s) = run.read_status() {
            if s.checkpoint_step.is_some_and(|c| c >= 4) {
                break;
            }
        }
        assert!(
            started.elapsed().as_secs() < 120,
            "no checkpoint within 2 minutes"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.kill().unwrap(); // SIGKILL: no chance to clean up
    child.wait().unwrap();
    // status.json is rewritten at most twice a second, checkpoints every 2 steps: the
    // checkpoint itself says which step it holds.
    let bytes = std::fs::read(run.latest_checkpoint()).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let checkpointed: u64 = header.metadata().as_ref().unwrap()["step"].parse().unwrap();
    assert_eq!(
        run.read_status().unwrap().state,
        easel::run::State::Running,
        "the dead run still says running"
    );

    let target = (checkpointed + 4).to_string();
    ok(easel(
        &[
            "train",
            "tiny.rhai",
            "--run-dir",
            "run",
            "--resume",
            "--steps",
            &target,
        ],
        dir.path(),
    ));
    let status = run.read_status().unwrap();
    assert_eq!(status.state, easel::run::State::Done);
    assert_eq!(status.step.to_string(), target);
    // Metrics continue without gaps or duplicates from the checkpoint on.
    let steps: Vec<u64> = run.read_metrics().iter().map(|m| m.step).collect();
    assert_eq!(steps, (1..=checkpointed + 4).collect::<Vec<_>>());
    assert!(run.generator().exists());

    // TensorBoard sees the same steps: the killed run's steps past its checkpoint are
    // gone from the event file (CRCs checked on reading), and its restart is marked.
    use easel::run::tensorboard::{event_files, read_records, What};
    let files = event_files(&run.path);
    assert_eq!(files.len(), 1, "{files:?}");
    let records = read_records(&files[0]).unwrap();
    assert!(!records.torn_tail);
    let scalar_steps: Vec<u64> = records
        .events
        .iter()
        .filter(|e| match &e.what {
            Some(What::Summary(s)) => s.value.iter().any(|v| v.tag == "loss/D"),
            _ => false,
        })
        .map(|e| e.step as u64)
        .collect();
    assert_eq!(scalar_steps, steps, "one loss point per step, in order");
    let restart = records
        .events
        .iter()
        .find(|e| matches!(e.what, Some(What::SessionLog(_))))
        .expect("a SessionLog START on resume");
    assert_eq!(restart.step as u64, checkpointed + 1);

    // `easel runs` lists it as finished, at its target, for people and for scripts.
    let out = ok(easel(&["runs", "."], dir.path()));
    let table = String::from_utf8_lossy(&out.stdout);
    let line = table.lines().find(|l| l.starts_with("run ")).expect(&table);
    assert!(
        line.contains("finished") && line.contains(&format!("{target}/{target}")),
        "{table}"
    );
    let out = ok(easel(&["runs", ".", "--json"], dir.path()));
    let runs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(runs[0]["state"], "finished");
    assert_eq!(runs[0]["step"].to_string(), target);
}

#[test]
fn sample_writes_grids_interpolations_and_thresholded_images() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    image::GrayImage::from_pixel(8, 8, image::Luma([90]))
        .save(data.join("a.png"))
        .unwrap();
    std::fs::write(
        dir.path().join("tiny.rhai"),
        r#"#{ kind: "gan", image_size: 28, latent: 8, g_widths: [8, 8], d_widths: [8], batch: 2,
              steps: 2, data: #{ folder: "data" } }"#,
    )
    .unwrap();
    ok(easel(
        &["train", "tiny.rhai", "--run-dir", "run"],
        dir.path(),
    ));
    ok(easel(
        &[
            "sample",
            "run",
            "-o",
            "grid.png",
            "-n",
            "9",
            "--truncation",
            "0.7",
            "--seed",
            "3",
        ],
        dir.path(),
    ));
    // 3x3 tiles of 28 px with 2 px gaps.
    assert_eq!(
        image::image_dimensions(dir.path().join("grid.png")).unwrap(),
        (3 * 30 + 2, 3 * 30 + 2)
    );
    ok(easel(
        &[
            "sample",
            "run",
            "-o",
            "bw.png",
            "-n",
            "4",
            "--threshold",
            "0.5",
        ],
        dir.path(),
    ));
    let bw = image::open(dir.path().join("bw.png")).unwrap().to_luma8();
    assert!(
        bw.pixels().all(|p| [0, 40, 255].contains(&p.0[0])),
        "thresholded samples are black or white"
    );
    ok(easel(
        &[
            "sample",
            "run",
            "-o",
            "walk.gif",
            "-n",
            "4",
            "--interpolate",
            "--frames",
            "5",
        ],
        dir.path(),
    ));
    let decoder = gif::DecodeOptions::new()
        .read_info(std::fs::File::open(dir.path().join("walk.gif")).unwrap())
        .unwrap();
    assert_eq!(decoder.into_iter().count(), 5);
    // A checkpoint file works as a source too.
    ok(easel(
        &[
            "sample",
            "run/checkpoints/latest.safetensors",
            "-o",
            "c.png",
            "-n",
            "1",
        ],
        dir.path(),
    ));
    let out = easel(
        &["sample", "run", "-o", "x.png", "--class", "cats"],
        dir.path(),
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("this model has no classes"));
    // --raw: the trained weights rather than their average; they differ after training.
    ok(easel(
        &["sample", "run", "-o", "raw.png", "-n", "4", "--raw"],
        dir.path(),
    ));
    ok(easel(
        &["sample", "run", "-o", "avg.png", "-n", "4"],
        dir.path(),
    ));
    let pixels = |f: &str| {
        image::open(dir.path().join(f))
            .unwrap()
            .to_luma8()
            .into_raw()
    };
    assert_ne!(pixels("raw.png"), pixels("avg.png"));
    let out = easel(
        &[
            "sample",
            "run/generator.safetensors",
            "-o",
            "x.png",
            "--raw",
        ],
        dir.path(),
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("--raw needs a training checkpoint"));
}

#[test]
fn the_studio_and_watch_explain_what_they_need() {
    let dir = tempfile::tempdir().unwrap();
    // No terminal here (the test's stdin/stdout are pipes): a clear message, no panic.
    std::fs::create_dir(dir.path().join("sketches")).unwrap();
    let out = easel(&["studio", "sketches"], dir.path());
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs a terminal"));
    let out = easel(&["studio", "nowhere"], dir.path());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nowhere is not a folder of sketches"));
    let out = easel(&["watch", "runs/none"], dir.path());
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("runs/none does not exist"));
    std::fs::create_dir_all(dir.path().join("runs/empty")).unwrap();
    let out = easel(&["watch", "runs/empty"], dir.path());
    assert!(String::from_utf8_lossy(&out.stderr).contains("has no status.json"));
}

#[test]
fn render_set_turns_knobs_and_the_recipe_keeps_them() {
    let dir = tempfile::tempdir().unwrap();
    let sketch = bundled("truchet_knobs.rhai");
    ok(easel(&["render", &sketch, "-o", "plain.png"], dir.path()));
    ok(easel(
        &[
            "render",
            &sketch,
            "--set",
            "tile=16",
            "--set",
            "warmth=0.1",
            "-o",
            "set.png",
        ],
        dir.path(),
    ));
    assert_ne!(
        pixels(&dir.path().join("plain.png")),
        pixels(&dir.path().join("set.png"))
    );
    let recipe = easel::recipe::read_recipe(&dir.path().join("set.png")).unwrap();
    assert_eq!(recipe.knobs["tile"], 16.0);
    assert_eq!(recipe.knobs["warmth"], 0.1);
    assert_eq!(recipe.knobs["line"], 6.0, "every knob is recorded");
    ok(easel(
        &["render", "--from", "set.png", "-o", "again.png"],
        dir.path(),
    ));
    assert_eq!(
        std::fs::read(dir.path().join("set.png")).unwrap(),
        std::fs::read(dir.path().join("again.png")).unwrap()
    );
    // --set on top of a recipe.
    ok(easel(
        &[
            "render", "--from", "set.png", "--set", "tile=96", "-o", "big.png",
        ],
        dir.path(),
    ));
    assert_eq!(
        easel::recipe::read_recipe(&dir.path().join("big.png"))
            .unwrap()
            .knobs["tile"],
        96.0
    );
}

#[test]
fn render_set_names_the_knob_the_value_and_the_range() {
    let dir = tempfile::tempdir().unwrap();
    let sketch = bundled("truchet_knobs.rhai");
    for (set, expected) in [
        ("tile=100", "knob tile = 100 is out of its range 16..=96"),
        (
            "tile=20.5",
            "knob tile takes whole numbers (16..=96), got 20.5",
        ),
        (
            "warmth=-1",
            "knob warmth = -1 is out of its range 0.0..=1.0",
        ),
        (
            "hue=0.5",
            "no knob named \"hue\"; this sketch has tile, line, warmth, turned",
        ),
        ("hue", "expected NAME=VALUE"),
        ("tile=big", "the value of knob tile must be a number"),
    ] {
        let out = easel(
            &["render", &sketch, "--set", set, "-o", "x.png"],
            dir.path(),
        );
        assert!(!out.status.success(), "{set} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expected), "{set}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    let out = easel(
        &["render", &bundled("truchet_arcs.rhai"), "--set", "hue=1"],
        dir.path(),
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("this sketch declares no params"));
    assert!(!dir.path().join("x.png").exists());
}

#[test]
fn init_writes_the_bundled_sketches_and_keeps_files_already_there() {
    let dir = tempfile::tempdir().unwrap();
    // Without a sketches folder the studio says what to do.
    let out = easel(&[], dir.path());
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("sketches is not a folder of sketches (try `easel init`"),
        "{err}"
    );

    let out = ok(easel(&["init"], dir.path()));
    let sketches = dir.path().join("sketches");
    let bundled_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("sketches");
    for name in [
        "truchet_arcs.rhai",
        "truchet_knobs.rhai",
        "cppn_uv_remap.rhai",
        "images/arcs64.png",
        "textures/weave.png",
    ] {
        assert_eq!(
            std::fs::read(sketches.join(name)).unwrap(),
            std::fs::read(bundled_dir.join(name)).unwrap(),
            "{name}"
        );
    }
    let listed = std::fs::read_dir(&bundled_dir).unwrap().count();
    assert_eq!(std::fs::read_dir(&sketches).unwrap().count(), listed);
    assert!(String::from_utf8_lossy(&out.stderr).contains("wrote "));
    // The icons gan_icons.rhai trains on come too: every bundled sketch checks out here.
    assert!(dir
        .path()
        .join("data/oxygen64/apps-konqueror.png")
        .is_file());
    assert!(dir.path().join("data/oxygen64/LICENSE.LGPL-3").is_file());
    ok(easel(&["check", "sketches"], dir.path()));
    // A sketch that reads a texture renders from the written folder.
    ok(easel(
        &[
            "render",
            "sketches/cppn_uv_remap.rhai",
            "--size",
            "64",
            "-o",
            "uv.png",
        ],
        dir.path(),
    ));

    // Again: an edited sketch is kept, a deleted one comes back, and it says which.
    std::fs::write(sketches.join("truchet_arcs.rhai"), "// mine\n").unwrap();
    std::fs::remove_file(sketches.join("cppn_silk.rhai")).unwrap();
    let out = ok(easel(&["init", "."], dir.path()));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("wrote 1 file into ./sketches: cppn_silk.rhai"),
        "{err}"
    );
    assert!(err.contains("skipped "), "{err}");
    assert!(err.contains("truchet_arcs.rhai"), "{err}");
    assert_eq!(
        std::fs::read_to_string(sketches.join("truchet_arcs.rhai")).unwrap(),
        "// mine\n"
    );
    assert!(sketches.join("cppn_silk.rhai").exists());

    // Into another folder.
    let out = ok(easel(&["init", "elsewhere"], dir.path()));
    assert!(dir
        .path()
        .join("elsewhere/sketches/truchet_knobs.rhai")
        .exists());
    assert!(String::from_utf8_lossy(&out.stderr).contains("easel studio elsewhere/sketches"));
}

#[test]
fn sample_and_watch_say_what_their_source_must_be() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("sketches")).unwrap();
    let out = easel(&["sample", "sketches", "-o", "s.png"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("sketches is neither a run directory") && err.contains("model folder"),
        "{err}"
    );
    for args in [
        &["sample", "missing", "-o", "s.png"][..],
        &["watch", "missing"],
    ] {
        let out = easel(args, dir.path());
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("missing does not exist"), "{args:?}: {err}");
    }
}

#[test]
fn render_of_a_name_in_sketches_suggests_its_path() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("sketches")).unwrap();
    std::fs::copy(
        bundled("truchet_arcs.rhai"),
        dir.path().join("sketches/truchet_arcs.rhai"),
    )
    .unwrap();
    let out = easel(&["render", "truchet_arcs.rhai"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("did you mean sketches/truchet_arcs.rhai?"),
        "{err}"
    );
}

/// A sketch's `sample_scale` is the noise scale `easel sample` draws at (times
/// `--truncation`), and changes nothing in training: the same run without it, sampled at
/// `--truncation 2`, draws the same grid.
#[test]
fn sample_scale_sets_the_noise_samples_are_drawn_at_and_leaves_training_alone() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    for (k, v) in [30u8, 200].iter().enumerate() {
        image::GrayImage::from_fn(8, 8, |x, y| image::Luma([v.wrapping_add((x * y) as u8)]))
            .save(data.join(format!("{k}.png")))
            .unwrap();
    }
    let sketch = |extra: &str| {
        format!(
            r#"#{{ kind: "gan", image_size: 28, latent: 8, g_widths: [8, 8], d_widths: [8], batch: 2,
                  steps: 2, data: #{{ folder: "data" }}{extra} }}"#
        )
    };
    std::fs::write(dir.path().join("plain.rhai"), sketch("")).unwrap();
    std::fs::write(
        dir.path().join("scaled.rhai"),
        sketch(", sample_scale: 2.0"),
    )
    .unwrap();
    for name in ["plain", "scaled"] {
        ok(easel(
            &["train", &format!("{name}.rhai"), "--run-dir", name],
            dir.path(),
        ));
    }
    let sample = |run: &str, out: &str, truncation: &str| {
        let args = [
            "sample",
            run,
            "-o",
            out,
            "-n",
            "4",
            "--seed",
            "5",
            "--truncation",
            truncation,
        ];
        ok(easel(&args, dir.path()))
    };
    let said = sample("scaled", "scaled.png", "1");
    let err = String::from_utf8_lossy(&said.stderr);
    assert!(
        err.contains("noise scale 2 (the model's sample_scale 2"),
        "{err}"
    );
    sample("plain", "plain-2.png", "2");
    sample("plain", "plain-1.png", "1");
    let grid = |name: &str| pixels(&dir.path().join(name));
    assert_eq!(grid("scaled.png"), grid("plain-2.png"));
    assert_ne!(grid("scaled.png"), grid("plain-1.png"));

    // Drawn again from its recipe, a grid keeps the scale it was drawn at; a recipe from
    // before generators had a scale (no `sample_scale` in it) was drawn at 1.
    ok(easel(&["sample", "--from", "scaled.png"], dir.path()));
    assert_eq!(grid("scaled-again.png"), grid("scaled.png"));
    let path = dir.path().join("scaled.png");
    let key = easel::recipe::KEY_SAMPLE;
    let mut recipe: serde_json::Value =
        serde_json::from_str(&easel::recipe::read_tag(&path, key).unwrap().unwrap()).unwrap();
    assert_eq!(recipe["sample_scale"], 2.0);
    recipe.as_object_mut().unwrap().remove("sample_scale");
    let old = dir.path().join("old.png");
    let img = image::open(&path).unwrap();
    easel::recipe::write_png_tagged(&old, &img, None, &[(key, recipe.to_string())]).unwrap();
    ok(easel(&["sample", "--from", "old.png"], dir.path()));
    assert_eq!(grid("old-again.png"), grid("plain-1.png"));

    // Out of range, the sketch is refused with the key and the range.
    std::fs::write(dir.path().join("bad.rhai"), sketch(", sample_scale: 0.0")).unwrap();
    let out = easel(&["check", "bad.rhai"], dir.path());
    let err = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !out.status.success() && err.contains("sample_scale"),
        "{err}"
    );
}

#[test]
fn sample_without_an_output_names_the_grid_after_its_source() {
    let dir = tempfile::tempdir().unwrap();
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/truchet32");
    ok(easel(
        &["sample", model.to_str().unwrap(), "-n", "1"],
        dir.path(),
    ));
    assert!(dir.path().join("truchet32-samples.png").is_file());
}

#[test]
fn a_sample_grid_records_how_it_was_drawn_and_is_drawn_again_from_it() {
    let dir = tempfile::tempdir().unwrap();
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/cdcgan32");
    let args = [
        "sample",
        model.to_str().unwrap(),
        "-n",
        "6",
        "--seed",
        "9",
        "--class",
        "maze",
        "--truncation",
        "0.8",
        "--threshold",
        "0.5",
        "-o",
        "grid.png",
    ];
    ok(easel(&args, dir.path()));
    ok(easel(&["sample", "--from", "grid.png"], dir.path()));
    let (first, again) = (
        dir.path().join("grid.png"),
        dir.path().join("grid-again.png"),
    );
    assert_eq!(pixels(&again), pixels(&first));
    assert_eq!(
        image::image_dimensions(&again).unwrap(),
        image::image_dimensions(&first).unwrap()
    );
    // Another seed draws another grid: the recipe is what made the match.
    let mut other = args;
    other[5] = "10";
    other[13] = "other.png";
    ok(easel(&other, dir.path()));
    assert_ne!(pixels(&dir.path().join("other.png")), pixels(&first));

    let out = easel(&["render", "--from", "grid.png"], dir.path());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("`easel sample --from grid.png`"), "{err}");
}

#[test]
fn eval_outside_the_repository_points_at_data() {
    let dir = tempfile::tempdir().unwrap();
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/icons32");
    let out = easel(&["eval", model.to_str().unwrap()], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--data FOLDER") && err.contains("data/oxygen64"),
        "{err}"
    );
}

#[test]
fn gallery_piped_lists_the_sketches_and_renders_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let sketches = Path::new(env!("CARGO_MANIFEST_DIR")).join("sketches");
    let out = ok(easel(&["gallery", sketches.to_str().unwrap()], dir.path()));
    let list = String::from_utf8_lossy(&out.stdout);
    assert!(list.contains("truchet_arcs.rhai  (truchet)"), "{list}");
    assert!(list.contains("gan_truchet.rhai  (gan)"), "{list}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not a terminal: nothing rendered"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_command_without_arguments_shows_both_ways_to_call_it() {
    let dir = tempfile::tempdir().unwrap();
    for (command, from) in [
        ("render", "--from <IMAGE.png>"),
        ("sample", "--from <GRID.png>"),
        ("sweep", "--from <SHEET.png>"),
    ] {
        let out = easel(&[command], dir.path());
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(from), "{command}: {err}");
    }
}

/// `easel train --precision bf16` overrides the sketch, is recorded in spec.json and shows
/// in the run's device; where the CPU has no bf16 products it trains in f32 and says so.
/// A bad value is refused with the choices.
#[test]
fn train_takes_a_precision() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data/x");
    std::fs::create_dir_all(&data).unwrap();
    for k in 0..4 {
        image::GrayImage::from_pixel(8, 8, image::Luma([100 + 20 * k]))
            .save(data.join(format!("{k}.png")))
            .unwrap();
    }
    std::fs::write(
        dir.path().join("tiny.rhai"),
        r#"#{ kind: "gan", image_size: 28, latent: 8, g_widths: [8, 8], d_widths: [8], batch: 4,
              steps: 2, sample_every: 1000, data: #{ folder: "data" } }"#,
    )
    .unwrap();
    let out = easel(
        &[
            "train",
            "tiny.rhai",
            "--run-dir",
            "run",
            "--precision",
            "bf16",
        ],
        dir.path(),
    );
    ok(out.clone());
    let run = easel::run::RunDir::at(&dir.path().join("run")).unwrap();
    let spec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.spec()).unwrap()).unwrap();
    assert_eq!(spec["precision"], "bf16");
    let device = run.read_status().unwrap().device;
    let err = String::from_utf8_lossy(&out.stderr);
    if easel::gan::Precision::bf16_available() {
        assert_eq!(device, "cpu, bf16");
    } else {
        assert_eq!(device, "cpu");
        assert!(err.contains("multiplies in f32"), "{err}");
    }
    let out = easel(&["train", "tiny.rhai", "--precision", "fp16"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("fp32") && err.contains("bf16"), "{err}");
}
