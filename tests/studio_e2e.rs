//! The studio end to end, in tmux: scripts/studio_e2e.sh drives the real binary (edit in
//! place and by rename, error with its line, favourite, seed and knob, variations picked and
//! undone, a tiny training). Skipped, with a note, where tmux is not installed (.ci/run
//! installs it).

use std::process::Command;

#[test]
fn the_studio_works_end_to_end_in_tmux() {
    if Command::new("tmux").arg("-V").output().is_err() {
        eprintln!("tmux is not installed: skipping the studio end-to-end script");
        return;
    }
    let out = Command::new("bash")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/studio_e2e.sh"
        ))
        .arg(env!("CARGO_BIN_EXE_easel"))
        .output()
        .unwrap();
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "scripts/studio_e2e.sh failed:\n{log}");
    assert!(log.contains("studio e2e: all good"), "{log}");
}
