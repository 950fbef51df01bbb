//! Helpers shared by the test binaries that include it (`mod common;`). Each binary
//! uses only some of them, hence the allowance.
#![allow(dead_code)]

use std::path::Path;

use candle_core::Device;
use easel::gan::train::Trainer;
use easel::gan::GanSpec;
use easel::spec::{self, Spec};

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
