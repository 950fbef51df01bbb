//! The fused CPU fit trainer (`src/cppn/train.rs`) against Candle's autograd and its own
//! determinism: gradients for every trainable activation and kernel, the PSNR a fit
//! reaches, and bit-identical results across runs and thread counts.

mod common;

use std::path::Path;

use common::{cppn_at, soft_disc};

use easel::cppn::net::{Activation, Init, Network};
use easel::cppn::train::{FitData, Kernel};
use easel::cppn::CppnSpec;

/// Random pixel-major inputs in [−1, 1] and targets in [0, 1] for `n` rows.
fn random_rows(n: usize, n_in: usize, channels: usize, seed: u64) -> FitData {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(seed);
    let inputs = (0..n * n_in)
        .map(|_| rng.random_range(-1.0f32..1.0))
        .collect();
    let target = (0..n * channels).map(|_| rng.random::<f32>()).collect();
    FitData::from_rows(inputs, target, n_in, channels)
}

/// ‖a − b‖ / ‖b‖ over all weights and biases of two same-shaped networks.
fn relative_difference(a: &Network, b: &Network) -> f64 {
    let (mut diff, mut norm) = (0f64, 0f64);
    for (la, lb) in a.layers.iter().zip(&b.layers) {
        for (x, y) in la.w.iter().chain(&la.b).zip(lb.w.iter().chain(&lb.b)) {
            diff += (*x as f64 - *y as f64).powi(2);
            norm += (*y as f64).powi(2);
        }
    }
    (diff / norm.max(1e-30)).sqrt()
}

#[test]
fn fused_gradients_match_candle_autograd_for_every_trainable_activation() {
    // 300 rows: a full chunk of the fused trainer and a padded second.
    let data = random_rows(300, 5, 3, 7);
    for act in Activation::ALL.into_iter().filter(|a| a.trainable()) {
        // The activation everywhere (the output too, so [−1, 1]-ranged outputs go
        // through the colour mapping), and once more under a sigmoid output.
        for output in [act, Activation::Sigmoid] {
            let net = Network::random(
                &[5, 12, 9, 3],
                &[act, act, output],
                0.7,
                Init::Normal,
                true,
                3,
            );
            let (want_loss, candle) =
                easel::cppn::fit_candle::loss_and_gradients(&net, &data).unwrap();
            // Every kernel this CPU has (AVX-512, AVX2+FMA, plain).
            for kernel in Kernel::available() {
                let (loss, fused) =
                    easel::cppn::train::loss_and_gradients(&net, &data, kernel).unwrap();
                let what = format!(
                    "{kernel:?}: {} layers, {} output",
                    act.name(),
                    output.name()
                );
                assert!(
                    ((loss - want_loss) / want_loss).abs() < 1e-4,
                    "{what}: loss {loss} vs Candle's {want_loss}"
                );
                let err = relative_difference(&fused, &candle);
                assert!(err < 1e-3, "{what}: gradients differ by {err:e} (relative)");
            }
        }
    }
}

/// A 32x32 smooth target (a soft disc on a gradient) and a sketch fitting it.
fn disc_fit(dir: &Path, steps: usize, hold_out: bool) -> CppnSpec {
    soft_disc().save(dir.join("disc.png")).unwrap();
    cppn_at(
        &dir.join("disc.rhai"),
        &format!(
            r#"#{{ kind: "cppn", z: 2, depth: 3, width: 16, init_std: 0.5, seed: 4,
                  fit: #{{ image: "disc.png", steps: {steps}, lr: 0.01, size: 32,
                           hold_out: {hold_out} }} }}"#
        ),
    )
}

#[test]
fn the_fused_fit_reaches_the_candle_fits_psnr() {
    let dir = tempfile::tempdir().unwrap();
    for hold_out in [false, true] {
        let spec = disc_fit(dir.path(), 300, hold_out);
        let fit = spec.fit.clone().unwrap();
        let data = FitData::new(&spec, &fit).unwrap();
        let start = spec.network();
        let (_, candle) = easel::cppn::fit_candle::fit_candle(
            &start,
            &data,
            fit.steps,
            fit.lr,
            &candle_core::Device::Cpu,
            &mut |_, _| {},
        )
        .unwrap();
        // Every kernel this CPU has, so a machine without AVX-512 is covered too.
        for kernel in Kernel::available() {
            let (_, fused) = easel::cppn::train::fit_fused_with(
                kernel,
                &start,
                &data,
                fit.steps,
                fit.lr,
                &mut |_, _| {},
            )
            .unwrap();
            // The same loss and steps, rounded differently: the curves stay together.
            for (step, (a, b)) in fused.losses.iter().zip(&candle.losses).enumerate() {
                assert!(
                    (a - b).abs() <= 0.05 * b,
                    "{kernel:?}, step {step}: loss {a} (fused) vs {b} (Candle)"
                );
            }
            assert!(
                fused.psnr >= candle.psnr - 0.05,
                "{kernel:?}: fused {fused:?}\nCandle {candle:?}"
            );
            assert_eq!(fused.psnr_held_out.is_some(), hold_out);
            if let (Some(a), Some(b)) = (fused.psnr_held_out, candle.psnr_held_out) {
                assert!(
                    (a - b).abs() < 0.5,
                    "{kernel:?}, held out: fused {a:.2} dB, Candle {b:.2} dB"
                );
            }
            if kernel == Kernel::best() {
                // `fit` on the CPU is the fused trainer with the best kernel.
                let (_, report) = easel::cppn::fit::fit(&spec, &fit, &mut |_, _| {}).unwrap();
                assert_eq!(report.losses, fused.losses);
            }
        }
    }
}

#[test]
fn fused_fits_are_bit_identical_across_runs_and_thread_counts() {
    let dir = tempfile::tempdir().unwrap();
    let spec = disc_fit(dir.path(), 40, false);
    let fit = spec.fit.clone().unwrap();
    let run = || easel::cppn::fit::fit(&spec, &fit, &mut |_, _| {}).unwrap();
    let bits = |net: &Network| -> Vec<u32> {
        net.layers
            .iter()
            .flat_map(|l| l.w.iter().chain(&l.b).map(|v| v.to_bits()))
            .collect()
    };
    let (a, ra) = run();
    let (b, rb) = run();
    let one_thread = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let (c, rc) = one_thread.install(run);
    assert_eq!(bits(&a), bits(&b));
    assert_eq!(bits(&a), bits(&c));
    assert_eq!(ra.losses, rb.losses);
    assert_eq!(ra.losses, rc.losses);
    assert_eq!(ra.psnr.to_bits(), rc.psnr.to_bits());
}
