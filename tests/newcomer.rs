//! A newcomer's first hour: scripts/newcomer.sh runs `easel init` in a fresh folder,
//! checks every bundled sketch, runs every command of the README's tour as written and
//! makes the usual mistakes, each of which must say what to do.

use std::process::Command;

#[test]
fn the_readme_tour_runs_as_written_and_mistakes_say_what_to_do() {
    let out = Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/newcomer.sh"))
        .arg(env!("CARGO_BIN_EXE_easel"))
        .output()
        .unwrap();
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "scripts/newcomer.sh failed:\n{log}");
    assert!(log.contains("newcomer: all good"), "{log}");
}
