//! The studio's background threads. Each one turns something slow (rendering, the file
//! system, a training run) into [`Msg`]s on one channel, so the UI thread never waits.
//!
//! - the renderer: latest request wins; CPPNs get a coarse pass, then the full one;
//! - the folder watcher: notify on the *folder* (rename-style saves kill a file watch),
//!   debounced, access events ignored;
//! - the run tailer: the runs index every second, and the followed run's status, new
//!   metric lines and newest sample grid a few times a second.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SendError, Sender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use image::imageops::FilterType;
use image::DynamicImage;
use notify::EventKind;
use notify_debouncer_full::{new_debouncer, DebounceEventResult, Debouncer, RecommendedCache};

use rayon::prelude::*;

use super::app::{
    GanPreview, GanSampleRequest, GanSampled, Msg, Mutant, Reason, RenderRequest, Rendered,
    RunInfo, RunTail, Tweak, Tweaks,
};
use super::variations::{Breed, Variant, VariationRequest};
use crate::cppn::{animate, CppnSpec};
use crate::device::DeviceArg;
use crate::run::{Metric, RunDir, Status};
use crate::sketch;
use crate::spec::Kind;
use crate::spec::{self, Spec};

/// Longest side of a CPPN preview (a CPPN renders at any size; the sketch's own size is
/// used for favourites). Truchet sketches render at their own size: tiles are in pixels.
pub const PREVIEW_SIDE: u32 = 384;
/// Longest side of the coarse first pass.
pub const COARSE_SIDE: u32 = 128;
/// Longest side of animation frames (they must keep up with the frame rate).
pub const FRAME_SIDE: u32 = 256;
/// Debounce of file events: one batch per save, short enough to feel instant.
pub const DEBOUNCE: Duration = Duration::from_millis(40);

/// Scales `(w, h)` so the longest side is at most `side`, keeping the aspect ratio.
pub fn fit_within((w, h): (u32, u32), side: u32) -> (u32, u32) {
    let longest = w.max(h);
    if longest <= side {
        return (w, h);
    }
    let scale = side as f64 / longest as f64;
    (
        ((w as f64 * scale).round() as u32).max(1),
        ((h as f64 * scale).round() as u32).max(1),
    )
}

/// Scales `(w, h)` so the longest side is exactly `side`, keeping the aspect ratio.
pub fn fit_within_or_grow((w, h): (u32, u32), side: u32) -> (u32, u32) {
    let scale = side as f64 / w.max(h).max(1) as f64;
    (
        ((w as f64 * scale).round() as u32).max(1),
        ((h as f64 * scale).round() as u32).max(1),
    )
}

/// Fits `image` into a box of `(width, height)` pixels, keeping its aspect ratio.
/// Shrinking averages every source pixel (a 1-pixel checker or maze becomes an even
/// grey, not moiré); enlarging (small GAN samples) keeps crisp pixels.
pub fn fit_for_display(image: &DynamicImage, (box_w, box_h): (u32, u32)) -> DynamicImage {
    let (w, h) = (image.width(), image.height());
    if w == 0 || h == 0 || box_w == 0 || box_h == 0 {
        return image.clone();
    }
    let scale = (box_w as f64 / w as f64).min(box_h as f64 / h as f64);
    let target = (
        ((w as f64 * scale).floor() as u32).clamp(1, box_w),
        ((h as f64 * scale).floor() as u32).clamp(1, box_h),
    );
    if target == (w, h) {
        return image.clone();
    }
    if scale > 1.0 {
        return image.resize_exact(target.0, target.1, FilterType::Nearest);
    }
    // image's triangle filter widens with the shrink factor: every source pixel counts,
    // so fine detail averages out instead of aliasing into moiré.
    image.resize_exact(target.0, target.1, FilterType::Triangle)
}

/// Which pictures a fit is for, and the pixel box each is fitted into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FitKey {
    /// The variations grid's nine pictures, or the preview's one.
    pub grid: bool,
    /// The app's picture (or grid) serial.
    pub serial: u64,
    /// The pixels of the whole area they are shown in: when it changes, they are fitted
    /// again.
    pub box_px: (u32, u32),
}

/// Pictures to fit, each into its own pixel box, off the UI thread.
pub struct FitRequest {
    pub key: FitKey,
    pub images: Vec<(Arc<DynamicImage>, (u32, u32))>,
}

/// The newest fitted pictures, with the key they were asked for.
pub type FittedSlot = Arc<Mutex<Option<(FitKey, Vec<DynamicImage>)>>>;

/// Starts the thread that fits pictures to their area on screen (again whenever the
/// area changes). A result lands in the slot, and a tick on `wake` has it drawn.
pub fn spawn_fitter(wake: Sender<Msg>) -> (Sender<FitRequest>, FittedSlot) {
    let (tx, rx) = std::sync::mpsc::channel::<FitRequest>();
    let slot = FittedSlot::default();
    let out = slot.clone();
    std::thread::Builder::new()
        .name("easel-fit".into())
        .spawn(move || {
            while let Ok(req) = rx.recv() {
                // Only the newest request matters: it is what the screen shows now (a
                // resize drag sends many).
                let req = last_queued(req, &rx);
                let fitted = req
                    .images
                    .iter()
                    .map(|(img, box_px)| fit_for_display(img, *box_px))
                    .collect();
                *out.lock().expect("fitted slot") = Some((req.key, fitted));
                if wake.send(Msg::Tick(Instant::now())).is_err() {
                    return;
                }
            }
        })
        .expect("spawning the fit thread");
    (tx, slot)
}

/// Where render requests go. Sending a still request (a save, a selection, a seed)
/// also tells the render in progress that it is superseded, so it stops instead of
/// finishing a picture nobody will see.
#[derive(Clone)]
pub struct RenderSender {
    requests: Sender<RenderRequest>,
    newest_still: Arc<AtomicU64>,
}

impl RenderSender {
    /// Fails only when the render thread is gone.
    pub fn send(&self, req: RenderRequest) -> Result<(), SendError<()>> {
        // Frames of the latent loop never cancel a still render (they wait behind it).
        if req.frame.is_none() {
            self.newest_still.fetch_max(req.id, Ordering::Relaxed);
        }
        self.requests.send(req).map_err(|_| SendError(()))
    }
}

/// Starts the render thread; send it requests, results come back as [`Msg`]s. A render
/// superseded by a newer still request stops early and sends nothing. `fit:` CPPNs train
/// on `fit_device` (the studio's `--device`); rendering is CPU code.
pub fn spawn_renderer(out: Sender<Msg>, fit_device: DeviceArg) -> RenderSender {
    let (tx, rx) = std::sync::mpsc::channel::<RenderRequest>();
    let newest_still = Arc::new(AtomicU64::new(0));
    let mut renderer = Renderer {
        requeue: Some(tx.clone()),
        newest_still: newest_still.clone(),
        fit_device,
        ..Renderer::default()
    };
    std::thread::Builder::new()
        .name("easel-render".into())
        .spawn(move || renderer.serve(&rx, &out))
        .expect("spawning the render thread");
    RenderSender {
        requests: tx,
        newest_still,
    }
}

/// The sketch whose loop frames are being asked for.
struct Looping {
    path: PathBuf,
    spec: CppnSpec,
    net: crate::spec::CppnNetwork,
}

#[derive(Default)]
struct Renderer {
    looping: Option<Looping>,
    /// How long each sketch's last full render took: a coarse pass only pays off before
    /// a slow one.
    full_times: HashMap<PathBuf, Duration>,
    /// Sketches being prepared (a CPPN's fit) on a thread of their own (seconds), so the
    /// renderer stays free for other sketches meanwhile.
    preparing: Arc<Mutex<HashSet<PathBuf>>>,
    /// Where a finished preparation asks for its render again.
    requeue: Option<Sender<RenderRequest>>,
    /// The id of the newest still request sent: a render of an older one is superseded.
    newest_still: Arc<AtomicU64>,
    /// Where `fit:` CPPNs train.
    fit_device: DeviceArg,
}

/// A full render faster than this is shown directly, without a coarse pass first.
const COARSE_WORTH_IT: Duration = Duration::from_millis(60);

impl Renderer {
    fn serve(&mut self, rx: &Receiver<RenderRequest>, out: &Sender<Msg>) {
        let mut pending: Option<RenderRequest> = None;
        loop {
            let req = match pending.take() {
                Some(r) => r,
                None => match rx.recv() {
                    Ok(r) => r,
                    Err(_) => return,
                },
            };
            // Latest wins: of everything queued, only the newest still request (or,
            // failing one, the newest frame) is worth rendering.
            let req = newest(req, rx);
            let result = match req.frame {
                Some((k, frames)) => self.frame(&req, k, frames),
                None => self.still(&req, rx, &mut pending, out),
            };
            if let Some(msg) = result {
                if out.send(msg).is_err() {
                    return;
                }
            }
        }
    }

    fn frame(&mut self, req: &RenderRequest, k: u32, frames: u32) -> Option<Msg> {
        let Some(looping) = self.looping.as_ref().filter(|l| l.path == req.path) else {
            // Not loaded (a still render failed): tell the app, so it can ask again.
            return Some(Msg::RenderFailed {
                id: req.id,
                path: req.path.clone(),
                error: "no animation loaded".into(),
            });
        };
        let started = Instant::now();
        let image = animate::frame(&looping.spec, &looping.net, k, frames);
        Some(Msg::Rendered(Rendered {
            id: req.id,
            path: req.path.clone(),
            size: (looping.spec.width, looping.spec.height),
            image: Arc::new(image),
            coarse: false,
            render_time: started.elapsed(),
            saved_at: None,
            source: Arc::new(String::new()),
            kind: Kind::Cppn,
            loop_frames: frames,
            fps: looping.spec.animation.fps,
            frame: Some(k),
            seed: looping.spec.seed,
            file_seed: looping.spec.seed,
            params: Default::default(),
            knobs: Default::default(),
        }))
    }

    fn still(
        &mut self,
        req: &RenderRequest,
        rx: &Receiver<RenderRequest>,
        pending: &mut Option<RenderRequest>,
        out: &Sender<Msg>,
    ) -> Option<Msg> {
        let saved_at = match req.reason {
            Reason::Saved => std::fs::metadata(&req.path).and_then(|m| m.modified()).ok(),
            Reason::Selected | Reason::Asked => None,
        };
        let failed = |error: String| Msg::RenderFailed {
            id: req.id,
            path: req.path.clone(),
            error,
        };
        let newest_still = self.newest_still.clone();
        let id = req.id;
        // One relaxed load per row of pixels.
        let superseded = move || newest_still.load(Ordering::Relaxed) > id;
        let sketch = match load_tweaked(&req.path, &req.tweaks) {
            Ok(s) => s,
            Err(e) => return Some(failed(e.to_string())),
        };
        let (mut sketch, file_seed) = sketch;
        sketch.set_fit_device(self.fit_device);
        let seed = sketch.spec.seed();
        let source = Arc::new(sketch.source.clone());
        let size = sketch.spec.size();
        let rendered = |image, coarse, render_time, loop_frames, fps| {
            Msg::Rendered(Rendered {
                id: req.id,
                path: req.path.clone(),
                image: Arc::new(image),
                size,
                coarse,
                render_time,
                saved_at,
                source: source.clone(),
                kind: sketch.spec.kind(),
                loop_frames,
                fps,
                frame: None,
                seed,
                file_seed,
                params: sketch.params.clone(),
                knobs: sketch.knobs.clone(),
            })
        };
        if let (Some(prep), Some(requeue)) = (sketch.spec.preparation(), &self.requeue) {
            // Preparing (a CPPN's fit) takes seconds to minutes of CPU: only when asked
            // for (enter, or a save), never just for moving past the sketch.
            if req.reason == Reason::Selected {
                return Some(Msg::Busy {
                    id: req.id,
                    path: req.path.clone(),
                    note: format!("press enter to {}", prep.task()),
                });
            }
            let mut preparing = self.preparing.lock().expect("preparing set");
            if preparing.insert(req.path.clone()) {
                let (spec, req, requeue) = (sketch.spec.clone(), req.clone(), requeue.clone());
                let set = self.preparing.clone();
                std::thread::spawn(move || {
                    // The outcome is kept for the process; errors show on the re-render.
                    let _ = spec.prepare(&mut |_| {});
                    set.lock().expect("preparing set").remove(&req.path);
                    let _ = requeue.send(req);
                });
            }
            return Some(Msg::Busy {
                id: req.id,
                path: req.path.clone(),
                note: format!("{}…", prep.doing()),
            });
        }
        match &sketch.spec {
            Spec::Gan(g) => Some(Msg::GanLoaded {
                id: req.id,
                path: req.path.clone(),
                spec: g.clone(),
                reason: req.reason,
            }),
            Spec::Truchet(t) => {
                let started = Instant::now();
                match crate::truchet::render_unless(t, &superseded) {
                    Ok(Some(img)) => Some(rendered(img, false, started.elapsed(), 0, 0.0)),
                    // Superseded: the newer request is next in the queue.
                    Ok(None) => None,
                    Err(e) => Some(failed(e.to_string())),
                }
            }
            Spec::Cppn(c) => {
                let started = Instant::now();
                let net = match c.render_network() {
                    Ok(n) => n,
                    Err(e) => return Some(failed(format!("{}: {e:#}", req.path.display()))),
                };
                let z = c.z();
                let at = |side: u32| {
                    let mut s = c.clone();
                    let (w, h) = fit_within((c.width, c.height), side);
                    s.width = w;
                    s.height = h;
                    s
                };
                let coarse_spec = at(COARSE_SIDE);
                let slow = self
                    .full_times
                    .get(&req.path)
                    .is_none_or(|t| *t >= COARSE_WORTH_IT);
                if slow && coarse_spec.width < c.width.min(PREVIEW_SIDE) {
                    let img =
                        crate::cppn::render::render_unless(&coarse_spec, &net, &z, &superseded)?;
                    let _ = out.send(rendered(img, true, started.elapsed(), 0, 0.0));
                    // A newer save or selection arrived meanwhile: skip the full pass.
                    match rx.try_recv() {
                        Ok(next) if next.frame.is_none() => {
                            *pending = Some(next);
                            return None;
                        }
                        Ok(_) | Err(TryRecvError::Empty) => {}
                        Err(TryRecvError::Disconnected) => return None,
                    }
                }
                let full_started = Instant::now();
                let img =
                    crate::cppn::render::render_unless(&at(PREVIEW_SIDE), &net, &z, &superseded)?;
                self.full_times
                    .insert(req.path.clone(), full_started.elapsed());
                let took = started.elapsed();
                let frames = if c.z_dims > 0 { c.animation.frames } else { 0 };
                self.looping = Some(Looping {
                    path: req.path.clone(),
                    spec: at(FRAME_SIDE),
                    net,
                });
                Some(rendered(img, false, took, frames, c.animation.fps))
            }
        }
    }
}

/// Loads the sketch at `path` with the studio's seed and knob values on top of the file's
/// (those the file has not changed since they were set); returns it with the file's own seed.
fn load_tweaked(path: &Path, tweaks: &Tweaks) -> Result<(spec::Sketch, u64), sketch::SketchError> {
    let source = std::fs::read_to_string(path)
        .map_err(|e| sketch::SketchError::whole_file(path, format!("cannot read sketch: {e}")))?;
    let knobs = if tweaks.knobs.is_empty() {
        Default::default()
    } else {
        tweaks.knobs_for(&spec::declared_params(path, &source)?)
    };
    let mut sketch = spec::load_knobs(path, source, &knobs)?;
    let file_seed = sketch.spec.seed();
    sketch.spec.set_seed(tweaks.seed_for(file_seed));
    if let (Some(m), Spec::Cppn(c)) = (&tweaks.mutant, &mut sketch.spec) {
        // Picked weights count for the file they were bred from, in its shape (the app
        // drops them when the file changes; this guards the renderer meanwhile).
        if *m.bred_from == sketch.source && c.fits_network(&m.network) {
            c.weights = Some(m.network.clone());
        }
    }
    Ok((sketch, file_seed))
}

/// Longest side of a CPPN variation in the grid, and of its quick first pass.
pub const GRID_SIDE: u32 = 192;
pub const GRID_COARSE_SIDE: u32 = 48;

/// Starts the breeder thread: it renders grids of variations, the newest request
/// winning, each grid's nine children in parallel.
pub fn spawn_breeder(out: Sender<Msg>) -> Sender<VariationRequest> {
    let (tx, rx) = std::sync::mpsc::channel::<VariationRequest>();
    std::thread::Builder::new()
        .name("easel-breed".into())
        .spawn(move || {
            while let Ok(req) = rx.recv() {
                let req = last_queued(req, &rx);
                let cppn = matches!(req.breed, Breed::Mutations { .. });
                // A CPPN grid costs nine renders: a coarse pass shows the grid at once.
                let passes: &[(u32, bool)] = if cppn {
                    &[(GRID_COARSE_SIDE, true), (GRID_SIDE, false)]
                } else {
                    &[(GRID_SIDE, false)]
                };
                for &(side, coarse) in passes {
                    let msg = match render_variations(&req, side) {
                        Ok(children) => Msg::VariationsRendered {
                            id: req.id,
                            children,
                            coarse,
                        },
                        Err(error) => Msg::VariationsFailed { id: req.id, error },
                    };
                    let failed = matches!(msg, Msg::VariationsFailed { .. });
                    if out.send(msg).is_err() {
                        return;
                    }
                    if failed {
                        break;
                    }
                }
            }
        })
        .expect("spawning the breeder thread");
    tx
}

/// Renders the nine children of `req` (CPPNs with the longest side `side`; Truchet
/// sketches at their own size: their tiles are in pixels), in parallel.
pub fn render_variations(req: &VariationRequest, side: u32) -> Result<Vec<Variant>, String> {
    let (sketch, file_seed) = load_tweaked(&req.path, &req.parent).map_err(|e| e.to_string())?;
    match (&sketch.spec, &req.breed) {
        (Spec::Truchet(_), Breed::Seeds(seeds)) => seeds
            .par_iter()
            .map(|&seed| {
                let mut spec = sketch.spec.clone();
                spec.set_seed(seed);
                let image = spec
                    .render()
                    .map_err(|e| e.or_file(&req.path).to_string())?;
                let mut tweaks = req.parent.clone();
                tweaks.seed = (seed != file_seed).then_some(Tweak {
                    file: file_seed,
                    value: seed,
                });
                Ok(Variant {
                    tweaks,
                    image: Arc::new(image),
                })
            })
            .collect(),
        (
            Spec::Cppn(c),
            Breed::Mutations {
                seeds,
                strength,
                generation,
            },
        ) => {
            if sketch.spec.preparation().is_some() {
                return Err("fit the network first (enter), then breed from it".into());
            }
            let parent = c
                .render_network()
                .map_err(|e| format!("{}: {e:#}", req.path.display()))?;
            // Strength is relative to the spread of the sketch's own random weights.
            let std = strength * if c.init_std > 0.0 { c.init_std } else { 1.0 };
            let mut small = c.clone();
            (small.width, small.height) = fit_within((c.width, c.height), side);
            let z = c.z();
            let bred_from = Arc::new(sketch.source.clone());
            Ok(seeds
                .par_iter()
                .map(|&seed| {
                    let network = parent.mutated(seed, std, c.biases);
                    let image = crate::cppn::render::render(&small, &network, &z);
                    let mut tweaks = req.parent.clone();
                    tweaks.mutant = Some(Mutant {
                        network: Arc::new(network),
                        bred_from: bred_from.clone(),
                        lineage: format!(
                            "mutation {seed} at strength {strength}, generation {generation}"
                        ),
                        generation: *generation,
                    });
                    Variant {
                        tweaks,
                        image: Arc::new(image),
                    }
                })
                .collect())
        }
        (spec, _) => Err(format!(
            "{} is a {} sketch: variations are of Truchet seeds or CPPN weights",
            req.path.display(),
            spec.kind()
        )),
    }
}

/// The thread that draws GAN previews from the studio's noise: the newest request wins;
/// the generator stays loaded until its run writes newer weights.
pub fn spawn_sampler(out: Sender<Msg>) -> Sender<GanSampleRequest> {
    let (tx, rx) = std::sync::mpsc::channel::<GanSampleRequest>();
    std::thread::Builder::new()
        .name("easel-sample".into())
        .spawn(move || {
            let mut loaded: Option<LoadedRun> = None;
            while let Ok(req) = rx.recv() {
                let req = last_queued(req, &rx);
                let result = sample_gan(&req, &mut loaded);
                let msg = Msg::GanSampled {
                    id: req.id,
                    sketch: req.sketch.clone(),
                    noise: req.noise,
                    result,
                };
                if out.send(msg).is_err() {
                    return;
                }
            }
        })
        .expect("spawning the sampler thread");
    tx
}

/// When a run's weights files were last written: a change means newer weights.
type WeightsStamp = [Option<std::time::SystemTime>; 2];

/// The generator the sampler has loaded: its run, and the weights' stamp when loaded.
type LoadedRun = (PathBuf, WeightsStamp, crate::gan::saved::LoadedGenerator);

fn weights_stamp(run: &Path) -> WeightsStamp {
    let modified = |p: PathBuf| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    [
        modified(run.join("generator.safetensors")),
        modified(run.join("checkpoints/latest.safetensors")),
    ]
}

fn sample_gan(req: &GanSampleRequest, loaded: &mut Option<LoadedRun>) -> GanSampled {
    use crate::gan::saved;
    let stamp = weights_stamp(&req.run);
    if stamp == [None, None] {
        return Err(format!(
            "{} has no weights yet (its first checkpoint comes after checkpoint_every steps)",
            req.run.display()
        ));
    }
    if !loaded
        .as_ref()
        .is_some_and(|(run, s, _)| *run == req.run && *s == stamp)
    {
        let g = saved::load_generator(&req.run, None, false, &candle_core::Device::Cpu)
            .map_err(|e| format!("{e:#}"))?;
        *loaded = Some((req.run.clone(), stamp, g));
    }
    let (_, _, g) = loaded.as_ref().expect("loaded above");
    let (seed, truncation) = (req.noise.seed, req.noise.truncation);
    let fail = |e: anyhow::Error| format!("{e:#}");
    let grid = saved::sample_grid(g, req.count, seed, truncation).map_err(fail)?;
    let side = super::app::FAVOURITE_SIDE;
    let first_sample = saved::sample_sketch(g, seed, truncation, 0, (side, side)).map_err(fail)?;
    // The caption's truncation multiplies the sketch's own noise scale: say so.
    let from = match g.g.spec.sample_scale {
        1.0 => g.from.clone(),
        scale => format!("{} × sample_scale {scale}", g.from),
    };
    Ok(GanPreview {
        grid: Arc::new(grid),
        from,
        first_sample: first_sample.map(Arc::new),
    })
}

/// Drains the queue and keeps its newest item (`first` when it is empty).
fn last_queued<T>(first: T, rx: &Receiver<T>) -> T {
    rx.try_iter().last().unwrap_or(first)
}

/// Drains the queue: the newest still request wins over everything before it; frame
/// requests only stand when no still request is queued.
fn newest(mut req: RenderRequest, rx: &Receiver<RenderRequest>) -> RenderRequest {
    while let Ok(next) = rx.try_recv() {
        if next.frame.is_none() || req.frame.is_some() {
            req = next;
        }
    }
    req
}

/// Watches the sketch folder. Keep the returned debouncer alive for as long as events
/// are wanted.
pub fn watch_folder(
    dir: &Path,
    out: Sender<Msg>,
) -> anyhow::Result<Debouncer<notify::RecommendedWatcher, RecommendedCache>> {
    let dir_owned = dir.to_path_buf();
    let mut debouncer = new_debouncer(DEBOUNCE, None, move |result: DebounceEventResult| {
        let Ok(events) = result else { return };
        let mut changed: Vec<PathBuf> = vec![];
        for event in &events {
            // Reading a file raises access events: reacting to them would loop.
            if matches!(event.kind, EventKind::Access(_)) {
                continue;
            }
            let writes = matches!(event.kind, EventKind::Create(_) | EventKind::Modify(_));
            for p in &event.paths {
                // notify may report absolute paths; the list holds `dir.join(name)`.
                let Some(name) = p.file_name() else { continue };
                let p = dir_owned.join(name);
                if writes && sketch::is_sketch_file(&p) && p.exists() && !changed.contains(&p) {
                    changed.push(p);
                }
            }
        }
        if let Ok(list) = sketch::list(&dir_owned) {
            let _ = out.send(Msg::SketchesListed(list));
        }
        if !changed.is_empty() {
            let _ = out.send(Msg::FilesChanged(changed));
        }
    })?;
    debouncer.watch(dir, notify::RecursiveMode::NonRecursive)?;
    Ok(debouncer)
}

/// The newest run of every sketch under `runs`.
pub fn runs_index(runs: &Path) -> HashMap<String, RunInfo> {
    let mut newest: HashMap<String, PathBuf> = HashMap::new();
    for entry in std::fs::read_dir(runs).into_iter().flatten().flatten() {
        let path = entry.path();
        if !path.is_dir() {
            continue;
        }
        let folder = entry.file_name().to_string_lossy().into_owned();
        let Some(name) = crate::run::sketch_name_of_run(&folder) else {
            continue;
        };
        let slot = newest
            .entry(name.to_string())
            .or_insert_with(|| path.clone());
        if path > *slot {
            *slot = path;
        }
    }
    newest
        .into_iter()
        .map(|(name, path)| {
            let status = RunDir { path: path.clone() }.read_status().ok();
            let alive = status
                .as_ref()
                .is_some_and(|s| crate::run::process_alive(s.pid));
            (
                name,
                RunInfo {
                    path,
                    status,
                    alive,
                },
            )
        })
        .collect()
}

/// Follows one run directory, reading only what is new.
#[derive(Default)]
pub struct Tail {
    path: PathBuf,
    metrics_offset: u64,
    last_status: Option<Status>,
    last_alive: bool,
    last_sample: Option<PathBuf>,
    spec_read: bool,
    started: bool,
}

impl Tail {
    pub fn new(path: PathBuf) -> Self {
        Tail {
            path,
            ..Tail::default()
        }
    }

    /// What changed since the last poll, or `None` when nothing did.
    pub fn poll(&mut self) -> Option<RunTail> {
        let run = RunDir {
            path: self.path.clone(),
        };
        let status = run.read_status().ok();
        let alive = status
            .as_ref()
            .is_some_and(|s| crate::run::process_alive(s.pid));
        let (metrics, reset) = self.new_metrics(&run);
        let spec = if self.spec_read {
            None
        } else {
            let s = std::fs::read_to_string(run.spec())
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok());
            self.spec_read = s.is_some();
            s
        };
        let newest = run.samples().pop();
        let sample = match &newest {
            Some(p) if Some(p) != self.last_sample.as_ref() => match image::open(p) {
                Ok(img) => {
                    self.last_sample = newest.clone();
                    Some((p.clone(), Arc::new(img)))
                }
                Err(_) => None, // being written: next poll
            },
            _ => None,
        };
        let changed = !self.started
            || status != self.last_status
            || alive != self.last_alive
            || !metrics.is_empty()
            || reset
            || spec.is_some()
            || sample.is_some();
        self.started = true;
        self.last_status = status.clone();
        self.last_alive = alive;
        changed.then(|| RunTail {
            path: self.path.clone(),
            status,
            alive,
            metrics,
            reset,
            spec,
            sample,
        })
    }

    /// Complete new lines of metrics.jsonl; `reset` when the file was rewritten shorter
    /// (a resume truncates it).
    fn new_metrics(&mut self, run: &RunDir) -> (Vec<Metric>, bool) {
        let Ok(mut f) = File::open(run.metrics()) else {
            return (vec![], false);
        };
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        let reset = len < self.metrics_offset;
        if reset {
            self.metrics_offset = 0;
        }
        if len == self.metrics_offset || f.seek(SeekFrom::Start(self.metrics_offset)).is_err() {
            return (vec![], reset);
        }
        let mut text = String::new();
        if f.read_to_string(&mut text).is_err() {
            return (vec![], reset);
        }
        // A line without its newline is still being written: leave it for next time.
        let complete = text.rfind('\n').map_or(0, |i| i + 1);
        self.metrics_offset += complete as u64;
        let metrics = text[..complete]
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        (metrics, reset)
    }
}

/// Starts the run tailer. `focus` says which run to follow; `runs` (if any) is indexed.
pub fn spawn_tailer(runs: Option<PathBuf>, focus: Receiver<Option<PathBuf>>, out: Sender<Msg>) {
    std::thread::Builder::new()
        .name("easel-runs".into())
        .spawn(move || {
            let mut tail: Option<Tail> = None;
            let mut last_index: Option<HashMap<String, RunInfo>> = None;
            let mut last_scan = Instant::now() - Duration::from_secs(10);
            loop {
                loop {
                    match focus.try_recv() {
                        Ok(f) => tail = f.map(Tail::new),
                        Err(TryRecvError::Empty) => break,
                        Err(TryRecvError::Disconnected) => return,
                    }
                }
                if let Some(runs) = &runs {
                    if last_scan.elapsed() >= Duration::from_secs(1) {
                        last_scan = Instant::now();
                        let index = runs_index(runs);
                        if last_index.as_ref() != Some(&index) {
                            if out.send(Msg::Runs(index.clone())).is_err() {
                                return;
                            }
                            last_index = Some(index);
                        }
                    }
                }
                if let Some(t) = tail.as_mut() {
                    if let Some(update) = t.poll() {
                        if out.send(Msg::RunTail(Box::new(update))).is_err() {
                            return;
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(250));
            }
        })
        .expect("spawning the run tailer");
}
