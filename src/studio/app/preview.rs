//! The preview: the last good picture of the selected sketch with its caption (a
//! render's result, or a GAN run's sample grid), and the CPPN latent loop playing in it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use image::DynamicImage;

use super::{App, Effect, Level, Reason, Rendered, UpscaleJob, Upscaled};
use crate::sketch::Knobs;
use crate::spec::Upscaling;

/// The preview: the last good picture of the selected sketch.
#[derive(Debug, Clone)]
pub struct Picture {
    pub path: PathBuf,
    pub image: Arc<DynamicImage>,
    /// Shown in the preview's title, e.g. "512x512 · 14 ms".
    pub caption: String,
    /// Changes with every new picture, so the view re-encodes only then.
    pub serial: u64,
    pub source: Option<Arc<String>>,
    /// The seed and knob values it was made with (for the favourite's recipe).
    pub seed: Option<u64>,
    pub knobs: Knobs,
    /// On a CPPN-GAN's preview grid: its first sample as a CPPN sketch.
    pub cppn_sample: Option<Arc<String>>,
    /// `u` upscaled it (the favourite records the upscale).
    pub upscaled: Option<Upscaling>,
}

/// The CPPN latent loop playing in the preview.
#[derive(Debug, Clone, PartialEq)]
pub struct Animation {
    pub path: PathBuf,
    pub frames: u32,
    pub fps: f64,
    pub frame: u32,
    pub playing: bool,
    /// A frame is being rendered: ask for the next one only when it arrives.
    pub in_flight: bool,
    pub last_frame: Option<Instant>,
}

impl App {
    pub(super) fn on_rendered(&mut self, r: Rendered) -> Vec<Effect> {
        self.kinds.insert(r.path.clone(), r.kind);
        if let Some(frame) = r.frame {
            // A frame of the loop: show it if the loop still plays this sketch.
            let Some(anim) = self.animation.as_mut().filter(|a| a.path == r.path) else {
                return vec![];
            };
            anim.in_flight = false;
            if !anim.playing {
                return vec![];
            }
            let caption = format!(
                "{}x{} · frame {}/{} · {} ms",
                r.image.width(),
                r.image.height(),
                frame + 1,
                anim.frames,
                r.render_time.as_millis()
            );
            let (source, seed, knobs) = match &self.picture {
                Some(p) => (p.source.clone(), p.seed, p.knobs.clone()),
                None => (None, None, Knobs::new()),
            };
            self.show(r.path, r.image, caption, source);
            if let Some(p) = self.picture.as_mut() {
                p.seed = seed;
                p.knobs = knobs;
            }
            return vec![];
        }
        if r.id != self.current_id {
            return vec![]; // a newer request is on its way: latest wins
        }
        self.busy = None;
        let fixed = self.error.take().is_some();
        // The file may have changed the seed or a default itself: it wins over the studio.
        let tweaks = self.tweaks.entry(r.path.clone()).or_default();
        tweaks.reconcile(r.file_seed, &r.params);
        let stale_mutant = tweaks
            .mutant
            .as_ref()
            .is_some_and(|m| *m.bred_from != *r.source);
        if stale_mutant {
            tweaks.mutant = None;
        }
        if tweaks.is_empty() {
            self.tweaks.remove(&r.path);
        }
        if self.params.get(&r.path) != Some(&r.params) {
            self.knob = self.knob.min(r.params.0.len().saturating_sub(1));
        }
        self.params.insert(r.path.clone(), r.params.clone());
        self.file_seeds.insert(r.path.clone(), r.file_seed);
        self.sizes.insert(r.path.clone(), r.size);
        if stale_mutant {
            self.info(format!(
                "{} changed: the picked mutation is dropped (Backspace goes back to it)",
                Self::sketch_name(&r.path)
            ));
        }
        let (w, h) = r.size;
        let mut caption = format!("seed {} · {w}x{h}", r.seed);
        if let Some(m) = self.tweaks.get(&r.path).and_then(|t| t.mutant.as_ref()) {
            caption.push_str(&format!(" · gen {}", m.generation));
        }
        if r.coarse {
            caption.push_str(" · coarse");
        } else {
            caption.push_str(&format!(" · render {} ms", r.render_time.as_millis()));
            if let Some(saved) = r.saved_at {
                // Save → on screen: the studio draws right after this update.
                if let Ok(latency) = SystemTime::now().duration_since(saved) {
                    caption.push_str(&format!(" · save→screen {} ms", latency.as_millis()));
                }
            }
        }
        if !r.coarse {
            let name = Self::sketch_name(&r.path);
            if fixed {
                self.info(format!("{name}: fixed"));
            } else if r.saved_at.is_some() {
                self.info(format!(
                    "reloaded {name} ({} ms)",
                    r.render_time.as_millis()
                ));
            }
            self.animation = (r.loop_frames > 1).then(|| Animation {
                path: r.path.clone(),
                frames: r.loop_frames,
                fps: r.fps.max(1.0),
                frame: 0,
                // A loop plays on its own only when asked: space.
                playing: self
                    .animation
                    .as_ref()
                    .is_some_and(|a| a.path == r.path && a.playing),
                in_flight: false,
                last_frame: None,
            });
        }
        self.show(r.path, r.image, caption, Some(r.source));
        if let Some(p) = self.picture.as_mut() {
            p.seed = Some(r.seed);
            p.knobs = r.knobs;
        }
        vec![]
    }

    pub(super) fn show(
        &mut self,
        path: PathBuf,
        image: Arc<DynamicImage>,
        caption: String,
        source: Option<Arc<String>>,
    ) {
        self.serial += 1;
        self.picture = Some(Picture {
            path,
            image,
            caption,
            serial: self.serial,
            source,
            seed: None,
            knobs: Knobs::new(),
            cppn_sample: None,
            upscaled: None,
        });
    }

    /// `u`: upscales the picture on screen in the background.
    pub(super) fn upscale(&mut self) -> Vec<Effect> {
        let Some(picture) = self.picture.clone() else {
            self.info("nothing to upscale yet".into());
            return vec![];
        };
        if picture.upscaled.is_some() {
            self.info("already upscaled (enter renders it again at its own size)".into());
            return vec![];
        }
        if self.upscaling == Some(picture.serial) {
            self.info("already upscaling this picture".into());
            return vec![];
        }
        self.upscaling = Some(picture.serial);
        self.info(format!(
            "upscaling {} ({}x{}) in the background…",
            Self::sketch_name(&picture.path),
            picture.image.width(),
            picture.image.height()
        ));
        vec![Effect::Upscale(UpscaleJob {
            path: picture.path,
            serial: picture.serial,
            image: picture.image,
        })]
    }

    /// The upscaled picture replaces the one it was made from, if that is still shown.
    pub(super) fn on_upscaled(&mut self, done: Upscaled) -> Vec<Effect> {
        if self.upscaling == Some(done.serial) {
            self.upscaling = None;
        }
        let (image, upscaling) = match done.result {
            Ok(r) => r,
            Err(e) => {
                self.log_line(Level::Error, format!("upscale: {e}"));
                return vec![];
            }
        };
        let shown = self
            .picture
            .as_ref()
            .is_some_and(|p| p.path == done.path && p.serial == done.serial);
        if !shown {
            self.info("upscaled, but the preview changed meanwhile: not shown".into());
            return vec![];
        }
        self.serial += 1;
        let serial = self.serial;
        let p = self.picture.as_mut().expect("checked");
        p.caption = format!(
            "{}x{} · upscaled by {}",
            image.width(),
            image.height(),
            upscaling.model
        );
        p.image = image;
        p.serial = serial;
        p.upscaled = Some(upscaling);
        let line = format!("{} — s saves it", p.caption);
        self.info(line);
        vec![]
    }

    pub(super) fn toggle_animation(&mut self) -> Vec<Effect> {
        match self.animation.as_mut() {
            Some(a) => {
                a.playing = !a.playing;
                a.last_frame = None;
                vec![]
            }
            None => {
                self.info("space plays CPPN sketches with an animation".into());
                vec![]
            }
        }
    }

    pub(super) fn on_tick(&mut self, now: Instant) -> Vec<Effect> {
        let Some(anim) = self.animation.as_mut() else {
            return vec![];
        };
        if !anim.playing || anim.in_flight {
            return vec![];
        }
        let period = Duration::from_secs_f64(1.0 / anim.fps);
        if anim
            .last_frame
            .is_some_and(|t| now.duration_since(t) < period)
        {
            return vec![];
        }
        anim.frame = (anim.frame + 1) % anim.frames;
        anim.in_flight = true;
        anim.last_frame = Some(now);
        let (path, k, frames) = (anim.path.clone(), anim.frame, anim.frames);
        vec![self.request(path, Reason::Selected, Some((k, frames)))]
    }
}
