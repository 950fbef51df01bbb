//! Latent walks: a closed loop through latent space, one frame per step.

use image::DynamicImage;
use rand::SeedableRng;
use rand_pcg::Pcg64Mcg;

use super::{render, CppnSpec};
use crate::noise::normal;

/// The latent vector of frame `k` of `frames`. Two random unit directions span a
/// circle around the sketch's z; frame `frames` would equal frame 0, so the loop closes.
pub fn latent_at(spec: &CppnSpec, k: u32, frames: u32) -> Vec<f32> {
    let z = spec.z();
    let mut rng = Pcg64Mcg::seed_from_u64(spec.seed ^ 0xA11_CE5);
    let mut direction = || {
        let v: Vec<f64> = (0..z.len()).map(|_| normal(&mut rng)).collect();
        let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-12);
        v.into_iter().map(|x| x / norm).collect::<Vec<f64>>()
    };
    let (a, b) = (direction(), direction());
    let theta = std::f64::consts::TAU * k as f64 / frames as f64;
    let (c, s) = (theta.cos(), theta.sin());
    z.iter()
        .enumerate()
        .map(|(i, &zi)| (zi as f64 + spec.animation.radius * (c * a[i] + s * b[i])) as f32)
        .collect()
}

/// Renders frame `k` of the loop.
pub fn frame(spec: &CppnSpec, net: &super::net::Network, k: u32, frames: u32) -> DynamicImage {
    render::render(spec, net, &latent_at(spec, k, frames))
}
