//! CPPN rendering speed: 1024x1024, inputs x, y, r + 8-dim z, 7 hidden layers of 32
//! tanh, sigmoid output (~14 GFLOP as a dense network on 11 inputs).
//!
//! In the same run, two references on the same network:
//! - `candle_ops`: the network as Candle tensor ops (matmul, broadcast_add, tanh,
//!   sigmoid) over all pixels at once — what a framework user would write;
//! - `plain_loop`: one pixel at a time through the layers with std's `tanh` (rendered
//!   at 256x256 and reported ×16 in the README).

use std::path::Path;

use candle_core::{Device, Tensor};
use criterion::{criterion_group, criterion_main, Criterion};
use easel::cppn::net::Network;
use easel::spec::{self, Spec};

// The same allocator as the `easel` binary.
#[global_allocator]
static GLOBAL: easel::alloc::BlockCache<mimalloc::MiMalloc> =
    easel::alloc::BlockCache::new(mimalloc::MiMalloc);

const SKETCH: &str = r#"#{ kind: "cppn", size: 1024, inputs: ["x", "y", "r"], z: 8,
                           depth: 7, width: 32, activation: "tanh", seed: 1 }"#;

fn spec() -> easel::cppn::CppnSpec {
    match spec::load_source(Path::new("bench.rhai"), SKETCH.into())
        .unwrap()
        .spec
    {
        Spec::Cppn(c) => c,
        _ => unreachable!(),
    }
}

fn inputs(width: usize, height: usize, z: &[f32]) -> Vec<f32> {
    let unit = width.min(height) as f32 / 2.0;
    let mut out = Vec::with_capacity(width * height * (3 + z.len()));
    for py in 0..height {
        for px in 0..width {
            let x = (px as f32 + 0.5 - width as f32 / 2.0) / unit;
            let y = (py as f32 + 0.5 - height as f32 / 2.0) / unit;
            out.extend([x, y, (x * x + y * y).sqrt()]);
            out.extend_from_slice(z);
        }
    }
    out
}

fn candle_render(net: &Network, input: &Tensor) -> Tensor {
    let mut x = input.clone();
    for (k, l) in net.layers.iter().enumerate() {
        let w = Tensor::from_slice(&l.w, (l.inputs, l.outputs), &Device::Cpu).unwrap();
        let b = Tensor::from_slice(&l.b, l.outputs, &Device::Cpu).unwrap();
        x = x.matmul(&w).unwrap().broadcast_add(&b).unwrap();
        x = if k + 1 == net.layers.len() {
            candle_nn::ops::sigmoid(&x).unwrap()
        } else {
            x.tanh().unwrap()
        };
    }
    x
}

fn plain_loop(net: &Network, input: &[f32], n_in: usize) -> Vec<f32> {
    let mut out = Vec::new();
    for pixel in input.chunks_exact(n_in) {
        let mut x = pixel.to_vec();
        for (k, l) in net.layers.iter().enumerate() {
            x = (0..l.outputs)
                .map(|o| {
                    let s: f32 = (0..l.inputs)
                        .map(|i| l.w[i * l.outputs + o] * x[i])
                        .sum::<f32>()
                        + l.b[o];
                    if k + 1 == net.layers.len() {
                        1.0 / (1.0 + (-s).exp())
                    } else {
                        s.tanh()
                    }
                })
                .collect();
        }
        out.extend(x);
    }
    out
}

fn cppn(c: &mut Criterion) {
    let spec = spec();
    let net = spec.network();
    let z = spec.z();
    let mut group = c.benchmark_group("cppn_1024");
    group.sample_size(10);
    group.bench_function("easel", |b| {
        b.iter(|| std::hint::black_box(easel::cppn::render::render(&spec, &net, &z)))
    });

    let input = Tensor::from_vec(inputs(1024, 1024, &z), (1024 * 1024, 11), &Device::Cpu).unwrap();
    group.bench_function("candle_ops", |b| {
        b.iter(|| std::hint::black_box(candle_render(&net, &input)))
    });

    let small = inputs(256, 256, &z);
    group.bench_function("plain_loop_256x256", |b| {
        b.iter(|| std::hint::black_box(plain_loop(&net, &small, 11)))
    });
    group.finish();
}

criterion_group!(benches, cppn);
criterion_main!(benches);
