//! The bottom layer of every sketch: Rhai source → sandboxed evaluation → a map read
//! through [`MapReader`], with every error located at file, line and column. It knows
//! no kind of sketch: each kind (truchet, cppn, gan) parses its own keys with these
//! pieces, and `crate::spec` puts them together.

pub mod color;
pub mod engine;
pub mod error;
pub mod locate;
pub mod params;
pub mod reader;

use std::path::{Path, PathBuf};

pub use engine::Script;
pub use error::SketchError;
pub use locate::Locator;
pub use params::{Knobs, Param, Params};
pub use reader::MapReader;

/// Largest side, and most pixels, any image may have: a typo must not ask for gigabytes.
pub const MAX_SIDE: u32 = 16384;
pub const MAX_PIXELS: u64 = 8192 * 8192 * 2;

/// Whether `path` names a sketch file (`*.rhai`).
pub fn is_sketch_file(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "rhai")
}

/// The sketch files in `dir`, sorted by name, each as `dir.join(name)` (so they compare
/// equal to the paths a folder watch reports).
pub fn list(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    use anyhow::Context;
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read sketch folder {}", dir.display()))?
        .filter_map(|e| e.ok())
        .map(|e| dir.join(e.file_name()))
        .filter(|p| is_sketch_file(p) && p.is_file())
        .collect();
    out.sort();
    Ok(out)
}
