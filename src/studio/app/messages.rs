//! What goes in and out of [`App::update`](super::App::update): the messages (key
//! presses, ticks and the workers' results) and the effects the runtime carries out, with
//! the render requests and results that cross to the render thread.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crossterm::event::KeyEvent;
use image::DynamicImage;

use super::{
    Export, Favourite, GanNoise, GanSampleRequest, GanSampled, RunInfo, RunTail, SaveMutant, Tweaks,
};
use crate::gan::GanSpec;
use crate::run::{Control, Wanted};
use crate::sketch::{Knobs, Params};
use crate::spec::Kind;
use crate::studio::variations::{Variant, VariationRequest};

/// `u`: the picture to upscale, and which preview it is (a newer one wins).
#[derive(Debug, Clone, PartialEq)]
pub struct UpscaleJob {
    pub path: PathBuf,
    pub serial: u64,
    pub image: Arc<DynamicImage>,
}

/// The upscaled picture and how it was made.
#[derive(Debug, Clone)]
pub struct Upscaled {
    pub path: PathBuf,
    pub serial: u64,
    pub result: Result<(Arc<DynamicImage>, crate::spec::Upscaling), String>,
}

/// Why a render was asked for. Only saves show the save → screen latency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Moved onto it: show it if that is quick (a CPPN fit waits to be asked).
    Selected,
    /// Enter: render it whatever it costs.
    Asked,
    Saved,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RenderRequest {
    /// Increases with every request; results of older requests are dropped.
    pub id: u64,
    pub path: PathBuf,
    pub reason: Reason,
    /// `Some((k, frames))`: frame k of the CPPN latent loop, at animation size.
    pub frame: Option<(u32, u32)>,
    /// The studio's seed and knob values for this sketch, on top of its file.
    pub tweaks: Tweaks,
}

/// A finished render from the worker.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub id: u64,
    pub path: PathBuf,
    pub image: Arc<DynamicImage>,
    /// The sketch's own size (the preview may be smaller).
    pub size: (u32, u32),
    /// A quick low-resolution pass; the full one follows.
    pub coarse: bool,
    pub render_time: Duration,
    /// When the file was written, for saves: the title shows save → screen.
    pub saved_at: Option<SystemTime>,
    /// The source that made it (a favourite re-renders exactly this).
    pub source: Arc<String>,
    pub kind: Kind,
    /// Frames in the latent loop, for CPPN sketches (0: not animated).
    pub loop_frames: u32,
    pub fps: f64,
    /// Which frame of the loop this is, if it is one.
    pub frame: Option<u32>,
    /// The seed it was rendered with, and the file's own.
    pub seed: u64,
    pub file_seed: u64,
    /// The knobs the sketch declares, and the values it was rendered with.
    pub params: Params,
    pub knobs: Knobs,
}

pub enum Msg {
    Key(KeyEvent),
    /// Time passes (drives the animation).
    Tick(Instant),
    /// The sketch folder's `.rhai` files, after any change to the folder.
    SketchesListed(Vec<PathBuf>),
    /// Sketch files written (debounced).
    FilesChanged(Vec<PathBuf>),
    Rendered(Rendered),
    RenderFailed {
        id: u64,
        path: PathBuf,
        error: String,
    },
    /// A GAN sketch loaded (it has no picture of its own: its run's samples are shown).
    GanLoaded {
        id: u64,
        path: PathBuf,
        spec: Box<GanSpec>,
        reason: Reason,
    },
    /// Newest run per sketch name.
    Runs(HashMap<String, RunInfo>),
    RunTail(Box<RunTail>),
    /// A GAN preview grid drawn from the studio's noise (or why not).
    GanSampled {
        id: u64,
        sketch: PathBuf,
        noise: GanNoise,
        result: GanSampled,
    },
    FavouriteSaved(Result<PathBuf, String>),
    /// The breeder's pictures for a grid (a coarse pass may come first).
    VariationsRendered {
        id: u64,
        children: Vec<Variant>,
        coarse: bool,
    },
    VariationsFailed {
        id: u64,
        error: String,
    },
    /// A picked mutation was saved as a sketch file (and a favourite made from it).
    MutantSaved(Result<(PathBuf, PathBuf), String>),
    /// An upscale of the preview finished (or failed).
    Upscaled(Upscaled),
    /// An export's progress, for the log.
    ExportProgress(String),
    Exported(Result<PathBuf, String>),
    /// `w` wrote these knob values into the sketch file as its defaults (or failed).
    KnobsWritten {
        path: PathBuf,
        result: Result<Knobs, String>,
    },
    TrainingStarted(Result<PathBuf, String>),
    /// Something the runtime could not do.
    Error(String),
    /// The request is taking a while (a CPPN fitting its network); it comes later.
    Busy {
        id: u64,
        path: PathBuf,
        note: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    Render(RenderRequest),
    /// Render a grid of variations (in the breeder thread, in parallel).
    RenderVariations(VariationRequest),
    /// Upscale the picture on screen (in a thread of its own).
    Upscale(UpscaleJob),
    /// Save a picked CPPN mutation as a new sketch file next to its parent (and a
    /// favourite rendered from that file).
    SaveMutant(SaveMutant),
    /// Render the picture at another size (or as a GIF) in the background.
    Export(Export),
    /// Draw a GAN run's samples from this noise (in the sampler thread).
    SampleGan(GanSampleRequest),
    /// Tail this run directory (or none).
    Follow(Option<PathBuf>),
    SaveFavourite(Favourite),
    /// Write these knob values into the sketch file as the defaults of its `params`.
    WriteKnobs {
        path: PathBuf,
        knobs: Knobs,
    },
    /// Start `easel train` as a process of its own; `resume` continues that run.
    StartTraining {
        sketch: PathBuf,
        resume: Option<PathBuf>,
    },
    /// Merge these fields into the run's control.json.
    Control {
        run: PathBuf,
        patch: Control,
    },
    Quit,
}

impl Effect {
    /// Asks the run to run, pause or stop (control.json's `state`).
    pub fn set_state(run: PathBuf, state: Wanted) -> Effect {
        Effect::Control {
            run,
            patch: Control {
                state: Some(state),
                ..Control::default()
            },
        }
    }
}
