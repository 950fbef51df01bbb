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
