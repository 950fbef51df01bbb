//! Other noise for a GAN sketch's preview (`n`/`N`) and its truncation (the knob keys
//! `-` `=` `_` `+`): the grid `easel sample RUN -n 16 --seed S --truncation T` writes,
//! drawn by the sampler thread from the run's newest generator, and drawn again as the
//! training writes newer weights.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use image::DynamicImage;

use super::{App, Effect, Level};
use crate::spec::Kind;

/// Samples in the preview grid.
pub const GAN_PREVIEW_SAMPLES: usize = 16;
/// The truncation knob's range and steps (fine, coarse).
pub const TRUNCATION: std::ops::RangeInclusive<f64> = 0.05..=2.0;
const TRUNCATION_STEPS: (f64, f64) = (0.05, 0.25);

/// The noise a GAN preview is drawn from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GanNoise {
    pub seed: u64,
    /// Scale of the noise: below 1 trades variety for fidelity.
    pub truncation: f64,
}

impl Default for GanNoise {
    fn default() -> Self {
        GanNoise {
            seed: 0,
            truncation: 1.0,
        }
    }
}

/// What the sampler thread draws.
#[derive(Debug, Clone, PartialEq)]
pub struct GanSampleRequest {
    /// Results of older requests are dropped.
    pub id: u64,
    pub sketch: PathBuf,
    pub run: PathBuf,
    pub noise: GanNoise,
    pub count: usize,
}

/// The sampler's answer, or why there is none.
pub type GanSampled = Result<GanPreview, String>;

/// A GAN preview grid as the sampler drew it.
#[derive(Debug, Clone, PartialEq)]
pub struct GanPreview {
    pub grid: Arc<DynamicImage>,
    /// Which weights drew it, e.g. "checkpoints/latest.safetensors (EMA weights, step 1200)".
    pub from: String,
    /// A CPPN generator's first sample as a CPPN sketch of [`FAVOURITE_SIDE`]² (weights
    /// and code written out): what `s` saves, with that sketch as its recipe.
    pub first_sample: Option<Arc<String>>,
}

/// The size a CPPN-GAN sample is saved at as a favourite (`render --from` makes it at
/// any other).
pub const FAVOURITE_SIDE: u32 = 1024;

impl App {
    /// The selected sketch, when it is a GAN sketch.
    pub(super) fn selected_gan(&self) -> Option<PathBuf> {
        (self.selected_kind() == Some(Kind::Gan))
            .then(|| self.selected_path().cloned())
            .flatten()
    }

    /// `n`/`N` on a GAN sketch: the next or previous noise seed for its preview.
    pub(super) fn step_gan_seed(&mut self, sketch: PathBuf, delta: i64) -> Vec<Effect> {
        let noise = self.gan_noise.entry(sketch.clone()).or_default();
        noise.seed = noise.seed.saturating_add_signed(delta);
        self.sample_gan(&sketch)
    }

    /// The knob keys on a GAN sketch turn its preview's truncation.
    pub(super) fn turn_truncation(
        &mut self,
        sketch: PathBuf,
        direction: i32,
        coarse: bool,
    ) -> Vec<Effect> {
        let noise = self.gan_noise.entry(sketch.clone()).or_default();
        let step = if coarse {
            TRUNCATION_STEPS.1
        } else {
            TRUNCATION_STEPS.0
        };
        let value = (noise.truncation + step * direction as f64)
            .clamp(*TRUNCATION.start(), *TRUNCATION.end());
        // Whole hundredths, so repeated steps land on the numbers the caption shows.
        let value = (value * 100.0).round() / 100.0;
        if value == noise.truncation {
            return vec![]; // at the end of its range
        }
        noise.truncation = value;
        self.sample_gan(&sketch)
    }

    /// Asks for `sketch`'s preview with its noise, from its newest run; says why not when
    /// it has no run yet.
    pub(super) fn sample_gan(&mut self, sketch: &Path) -> Vec<Effect> {
        let Some(run) = self.run_of(sketch).map(|r| r.path.clone()) else {
            self.info(format!(
                "{} has no run yet: t trains it, then n draws other noise",
                Self::sketch_name(sketch)
            ));
            return vec![];
        };
        let noise = self.gan_noise.get(sketch).copied().unwrap_or_default();
        self.next_id += 1;
        self.gan_sample_id = self.next_id;
        vec![Effect::SampleGan(GanSampleRequest {
            id: self.next_id,
            sketch: sketch.to_path_buf(),
            run,
            noise,
            count: GAN_PREVIEW_SAMPLES,
        })]
    }

    /// Whether `sketch`'s preview is drawn from the studio's own noise (not the run's grid).
    pub(super) fn has_gan_noise(&self, sketch: &Path) -> bool {
        self.gan_noise.contains_key(sketch)
    }

    pub(super) fn on_gan_sampled(
        &mut self,
        id: u64,
        sketch: PathBuf,
        noise: GanNoise,
        result: GanSampled,
    ) -> Vec<Effect> {
        if id != self.gan_sample_id {
            return vec![];
        }
        match result {
            Ok(preview) => {
                if self.selected_path() == Some(&sketch) {
                    let caption = format!(
                        "seed {} · truncation {:.2} · {}",
                        noise.seed, noise.truncation, preview.from
                    );
                    self.show(sketch, preview.grid, caption, None);
                    if let Some(p) = self.picture.as_mut() {
                        p.cppn_sample = preview.first_sample;
                    }
                }
            }
            Err(e) => self.log_line(Level::Error, format!("samples: {e}")),
        }
        vec![]
    }
}
