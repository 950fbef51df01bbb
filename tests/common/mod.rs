//! Helpers shared by the test binaries that include it (`mod common;`). Each binary
//! uses only some of them, hence the allowance.
#![allow(dead_code)]

use std::path::Path;

use candle_core::{Device, Tensor};
use easel::gan::train::Trainer;
use easel::gan::GanSpec;
use easel::run::RunDir;
use easel::spec::{self, Spec};

/// Mean squared difference of two tensors of one shape.
pub(crate) fn mse(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .sqr()
        .unwrap()
        .mean_all()
        .unwrap()
        .to_scalar()
        .unwrap()
}

/// Writes `#{ kind: "gan", BODY }` to `dir/gan.rhai` and loads it: its spec and source.
pub(crate) fn gan_spec(dir: &Path, body: &str) -> (GanSpec, String) {
    let src = format!("#{{ kind: \"gan\", {body} }}");
    let path = dir.join("gan.rhai");
    std::fs::write(&path, &src).unwrap();
    match spec::load(&path).unwrap_or_else(|e| panic!("{e}")).spec {
        Spec::Gan(g) => (*g, src),
        other => panic!("not a gan: {other:?}"),
    }
}

/// Every weight of a trainer's G, D, EMA generator and (VAE-GAN) encoder, by name
/// (sorted), on the CPU.
pub(crate) fn weights(t: &Trainer) -> Vec<(String, Vec<f32>)> {
    let encoder = t
        .encoder
        .iter()
        .flat_map(|(e, _)| e.params.named_tensors("e."));
    let mut v: Vec<(String, Vec<f32>)> =
        t.g.params
            .named_tensors("g.")
            .into_iter()
            .chain(t.d.params.named_tensors("d."))
            .chain(t.ema.params.named_tensors("ema."))
            .chain(encoder)
            .map(|(n, v)| {
                let v = v.to_device(&Device::Cpu).unwrap();
                (n, v.flatten_all().unwrap().to_vec1().unwrap())
            })
            .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// Runs the easel binary in `dir` with `args`, whatever its exit status.
pub(crate) fn easel_run(args: &[&str], dir: &Path) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_easel"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run easel")
}

/// Runs the easel binary in `dir`; panics with its stderr if it fails.
pub(crate) fn easel_in(dir: &Path, args: &[&str]) -> std::process::Output {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_easel"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "easel {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Trains a tiny GAN with `easel train` in `dir`: `sketches/tiles.rhai` (a `side`-pixel
/// Truchet triangle set, tiles of `side / 4`) is its data and `sketches/g.rhai` holds
/// `#{ kind: "gan", BODY, data: #{ from: "tiles.rhai", count: 16 } }`. Returns the run
/// directory.
pub(crate) fn trained_run(dir: &Path, side: u32, body: &str) -> std::path::PathBuf {
    let sketches = dir.join("sketches");
    std::fs::create_dir_all(&sketches).unwrap();
    std::fs::write(
        sketches.join("tiles.rhai"),
        format!(
            r#"#{{ kind: "truchet", family: "triangles", size: {side}, tile: {}, channels: 1, seed: 2 }}"#,
            side / 4
        ),
    )
    .unwrap();
    std::fs::write(
        sketches.join("g.rhai"),
        format!(r#"#{{ kind: "gan", {body} data: #{{ from: "tiles.rhai", count: 16 }} }}"#),
    )
    .unwrap();
    easel_in(dir, &["train", "sketches/g.rhai", "--runs", "runs"]);
    std::fs::read_dir(dir.join("runs"))
        .unwrap()
        .next()
        .expect("a run directory")
        .unwrap()
        .path()
}

/// Loads a sketch that must be a CPPN sketch.
pub(crate) fn only_cppn(
    loaded: Result<spec::Sketch, easel::sketch::SketchError>,
) -> easel::cppn::CppnSpec {
    match loaded.unwrap_or_else(|e| panic!("{e}")).spec {
        Spec::Cppn(c) => c,
        other => panic!("not a cppn: {other:?}"),
    }
}

/// Writes `src` to `path` (beside the images it names) and loads it as a CPPN sketch.
pub(crate) fn cppn_at(path: &Path, src: &str) -> easel::cppn::CppnSpec {
    std::fs::write(path, src).unwrap();
    only_cppn(spec::load(path))
}

/// A smooth 32x32 fit target: a soft disc on a horizontal gradient. A CPPN of tanh
/// layers represents it well (a working fit reaches well above 25 dB; the mean colour
/// scores ~10 dB).
pub(crate) fn soft_disc() -> image::RgbImage {
    image::RgbImage::from_fn(32, 32, |x, y| {
        let (u, v) = (x as f32 / 31.0, y as f32 / 31.0);
        let disc = (-(((u - 0.5).powi(2) + (v - 0.45).powi(2)) / 0.04)).exp();
        image::Rgb([
            (255.0 * u) as u8,
            (255.0 * disc) as u8,
            (255.0 * (1.0 - v)) as u8,
        ])
    })
}

/// Runs `scripts/NAME` with bash and the easel binary as its argument; panics with the
/// script's whole output unless it succeeds and prints `done` (its last word of success).
pub(crate) fn run_script(name: &str, done: &str) {
    let out = std::process::Command::new("bash")
        .arg(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("scripts")
                .join(name),
        )
        .arg(env!("CARGO_BIN_EXE_easel"))
        .output()
        .unwrap();
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "scripts/{name} failed:\n{log}");
    assert!(log.contains(done), "{log}");
}

/// Data parallel (tests/ranks.rs, tests/mpi.rs): a tiny DCGAN with every per-row draw
/// there is (mirror, DiffAugment, dropout in D, lazy R1), a batch of 5 that 2 or 3 ranks
/// split unevenly, and a checkpoint at every step.
const PARALLEL: &str = r#"image_size: 28, channels: 3, latent: 8, g_widths: [16, 8],
    d_widths: [8, 16], kernel: 4, dropout: 0.25, batch: 5,
    lr: 2e-3, ema: 0.9, seed: 11, mirror: true, r1: 0.1,
    augment: #{ policy: "color,translation,cutout", p: 0.6 },
    sample_every: 3, checkpoint_every: 1, eval_every: 0, data: #{ folder: "data" }"#;

/// That sketch as `dir/gan.rhai`, with a folder of 6 pictures beside it, `norm` in G and
/// D (`layer`: no batch statistics, so a split batch is exact) and `extra` keys.
pub(crate) fn parallel_sketch(dir: &Path, norm: &str, extra: &str) -> (GanSpec, String) {
    let data = dir.join("data/x");
    std::fs::create_dir_all(&data).unwrap();
    for k in 0..6u32 {
        let img = image::RgbImage::from_fn(12, 12, |x, y| {
            image::Rgb([
                (x * 20 + k * 30) as u8,
                (y * 17) as u8,
                ((x ^ y) * 9 + k) as u8,
            ])
        });
        img.save(data.join(format!("{k}.png"))).unwrap();
    }
    gan_spec(
        dir,
        &format!(r#"{PARALLEL}, g_norm: "{norm}", d_norm: "{norm}"{extra}"#),
    )
}

/// Every trained weight of the checkpoint: G, D and the EMA (Adam's moments follow).
pub(crate) fn checkpoint_weights(run: &RunDir) -> Vec<(String, Vec<f32>)> {
    let (tensors, _) =
        easel::gan::train::load_safetensors(&run.latest_checkpoint(), candle_core::Device::Cpu)
            .unwrap();
    let mut out: Vec<(String, Vec<f32>)> = tensors
        .into_iter()
        .filter(|(k, _)| !k.contains("buf."))
        .map(|(k, t)| (k, t.flatten_all().unwrap().to_vec1().unwrap()))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Weights within 1e-5 (the issue's bar); Adam's moments within 1e-4 of their tensor's
/// largest value (a gradient summed in two parts rounds differently, and the moments
/// carry that, relatively larger where a sum cancels).
pub(crate) fn assert_same_model(a: &RunDir, b: &RunDir, what: &str) {
    let (wa, wb) = (checkpoint_weights(a), checkpoint_weights(b));
    assert_eq!(wa.len(), wb.len());
    let mut moved = false;
    for ((name, x), (_, y)) in wa.iter().zip(&wb) {
        let scale = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let tolerance = match name.starts_with("adam_") {
            true => 1e-4 * scale,
            false => 1e-5,
        };
        let worst = x
            .iter()
            .zip(y)
            .map(|(p, q)| (p - q).abs())
            .fold(0.0, f32::max);
        assert!(worst <= tolerance, "{what}: {name} differs by {worst}");
        moved |= name.starts_with("adam_g.m.") && scale > 0.0;
    }
    assert!(moved, "nothing trained");
}

/// The step of a run's newest checkpoint, from its header.
pub(crate) fn checkpoint_step_of(run: &RunDir) -> u64 {
    let bytes = std::fs::read(run.latest_checkpoint()).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    header.metadata().as_ref().unwrap()["step"].parse().unwrap()
}

/// The cosine between two runs' moves away from the same `start` (weights by name, as
/// [`weights`] lists them; running statistics left out): 1 when they moved the same way.
pub(crate) fn cosine_of_moves(
    start: &[(String, Vec<f32>)],
    a: &[(String, Vec<f32>)],
    b: &[(String, Vec<f32>)],
) -> f32 {
    let moves = |w: &[(String, Vec<f32>)]| -> Vec<f32> {
        w.iter()
            .zip(start)
            .filter(|((n, _), _)| !n.contains("running_"))
            .flat_map(|((_, after), (_, before))| after.iter().zip(before).map(|(x, y)| x - y))
            .collect()
    };
    let (ma, mb) = (moves(a), moves(b));
    let dot: f32 = ma.iter().zip(&mb).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (norm(&ma) * norm(&mb))
}
