use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::spec::{self, Spec};

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Sketch files, or folders of them (their .rhai files), to check.
    #[arg(required = true)]
    pub sketches: Vec<PathBuf>,
}

/// Checks every sketch it is given, reporting each, and fails at the end if any failed.
pub(crate) fn run(args: CheckArgs) -> Result<()> {
    let mut files = vec![];
    for path in &args.sketches {
        if path.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(path)
                .with_context(|| format!("cannot read {}", path.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "rhai"))
                .collect();
            if found.is_empty() {
                bail!("{} has no .rhai sketches", path.display());
            }
            found.sort();
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    let mut failed = 0;
    for path in &files {
        if let Err(e) = check_one(path) {
            failed += 1;
            println!("err {}", path.display());
            eprintln!("{e:#}\n");
        }
    }
    match failed {
        0 => Ok(()),
        n => {
            let noun = if files.len() == 1 {
                "sketch"
            } else {
                "sketches"
            };
            bail!("{n} of {} {noun} failed", files.len())
        }
    }
}

/// Loads a sketch and renders it (and each class), so errors inside rules surface too.
/// Fitted CPPNs run one training step instead of the whole fit.
fn check_one(path: &std::path::Path) -> Result<()> {
    let started = Instant::now();
    let sketch = spec::load(path)?;
    for spec in std::iter::once(&sketch.spec).chain(sketch.classes.iter().map(|(_, s)| s)) {
        match spec {
            Spec::Cppn(c) if c.fit.is_some() => {
                let mut one_step = c.fit.clone().expect("fit");
                one_step.steps = 1;
                crate::cppn::fit::fit(c, &one_step, &mut |_, _| {})
                    .map_err(|e| anyhow::anyhow!("{}: {e:#}", path.display()))?;
            }
            Spec::Gan(g) => check_gan_data(path, g)?,
            _ => {
                spec.render().map_err(|e| e.or_file(path))?;
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
    Ok(())
}

/// A GAN sketch is valid when its data can be read: the data sketch loads and renders, or
/// the folder exists.
fn check_gan_data(path: &std::path::Path, g: &crate::gan::GanSpec) -> Result<()> {
    use crate::gan::DataSource;
    match &g.data {
        DataSource::Sketch { path: data, .. } => {
            let s = spec::load(data)
                .map_err(|e| anyhow::anyhow!("{e}\n(the data sketch of {})", path.display()))?;
            let mut spec = s.classes.first().map_or(s.spec.clone(), |(_, c)| c.clone());
            spec.set_size(g.image_size as u32, g.image_size as u32);
            super::prepare(&spec);
            spec.render().map_err(|e| e.or_file(data))?;
        }
        DataSource::Folder { path: dir, .. } => {
            if !dir.is_dir() {
                anyhow::bail!(
                    "{}: data folder {} does not exist",
                    path.display(),
                    dir.display()
                );
            }
        }
    }
    Ok(())
}
