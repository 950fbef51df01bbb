//! Truchet rendering speed.
//!
//! - `py_truchet_gan_dataset_1000`: the py-truchet-gan dataset (1000 images, 32x32,
//!   8 px triangle tiles) rendered in memory, one thread, as Pillow would.
//!   Reference: `python3 scripts/bench_reference.py` (Pillow) on the same machine.
//! - `arcs_4096_antialiased`: one 4096x4096 Smith-arcs canvas, all cores.

use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion};
use easel::spec;

// The same allocator as the `easel` binary.
#[global_allocator]
static GLOBAL: easel::alloc::BlockCache<mimalloc::MiMalloc> =
    easel::alloc::BlockCache::new(mimalloc::MiMalloc);

fn dataset(c: &mut Criterion) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("sketches/truchet_dataset.rhai");
    let sketch = spec::load(&path).unwrap();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let mut group = c.benchmark_group("truchet");
    group.sample_size(20);
    group.bench_function("py_truchet_gan_dataset_1000", |b| {
        b.iter(|| {
            pool.install(|| {
                for k in 0..1000u64 {
                    let mut spec = sketch.spec.clone();
                    spec.set_seed(k);
                    std::hint::black_box(spec.render().unwrap());
                }
            })
        })
    });
    let arcs = spec::load_source(
        Path::new("arcs4096.rhai"),
        r#"#{ kind: "truchet", family: "arcs", size: 4096, tile: 64, line: 8, antialias: true }"#
            .into(),
    )
    .unwrap();
    group.sample_size(10);
    group.bench_function("arcs_4096_antialiased", |b| {
        b.iter(|| std::hint::black_box(arcs.spec.render().unwrap()))
    });
    group.finish();
}

criterion_group!(benches, dataset);
criterion_main!(benches);
