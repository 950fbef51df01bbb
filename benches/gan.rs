//! Training speed through the real path (`Trainer::train_step`, as `easel train` runs
//! it): one D and one G update with Adam, batch 64.
//! - `truchet_32`: the bundled py-truchet-gan sketch (32x32 grayscale).
//! - `dcgan_64`: the bundled PyTorch-tutorial DCGAN (64x64 RGB).
//!
//! Reference (same machine, earlier, see DESIGN.md): PyTorch 2.15 does the 64x64 DCGAN
//! step in ~1.8 s.

use std::path::Path;

use candle_core::Device;
use criterion::{criterion_group, criterion_main, Criterion};
use easel::gan::data;
use easel::gan::train::Trainer;
use easel::gan::DataSource;
use easel::sketch::{self, Spec};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn trainer(name: &str) -> (Trainer, data::Dataset) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("sketches")
        .join(name);
    let Spec::Gan(mut spec) = sketch::load(&path).unwrap().spec else {
        panic!("not a GAN sketch")
    };
    spec.batch = 64;
    if let DataSource::Sketch { count, .. } = &mut spec.data {
        *count = 256;
    }
    let data = data::load(&spec, &Device::Cpu).unwrap();
    let t = Trainer::new(&spec, data.class_names.clone(), &Device::Cpu).unwrap();
    (t, data)
}

fn gan(c: &mut Criterion) {
    let mut group = c.benchmark_group("gan_step_batch64");
    group.sample_size(10);
    let (mut t, data) = trainer("gan_truchet.rhai");
    group.bench_function("truchet_32", |b| b.iter(|| t.train_step(&data).unwrap()));
    let (mut t, data) = trainer("gan_dcgan64.rhai");
    group.bench_function("dcgan_64", |b| b.iter(|| t.train_step(&data).unwrap()));
    group.finish();
}

criterion_group!(benches, gan);
criterion_main!(benches);
