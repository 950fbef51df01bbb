//! CUDA checks, for a machine with a GPU and a `--features cuda` build
//! (`scripts/build_cuda.sh`), run with `cargo test --release --features cuda --test gpu --
//! --ignored`. Without the feature this file compiles to nothing. The two-GPU check also
//! needs `--features cuda,mpi,nccl` (`scripts/build_cuda.sh --nccl`).
#![cfg(feature = "cuda")]

mod common;

use std::path::Path;

use candle_core::Device;
use common::weights;
use easel::gan::train::Trainer;
use easel::gan::{data, GanSpec};
use easel::spec::{self, Spec};

fn spec(dir: &Path, body: &str) -> GanSpec {
    for (class, level) in [("dark", 40u8), ("light", 210)] {
        let d = dir.join("data").join(class);
        std::fs::create_dir_all(&d).unwrap();
        for k in 0..8u8 {
            image::RgbImage::from_fn(64, 64, |x, y| {
                image::Rgb([level, ((x + y) as u8).wrapping_mul(k + 1), level / 2])
            })
            .save(d.join(format!("{k}.png")))
            .unwrap();
        }
    }
    let path = dir.join("gan.rhai");
    std::fs::write(
        &path,
        format!(r#"#{{ kind: "gan", data: #{{ folder: "data" }}, seed: 3, {body} }}"#),
    )
    .unwrap();
    match spec::load(&path).unwrap().spec {
        Spec::Gan(g) => *g,
        other => panic!("not a gan: {other:?}"),
    }
}

fn cuda() -> Device {
    Device::new_cuda(0).expect("a CUDA GPU")
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn a_cuda_step_agrees_with_the_cpu_and_checkpoints_cross_devices() {
    let dir = tempfile::tempdir().unwrap();
    let spec = spec(
        dir.path(),
        r#"image_size: 32, channels: 3, latent: 16, g_widths: [32, 16, 8], d_widths: [8, 16],
           batch: 8, g_norm: "batch", d_norm: "batch""#,
    );
    let cpu_data = data::load(&spec, &Device::Cpu, None).unwrap();
    let gpu_data = data::load(&spec, &cuda(), None).unwrap();
    let mut on_cpu = Trainer::new(&spec, cpu_data.class_names.clone(), &Device::Cpu).unwrap();
    let mut on_gpu = Trainer::new(&spec, gpu_data.class_names.clone(), &cuda()).unwrap();
    // Same start: a CPU checkpoint loaded on the GPU.
    let ckpt = dir.path().join("start.safetensors");
    on_cpu.save_checkpoint(&ckpt).unwrap();
    on_gpu.load_checkpoint(&ckpt).unwrap();
    assert_eq!(weights(&on_cpu), weights(&on_gpu));
    on_cpu.train_step(&cpu_data).unwrap();
    on_gpu.train_step(&gpu_data).unwrap();
    for ((name, a), (_, b)) in weights(&on_cpu).iter().zip(&weights(&on_gpu)) {
        let worst = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs() / (1.0 + x.abs()))
            .fold(0f32, f32::max);
        assert!(worst < 1e-3, "{name} differs by {worst}");
    }
    // A checkpoint made on CUDA resumes on the CPU.
    let from_gpu = dir.path().join("gpu.safetensors");
    on_gpu.save_checkpoint(&from_gpu).unwrap();
    let mut back = Trainer::new(&spec, cpu_data.class_names.clone(), &Device::Cpu).unwrap();
    back.load_checkpoint(&from_gpu).unwrap();
    assert_eq!(back.step, 1);
    assert_eq!(weights(&back), weights(&on_gpu));
    back.train_step(&cpu_data).unwrap();
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn fifty_dcgan64_steps_report_images_per_second() {
    let dir = tempfile::tempdir().unwrap();
    // The PyTorch DCGAN tutorial's model, as sketches/gan_dcgan64.rhai.
    let spec = spec(
        dir.path(),
        r#"image_size: 64, channels: 3, latent: 100, start: 4, g_base: 64, d_base: 64,
           kernel: 4, batch: 64, steps: 50"#,
    );
    let data = data::load(&spec, &cuda(), None).unwrap();
    let mut t = Trainer::new(&spec, data.class_names.clone(), &cuda()).unwrap();
    t.train_step(&data).unwrap(); // warm-up: kernels load, cuBLAS plans
    let started = std::time::Instant::now();
    for _ in 0..50 {
        t.train_step(&data).unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "DCGAN 64x64 batch 64 on CUDA: {:.1} ms/step, {:.0} images/s",
        secs * 20.0,
        50.0 * 64.0 / secs
    );
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn bf16_on_cuda_trains_like_fp32_and_saves_f32() {
    let dir = tempfile::tempdir().unwrap();
    let body = r#"image_size: 32, channels: 3, latent: 16, g_widths: [32, 16, 8], d_widths: [8, 16],
           batch: 8, g_norm: "batch", d_norm: "layer""#;
    let fp32 = spec(dir.path(), body);
    let bf16 = GanSpec {
        precision: easel::gan::Precision::Bf16,
        ..fp32.clone()
    };
    let data = data::load(&fp32, &cuda(), None).unwrap();
    let start = weights(&Trainer::new(&fp32, data.class_names.clone(), &cuda()).unwrap());
    let two_steps = |s: &GanSpec| {
        let mut t = Trainer::new(s, data.class_names.clone(), &cuda()).unwrap();
        for _ in 0..2 {
            t.train_step(&data).unwrap();
        }
        t
    };
    let (a, b) = (two_steps(&fp32), two_steps(&bf16));
    let (wa, wb) = (weights(&a), weights(&b));
    assert!(wa != wb, "bf16 ran as f32");
    let cosine = common::cosine_of_moves(&start, &wa, &wb);
    eprintln!("bf16 vs fp32 on CUDA, two steps: cosine of the weights' moves {cosine:.4}");
    assert!(
        cosine > 0.9,
        "bf16's steps point elsewhere: cosine {cosine}"
    );
    let ckpt = dir.path().join("bf16.safetensors");
    b.save_checkpoint(&ckpt).unwrap();
    let (tensors, _) = easel::gan::train::load_safetensors(&ckpt, Device::Cpu).unwrap();
    for (name, t) in &tensors {
        assert_eq!(t.dtype(), candle_core::DType::F32, "{name}");
    }
}

/// Where a CUDA step's time goes: each convolution of the 64x64 DCGAN (batch 128) forward
/// and backward, in f32 and bf16, through the ops the trainer uses on a GPU. Prints only.
#[test]
#[ignore = "needs a CUDA GPU"]
fn dcgan64_convolution_times_on_cuda() {
    use candle_core::{DType, Tensor, Var};
    let dev = cuda();
    let time = |f: &dyn Fn() -> candle_core::Result<()>| {
        f().unwrap();
        dev.synchronize().unwrap();
        let t = std::time::Instant::now();
        for _ in 0..10 {
            f().unwrap();
        }
        dev.synchronize().unwrap();
        t.elapsed().as_secs_f64() * 100.0 // ms per call
    };
    // (in, out, side in) of G's transposed convolutions and D's convolutions.
    let g = [
        (100, 512, 1),
        (512, 256, 4),
        (256, 128, 8),
        (128, 64, 16),
        (64, 3, 32),
    ];
    let d = [
        (3, 64, 64),
        (64, 128, 32),
        (128, 256, 16),
        (256, 512, 8),
        (512, 1, 4),
    ];
    for (ops, dtype) in [
        (false, DType::F32),
        (true, DType::F32),
        (false, DType::BF16),
        (true, DType::BF16),
    ] {
        let way = if ops {
            "matrix products"
        } else {
            "Candle's conv"
        };
        let (mut fwd, mut both) = (0.0, 0.0);
        for (transposed, layers) in [(true, &g), (false, &d)] {
            for &(cin, cout, side) in layers.iter() {
                let x = Var::from_tensor(
                    &Tensor::randn(0f32, 1.0, (128, cin, side, side), &dev)
                        .unwrap()
                        .to_dtype(dtype)
                        .unwrap(),
                )
                .unwrap();
                let shape = if transposed {
                    (cin, cout, 4, 4)
                } else {
                    (cout, cin, 4, 4)
                };
                let w = Var::from_tensor(
                    &Tensor::randn(0f32, 0.02, shape, &dev)
                        .unwrap()
                        .to_dtype(dtype)
                        .unwrap(),
                )
                .unwrap();
                let (pad, stride) = match (transposed, side) {
                    (true, 1) | (false, 4) => (0, 1),
                    _ => (1, 2),
                };
                let run = |backward: bool| -> candle_core::Result<()> {
                    use easel::gan::conv_ops;
                    let y = match (transposed, ops) {
                        (true, false) => x.conv_transpose2d(&w, pad, 0, stride, 1)?,
                        (true, true) => conv_ops::conv_transpose2d(&x, &w, pad, 0, stride)?,
                        (false, false) => x.conv2d(&w, pad, stride, 1, 1)?,
                        (false, true) => conv_ops::conv2d(&x, &w, pad, stride)?,
                    };
                    if backward {
                        y.sum_all()?.backward()?;
                    }
                    Ok(())
                };
                let (f, b) = (time(&|| run(false)), time(&|| run(true)));
                fwd += f;
                both += b;
                eprintln!(
                    "{way} {dtype:?} {} {cin}->{cout} at {side}x{side}: forward {f:.3} ms, forward+backward {b:.3} ms",
                    if transposed { "conv_transpose2d" } else { "conv2d" }
                );
            }
        }
        eprintln!("{way} {dtype:?} all ten: forward {fwd:.2} ms, forward+backward {both:.2} ms");
    }
}

/// The upscaler on CUDA (Candle's convolutions) gives the CPU's pixels, fp32 to 1 level;
/// bf16 to bf16's rounding. Prints the time of a 256x256 input.
#[test]
#[ignore = "needs a CUDA GPU"]
fn upscaling_on_cuda_matches_the_cpu() {
    use easel::upscale::{Precision, Tiling, Upscaler};
    let picture = image::DynamicImage::ImageRgb8(image::RgbImage::from_fn(64, 48, |x, y| {
        image::Rgb([(x * 4) as u8, (y * 5) as u8, ((x * y) % 251) as u8])
    }));
    let whole = Tiling { tile: 0, pad: 10 };
    for model in ["realesr-animevideov3-x4", "realesrgan-x4plus-anime"] {
        let cpu = Upscaler::load(model, &Device::Cpu).unwrap();
        let want = cpu
            .upscale(&picture, whole, &mut |_, _| {})
            .unwrap()
            .to_rgb8();
        for precision in [Precision::Fp32, Precision::Bf16] {
            let gpu = Upscaler::load_with(model, &cuda(), precision).unwrap();
            assert_eq!(gpu.precision, precision);
            let got = gpu
                .upscale(&picture, whole, &mut |_, _| {})
                .unwrap()
                .to_rgb8();
            assert_eq!(got.dimensions(), want.dimensions());
            let diffs: Vec<i32> = got
                .as_raw()
                .iter()
                .zip(want.as_raw())
                .map(|(a, b)| (i32::from(*a) - i32::from(*b)).abs())
                .collect();
            let worst = diffs.iter().copied().max().unwrap();
            let mean = diffs.iter().sum::<i32>() as f64 / diffs.len() as f64;
            let big = image::DynamicImage::ImageRgb8(image::imageops::resize(
                &picture.to_rgb8(),
                256,
                256,
                image::imageops::FilterType::Triangle,
            ));
            gpu.upscale(&big, whole, &mut |_, _| {}).unwrap();
            let t = std::time::Instant::now();
            gpu.upscale(&big, whole, &mut |_, _| {}).unwrap();
            eprintln!(
                "{model} {}: max {worst} levels from the CPU (mean {mean:.3}); 256x256 in {:.3} s",
                precision.name(),
                t.elapsed().as_secs_f64()
            );
            match precision {
                Precision::Fp32 => assert!(worst <= 1, "{model}: {worst} levels"),
                Precision::Bf16 => assert!(worst <= 24 && mean < 1.0, "{model}: {worst}, {mean}"),
            }
        }
    }
}

/// Two ranks under mpirun, one GPU each, summing gradients through NCCL: the model one
/// process trains on one GPU (to CUDA's rounding). Build with `scripts/build_cuda.sh
/// --nccl`, then `cargo test --release --features cuda,mpi,nccl --test gpu -- --ignored`
/// on a machine with two GPUs and OpenMPI.
#[cfg(feature = "nccl")]
#[test]
#[ignore = "needs two CUDA GPUs and OpenMPI"]
fn two_gpu_ranks_sum_through_nccl_and_train_what_one_gpu_trains() {
    use candle_core::cuda::cudarc::driver::CudaContext;
    let gpus = CudaContext::device_count().expect("the CUDA driver");
    assert!(
        gpus >= 2,
        "this check needs two GPUs; this machine has {gpus}"
    );
    let dir = tempfile::tempdir().unwrap();
    common::parallel_sketch(dir.path(), "layer", "");
    let train = |ranks: usize, run: &str| {
        let mut c = std::process::Command::new("mpirun");
        c.args(["-np", &ranks.to_string(), "--oversubscribe"])
            .arg(env!("CARGO_BIN_EXE_easel"))
            .args([
                "train",
                "gan.rhai",
                "--run-dir",
                run,
                "--steps",
                "6",
                "--device",
                "cuda",
            ])
            .current_dir(dir.path())
            .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
            .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1");
        let out = c.output().expect("mpirun (OpenMPI) on the PATH");
        assert!(
            out.status.success(),
            "{ranks} rank(s) failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    train(1, "one");
    train(2, "two");
    let at = |name: &str| easel::run::RunDir::at(&dir.path().join(name)).unwrap();
    let (a, b) = (
        common::checkpoint_weights(&at("one")),
        common::checkpoint_weights(&at("two")),
    );
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        let worst = x
            .iter()
            .zip(y)
            .map(|(p, q)| (p - q).abs() / (1.0 + p.abs()))
            .fold(0f32, f32::max);
        assert!(worst < 1e-3, "{name} differs by {worst}");
    }
    assert_eq!(at("two").read_status().unwrap().ranks, 2);
}
