//! `easel init [DIR]`: writes the bundled sketches (and the pictures they read) into
//! DIR/sketches, and the icons `gan_icons.rhai` trains on into DIR/data/oxygen64, so the
//! studio has something to open (and train) in any folder, from the binary alone.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use include_dir::{include_dir, Dir, DirEntry};

use crate::recipe;

/// `sketches/` as it was at build time (build.rs reruns the build when it changes).
static BUNDLED: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/sketches");
/// The icons `gan_icons.rhai` trains on (`../data/oxygen64` from the sketches; 3.6 MB,
/// LGPL-3, their licence files included), so it trains in any folder after `init`.
static ICONS: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/data/oxygen64");

#[derive(Args, Debug)]
pub struct InitArgs {
    /// Where to put the `sketches` folder.
    #[arg(default_value = ".")]
    pub dir: PathBuf,
}

/// What `init` did: files written, and files left alone because they were there.
#[derive(Debug, Default)]
pub(crate) struct Report {
    pub written: Vec<PathBuf>,
    pub skipped: Vec<PathBuf>,
}

pub(crate) fn run(args: InitArgs) -> Result<()> {
    let into = args.dir.join("sketches");
    let report = write_bundled(&into)?;
    let names = |paths: &[PathBuf]| {
        paths
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if !report.written.is_empty() {
        eprintln!(
            "wrote {} into {}: {}",
            super::count(report.written.len(), "file"),
            into.display(),
            names(&report.written)
        );
    }
    if !report.skipped.is_empty() {
        eprintln!(
            "skipped {} already there (left as they are): {}",
            super::count(report.skipped.len(), "file"),
            names(&report.skipped)
        );
    }
    let icons_dir = args.dir.join("data/oxygen64");
    let mut icons = Report::default();
    write_dir(&ICONS, &icons_dir, &mut icons)?;
    if !icons.written.is_empty() {
        eprintln!(
            "wrote {} into {}: the icons gan_icons.rhai trains on (LGPL-3, see {})",
            super::count(icons.written.len(), "file"),
            icons_dir.display(),
            icons_dir.join("COPYRIGHT.debian").display()
        );
    }
    let open = if args.dir == Path::new(".") {
        "`easel`".to_string()
    } else {
        format!("`easel studio {}`", into.display())
    };
    eprintln!("open the studio with {open}");
    Ok(())
}

/// Writes every bundled file under `into`, keeping any file already there (a sketch
/// edited since a first `init` is the artist's). Paths in the report are relative to `into`.
pub(crate) fn write_bundled(into: &Path) -> Result<Report> {
    let mut report = Report::default();
    write_dir(&BUNDLED, into, &mut report)?;
    Ok(report)
}

fn write_dir(dir: &Dir<'static>, into: &Path, report: &mut Report) -> Result<()> {
    let target = into.join(dir.path());
    std::fs::create_dir_all(&target)
        .with_context(|| format!("cannot create {}", target.display()))?;
    for entry in dir.entries() {
        match entry {
            DirEntry::Dir(sub) => write_dir(sub, into, report)?,
            DirEntry::File(file) => {
                let path = into.join(file.path());
                if path.symlink_metadata().is_ok() {
                    report.skipped.push(file.path().to_path_buf());
                    continue;
                }
                recipe::write_atomically(&path, |f| {
                    use std::io::Write;
                    Ok(f.write_all(file.contents())?)
                })
                .with_context(|| format!("cannot write {}", path.display()))?;
                report.written.push(file.path().to_path_buf());
            }
        }
    }
    Ok(())
}
