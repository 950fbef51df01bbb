use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use clap::Args;

use crate::sketch::{self, Spec};

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Sketch files to check.
    #[arg(required = true)]
    pub sketches: Vec<PathBuf>,
}

/// Loads each sketch and renders it (and each class), so errors inside rules surface too.
/// Fitted CPPNs run one training step instead of the whole fit.
pub fn run(args: CheckArgs) -> Result<()> {
    for path in &args.sketches {
        let started = Instant::now();
        let sketch = sketch::load(path)?;
        for spec in std::iter::once(&sketch.spec).chain(sketch.classes.iter().map(|(_, s)| s)) {
            match spec {
                Spec::Cppn(c) if c.fit.is_some() => {
                    let mut one_step = c.fit.clone().expect("fit");
                    one_step.steps = 1;
                    crate::cppn::fit::fit(c, &one_step, &mut |_, _| {})
                        .map_err(|e| anyhow::anyhow!("{}: {e:#}", path.display()))?;
                }
                _ => {
                    spec.render()?;
                }
            }
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
