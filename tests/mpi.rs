//! `easel train` under OpenMPI's mpirun: the real engine, the real binary. Built only with
//! the `mpi` feature (`cargo test --features mpi --test mpi`, which `.ci/run` runs after
//! installing OpenMPI); without `mpirun` on the PATH these tests fail rather than pass.
#![cfg(feature = "mpi")]

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use easel::run::{RunDir, State};

use common::{assert_same_model, parallel_sketch};

/// `mpirun -np N easel ARGS` in `dir` (as root too: CI runs as root).
fn mpirun(n: usize, dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new("mpirun");
    c.args(["-np", &n.to_string(), "--oversubscribe"])
        .arg(env!("CARGO_BIN_EXE_easel"))
        .args(args)
        .current_dir(dir)
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        // Two ranks on two cores: no busy-waiting in collectives.
        .env("OMPI_MCA_mpi_yield_when_idle", "1");
    c
}

fn ok(out: Output, what: &str) -> Output {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn train_on(ranks: usize, dir: &Path, run: &str, steps: usize, resume: bool) -> Output {
    let steps = steps.to_string();
    let mut args = vec!["train", "gan.rhai", "--run-dir", run, "--steps", &steps];
    if resume {
        args.push("--resume");
    }
    let what = format!("{ranks} rank(s): easel {}", args.join(" "));
    let out = match ranks {
        1 => common::easel_run(&args, dir),
        n => mpirun(n, dir, &args)
            .output()
            .expect("mpirun (OpenMPI) on the PATH"),
    };
    ok(out, &what)
}

fn steps_of(run: &RunDir) -> Vec<u64> {
    run.read_metrics().iter().map(|m| m.step).collect()
}

#[test]
fn two_mpi_ranks_train_what_one_process_trains_and_resume_on_either() {
    let dir = tempfile::tempdir().unwrap();
    parallel_sketch(dir.path(), "layer", "");
    let at = |name: &str| RunDir::at(&dir.path().join(name)).unwrap();

    train_on(1, dir.path(), "one", 6, false);
    let out = train_on(2, dir.path(), "two", 6, false);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("MPI, 2 ranks"),
        "rank 0 says how it trains"
    );
    assert_same_model(&at("one"), &at("two"), "2 MPI ranks vs 1 process");
    let two = at("two");
    assert_eq!(
        steps_of(&two),
        (1..=6).collect::<Vec<_>>(),
        "one line a step"
    );
    let status = two.read_status().unwrap();
    assert_eq!((status.state, status.ranks), (State::Done, 2));

    // 2 ranks to step 3, then one process to 6; and the other way round.
    train_on(2, dir.path(), "down", 3, false);
    train_on(1, dir.path(), "down", 6, true);
    assert_same_model(&at("one"), &at("down"), "2 ranks then 1");
    train_on(1, dir.path(), "up", 3, false);
    train_on(2, dir.path(), "up", 6, true);
    assert_same_model(&at("one"), &at("up"), "1 process then 2 ranks");
    assert_eq!(steps_of(&at("up")), (1..=6).collect::<Vec<_>>());
}

/// The easel processes that are children of `parent`.
fn children(parent: u32) -> Vec<u32> {
    let mut found = vec![];
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // pid (comm) state ppid …
        let after = &stat[stat.rfind(')').unwrap_or(0) + 1..];
        let ppid: u32 = after
            .split_whitespace()
            .nth(1)
            .unwrap_or("0")
            .parse()
            .unwrap_or(0);
        if ppid == parent && stat.contains("(easel)") {
            found.push(pid);
        }
    }
    found
}

#[test]
fn a_killed_rank_ends_the_job_and_the_last_checkpoint_resumes() {
    let dir = tempfile::tempdir().unwrap();
    parallel_sketch(dir.path(), "layer", "");
    let run = RunDir::at(&dir.path().join("run")).unwrap();
    let mut job = mpirun(
        2,
        dir.path(),
        &["train", "gan.rhai", "--run-dir", "run", "--steps", "100000"],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .expect("mpirun (OpenMPI) on the PATH");
    // Wait for a few checkpointed steps.
    let start = Instant::now();
    while run
        .read_status()
        .ok()
        .and_then(|s| s.checkpoint_step)
        .unwrap_or(0)
        < 5
    {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no checkpoint within 2 minutes"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let root = run.read_status().unwrap().pid;
    let other = children(job.id())
        .into_iter()
        .find(|&p| p != root)
        .expect("rank 1's process");
    Command::new("kill")
        .args(["-9", &other.to_string()])
        .status()
        .unwrap();
    let ended = Instant::now();
    let status = loop {
        if let Some(s) = job.try_wait().unwrap() {
            break s;
        }
        assert!(
            ended.elapsed() < Duration::from_secs(60),
            "the job outlived its killed rank by a minute"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        !status.success(),
        "a job with a killed rank must not exit 0"
    );
    let mut stderr = String::new();
    std::io::Read::read_to_string(job.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(
        stderr.contains("signal 9") || stderr.contains("Killed"),
        "mpirun says why:\n{stderr}"
    );

    // The newest checkpoint is whole: one process resumes from it.
    let saved = common::checkpoint_step_of(&run);
    assert!(saved >= 5, "checkpoint at step {saved}");
    let target = (saved + 2).to_string();
    ok(
        common::easel_run(
            &[
                "train",
                "gan.rhai",
                "--run-dir",
                "run",
                "--resume",
                "--steps",
                &target,
            ],
            dir.path(),
        ),
        "resume after the killed rank",
    );
    assert_eq!(steps_of(&run).last().copied(), Some(saved + 2));
}
