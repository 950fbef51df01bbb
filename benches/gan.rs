//! Training speed through the real path (`Trainer::train_step`, as `easel train` runs
//! it): one D and one G update with Adam, batch 64.
//! - `truchet_32`: the bundled py-truchet-gan sketch (32x32 grayscale).
//! - `cppn_32`: the bundled CPPN-GAN (`gan_cppn.rhai`: a VAE-GAN whose generator is a
//!   modulated coordinate MLP over the 32x32 pixel grid, D judging reconstructions and
//!   samples).
//! - `dcgan_64`: the bundled PyTorch-tutorial DCGAN (64x64 RGB); `dcgan_64_bf16` the same
//!   with `precision: "bf16"` (bf16 products where the CPU has AVX512_BF16).
//!
//! - `conv_kernels_batch64`: the custom CPU ops of `easel::gan::kernels` against Candle's
//!   stock ops on the 64x64 DCGAN's layer shapes, forward alone and forward + backward
//!   (gradients of x and w), f32 (`easel`) and bf16 (`easel_bf16`).
//!
//! Reference (same machine, measured earlier): PyTorch 2.15 does the 64x64 DCGAN
//! step in ~1.8 s.

use std::path::Path;

use candle_core::{Device, Tensor, Var};
use criterion::{criterion_group, criterion_main, Criterion};
use easel::gan::data;
use easel::gan::kernels;
use easel::gan::train::Trainer;
use easel::gan::{DataSource, Precision};
use easel::spec::{self, Spec};

#[global_allocator]
static GLOBAL: easel::alloc::BlockCache<mimalloc::MiMalloc> =
    easel::alloc::BlockCache::new(mimalloc::MiMalloc);

fn trainer(name: &str, precision: Precision) -> (Trainer, data::Dataset) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("sketches")
        .join(name);
    let Spec::Gan(mut spec) = spec::load(&path).unwrap().spec else {
        panic!("not a GAN sketch")
    };
    spec.batch = 64;
    spec.precision = precision;
    if let DataSource::Sketch { count, .. } = &mut spec.data {
        *count = 256;
    }
    let data = data::load(&spec, &Device::Cpu, Some(spec::data_sketch)).unwrap();
    let t = Trainer::new(&spec, data.class_names.clone(), &Device::Cpu).unwrap();
    (t, data)
}

fn gan(c: &mut Criterion) {
    let mut group = c.benchmark_group("gan_step_batch64");
    group.sample_size(10);
    let (mut t, data) = trainer("gan_truchet.rhai", Precision::Fp32);
    group.bench_function("truchet_32", |b| b.iter(|| t.train_step(&data).unwrap()));
    let (mut t, data) = trainer("gan_cppn.rhai", Precision::Fp32);
    group.bench_function("cppn_32", |b| b.iter(|| t.train_step(&data).unwrap()));
    let (mut t, data) = trainer("gan_dcgan64.rhai", Precision::Fp32);
    group.bench_function("dcgan_64", |b| b.iter(|| t.train_step(&data).unwrap()));
    let (mut t, data) = trainer("gan_dcgan64.rhai", Precision::Bf16);
    group.bench_function("dcgan_64_bf16", |b| b.iter(|| t.train_step(&data).unwrap()));
    group.finish();
}

/// One convolution layer: `[64, cin, size, size]` in, kernel 4, stride 2, padding 1.
struct Layer {
    name: &'static str,
    transposed: bool,
    cin: usize,
    cout: usize,
    size: usize,
}

const LAYERS: &[Layer] = &[
    // The 4x4 and 8x8 layers of the 32x32 DCGAN (gan_icons.rhai's widths): 16 output
    // pixels an image in the product, the narrow case.
    Layer {
        name: "convT_256to128_4to8",
        transposed: true,
        cin: 256,
        cout: 128,
        size: 4,
    },
    Layer {
        name: "conv_128to256_8to4",
        transposed: false,
        cin: 128,
        cout: 256,
        size: 8,
    },
    // G's last two layers and D's first, as in gan_dcgan64.rhai.
    Layer {
        name: "convT_128to64_16to32",
        transposed: true,
        cin: 128,
        cout: 64,
        size: 16,
    },
    Layer {
        name: "convT_64to3_32to64",
        transposed: true,
        cin: 64,
        cout: 3,
        size: 32,
    },
    Layer {
        name: "conv_3to64_64to32",
        transposed: false,
        cin: 3,
        cout: 64,
        size: 64,
    },
];

fn conv_kernels(c: &mut Criterion) {
    let mut group = c.benchmark_group("conv_kernels_batch64");
    group
        .sample_size(10)
        .warm_up_time(std::time::Duration::from_secs(1))
        .measurement_time(std::time::Duration::from_secs(3));
    let dev = Device::Cpu;
    for l in LAYERS {
        let x = Tensor::randn(0f32, 1.0, (64, l.cin, l.size, l.size), &dev).unwrap();
        let wshape = if l.transposed {
            (l.cin, l.cout, 4, 4)
        } else {
            (l.cout, l.cin, 4, 4)
        };
        let w = Tensor::randn(0f32, 0.02, wshape, &dev).unwrap();
        let (xv, wv) = (Var::from_tensor(&x).unwrap(), Var::from_tensor(&w).unwrap());
        // None: Candle's own ops; Some(precision): easel's.
        let apply = |easel: Option<Precision>, x: &Tensor, w: &Tensor| -> Tensor {
            match (l.transposed, easel) {
                (true, Some(p)) => kernels::conv_transpose2d_with(x, w, 1, 0, 2, p),
                (true, None) => x.conv_transpose2d(w, 1, 0, 2, 1),
                (false, Some(p)) => kernels::conv2d_with(x, w, 1, 2, p),
                (false, None) => x.conv2d(w, 1, 2, 1, 1),
            }
            .unwrap()
        };
        let r = apply(None, &x, &w).ones_like().unwrap();
        for (easel, who) in [
            (Some(Precision::Fp32), "easel"),
            (Some(Precision::Bf16), "easel_bf16"),
            (None, "candle"),
        ] {
            group.bench_function(format!("{}/forward/{who}", l.name), |b| {
                b.iter(|| apply(easel, &x, &w))
            });
            group.bench_function(format!("{}/fwd_bwd/{who}", l.name), |b| {
                b.iter(|| {
                    let y = apply(easel, xv.as_tensor(), wv.as_tensor());
                    (y * &r).unwrap().sum_all().unwrap().backward().unwrap()
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, conv_kernels, gan);
criterion_main!(benches);
