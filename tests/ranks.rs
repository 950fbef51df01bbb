//! Data-parallel training: ranks that split each batch train the same model as one
//! process. Ranks here are threads ([`Threads`], the same contract as MPI's); tests/mpi.rs
//! runs the real engine under mpirun.

mod common;

use std::rc::Rc;

use easel::gan::train::{self, Outcome, Progress, Silent, TrainOptions};
use easel::gan::GanSpec;
use easel::ranks::{Ranks, Threads};
use easel::run::{Control, Metric, RunDir, State, Wanted};

use common::{assert_same_model, parallel_sketch as tiny};

fn opts(steps: usize, resume: bool, ranks: Rc<dyn Ranks>) -> TrainOptions {
    TrainOptions {
        steps: Some(steps),
        resume,
        ranks,
        ..Default::default()
    }
}

/// Trains `run` to `steps` on `size` thread ranks; every rank must end Done.
fn train_on(size: usize, run: &RunDir, spec: &GanSpec, src: &str, steps: usize, resume: bool) {
    let outcomes = train_with(size, run, spec, src, steps, resume, |_| {});
    assert!(outcomes.iter().all(|o| *o == Outcome::Done), "{outcomes:?}");
}

/// Rank 0's progress: calls `each` with every step it reports.
struct OnStep<F: FnMut(u64)>(F);

impl<F: FnMut(u64)> Progress for OnStep<F> {
    fn step(&mut self, m: &Metric) {
        (self.0)(m.step)
    }
}

/// Trains on `size` thread ranks, rank 0 calling `on_step` after each step; every rank's
/// outcome.
fn train_with(
    size: usize,
    run: &RunDir,
    spec: &GanSpec,
    src: &str,
    steps: usize,
    resume: bool,
    on_step: impl FnMut(u64) + Send,
) -> Vec<Outcome> {
    let mut on_step = Some(on_step);
    std::thread::scope(|s| {
        let handles: Vec<_> = Threads::group(size)
            .into_iter()
            .map(|rank| {
                let watch = if rank.rank() == 0 {
                    on_step.take()
                } else {
                    None
                };
                s.spawn(move || {
                    let rank: Rc<dyn Ranks> = Rc::new(rank);
                    let mut progress: Box<dyn Progress> = match watch {
                        Some(f) => Box::new(OnStep(f)),
                        None => Box::new(Silent),
                    };
                    let result = train::train(
                        run,
                        src,
                        spec,
                        &opts(steps, resume, rank.clone()),
                        progress.as_mut(),
                    );
                    if let Err(e) = &result {
                        rank.abandon(&format!("{e:#}"));
                    }
                    result.unwrap_or_else(|e| panic!("rank {}: {e:#}", rank.rank()))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

fn metric_steps(run: &RunDir) -> Vec<u64> {
    run.read_metrics().iter().map(|m| m.step).collect()
}

#[test]
fn two_ranks_train_the_weights_one_process_trains() {
    let dir = tempfile::tempdir().unwrap();
    let (spec, src) = tiny(dir.path(), "layer", "");
    let one = RunDir::at(&dir.path().join("one")).unwrap();
    let two = RunDir::at(&dir.path().join("two")).unwrap();
    train_on(1, &one, &spec, &src, 6, false);
    train_on(2, &two, &spec, &src, 6, false);
    assert_same_model(&one, &two, "2 ranks vs 1 process");
    // Rank 0 alone wrote: one metrics line per step, the same numbers to rounding (each
    // rank sums its part of the batch's gradients before they are added: another order).
    assert_eq!(metric_steps(&two), (1..=6).collect::<Vec<_>>());
    for (a, b) in one.read_metrics().iter().zip(two.read_metrics()) {
        assert!(
            (a.d_loss - b.d_loss).abs() < 1e-5,
            "{} vs {}",
            a.d_loss,
            b.d_loss
        );
        assert!(
            (a.d_real - b.d_real).abs() < 1e-5,
            "{} vs {}",
            a.d_real,
            b.d_real
        );
    }
    let status = two.read_status().unwrap();
    assert_eq!(status.ranks, 2);
    assert!(status.device.contains("2 ranks"), "{}", status.device);

    // Three ranks over a batch of 5 (rows 2, 2, 1).
    let three = RunDir::at(&dir.path().join("three")).unwrap();
    train_on(3, &three, &spec, &src, 6, false);
    assert_same_model(&one, &three, "3 ranks vs 1 process");
}

#[test]
fn a_run_resumes_on_another_number_of_ranks() {
    let dir = tempfile::tempdir().unwrap();
    let (spec, src) = tiny(dir.path(), "layer", "");
    let straight = RunDir::at(&dir.path().join("straight")).unwrap();
    train_on(1, &straight, &spec, &src, 6, false);

    // 2 ranks to step 3, then one process to 6.
    let down = RunDir::at(&dir.path().join("down")).unwrap();
    train_on(2, &down, &spec, &src, 3, false);
    train_on(1, &down, &spec, &src, 6, true);
    assert_same_model(&straight, &down, "2 ranks then 1");
    assert_eq!(metric_steps(&down), (1..=6).collect::<Vec<_>>());

    // One process to step 3, then 2 ranks to 6.
    let up = RunDir::at(&dir.path().join("up")).unwrap();
    train_on(1, &up, &spec, &src, 3, false);
    train_on(2, &up, &spec, &src, 6, true);
    assert_same_model(&straight, &up, "1 process then 2 ranks");
}

#[test]
fn ranks_with_batch_norm_keep_one_model_and_what_cannot_be_split_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    // Batch norm: each rank normalises by its own rows (as PyTorch's DDP does), so the
    // maths differ from one process, but the ranks still hold one model (checked by
    // digest at the start and every 50 steps; a run that ends cleanly passed them).
    let (spec, src) = tiny(dir.path(), "batch", "");
    let run = RunDir::at(&dir.path().join("bn")).unwrap();
    train_on(2, &run, &spec, &src, 4, false);
    assert_eq!(metric_steps(&run), vec![1, 2, 3, 4]);

    // mode_seeking pairs the batch's two halves: no rank holds both.
    let (spec, src) = tiny(dir.path(), "layer", ", mode_seeking: 1.0");
    let run = RunDir::at(&dir.path().join("ms")).unwrap();
    let errors = refusals(2, &run, &spec, &src);
    assert!(errors[0].contains("mode_seeking"), "{}", errors[0]);
    assert!(run.read_status().unwrap().message.contains("mode_seeking"));
}

#[test]
fn rank_0_carries_control_json_to_every_rank() {
    let dir = tempfile::tempdir().unwrap();
    let (spec, src) = tiny(dir.path(), "layer", "");
    // After step 2 the learning rates change, after step 4 the run is told to stop: one
    // process and two ranks take both at the same step.
    let steer = |run: &RunDir| {
        let run = run.clone();
        move |step: u64| {
            let control = match step {
                2 => Control {
                    lr_g: Some(5e-4),
                    lr_d: Some(1e-3),
                    ..Control::default()
                },
                4 => Control {
                    state: Some(Wanted::Stop),
                    ..Control::default()
                },
                _ => return,
            };
            run.write_control(&control).unwrap();
        }
    };
    let one = RunDir::at(&dir.path().join("one")).unwrap();
    let two = RunDir::at(&dir.path().join("two")).unwrap();
    let solo = train_with(1, &one, &spec, &src, 10, false, steer(&one));
    let pair = train_with(2, &two, &spec, &src, 10, false, steer(&two));
    assert_eq!(solo, vec![Outcome::Stopped]);
    assert_eq!(
        pair,
        vec![Outcome::Stopped, Outcome::Stopped],
        "both ranks stop"
    );
    assert_same_model(&one, &two, "with live learning rates");
    assert_eq!(metric_steps(&two), vec![1, 2, 3, 4]);
    assert_eq!(two.read_metrics()[3].lr_g, 5e-4);
    let status = two.read_status().unwrap();
    assert_eq!(
        (status.state, status.checkpoint_step),
        (State::Stopped, Some(4))
    );
}

#[test]
fn a_vae_gan_splits_its_reconstructions_and_samples_over_ranks() {
    let dir = tempfile::tempdir().unwrap();
    // `fakes: "both"`: the batch's first half are reconstructions of its real pictures, the
    // rest samples. Batch 5 on 2 ranks: rank 0 holds both kinds (rows 0-1 and 2); on 3
    // ranks, rank 1 (rows 2-3) holds no reconstruction and adds nothing to their mean.
    let (spec, src) = tiny(
        dir.path(),
        "layer",
        r#", vae: #{ weight: 3.0, beta: 0.5, warmup: 2, fakes: "both" }"#,
    );
    let one = RunDir::at(&dir.path().join("one")).unwrap();
    train_on(1, &one, &spec, &src, 5, false);
    for size in [2, 3] {
        let run = RunDir::at(&dir.path().join(format!("ranks{size}"))).unwrap();
        train_on(size, &run, &spec, &src, 5, false);
        assert_same_model(&one, &run, &format!("VAE-GAN on {size} ranks"));
        for (a, b) in one.read_metrics().iter().zip(run.read_metrics()) {
            let (ra, rb) = (a.reconstruction.unwrap(), b.reconstruction.unwrap());
            assert!((ra - rb).abs() < 1e-5 * ra.abs().max(1.0), "{ra} vs {rb}");
            assert!((a.kl.unwrap() - b.kl.unwrap()).abs() < 1e-4);
        }
    }
    // With batch norm in D (and so in the encoder), each rank would fit its own prior.
    let (spec, src) = tiny(dir.path(), "batch", r#", vae: #{ fakes: "both" }"#);
    let run = RunDir::at(&dir.path().join("bn")).unwrap();
    let errors = refusals(2, &run, &spec, &src);
    assert!(errors[0].contains("VAE-GAN with d_norm"), "{}", errors[0]);
}

/// Every rank's error from a run that must not start on `size` ranks.
fn refusals(size: usize, run: &RunDir, spec: &GanSpec, src: &str) -> Vec<String> {
    std::thread::scope(|s| {
        let handles: Vec<_> = Threads::group(size)
            .into_iter()
            .map(|rank| {
                s.spawn(move || {
                    let rank: Rc<dyn Ranks> = Rc::new(rank);
                    let e =
                        train::train(run, src, spec, &opts(2, false, rank.clone()), &mut Silent)
                            .expect_err("refused");
                    rank.abandon("failed");
                    format!("{e:#}")
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// Started by mpirun (which says so in OMPI_COMM_WORLD_SIZE), a build without MPI would
/// have every rank train the run alone: it refuses, before touching any run directory.
#[cfg(not(feature = "mpi"))]
#[test]
fn a_build_without_mpi_refuses_to_run_as_one_of_several_ranks() {
    let dir = tempfile::tempdir().unwrap();
    tiny(dir.path(), "layer", "");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_easel"))
        .args(["train", "gan.rhai", "--runs", "runs"])
        .current_dir(dir.path())
        .env("OMPI_COMM_WORLD_SIZE", "2")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("built without MPI") && err.contains("--features mpi"),
        "{err}"
    );
    assert!(!dir.path().join("runs").exists(), "no run directory made");
}
