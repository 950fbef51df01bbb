use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use clap::Args;

use crate::sketch;

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Sketch files to check.
    #[arg(required = true)]
    pub sketches: Vec<PathBuf>,
}

/// Loads each sketch and renders it (and each class), so errors inside rules surface too.
pub fn run(args: CheckArgs) -> Result<()> {
    for path in &args.sketches {
        let started = Instant::now();
        let sketch = sketch::load(path)?;
        sketch.spec.render()?;
        for (_, spec) in &sketch.classes {
            spec.render()?;
        }
        let (w, h) = sketch.spec.size();
        let classes = match sketch.classes.len() {
            0 => String::new(),
            n => format!(", {n} classes"),
        };
        println!(
            "ok  {}  ({}, {w}x{h}{classes}, {} ms)",
            path.display(),
            sketch.spec.kind(),
            started.elapsed().as_millis()
        );
    }
    Ok(())
}
