//! A newcomer's first hour: scripts/newcomer.sh runs `easel init` in a fresh folder,
//! checks every bundled sketch, runs every command of the README's tour as written and
//! makes the usual mistakes, each of which must say what to do.

mod common;

#[test]
fn the_readme_tour_runs_as_written_and_mistakes_say_what_to_do() {
    common::run_script("newcomer.sh", "newcomer: all good");
}
