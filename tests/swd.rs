//! Sliced Wasserstein distance: a set against itself is 0, a second draw of the same
//! distribution is close, blur and noise push it up step by step, stripes and dots are far
//! apart, seeded determinism, the pyramid's levels, and errors for sets that cannot be
//! compared.

use easel::gan::swd::{
    levels, swd, swd_tensors, swd_with, wasserstein_1d, Images, Normalise, Swd, SwdConfig, SwdError,
};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;

const C: usize = 3;
const S: usize = 32;

struct Set {
    data: Vec<f32>,
    n: usize,
}

impl Set {
    fn images(&self) -> Images<'_> {
        Images::new(&self.data, self.n, C, S, S).unwrap()
    }
}

/// `n` RGB images of `S`×`S`, each `f(rng, y, x) -> value` per channel with a random tint.
fn make(n: usize, seed: u64, f: impl Fn(&[f32; 6], f32, f32) -> f32) -> Set {
    let mut rng = Pcg64Mcg::seed_from_u64(seed);
    let mut data = Vec::with_capacity(n * C * S * S);
    for _ in 0..n {
        let params: [f32; 6] = std::array::from_fn(|_| rng.random());
        let tint: [f32; C] = std::array::from_fn(|_| 0.6 + 0.4 * rng.random::<f32>());
        for t in tint {
            for y in 0..S {
                for x in 0..S {
                    data.push((t * f(&params, y as f32, x as f32)).clamp(-1.0, 1.0));
                }
            }
        }
    }
    Set { data, n }
}

/// Soft oriented stripes, random angle, period 5–9 px and phase.
fn stripes(n: usize, seed: u64) -> Set {
    make(n, seed, |p, y, x| {
        let angle = p[0] * std::f32::consts::PI;
        let freq = std::f32::consts::TAU / (5.0 + 4.0 * p[1]);
        let u = x * angle.cos() + y * angle.sin();
        (2.0 * (freq * u + p[2] * std::f32::consts::TAU).sin()).tanh()
    })
}

/// Round dots of radius ~2 on a lattice of random pitch 6–9 px and offset.
fn dots(n: usize, seed: u64) -> Set {
    make(n, seed, |p, y, x| {
        let pitch = 6.0 + 3.0 * p[1];
        let dy = (y + p[2] * pitch).rem_euclid(pitch) - pitch / 2.0;
        let dx = (x + p[3] * pitch).rem_euclid(pitch) - pitch / 2.0;
        if dy * dy + dx * dx < 4.0 {
            1.0
        } else {
            -1.0
        }
    })
}

/// Separable Gaussian blur of every plane, clamped borders.
fn blur(set: &Set, sigma: f32) -> Set {
    let r = (3.0 * sigma).ceil() as isize;
    let k: Vec<f32> = (-r..=r)
        .map(|i| (-(i * i) as f32 / (2.0 * sigma * sigma)).exp())
        .collect();
    let sum: f32 = k.iter().sum();
    let k: Vec<f32> = k.iter().map(|v| v / sum).collect();
    let at = |i: isize| i.clamp(0, S as isize - 1) as usize;
    let mut data = set.data.clone();
    for plane in data.chunks_mut(S * S) {
        let src = plane.to_vec();
        let mut tmp = vec![0.0; S * S];
        for y in 0..S {
            for x in 0..S {
                tmp[y * S + x] = (-r..=r)
                    .map(|i| k[(i + r) as usize] * src[y * S + at(x as isize + i)])
                    .sum();
            }
        }
        for y in 0..S {
            for x in 0..S {
                plane[y * S + x] = (-r..=r)
                    .map(|i| k[(i + r) as usize] * tmp[at(y as isize + i) * S + x])
                    .sum();
            }
        }
    }
    Set { data, n: set.n }
}

fn noisy(set: &Set, sigma: f32, seed: u64) -> Set {
    let mut rng = Pcg64Mcg::seed_from_u64(seed);
    let data = set
        .data
        .iter()
        .map(|v| v + sigma * easel::gan::layers::normal(&mut rng))
        .collect();
    Set { data, n: set.n }
}

fn score(a: &Set, b: &Set) -> Swd {
    swd(&a.images(), &b.images(), 1).unwrap()
}

#[test]
fn a_set_against_itself_is_zero_and_a_second_draw_is_close() {
    let a = stripes(64, 1);
    let same = score(&a, &a);
    assert_eq!(same.per_level, vec![0.0, 0.0]);
    assert_eq!(same.mean, 0.0);
    assert_eq!(same.resolutions, vec![(32, 32), (16, 16)]);
    let again = score(&a, &stripes(64, 2));
    let other = score(&a, &dots(64, 3));
    eprintln!(
        "stripes vs stripes {:?}, stripes vs dots {:?}",
        again, other
    );
    assert!(again.mean > 0.0);
    assert!(
        other.mean > 4.0 * again.mean,
        "stripes vs dots {} is not far above stripes vs stripes {}",
        other.mean,
        again.mean
    );
    for (o, s) in other.per_level.iter().zip(&again.per_level) {
        assert!(o > s, "every level tells them apart: {other:?} {again:?}");
    }
    // Symmetric in its arguments.
    let back = score(&dots(64, 3), &a);
    assert!((back.mean - other.mean).abs() < 1e-9 * other.mean.max(1.0));
}

#[test]
fn grows_with_blur() {
    let a = stripes(64, 4);
    let scores: Vec<f64> = [0.5, 1.0, 2.0]
        .iter()
        .map(|&s| score(&a, &blur(&a, s)).mean)
        .collect();
    eprintln!("blur 0.5, 1, 2: {scores:?}");
    assert!(scores[0] > 0.0);
    assert!(scores.windows(2).all(|w| w[1] > w[0]), "{scores:?}");
}

#[test]
fn grows_with_noise() {
    let a = dots(64, 5);
    let scores: Vec<f64> = [0.05, 0.2, 0.5]
        .iter()
        .map(|&s| score(&a, &noisy(&a, s, 9)).mean)
        .collect();
    eprintln!("noise 0.05, 0.2, 0.5: {scores:?}");
    assert!(scores[0] > 0.0);
    assert!(scores.windows(2).all(|w| w[1] > w[0]), "{scores:?}");
}

#[test]
fn deterministic_for_a_seed() {
    let (a, b) = (stripes(32, 6), dots(32, 7));
    let first = swd(&a.images(), &b.images(), 11).unwrap();
    let second = swd(&a.images(), &b.images(), 11).unwrap();
    assert_eq!(first, second);
    let other = swd(&a.images(), &b.images(), 12).unwrap();
    assert_ne!(first, other);
    // Another seed draws other patches and directions, but measures the same thing.
    assert!(
        (first.mean - other.mean).abs() < 0.2 * first.mean,
        "{first:?} {other:?}"
    );
    // Through tensors it is the same computation.
    let ta =
        candle_core::Tensor::from_vec(a.data.clone(), (32, C, S, S), &candle_core::Device::Cpu)
            .unwrap();
    let tb =
        candle_core::Tensor::from_vec(b.data.clone(), (32, C, S, S), &candle_core::Device::Cpu)
            .unwrap();
    assert_eq!(swd_tensors(&ta, &tb, 11).unwrap(), first);
}

#[test]
fn uses_the_smaller_set() {
    let (a, b) = (stripes(40, 8), dots(24, 9));
    let first_24 = Set {
        data: a.data[..24 * C * S * S].to_vec(),
        n: 24,
    };
    assert_eq!(score(&a, &b), score(&first_24, &b));
}

#[test]
fn pooled_normalisation_sees_a_colour_cast_per_set_does_not() {
    let a = stripes(32, 10);
    let cast = Set {
        data: a.data.iter().map(|v| v * 0.5 + 0.3).collect(),
        n: a.n,
    };
    let pooled = score(&a, &cast);
    let per_set = swd_with(
        &a.images(),
        &cast.images(),
        1,
        &SwdConfig {
            normalise: Normalise::PerSet,
            ..SwdConfig::default()
        },
    )
    .unwrap();
    eprintln!("colour cast: pooled {pooled:?}, per set {per_set:?}");
    // Per set, an affine change of every value normalises away (up to rounding).
    assert!(per_set.mean < 1e-2, "{per_set:?}");
    assert!(pooled.mean > 100.0 * per_set.mean.max(1e-3), "{pooled:?}");
}

#[test]
fn pyramid_levels_down_to_16() {
    let config = SwdConfig::default();
    assert_eq!(levels(64, 64, &config), vec![(64, 64), (32, 32), (16, 16)]);
    assert_eq!(levels(128, 128, &config).len(), 4);
    assert_eq!(levels(32, 32, &config), vec![(32, 32), (16, 16)]);
    assert_eq!(levels(28, 28, &config), vec![(28, 28)]);
    assert_eq!(levels(8, 8, &config), vec![(8, 8)]);
    // Grayscale 28 px (MNIST-sized) works on its one level.
    let g: Vec<f32> = (0..10 * 28 * 28)
        .map(|i| ((i * 7919) % 201) as f32 / 100.0 - 1.0)
        .collect();
    let g = Images::new(&g, 10, 1, 28, 28).unwrap();
    let r = swd(&g, &g, 0).unwrap();
    assert_eq!((r.per_level.len(), r.mean), (1, 0.0));
}

#[test]
fn sets_that_cannot_be_compared_are_errors() {
    let rgb = vec![0.0f32; 2 * 3 * 16 * 16];
    let gray = vec![0.0f32; 2 * 16 * 16];
    let a = Images::new(&rgb, 2, 3, 16, 16).unwrap();
    let g = Images::new(&gray, 2, 1, 16, 16).unwrap();
    assert_eq!(swd(&a, &g, 0).unwrap_err(), SwdError::Channels(3, 1));
    let other = Images::new(&rgb, 2, 3, 8, 32).unwrap();
    assert!(matches!(swd(&a, &other, 0), Err(SwdError::Size { .. })));
    assert!(matches!(
        Images::new(&rgb, 3, 3, 16, 16),
        Err(SwdError::Length { .. })
    ));
    let tiny = vec![0.0f32; 2 * 3 * 5 * 5];
    let t = Images::new(&tiny, 2, 3, 5, 5).unwrap();
    assert!(matches!(swd(&t, &t, 0), Err(SwdError::TooSmall { .. })));
    let empty = Images::new(&[], 0, 3, 16, 16).unwrap();
    assert_eq!(swd(&a, &empty, 0).unwrap_err(), SwdError::Empty);
    let even = SwdConfig {
        patch: 6,
        ..SwdConfig::default()
    };
    assert!(matches!(
        swd_with(&a, &a, 0, &even),
        Err(SwdError::Config(_))
    ));
    // All-constant sets do not divide by a zero deviation.
    assert_eq!(swd(&a, &a, 0).unwrap().mean, 0.0);
}

#[test]
fn one_dimensional_distance_matches_a_plain_sort() {
    let mut rng = Pcg64Mcg::seed_from_u64(3);
    for n in [1, 2, 17, 1000, 5000] {
        let a: Vec<f32> = (0..n).map(|_| rng.random::<f32>() * 20.0 - 10.0).collect();
        let mut b: Vec<f32> = (0..n)
            .map(|_| easel::gan::layers::normal(&mut rng) * 3.0)
            .collect();
        if n > 2 {
            b[0] = -0.0;
            b[1] = f32::MAX;
            b[2] = f32::MIN_POSITIVE;
        }
        let (mut sa, mut sb) = (a.clone(), b.clone());
        sa.sort_by(f32::total_cmp);
        sb.sort_by(f32::total_cmp);
        let expect = sa
            .iter()
            .zip(&sb)
            .map(|(x, y)| (*x as f64 - *y as f64).abs())
            .sum::<f64>()
            / n as f64;
        assert_eq!(wasserstein_1d(&a, &b), Some(expect), "n = {n}");
    }
    assert_eq!(wasserstein_1d(&[1.0], &[1.0, 2.0]), None);
    assert_eq!(wasserstein_1d(&[], &[]), None);
}

/// The speed of the trainer's likely use: 1024 real images against 1024 samples at
/// 64×64 RGB. Run with `cargo test --release --test swd -- --ignored --nocapture`.
#[test]
#[ignore]
fn timing_1024_rgb_64() {
    let n = 1024;
    let side = 64;
    let mut rng = Pcg64Mcg::seed_from_u64(0);
    let a: Vec<f32> = (0..n * 3 * side * side)
        .map(|_| rng.random::<f32>() * 2.0 - 1.0)
        .collect();
    let b: Vec<f32> = (0..n * 3 * side * side)
        .map(|_| rng.random::<f32>() * 2.0 - 1.0)
        .collect();
    let (a, b) = (
        Images::new(&a, n, 3, side, side).unwrap(),
        Images::new(&b, n, 3, side, side).unwrap(),
    );
    for dirs_per_repeat in [128, 512] {
        let config = SwdConfig {
            dirs_per_repeat,
            ..SwdConfig::default()
        };
        let t = std::time::Instant::now();
        let r = swd_with(&a, &b, 0, &config).unwrap();
        eprintln!(
            "SWD 1024 vs 1024 at 64x64x3, {dirs_per_repeat}x4 directions, {} threads: {:?} ({:?})",
            rayon::current_num_threads(),
            t.elapsed(),
            r.per_level
        );
    }
}
