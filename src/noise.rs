//! Seeded random draws shared by the CPPN and GAN layers.

use rand::Rng;

/// A standard normal draw (Box–Muller): the same numbers for the same generator state on
/// every platform, which seeded weights and exact resume rely on.
pub fn normal(rng: &mut impl Rng) -> f64 {
    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}
