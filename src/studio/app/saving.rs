//! Keeping what is on screen: a favourite (`s`; a picked mutation is saved as a sketch
//! file of its own), and an export at another size or as a GIF (`e`, with its size
//! prompt).

use std::path::PathBuf;
use std::sync::Arc;

use crossterm::event::KeyCode;
use image::DynamicImage;

use super::{App, Effect, Level, Mode, Mutant};
use crate::sketch::Knobs;
use crate::spec::{Kind, Upscaling};

#[derive(Debug, Clone, PartialEq)]
pub enum Favourite {
    /// Re-render the sketch source at its own size, with the seed and knob values of
    /// the picture shown, and save it with its recipe.
    Sketch {
        path: PathBuf,
        source: Arc<String>,
        seed: Option<u64>,
        knobs: Knobs,
        /// Upscaled after rendering, as the picture on screen was (`u`).
        upscale: Option<Upscaling>,
    },
    /// Save this picture (a convolutional GAN's sample grid) as it is.
    Picture {
        name: String,
        image: Arc<DynamicImage>,
        /// How it was upscaled, if it was (recorded in the PNG).
        upscale: Option<Upscaling>,
    },
}

/// What `s` saves for a picked mutation.
#[derive(Debug, Clone, PartialEq)]
pub struct SaveMutant {
    pub path: PathBuf,
    pub source: Arc<String>,
    pub seed: u64,
    pub knobs: Knobs,
    pub mutant: Mutant,
}

/// What `e` exports: the picture on screen (its source, seed, knobs and picked weights)
/// at another size.
#[derive(Debug, Clone, PartialEq)]
pub struct Export {
    pub path: PathBuf,
    pub source: Arc<String>,
    pub seed: u64,
    pub knobs: Knobs,
    pub mutant: Option<Mutant>,
    pub target: ExportTarget,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportTarget {
    /// A PNG of this size, with its recipe.
    Still { width: u32, height: u32 },
    /// The CPPN's latent loop as a GIF, longest side this many pixels.
    Gif { side: u32 },
}

/// The default export size of a still (the longest side).
pub const EXPORT_SIDE: u32 = 4096;

/// Reads what was typed at the export prompt: empty → the longest side 4096, `N` → the
/// longest side N (aspect kept), `WxH` → exactly that, `gif` / `gif N` → the latent loop
/// as a GIF (at the sketch's own size, or longest side N).
pub fn parse_export(text: &str, own: (u32, u32)) -> Result<ExportTarget, String> {
    let text = text.trim().to_ascii_lowercase();
    let side = |t: &str| -> Result<u32, String> {
        match t.parse::<u32>() {
            Ok(n) if (1..=crate::sketch::MAX_SIDE).contains(&n) => Ok(n),
            _ => Err(format!(
                "\"{t}\" is not a size: give a side from 1 to {} (e.g. 4096), WxH (e.g. 3840x2160) or gif",
                crate::sketch::MAX_SIDE
            )),
        }
    };
    let scaled = |longest: u32| {
        let (w, h) = own;
        let scale = longest as f64 / w.max(h).max(1) as f64;
        (
            ((w as f64 * scale).round() as u32).max(1),
            ((h as f64 * scale).round() as u32).max(1),
        )
    };
    if let Some(rest) = text.strip_prefix("gif") {
        let rest = rest.trim();
        let side = if rest.is_empty() {
            own.0.max(own.1)
        } else {
            side(rest)?
        };
        return Ok(ExportTarget::Gif { side });
    }
    let (width, height) = if text.is_empty() {
        scaled(EXPORT_SIDE)
    } else if let Some((w, h)) = text.split_once('x') {
        (side(w.trim())?, side(h.trim())?)
    } else {
        scaled(side(&text)?)
    };
    if width as u64 * height as u64 > crate::sketch::MAX_PIXELS {
        return Err(format!(
            "{width}x{height} is more than {} pixels",
            crate::sketch::MAX_PIXELS
        ));
    }
    Ok(ExportTarget::Still { width, height })
}

impl App {
    pub(super) fn favourite(&mut self) -> Vec<Effect> {
        let Some(picture) = self.picture.clone() else {
            self.info("nothing to save yet".into());
            return vec![];
        };
        let mutant = self
            .tweaks
            .get(&picture.path)
            .and_then(|t| t.mutant.clone())
            .filter(|m| picture.source.as_ref() == Some(&m.bred_from));
        if let (Some(mutant), Some(source), Some(seed)) = (mutant, &picture.source, picture.seed) {
            return vec![Effect::SaveMutant(SaveMutant {
                path: picture.path.clone(),
                source: source.clone(),
                seed,
                knobs: picture.knobs.clone(),
                mutant,
            })];
        }
        let effect = match (&picture.source, self.kinds.get(&picture.path)) {
            (Some(source), Some(kind)) if *kind != Kind::Gan => Favourite::Sketch {
                path: picture.path.clone(),
                source: source.clone(),
                seed: picture.seed,
                knobs: picture.knobs.clone(),
                upscale: picture.upscaled.clone(),
            },
            // A CPPN-GAN's preview: its first sample, as the CPPN sketch it is, saved
            // at FAVOURITE_SIDE with that sketch as its recipe (an upscaled grid is
            // saved as shown).
            _ if picture.cppn_sample.is_some() && picture.upscaled.is_none() => Favourite::Sketch {
                path: picture.path.clone(),
                source: picture.cppn_sample.clone().expect("checked"),
                seed: None,
                knobs: Knobs::new(),
                upscale: None,
            },
            _ => Favourite::Picture {
                name: match &self.mode {
                    Mode::Watch { run } => run
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_else(|| "run".into()),
                    Mode::Studio { .. } => Self::sketch_name(&picture.path),
                },
                image: picture.image.clone(),
                upscale: picture.upscaled.clone(),
            },
        };
        vec![Effect::SaveFavourite(effect)]
    }

    /// `e`: opens the size prompt over a Truchet or CPPN picture.
    pub(super) fn open_export(&mut self) -> Vec<Effect> {
        if self.export_of(ExportTarget::Gif { side: 1 }).is_none() {
            return vec![];
        }
        self.prompt = Some(String::new());
        vec![]
    }

    /// The export of the picture on screen, or why not (logged).
    fn export_of(&mut self, target: ExportTarget) -> Option<Export> {
        let path = self.tweakable("e exports")?;
        let Some(picture) = self.picture.clone().filter(|p| p.path == path) else {
            self.info("nothing to export yet".into());
            return None;
        };
        let (Some(source), Some(seed)) = (picture.source.clone(), picture.seed) else {
            self.info("nothing to export yet".into());
            return None;
        };
        let mutant = self
            .tweaks
            .get(&path)
            .and_then(|t| t.mutant.clone())
            .filter(|m| m.bred_from == source);
        Some(Export {
            path,
            source,
            seed,
            knobs: picture.knobs,
            mutant,
            target,
        })
    }

    pub(super) fn on_prompt_key(&mut self, code: KeyCode) -> Vec<Effect> {
        let Some(text) = self.prompt.as_mut() else {
            return vec![];
        };
        match code {
            KeyCode::Esc => {
                self.prompt = None;
                vec![]
            }
            KeyCode::Backspace => {
                text.pop();
                vec![]
            }
            KeyCode::Char(c) if (c.is_ascii_alphanumeric() || c == ' ') && text.len() < 20 => {
                text.push(c);
                vec![]
            }
            KeyCode::Enter => {
                let text = self.prompt.take().unwrap_or_default();
                let own = self
                    .picture
                    .as_ref()
                    .and_then(|p| self.sizes.get(&p.path).copied())
                    .unwrap_or((512, 512));
                let target = match parse_export(&text, own) {
                    Ok(t) => t,
                    Err(e) => {
                        self.log_line(Level::Error, format!("export: {e}"));
                        return vec![];
                    }
                };
                if let ExportTarget::Gif { .. } = target {
                    let looping = self
                        .animation
                        .as_ref()
                        .is_some_and(|a| Some(&a.path) == self.selected_path() && a.frames > 1);
                    if !looping {
                        self.info("gif exports a CPPN's latent loop (a sketch with z)".into());
                        return vec![];
                    }
                }
                match self.export_of(target) {
                    Some(job) => {
                        let what = match target {
                            ExportTarget::Still { width, height } => format!("{width}x{height}"),
                            ExportTarget::Gif { side } => format!("a GIF, {side} px"),
                        };
                        self.info(format!(
                            "exporting {} at {what} in the background…",
                            Self::sketch_name(&job.path)
                        ));
                        vec![Effect::Export(job)]
                    }
                    None => vec![],
                }
            }
            _ => vec![],
        }
    }
}
