//! The portable path: what a CUDA device runs (Candle's own ops instead of easel's CPU
//! kernels), forced onto the CPU with `kernels::force_portable`, so the GPU code path is
//! exercised on machines without a GPU (every model kind, the VAE-GAN encoder included).
//! The switch is process-wide, so the tests take turns (`SWITCH`).

mod common;

use std::path::Path;

use candle_core::Device;
use common::weights;
use easel::gan::train::{self, Outcome, Silent, TrainOptions, Trainer};
use easel::gan::{data, kernels, GanSpec};
use easel::run::RunDir;
use easel::spec::{self, Spec};

/// Held by each test for its whole length: `kernels::force_portable` is process-wide.
static SWITCH: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn spec(dir: &Path, body: &str) -> (GanSpec, String) {
    let src = format!(
        r#"#{{ kind: "gan", image_size: 28, channels: 1, latent: 8, g_widths: [16, 8],
              d_widths: [8, 16], kernel: 4, batch: 8, lr: 2e-3, ema: 0.9, seed: 5,
              data: #{{ folder: "data" }}, {body} }}"#
    );
    let path = dir.join("gan.rhai");
    std::fs::write(&path, &src).unwrap();
    match spec::load(&path).unwrap_or_else(|e| panic!("{e}")).spec {
        Spec::Gan(g) => (*g, src),
        other => panic!("not a gan: {other:?}"),
    }
}

fn folder(dir: &Path) {
    for (class, level) in [("dark", 40u8), ("light", 210)] {
        let d = dir.join("data").join(class);
        std::fs::create_dir_all(&d).unwrap();
        for k in 0..4u8 {
            image::GrayImage::from_fn(12, 12, |x, y| {
                image::Luma([level.wrapping_add(((x * 7 + y * 3) as u8 + k * 5) % 30)])
            })
            .save(d.join(format!("{k}.png")))
            .unwrap();
        }
    }
}

/// Two steps of `spec` with the given kernels; the trained weights (G, D, EMA, batch
/// norm running statistics).
fn two_steps(spec: &GanSpec, portable: bool) -> Vec<(String, Vec<f32>)> {
    kernels::force_portable(portable);
    let data = data::load(spec, &Device::Cpu, None).unwrap();
    let mut t = Trainer::new(spec, data.class_names.clone(), &Device::Cpu).unwrap();
    for _ in 0..2 {
        t.train_step(&data).unwrap();
    }
    weights(&t)
}

/// Trains the run `name` in `dir` through `plan` (steps to reach, resume?), each leg to
/// its end; the run and its latest checkpoint's tensors by name (sorted), all f32.
fn train_through(
    dir: &Path,
    name: &str,
    (spec, src): (&GanSpec, &str),
    plan: &[(usize, bool)],
) -> (RunDir, Vec<(String, Vec<f32>)>) {
    let r = RunDir::at(&dir.join(name)).unwrap();
    for &(steps, resume) in plan {
        let opts = TrainOptions {
            steps: Some(steps),
            resume,
            ..Default::default()
        };
        assert_eq!(
            train::train(&r, src, spec, &opts, &mut Silent).unwrap(),
            Outcome::Done
        );
    }
    let (t, _) = train::load_safetensors(&r.latest_checkpoint(), Device::Cpu).unwrap();
    let mut v: Vec<(String, Vec<f32>)> = t
        .into_iter()
        .map(|(n, t)| {
            assert_eq!(t.dtype(), candle_core::DType::F32, "{n} is saved as f32");
            (n, t.flatten_all().unwrap().to_vec1().unwrap())
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    (r, v)
}

#[test]
fn the_portable_path_trains_as_the_cpu_kernels_do() {
    let _turn = SWITCH.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    folder(dir.path());
    for (model, extra) in [
        ("dcgan", r#"g_norm: "batch", d_norm: "batch", dropout: 0.3"#),
        ("cdcgan", r#"g_norm: "batch", d_norm: "layer""#),
        (
            "can",
            r#"g_norm: "layer", d_norm: "batch", upsample: "nearest""#,
        ),
        // The CPPN generator with its encoder (VAE-GAN; D judges redrawings and samples).
        (
            "cppn",
            r#"d_norm: "batch", vae: #{ weight: 10.0, warmup: 1, fakes: "both" },
               cppn: #{ layers: [12, 10], fourier: #{ count: 4, scale: 1.5 }, modulate: true }"#,
        ),
    ] {
        let (spec, _) = spec(dir.path(), &format!(r#"model: "{model}", {extra}"#));
        let fast = two_steps(&spec, false);
        let portable = two_steps(&spec, true);
        assert_eq!(fast.len(), portable.len());
        // Different code, so rounding differs somewhere: proof the switch switched.
        assert!(
            fast != portable,
            "{model}: the portable path ran the CPU kernels"
        );
        for ((name, a), (_, b)) in fast.iter().zip(&portable) {
            let worst = a
                .iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs() / (1.0 + x.abs()))
                .fold(0f32, f32::max);
            assert!(worst < 1e-4, "{model}: {name} differs by {worst}");
        }
        let stats = fast.iter().filter(|(n, _)| n.contains("running_")).count();
        if extra.contains(r#"g_norm: "batch""#) {
            assert!(stats > 0, "{model}: batch norm statistics are compared too");
        }
    }

    // Exact resume holds on the portable path as well.
    kernels::force_portable(true);
    let (spec, src) = spec(
        dir.path(),
        r#"g_norm: "batch", d_norm: "batch", dropout: 0.3, checkpoint_every: 2"#,
    );
    let straight = train_through(dir.path(), "straight", (&spec, &src), &[(4, false)]).1;
    let halves = train_through(
        dir.path(),
        "halves",
        (&spec, &src),
        &[(2, false), (4, true)],
    )
    .1;
    assert_eq!(straight.len(), halves.len());
    for ((n, a), (_, b)) in straight.iter().zip(&halves) {
        assert!(a == b, "{n} differs after a portable resume");
    }
    kernels::force_portable(false);
}

/// `precision: "bf16"` on easel's CPU kernels and on the portable path (what CUDA runs):
/// products in bfloat16 move the weights as f32 does, to bf16's rounding; checkpoints stay
/// f32 and resume exactly.
#[test]
fn bf16_trains_like_fp32_to_its_rounding_and_resumes_exactly() {
    let _turn = SWITCH.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    folder(dir.path());
    let (fp32, _) = spec(dir.path(), r#"g_norm: "batch", d_norm: "layer""#);
    let (bf16, src) = spec(
        dir.path(),
        r#"g_norm: "batch", d_norm: "layer", precision: "bf16", checkpoint_every: 2"#,
    );
    assert_eq!(bf16.precision, easel::gan::Precision::Bf16);
    let start = {
        let data = data::load(&fp32, &Device::Cpu, None).unwrap();
        weights(&Trainer::new(&fp32, data.class_names.clone(), &Device::Cpu).unwrap())
    };
    let cosine = |a: &[_], b: &[_]| common::cosine_of_moves(&start, a, b);
    // easel's CPU kernels: bf16 products where the CPU has AVX512_BF16, else f32.
    let (a, b) = (two_steps(&fp32, false), two_steps(&bf16, false));
    if easel::gan::Precision::bf16_available() {
        assert!(a != b, "CPU kernels: bf16 ran as f32");
        let c = cosine(&a, &b);
        assert!(
            c > 0.9,
            "CPU kernels: bf16's steps point elsewhere: cosine {c}"
        );
    } else {
        assert!(a == b, "CPU kernels without AVX512_BF16: f32");
    }
    // Candle's path (what CUDA runs).
    kernels::force_portable(true);
    let (a, b) = (two_steps(&fp32, true), two_steps(&bf16, true));
    assert!(a != b, "bf16 ran as f32");
    let c = cosine(&a, &b);
    assert!(
        c > 0.9,
        "bf16's steps point elsewhere than f32's: cosine {c}"
    );

    // Resume stays exact in bf16, on Candle's path and on easel's CPU kernels.
    for portable in [true, false] {
        kernels::force_portable(portable);
        let plans: [&[(usize, bool)]; 2] = [&[(4, false)], &[(2, false), (4, true)]];
        let [(run, straight), (_, halves)] = [0, 1].map(|i| {
            let name = format!("bf16-{i}-{portable}");
            train_through(dir.path(), &name, (&bf16, &src), plans[i])
        });
        for ((n, a), (_, b)) in straight.iter().zip(&halves) {
            assert!(
                a == b,
                "{n} differs after a bf16 resume (portable: {portable})"
            );
        }
        let device = run.read_status().unwrap().device;
        let bf16_ran = portable || easel::gan::Precision::bf16_available();
        assert_eq!(device.ends_with(", bf16"), bf16_ran, "{device}");
    }
    // Samples of a bf16 run are drawn in f32: the same pictures on every CPU.
    let loaded = easel::gan::saved::load_generator(
        &dir.path().join("bf16-0-false"),
        None,
        false,
        &Device::Cpu,
    )
    .unwrap();
    assert_eq!(loaded.g.params.precision, easel::gan::Precision::Fp32);
    kernels::force_portable(false);
}
