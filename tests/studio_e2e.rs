//! The studio end to end, in tmux: scripts/studio_e2e.sh drives the real binary (edit in
//! place and by rename, error with its line, favourite, seed and knob, variations picked and
//! undone, a tiny training). Skipped, with a note, where tmux is not installed (.ci/run
//! installs it).

mod common;

use std::process::Command;

#[test]
fn the_studio_works_end_to_end_in_tmux() {
    if Command::new("tmux").arg("-V").output().is_err() {
        eprintln!("tmux is not installed: skipping the studio end-to-end script");
        return;
    }
    common::run_script("studio_e2e.sh", "studio e2e: all good");
}
