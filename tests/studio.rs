//! The studio without a terminal: update logic (reload, errors, favourites, runs),
//! layout snapshots with ratatui's TestBackend, and the real worker threads.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use easel::device::DeviceArg;
use easel::gan::GanSpec;
use easel::run::{Control, Metric, RunDir, State, Status, Wanted};
use easel::sketch::{Knobs, Params};
use easel::spec::{self, Kind, Spec};
use easel::studio::app::{
    App, Confirm, Effect, Favourite, GanNoise, GanPreview, GanSampleRequest, Level, Mode, Msg,
    Reason, RenderRequest, Rendered, RunInfo, RunTail, FAVOURITE_SIDE, GAN_PREVIEW_SAMPLES,
};
use easel::studio::{save_favourite, view, worker, write_control};
use image::{DynamicImage, RgbImage};
use ratatui::backend::TestBackend;
use ratatui::Terminal;
use ratatui_image::picker::Picker;

fn key(c: char) -> Msg {
    Msg::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE))
}

fn code(c: KeyCode) -> Msg {
    Msg::Key(KeyEvent::new(c, KeyModifiers::NONE))
}

fn path(name: &str) -> PathBuf {
    PathBuf::from(format!("sketches/{name}.rhai"))
}

fn studio(names: &[&str]) -> (App, Vec<Effect>) {
    let (mut app, effects) = App::new(
        Mode::Studio {
            dir: PathBuf::from("sketches"),
        },
        names.iter().map(|n| path(n)).collect(),
        0,
    );
    app.clock = || "12:00:00".to_string();
    (app, effects)
}

fn render_request(effects: &[Effect]) -> RenderRequest {
    effects
        .iter()
        .find_map(|e| match e {
            Effect::Render(r) => Some(r.clone()),
            _ => None,
        })
        .expect("a render request")
}

/// A diagonal gradient, so snapshots show a real picture.
fn gradient(w: u32, h: u32) -> Arc<DynamicImage> {
    Arc::new(DynamicImage::ImageRgb8(RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x * 255 / w) as u8, (y * 255 / h) as u8, 128])
    })))
}

fn rendered(req: &RenderRequest, kind: Kind, coarse: bool) -> Msg {
    Msg::Rendered(Rendered {
        id: req.id,
        path: req.path.clone(),
        image: gradient(64, 64),
        size: (512, 512),
        coarse,
        render_time: Duration::from_millis(14),
        saved_at: None,
        source: Arc::new(format!("// source of {}", req.path.display())),
        kind,
        loop_frames: if kind == Kind::Cppn { 48 } else { 0 },
        fps: 12.0,
        frame: None,
        seed: req.tweaks.seed_for(7),
        file_seed: 7,
        params: Params::default(),
        knobs: Knobs::new(),
    })
}

fn gan_loaded(req: &RenderRequest, spec: GanSpec, reason: Reason) -> Msg {
    Msg::GanLoaded {
        id: req.id,
        path: req.path.clone(),
        spec: Box::new(spec),
        reason,
    }
}

fn gan_spec() -> GanSpec {
    let s = spec::load(Path::new("sketches/gan_truchet.rhai")).unwrap();
    match s.spec {
        Spec::Gan(g) => *g,
        _ => unreachable!(),
    }
}

fn status(state: State, step: u64, checkpoint: Option<u64>) -> Status {
    Status {
        state,
        message: String::new(),
        pid: std::process::id(),
        step,
        total_steps: 3000,
        checkpoint_step: checkpoint,
        device: "cpu".into(),
        gpu: None,
        updated: 0.0,
        ranks: 1,
    }
}

fn metric(step: u64) -> Metric {
    let t = step as f64;
    Metric {
        step,
        epoch: t / 30.0,
        d_loss: 1.3 - 0.5 * (t / 100.0).min(1.0) + 0.05 * (t * 0.7).sin(),
        g_loss: 0.7 + 0.6 * (t / 100.0).min(1.0) + 0.05 * (t * 1.3).cos(),
        d_real: 0.7,
        d_fake: 0.3,
        lr_g: 1e-4,
        lr_d: 1e-4,
        imgs_per_s: 85.0,
        time: 1000.0 + t * 1.5,
        ..Metric::default()
    }
}

/// A studio whose selected sketch is a GAN with a run at `state`.
fn gan_studio(state: State, alive: bool) -> (App, PathBuf) {
    let (mut app, effects) = studio(&["gan_truchet"]);
    let req = render_request(&effects);
    let run = PathBuf::from("runs/gan_truchet-20261125-120000");
    let info = RunInfo {
        path: run.clone(),
        status: Some(status(state.clone(), 120, Some(100))),
        alive,
    };
    let effects = app.update(Msg::Runs(HashMap::from([("gan_truchet".into(), info)])));
    assert_eq!(effects, vec![Effect::Follow(Some(run.clone()))]);
    app.update(gan_loaded(&req, gan_spec(), Reason::Selected));
    app.update(Msg::RunTail(Box::new(RunTail {
        path: run.clone(),
        status: Some(status(state, 120, Some(100))),
        alive,
        metrics: (1..=120).map(metric).collect(),
        reset: false,
        spec: Some(gan_spec()),
        sample: Some((run.join("samples/step_000100.png"), gradient(96, 96))),
    })));
    (app, run)
}

// ---- update logic ----------------------------------------------------------------------

#[test]
fn opening_renders_the_first_sketch_and_a_save_rerenders_it() {
    let (mut app, effects) = studio(&["a", "b"]);
    let first = render_request(&effects);
    assert_eq!(first.path, path("a"));
    assert_eq!(first.reason, Reason::Selected);
    app.update(rendered(&first, Kind::Truchet, false));
    assert_eq!(app.picture.as_ref().unwrap().path, path("a"));
    assert!(app.picture.as_ref().unwrap().caption.contains("14 ms"));

    // Saving b (in an editor) selects it and re-renders it as a save.
    let effects = app.update(Msg::FilesChanged(vec![path("b")]));
    let save = render_request(&effects);
    assert_eq!((save.path.clone(), save.reason), (path("b"), Reason::Saved));
    assert_eq!(app.selected, 1);
    // The old picture stays until the new one arrives.
    assert_eq!(app.picture.as_ref().unwrap().path, path("a"));
    let Msg::Rendered(mut done) = rendered(&save, Kind::Truchet, false) else {
        unreachable!()
    };
    done.saved_at = Some(std::time::SystemTime::now() - Duration::from_millis(30));
    app.update(Msg::Rendered(done));
    let picture = app.picture.as_ref().unwrap();
    assert_eq!(picture.path, path("b"));
    assert!(
        picture.caption.contains("save→screen"),
        "{}",
        picture.caption
    );
    assert_eq!(app.log.back().unwrap().text, "reloaded b (14 ms)");
}

#[test]
fn the_latest_request_wins_and_coarse_comes_before_full() {
    let (mut app, effects) = studio(&["a"]);
    let older = render_request(&effects);
    let newer = render_request(&app.update(Msg::FilesChanged(vec![path("a")])));
    assert!(newer.id > older.id);
    // The older render finishing late must not replace the newer one.
    app.update(rendered(&older, Kind::Cppn, false));
    assert!(app.picture.is_none());
    app.update(rendered(&newer, Kind::Cppn, true));
    assert!(app.picture.as_ref().unwrap().caption.contains("coarse"));
    app.update(rendered(&newer, Kind::Cppn, false));
    let caption = &app.picture.as_ref().unwrap().caption;
    assert!(
        caption.contains("512x512") && caption.contains("render 14 ms"),
        "{caption}"
    );
}

#[test]
fn an_error_keeps_the_last_good_image_and_a_fix_clears_it() {
    let (mut app, effects) = studio(&["a"]);
    let first = render_request(&effects);
    app.update(rendered(&first, Kind::Truchet, false));
    let good = app.picture.as_ref().unwrap().serial;

    let broken = render_request(&app.update(Msg::FilesChanged(vec![path("a")])));
    let error = "sketches/a.rhai:4:9: unknown tile family \"arc\"; expected one of triangles, arcs";
    app.update(Msg::RenderFailed {
        id: broken.id,
        path: broken.path.clone(),
        error: error.into(),
    });
    assert_eq!(app.error.as_deref(), Some(error));
    assert_eq!(
        app.picture.as_ref().unwrap().serial,
        good,
        "last good image stays"
    );
    let last = app.log.back().unwrap();
    assert_eq!(last.level, Level::Error);
    assert!(last.text.contains("a.rhai:4:9"));

    let fixed = render_request(&app.update(Msg::FilesChanged(vec![path("a")])));
    app.update(rendered(&fixed, Kind::Truchet, false));
    assert!(app.error.is_none());
    assert!(app.log.back().unwrap().text.contains("a: fixed"));
}

#[test]
fn the_list_follows_files_appearing_and_vanishing() {
    let (mut app, effects) = studio(&["a", "b", "c"]);
    let _ = render_request(&effects);
    app.update(code(KeyCode::Down));
    assert_eq!(app.selected, 1);
    // A new file before the selection keeps the same sketch selected.
    app.update(Msg::SketchesListed(vec![
        path("0"),
        path("a"),
        path("b"),
        path("c"),
    ]));
    assert_eq!(app.selected_path(), Some(&path("b")));
    // The selected file vanishes: its neighbour is selected and rendered.
    let effects = app.update(Msg::SketchesListed(vec![path("0"), path("a"), path("c")]));
    assert_eq!(render_request(&effects).path, path("c"));
    assert!(app.log.iter().any(|l| l.text == "gone: b"));
    assert!(app.log.iter().any(|l| l.text == "new: 0"));
}

#[test]
fn s_saves_the_shown_source_as_a_favourite() {
    let (mut app, effects) = studio(&["a"]);
    assert!(app.update(key('s')).is_empty(), "nothing shown yet");
    app.update(rendered(&render_request(&effects), Kind::Truchet, false));
    let effects = app.update(key('s'));
    assert_eq!(
        effects,
        vec![Effect::SaveFavourite(Favourite::Sketch {
            path: path("a"),
            source: Arc::new("// source of sketches/a.rhai".into()),
            seed: Some(7),
            knobs: Knobs::new(),
            upscale: None,
        })]
    );
    app.update(Msg::FavouriteSaved(Ok(PathBuf::from("favourites/a-1.png"))));
    assert!(app.log.back().unwrap().text.contains("favourites/a-1.png"));
}

#[test]
fn a_favourite_file_carries_a_recipe_that_renders_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let sketch_path = Path::new("sketches/truchet_triangles.rhai");
    let source = std::fs::read_to_string(sketch_path).unwrap();
    let saved = save_favourite(
        dir.path(),
        &Favourite::Sketch {
            path: sketch_path.into(),
            source: Arc::new(source.clone()),
            seed: None,
            knobs: Knobs::new(),
            upscale: None,
        },
    )
    .unwrap();
    let name = saved.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.starts_with("truchet_triangles-") && name.ends_with(".png"),
        "{name}"
    );
    let recipe = easel::recipe::read_recipe(&saved).unwrap();
    assert_eq!(recipe.source, source);
    let again = spec::load_source(sketch_path, recipe.source).unwrap();
    let (img, _) = again.render(None, Some(recipe.seed), None).unwrap();
    let saved_img = image::open(&saved).unwrap();
    assert_eq!(saved_img.to_rgb8().as_raw(), img.to_rgb8().as_raw());
    // A second favourite in the same second gets its own file.
    let second = save_favourite(
        dir.path(),
        &Favourite::Sketch {
            path: sketch_path.into(),
            source: Arc::new(source),
            seed: None,
            knobs: Knobs::new(),
            upscale: None,
        },
    )
    .unwrap();
    assert_ne!(saved, second);
}

#[test]
fn t_trains_gan_sketches_only_and_never_twice() {
    let (mut app, effects) = studio(&["cppn_a", "gan_truchet"]);
    app.update(rendered(&render_request(&effects), Kind::Cppn, false));
    assert!(app.update(key('t')).is_empty());
    assert!(app
        .log
        .back()
        .unwrap()
        .text
        .contains("t trains GAN sketches"));

    let req = render_request(&app.update(code(KeyCode::Down)));
    app.update(gan_loaded(&req, gan_spec(), Reason::Selected));
    let effects = app.update(key('t'));
    assert_eq!(
        effects,
        vec![Effect::StartTraining {
            sketch: path("gan_truchet"),
            resume: None
        }]
    );
    let run = PathBuf::from("runs/gan_truchet-20261125-120000");
    let effects = app.update(Msg::TrainingStarted(Ok(run.clone())));
    assert_eq!(effects, vec![Effect::Follow(Some(run))]);
    assert!(app.update(key('t')).is_empty(), "already training");
    assert!(app.log.back().unwrap().text.contains("already training"));
}

#[test]
fn t_resumes_a_stopped_run_and_a_dead_process_counts_as_stopped() {
    let (mut app, run) = gan_studio(State::Stopped, false);
    assert_eq!(
        app.update(key('t')),
        vec![Effect::StartTraining {
            sketch: path("gan_truchet"),
            resume: Some(run.clone())
        }]
    );
    // "running" in status.json, but the process was killed (kill -9): resumable.
    let (mut app, run) = gan_studio(State::Running, false);
    assert_eq!(
        app.update(key('t')),
        vec![Effect::StartTraining {
            sketch: path("gan_truchet"),
            resume: Some(run)
        }]
    );
}

#[test]
fn p_and_x_control_the_run_through_control_json() {
    let (mut app, run) = gan_studio(State::Running, true);
    assert_eq!(
        app.update(key('p')),
        vec![Effect::Control {
            run: run.clone(),
            patch: Control {
                state: Some(Wanted::Pause),
                ..Control::default()
            }
        }]
    );
    app.update(Msg::RunTail(Box::new(RunTail {
        path: run.clone(),
        status: Some(status(State::Paused, 121, Some(100))),
        alive: true,
        metrics: vec![],
        reset: false,
        spec: None,
        sample: None,
    })));
    assert!(app.log.back().unwrap().text.contains("paused"));
    assert_eq!(
        app.update(key('p')),
        vec![Effect::Control {
            run: run.clone(),
            patch: Control {
                state: Some(Wanted::Run),
                ..Control::default()
            }
        }]
    );
    assert_eq!(
        app.update(key('x')),
        vec![Effect::set_state(run, Wanted::Stop)]
    );
    // A finished run has nothing to control.
    let (mut done, _) = gan_studio(State::Done, false);
    assert!(done.update(key('x')).is_empty());
}

#[test]
fn a_gan_sample_is_the_preview_of_its_sketch() {
    let (app, run) = gan_studio(State::Running, true);
    let picture = app.picture.as_ref().expect("the sample grid is shown");
    assert_eq!(picture.path, path("gan_truchet"));
    assert!(picture.caption.contains("step 100"), "{}", picture.caption);
    let view = app.run.as_ref().unwrap();
    assert_eq!(view.path, run);
    assert_eq!(view.metrics.len(), 120);
}

#[test]
fn saving_a_gan_sketch_pushes_learning_rates_and_asks_about_structure() {
    let (mut app, run) = gan_studio(State::Running, true);
    let mut faster = gan_spec();
    faster.lr_g = 5e-4;
    faster.sample_every = 20;
    let req = render_request(&app.update(Msg::FilesChanged(vec![path("gan_truchet")])));
    let effects = app.update(gan_loaded(&req, faster, Reason::Saved));
    assert_eq!(
        effects,
        vec![Effect::Control {
            run: run.clone(),
            patch: Control {
                lr_g: Some(5e-4),
                sample_every: Some(20),
                ..Control::default()
            }
        }]
    );
    assert!(app.confirm.is_none());

    let mut wider = gan_spec();
    wider.g_widths = vec![512, 256, 128];
    let req = render_request(&app.update(Msg::FilesChanged(vec![path("gan_truchet")])));
    let effects = app.update(gan_loaded(&req, wider, Reason::Saved));
    assert!(effects.is_empty());
    assert_eq!(
        app.confirm,
        Some(Confirm::Restart {
            sketch: path("gan_truchet"),
            run: run.clone()
        })
    );
    // Other keys wait for the answer; y restarts.
    assert!(app.update(key('t')).is_empty());
    let effects = app.update(key('y'));
    assert_eq!(
        effects,
        vec![
            Effect::set_state(run, Wanted::Stop),
            Effect::StartTraining {
                sketch: path("gan_truchet"),
                resume: None
            }
        ]
    );
    assert!(app.confirm.is_none());
}

#[test]
fn saving_a_new_step_count_while_training_asks_too() {
    let (mut app, run) = gan_studio(State::Running, true);
    let mut longer = gan_spec();
    longer.steps += 1000;
    let req = render_request(&app.update(Msg::FilesChanged(vec![path("gan_truchet")])));
    let effects = app.update(gan_loaded(&req, longer, Reason::Saved));
    assert!(effects.is_empty(), "{effects:?}");
    assert_eq!(
        app.confirm,
        Some(Confirm::Restart {
            sketch: path("gan_truchet"),
            run
        })
    );
}

#[test]
fn space_plays_the_latent_loop_one_frame_at_a_time() {
    let (mut app, effects) = studio(&["cppn_a"]);
    app.update(rendered(&render_request(&effects), Kind::Cppn, false));
    let t0 = Instant::now();
    assert!(app.update(Msg::Tick(t0)).is_empty(), "paused until space");
    app.update(key(' '));
    let frame = render_request(&app.update(Msg::Tick(t0)));
    assert_eq!(frame.frame, Some((1, 48)));
    // No second request while the first is rendering.
    assert!(app
        .update(Msg::Tick(t0 + Duration::from_secs(1)))
        .is_empty());
    app.update(Msg::Rendered(Rendered {
        frame: Some(1),
        ..match rendered(&frame, Kind::Cppn, false) {
            Msg::Rendered(r) => r,
            _ => unreachable!(),
        }
    }));
    assert!(app.picture.as_ref().unwrap().caption.contains("frame 2/48"));
    let next = render_request(&app.update(Msg::Tick(t0 + Duration::from_secs(1))));
    assert_eq!(next.frame, Some((2, 48)));
    app.update(key(' '));
    assert!(!app.animation.as_ref().unwrap().playing);
}

#[test]
fn help_q_and_ctrl_c() {
    let (mut app, _) = studio(&["a"]);
    app.update(key('?'));
    assert!(app.help);
    app.update(key('j'));
    assert!(!app.help && !app.quit, "any key closes the help");
    let ctrl_c = Msg::Key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL));
    assert_eq!(app.update(ctrl_c), vec![Effect::Quit]);
    assert!(app.quit);
}

// ---- run directory plumbing ------------------------------------------------------------

#[test]
fn control_patches_merge_into_control_json() {
    let dir = tempfile::tempdir().unwrap();
    let run = RunDir::at(dir.path()).unwrap();
    write_control(
        &run.path,
        &Control {
            lr_g: Some(3e-4),
            ..Control::default()
        },
    )
    .unwrap();
    write_control(
        &run.path,
        &Control {
            state: Some(Wanted::Pause),
            ..Control::default()
        },
    )
    .unwrap();
    let c = run.read_control().unwrap();
    assert_eq!(c.lr_g, Some(3e-4));
    assert_eq!(c.state, Some(Wanted::Pause));
}

#[test]
fn the_tail_reads_only_complete_new_metric_lines() {
    let dir = tempfile::tempdir().unwrap();
    let run = RunDir::at(dir.path()).unwrap();
    run.write_status(&status(State::Running, 2, None)).unwrap();
    run.append_metric(&metric(1)).unwrap();
    run.append_metric(&metric(2)).unwrap();
    let mut tail = worker::Tail::new(run.path.clone());
    let first = tail.poll().unwrap();
    assert_eq!(first.metrics.len(), 2);
    assert!(first.alive, "this process is alive");
    assert!(tail.poll().is_none(), "nothing changed");
    // Half a line (a write in progress) waits for its newline.
    use std::io::Write;
    let line = serde_json::to_string(&metric(3)).unwrap();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(run.metrics())
        .unwrap();
    f.write_all(&line.as_bytes()[..10]).unwrap();
    f.flush().unwrap();
    assert!(tail.poll().is_none());
    f.write_all(&line.as_bytes()[10..]).unwrap();
    f.write_all(b"\n").unwrap();
    f.flush().unwrap();
    let next = tail.poll().unwrap();
    assert_eq!(
        next.metrics.iter().map(|m| m.step).collect::<Vec<_>>(),
        vec![3]
    );
    // A resume truncates the file: the tail starts over.
    run.truncate_metrics(1).unwrap();
    let reset = tail.poll().unwrap();
    assert!(reset.reset);
    assert_eq!(reset.metrics.len(), 1);
}

#[test]
fn run_folders_map_to_their_sketch() {
    assert_eq!(
        easel::run::sketch_name_of_run("gan_truchet-20261125-101200"),
        Some("gan_truchet")
    );
    assert_eq!(
        easel::run::sketch_name_of_run("my-gan-20261125-101200-2"),
        Some("my-gan")
    );
    assert_eq!(easel::run::sketch_name_of_run("notes"), None);
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "g-20261125-100000",
        "g-20261125-110000",
        "h-20261125-090000",
    ] {
        let run = RunDir::at(&dir.path().join(name)).unwrap();
        run.write_status(&status(State::Done, 5, Some(5))).unwrap();
    }
    let index = worker::runs_index(dir.path());
    assert_eq!(index.len(), 2);
    assert!(index["g"].path.ends_with("g-20261125-110000"), "newest run");
}

// ---- seeds and knobs --------------------------------------------------------------------

const KNOB_SOURCE: &str = "// knobs\n#{\n    kind: \"truchet\",\n    params: #{\n        tile: [8, 64, 32],      // pixels\n        hue:  [0.0, 1.0, 0.3],\n    },\n    tile: params.tile,\n}\n";

fn knob_params() -> Params {
    spec::declared_params(Path::new("k.rhai"), KNOB_SOURCE).unwrap()
}

/// What the renderer would send for `req` of a sketch declaring `params`: the seed and
/// knob values the request asked for, on top of the file's seed 7 and defaults.
fn rendered_with(req: &RenderRequest, kind: Kind, params: &Params) -> Msg {
    let Msg::Rendered(mut r) = rendered(req, kind, false) else {
        unreachable!()
    };
    r.knobs = req.tweaks.knobs_for(params);
    r.params = params.clone();
    Msg::Rendered(r)
}

fn caption(app: &App) -> String {
    app.picture.as_ref().unwrap().caption.clone()
}

#[test]
fn n_and_shift_n_step_the_seed_without_the_file_and_the_title_shows_it() {
    let (mut app, effects) = studio(&["a", "b"]);
    app.update(rendered(&render_request(&effects), Kind::Truchet, false));
    assert!(caption(&app).starts_with("seed 7 · "), "{}", caption(&app));

    let next = render_request(&app.update(key('n')));
    assert_eq!(next.path, path("a"));
    assert_eq!(next.reason, Reason::Asked, "rendered at once, fit or not");
    assert_eq!(next.tweaks.seed_for(7), 8);
    app.update(rendered(&next, Kind::Truchet, true));
    assert!(
        caption(&app).starts_with("seed 8 · 512x512 · coarse"),
        "{}",
        caption(&app)
    );
    app.update(rendered(&next, Kind::Truchet, false));
    let back = render_request(&app.update(key('N')));
    let back = render_request(&{
        app.update(rendered(&back, Kind::Truchet, false));
        app.update(key('N'))
    });
    assert_eq!(back.tweaks.seed_for(7), 6);
    app.update(rendered(&back, Kind::Truchet, false));
    assert!(caption(&app).starts_with("seed 6 · "), "{}", caption(&app));

    // The favourite records the seed on screen.
    assert_eq!(
        app.update(key('s')),
        vec![Effect::SaveFavourite(Favourite::Sketch {
            path: path("a"),
            source: Arc::new("// source of sketches/a.rhai".into()),
            seed: Some(6),
            knobs: Knobs::new(),
            upscale: None,
        })]
    );

    // Kept per sketch: a look at b and back finds seed 6 again.
    let b = render_request(&app.update(key('j')));
    assert_eq!(b.tweaks.seed_for(7), 7, "b has its own seed");
    let a = render_request(&app.update(key('k')));
    assert_eq!(a.tweaks.seed_for(7), 6);

    // The file changing its seed wins: the studio's seed is dropped.
    let Msg::Rendered(mut r) = rendered(&a, Kind::Truchet, false) else {
        unreachable!()
    };
    (r.file_seed, r.seed) = (9, a.tweaks.seed_for(9));
    app.update(Msg::Rendered(r));
    assert!(caption(&app).starts_with("seed 9 · "), "{}", caption(&app));
    assert!(!app.tweaks.contains_key(&path("a")));
}

/// The one GAN sample request among `effects`.
fn sample_request(effects: &[Effect]) -> GanSampleRequest {
    match effects {
        [Effect::SampleGan(r)] => r.clone(),
        other => panic!("expected one SampleGan, got {other:?}"),
    }
}

#[test]
fn n_and_the_knob_keys_draw_a_gan_preview_from_other_noise_and_truncation() {
    let (mut app, run) = gan_studio(State::Running, true);
    let first = sample_request(&app.update(key('n')));
    assert_eq!(
        (first.run.clone(), first.sketch.clone(), first.count),
        (run.clone(), path("gan_truchet"), GAN_PREVIEW_SAMPLES)
    );
    assert_eq!((first.noise.seed, first.noise.truncation), (1, 1.0));
    // Fine and coarse truncation steps, kept in range.
    let finer = sample_request(&app.update(key('-')));
    assert_eq!((finer.noise.seed, finer.noise.truncation), (1, 0.95));
    for _ in 0..10 {
        app.update(key('_'));
    }
    assert_eq!(app.gan_noise[&path("gan_truchet")].truncation, 0.05);
    assert!(app.update(key('_')).is_empty(), "nothing past the end");
    let newest = sample_request(&app.update(key('+')));
    assert_eq!(newest.noise.truncation, 0.3);
    // An older grid arriving late is dropped; the newest is shown with its noise.
    let grid = gradient(40, 40);
    let sampled = |r: &GanSampleRequest| Msg::GanSampled {
        id: r.id,
        sketch: r.sketch.clone(),
        noise: r.noise,
        result: Ok(GanPreview {
            grid: grid.clone(),
            from: "checkpoints/latest.safetensors (EMA weights, step 120)".into(),
            first_sample: None,
        }),
    };
    app.update(sampled(&first));
    assert!(app
        .picture
        .as_ref()
        .unwrap()
        .caption
        .starts_with("samples · step 100"));
    app.update(sampled(&newest));
    let caption = &app.picture.as_ref().unwrap().caption;
    assert!(
        caption.starts_with("seed 1 · truncation 0.30 · checkpoints/latest"),
        "{caption}"
    );
    // The run writes newer weights: the same noise is drawn again, not the run's grid.
    let again = sample_request(&app.update(Msg::RunTail(Box::new(RunTail {
        path: run.clone(),
        status: Some(status(State::Running, 140, Some(140))),
        alive: true,
        metrics: vec![],
        reset: false,
        spec: None,
        sample: Some((run.join("samples/step_000140.png"), gradient(96, 96))),
    }))));
    assert_eq!(again.noise, newest.noise);
    // A failed draw keeps the picture and says why.
    app.update(Msg::GanSampled {
        id: again.id,
        sketch: again.sketch.clone(),
        noise: again.noise,
        result: Err("no weights yet".into()),
    });
    assert!(app.picture.is_some());
    assert!(app.log.back().unwrap().text.contains("no weights yet"));
    // A save of the sketch keeps drawing from the studio's noise.
    let req = render_request(&app.update(Msg::FilesChanged(vec![path("gan_truchet")])));
    let saved = sample_request(&app.update(gan_loaded(&req, gan_spec(), Reason::Saved)));
    assert_eq!(saved.noise, newest.noise);
}

#[test]
fn n_on_a_gan_sketch_without_a_run_says_to_train_it() {
    let (mut app, effects) = studio(&["gan_truchet"]);
    let req = render_request(&effects);
    app.update(gan_loaded(&req, gan_spec(), Reason::Selected));
    assert!(app.update(key('n')).is_empty());
    assert!(
        app.log
            .back()
            .unwrap()
            .text
            .contains("has no run yet: t trains it"),
        "{:?}",
        app.log.back()
    );
    // v still says what it works on, and how to get other GAN samples.
    assert!(app.update(key('v')).is_empty());
    assert!(app
        .log
        .back()
        .unwrap()
        .text
        .contains("easel sample RUN --seed N"));
}

#[test]
fn the_sampler_draws_what_easel_sample_draws() {
    let dir = tempfile::tempdir().unwrap();
    let run = common::trained_run(
        dir.path(),
        28,
        r#"model: "dcgan", image_size: 28, channels: 1, latent: 8, g_widths: [16, 8],
           d_widths: [8, 16], kernel: 4, batch: 8, lr: 2e-3, steps: 4, sample_every: 4,
           checkpoint_every: 4, eval_every: 0, seed: 5,"#,
    );
    let sketches = dir.path().join("sketches");
    let (tx, rx) = mpsc::channel();
    let sampler = worker::spawn_sampler(tx);
    let noise = GanNoise {
        seed: 3,
        truncation: 0.7,
    };
    sampler
        .send(GanSampleRequest {
            id: 9,
            sketch: sketches.join("g.rhai"),
            run: run.clone(),
            noise,
            count: GAN_PREVIEW_SAMPLES,
        })
        .unwrap();
    let preview = wait_for(&rx, |m| match m {
        Msg::GanSampled { id: 9, result, .. } => Some(result.unwrap()),
        _ => None,
    });
    let (image, from) = (preview.grid, preview.from);
    assert!(from.contains("generator.safetensors"), "{from}");
    assert!(
        preview.first_sample.is_none(),
        "a DCGAN sample is no sketch"
    );
    common::easel_in(
        dir.path(),
        &[
            "sample",
            run.to_str().unwrap(),
            "-n",
            "16",
            "--seed",
            "3",
            "--truncation",
            "0.7",
            "-o",
            "same.png",
        ],
    );
    let same = image::open(dir.path().join("same.png")).unwrap();
    assert_eq!(image.to_rgb8().as_raw(), same.to_rgb8().as_raw());
    // A run without weights yet: an error, not a panic.
    let empty = dir.path().join("runs/empty");
    std::fs::create_dir_all(&empty).unwrap();
    sampler
        .send(GanSampleRequest {
            id: 10,
            sketch: sketches.join("g.rhai"),
            run: empty,
            noise,
            count: 4,
        })
        .unwrap();
    let error = wait_for(&rx, |m| match m {
        Msg::GanSampled { id: 10, result, .. } => Some(result.unwrap_err()),
        _ => None,
    });
    assert!(error.contains("no weights yet"), "{error}");
}

#[test]
fn s_on_a_cppn_gan_preview_saves_its_first_sample_with_a_recipe_that_renders_it_larger() {
    let dir = tempfile::tempdir().unwrap();
    let run = common::trained_run(
        dir.path(),
        32,
        r#"model: "cppn", image_size: 32, channels: 1, latent: 5,
           cppn: #{ layers: [12, 10], mapping: [7], modulate: true },
           d_widths: [8, 16], batch: 4, lr: 2e-3, steps: 3, sample_every: 3,
           checkpoint_every: 3, eval_every: 0, seed: 3,"#,
    );
    // The studio asks for other noise; the real sampler draws it from the trained run.
    let (mut app, _) = gan_studio(State::Done, false);
    let mut request = sample_request(&app.update(key('n')));
    request.run = run.clone();
    let (tx, rx) = mpsc::channel();
    worker::spawn_sampler(tx).send(request.clone()).unwrap();
    let sampled = wait_for(&rx, |m| matches!(m, Msg::GanSampled { .. }).then_some(m));
    app.update(sampled);
    let effects = app.update(key('s'));
    let [Effect::SaveFavourite(fav @ Favourite::Sketch { .. })] = &effects[..] else {
        panic!("expected a sketch favourite, got {effects:?}");
    };
    let saved = save_favourite(&dir.path().join("favourites"), fav).unwrap();
    let img = image::open(&saved).unwrap().to_luma8();
    assert_eq!(img.dimensions(), (FAVOURITE_SIDE, FAVOURITE_SIDE));
    // Its recipe renders it at another size: the first sample of that noise, as
    // `easel sample --size` draws it.
    let saved = saved.to_str().unwrap();
    common::easel_in(
        dir.path(),
        &["render", "--from", saved, "--size", "96", "-o", "again.png"],
    );
    let (seed, truncation) = (
        request.noise.seed.to_string(),
        request.noise.truncation.to_string(),
    );
    common::easel_in(
        dir.path(),
        &[
            "sample",
            run.to_str().unwrap(),
            "-n",
            "1",
            "--size",
            "96",
            "--seed",
            &seed,
            "--truncation",
            &truncation,
            "-o",
            "sample.png",
        ],
    );
    let again = image::open(dir.path().join("again.png"))
        .unwrap()
        .to_luma8();
    let sample = image::open(dir.path().join("sample.png"))
        .unwrap()
        .to_luma8();
    assert_eq!(again.dimensions(), (96, 96));
    for (x, y, p) in again.enumerate_pixels() {
        let q = sample.get_pixel(x + 2, y + 2).0[0];
        assert!(p.0[0].abs_diff(q) <= 1, "({x}, {y}): {} vs {q}", p.0[0]);
    }
}

#[test]
fn knobs_select_turn_in_fine_and_coarse_steps_and_stay_in_range() {
    let params = knob_params();
    let (mut app, effects) = studio(&["k"]);
    assert!(app.knob_values().is_none(), "not rendered yet");
    app.update(rendered_with(
        &render_request(&effects),
        Kind::Truchet,
        &params,
    ));
    let values = |app: &App| app.knob_values().unwrap().1;
    assert_eq!(
        values(&app),
        Knobs::from([("tile".into(), 32.0), ("hue".into(), 0.3)])
    );
    assert_eq!(app.knob, 0);

    // An int knob steps by whole numbers: 1, and a tenth of 56 rounded: 6.
    let req = render_request(&app.update(key('=')));
    assert_eq!(req.tweaks.knobs_for(&params)["tile"], 33.0);
    app.update(rendered_with(&req, Kind::Truchet, &params));
    app.update(key('+'));
    assert_eq!(values(&app)["tile"], 39.0);
    for _ in 0..20 {
        app.update(key('_'));
    }
    assert_eq!(values(&app)["tile"], 8.0, "clamped at min");
    assert!(app.update(key('_')).is_empty(), "no render past the end");
    assert!(app.update(key('-')).is_empty());

    // ] selects the float knob: hundredths and tenths of its range.
    app.update(key(']'));
    app.update(key(']'));
    assert_eq!(app.knob, 1, "stops at the last knob");
    app.update(key('='));
    assert_eq!(values(&app)["hue"], 0.31);
    app.update(key('+'));
    assert_eq!(values(&app)["hue"], 0.41);
    for _ in 0..10 {
        app.update(key('+'));
    }
    assert_eq!(values(&app)["hue"], 1.0, "clamped at max");
    app.update(key('['));
    assert_eq!(app.knob, 0);

    // Back at its default a knob is no longer a tweak.
    for _ in 0..24 {
        app.update(key('='));
    }
    assert_eq!(values(&app)["tile"], 32.0);
    assert!(!app.tweaks[&path("k")].knobs.contains_key("tile"));

    // The favourite records the values on screen.
    let req = render_request(&app.update(key('n')));
    app.update(rendered_with(&req, Kind::Truchet, &params));
    let Effect::SaveFavourite(Favourite::Sketch { knobs, seed, .. }) = &app.update(key('s'))[0]
    else {
        panic!("a sketch favourite")
    };
    assert_eq!((knobs.clone(), *seed), (values(&app), Some(8)));
    assert_eq!(knobs["hue"], 1.0);
}

#[test]
fn knob_keys_on_a_sketch_without_knobs_say_how_to_declare_them() {
    let (mut app, effects) = studio(&["a"]);
    app.update(rendered(&render_request(&effects), Kind::Truchet, false));
    for k in ['=', '-', '+', '_', '[', ']', 'w'] {
        assert!(app.update(key(k)).is_empty(), "{k}");
    }
    assert!(app
        .log
        .back()
        .unwrap()
        .text
        .contains("a has no knobs: declare some"));
}

#[test]
fn a_changed_default_in_the_file_wins_over_the_knob() {
    let params = knob_params();
    let (mut app, effects) = studio(&["k"]);
    app.update(rendered_with(
        &render_request(&effects),
        Kind::Truchet,
        &params,
    ));
    app.update(key('='));
    assert_eq!(app.knob_values().unwrap().1["tile"], 33.0);
    // The file now says tile defaults to 40: its value, not the studio's 33.
    let edited = KNOB_SOURCE.replace("[8, 64, 32]", "[8, 64, 40]");
    let edited = spec::declared_params(Path::new("k.rhai"), &edited).unwrap();
    let save = render_request(&app.update(Msg::FilesChanged(vec![path("k")])));
    assert_eq!(save.tweaks.knobs_for(&edited)["tile"], 40.0);
    app.update(rendered_with(&save, Kind::Truchet, &edited));
    assert_eq!(app.knob_values().unwrap().1["tile"], 40.0);
    assert!(!app.tweaks.contains_key(&path("k")));
}

#[test]
fn w_writes_only_the_default_numbers_into_the_file() {
    let params = knob_params();
    let (mut app, effects) = studio(&["k"]);
    app.update(rendered_with(
        &render_request(&effects),
        Kind::Truchet,
        &params,
    ));
    app.update(key('+'));
    app.update(key(']'));
    app.update(key('='));
    let effects = app.update(key('w'));
    let knobs = Knobs::from([("tile".into(), 38.0), ("hue".into(), 0.31)]);
    assert_eq!(
        effects,
        vec![Effect::WriteKnobs {
            path: path("k"),
            knobs: knobs.clone()
        }]
    );

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("k.rhai");
    std::fs::write(&file, KNOB_SOURCE).unwrap();
    easel::studio::write_knobs(&file, &knobs).unwrap();
    let written = std::fs::read_to_string(&file).unwrap();
    assert_eq!(
        written,
        KNOB_SOURCE
            .replace("[8, 64, 32]", "[8, 64, 38]")
            .replace("[0.0, 1.0, 0.3]", "[0.0, 1.0, 0.31]"),
        "comments, spacing and min/max untouched"
    );
    let reloaded = spec::load(&file).unwrap();
    assert_eq!(reloaded.knobs, knobs);

    // The log says so; the values are the file's now, not tweaks.
    app.update(Msg::KnobsWritten {
        path: path("k"),
        result: Ok(knobs.clone()),
    });
    assert!(app
        .log
        .back()
        .unwrap()
        .text
        .contains("wrote hue 0.31, tile 38 into k"));
    assert!(app.tweaks[&path("k")].knobs.is_empty());
    assert_eq!(app.knob_values().unwrap().1, knobs);

    // A knob the file no longer declares is refused, and the file is left alone.
    let err = easel::studio::write_knobs(&file, &Knobs::from([("gone".into(), 1.0)]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("no longer declares knob \"gone\""), "{err}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), written);
}

#[test]
fn a_favourite_with_seed_and_knobs_renders_the_same_bytes_from_its_recipe() {
    let dir = tempfile::tempdir().unwrap();
    let sketch_path = Path::new("sketches/truchet_knobs.rhai");
    let source = std::fs::read_to_string(sketch_path).unwrap();
    let knobs = Knobs::from([
        ("tile".into(), 24.0),
        ("line".into(), 3.0),
        ("warmth".into(), 0.85),
        ("turned".into(), 0.2),
    ]);
    let saved = save_favourite(
        dir.path(),
        &Favourite::Sketch {
            path: sketch_path.into(),
            source: Arc::new(source),
            seed: Some(12345),
            knobs: knobs.clone(),
            upscale: None,
        },
    )
    .unwrap();
    let recipe = easel::recipe::read_recipe(&saved).unwrap();
    assert_eq!((recipe.seed, recipe.knobs.clone()), (12345, knobs));
    let again = dir.path().join("again.png");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_easel"))
        .args(["render", "--from"])
        .arg(&saved)
        .arg("-o")
        .arg(&again)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read(&saved).unwrap(),
        std::fs::read(&again).unwrap()
    );
    // And the seed and knobs mattered: the file's own values make another picture.
    let plain = spec::load(sketch_path)
        .unwrap()
        .render(None, None, None)
        .unwrap()
        .0;
    assert_ne!(plain.as_bytes(), image::open(&saved).unwrap().as_bytes());
}

#[test]
fn run_panels_show_for_gan_sketches_only_and_f_fills_the_screen() {
    let (mut app, effects) = studio(&["cppn_silk"]);
    app.update(rendered(&render_request(&effects), Kind::Cppn, false));
    let text = screen(&app, 80, 24);
    assert!(
        !text.contains(" Run ") && !text.contains("Losses"),
        "{text}"
    );
    assert!(text.contains(" Log "), "{text}");
    let (app_gan, _) = gan_studio(State::Running, true);
    let text = screen(&app_gan, 80, 24);
    assert!(text.contains(" Run ") && text.contains("Losses"), "{text}");

    app.update(key('f'));
    let text = screen(&app, 80, 24);
    assert!(
        !text.contains("Sketches") && !text.contains(" Log "),
        "{text}"
    );
    assert!(text.contains("Preview · cppn_silk"), "{text}");
    app.update(key('f'));
    assert!(screen(&app, 80, 24).contains("Sketches"));
}

// ---- layout snapshots ------------------------------------------------------------------

fn screen_buffer(app: &App, width: u16, height: u16) -> ratatui::buffer::Buffer {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    let mut state = view::ViewState::new(Picker::halfblocks());
    terminal.draw(|f| view::draw(f, app, &mut state)).unwrap();
    terminal.backend().buffer().clone()
}

/// Where `text` starts on screen (on one row), if anywhere.
fn find_text(buffer: &ratatui::buffer::Buffer, text: &str) -> Option<(u16, u16)> {
    let width = buffer.area.width as usize;
    (0..buffer.area.height).find_map(|y| {
        let row: Vec<&str> = (0..buffer.area.width)
            .map(|x| buffer[(x, y)].symbol())
            .collect();
        let joined = row.concat();
        let byte = joined.find(text)?;
        // Cells to the match: count the symbols before it.
        let mut seen = 0;
        let x = row.iter().position(|s| {
            let here = seen;
            seen += s.len();
            here >= byte
        })?;
        (x < width).then_some((x as u16, y))
    })
}

fn screen(app: &App, width: u16, height: u16) -> String {
    let buffer = screen_buffer(app, width, height);
    let buffer = &buffer;
    let mut out = String::new();
    for y in 0..buffer.area.height {
        for x in 0..buffer.area.width {
            out.push_str(buffer[(x, y)].symbol());
        }
        out.push('\n');
    }
    out
}

fn busy_studio() -> App {
    let (mut app, _) = gan_studio(State::Running, true);
    app.update(Msg::SketchesListed(vec![
        path("cppn_silk"),
        path("gan_truchet"),
        path("truchet_arcs"),
    ]));
    app.update(Msg::Error(
        "sketches/truchet_arcs.rhai:4:9: unknown tile family \"arc\"".into(),
    ));
    app
}

#[test]
fn snapshot_80x24() {
    insta::assert_snapshot!(screen(&busy_studio(), 80, 24));
}

#[test]
fn snapshot_160x48() {
    insta::assert_snapshot!(screen(&busy_studio(), 160, 48));
}

#[test]
fn snapshot_error_and_help() {
    let (mut app, effects) = studio(&["truchet_arcs"]);
    let req = render_request(&effects);
    app.update(rendered(&req, Kind::Truchet, false));
    let broken = render_request(&app.update(Msg::FilesChanged(vec![path("truchet_arcs")])));
    app.update(Msg::RenderFailed {
        id: broken.id,
        path: broken.path,
        error: "sketches/truchet_arcs.rhai:4:9: unknown tile family \"arc\"; expected one of triangles, arcs, diagonals, multiscale".into(),
    });
    insta::assert_snapshot!("error_80x24", screen(&app, 80, 24));
    app.update(key('?'));
    insta::assert_snapshot!("help_80x24", screen(&app, 80, 24));
}

/// truchet_knobs selected, its tile knob turned up by one, hue selected and turned a lot.
fn knob_studio() -> App {
    let params = knob_params();
    let (mut app, _) = studio(&["cppn_silk", "truchet_knobs", "truchet_maze"]);
    let mut req = render_request(&app.update(key('j')));
    for k in ['=', ']', '+'] {
        app.update(rendered_with(&req, Kind::Truchet, &params));
        if let Some(Effect::Render(next)) = app.update(key(k)).into_iter().next() {
            req = next;
        }
    }
    app.update(rendered_with(&req, Kind::Truchet, &params));
    app
}

#[test]
fn snapshot_knobs_80x24() {
    insta::assert_snapshot!(screen(&knob_studio(), 80, 24));
}

#[test]
fn snapshot_knobs_160x48() {
    insta::assert_snapshot!(screen(&knob_studio(), 160, 48));
}

#[test]
fn a_tiny_terminal_says_so() {
    let text = screen(&busy_studio(), 40, 10);
    assert!(text.contains("too small"), "{text}");
    assert!(text.contains("40x10"));
}

#[test]
fn every_size_from_200x60_down_draws_without_panicking() {
    let mut full = knob_studio();
    full.update(key('f'));
    for app in [busy_studio(), knob_studio(), full] {
        let mut state = view::ViewState::new(Picker::halfblocks());
        let mut terminal = Terminal::new(TestBackend::new(200, 60)).unwrap();
        for (w, h) in (1..=200u16)
            .rev()
            .step_by(7)
            .zip((1..=60u16).rev().step_by(2))
        {
            terminal.backend_mut().resize(w, h);
            terminal
                .resize(ratatui::layout::Rect::new(0, 0, w, h))
                .unwrap();
            terminal.draw(|f| view::draw(f, &app, &mut state)).unwrap();
        }
    }
}

#[test]
fn many_knobs_scroll_to_keep_the_selected_one_in_view() {
    let decl: Vec<String> = (0..30).map(|i| format!("k{i:02}: [0, 9, 1]")).collect();
    let source = format!(
        "#{{ kind: \"truchet\", params: #{{ {} }} }}",
        decl.join(", ")
    );
    let params = spec::declared_params(Path::new("many.rhai"), &source).unwrap();
    let (mut app, effects) = studio(&["many"]);
    app.update(rendered_with(
        &render_request(&effects),
        Kind::Truchet,
        &params,
    ));
    let text = screen(&app, 80, 24);
    assert!(text.contains("▸ k00"), "{text}");
    for _ in 0..29 {
        app.update(key(']'));
    }
    let text = screen(&app, 80, 24);
    assert!(text.contains("▸ k29"), "{text}");
    assert!(!text.contains("k00"), "{text}");
}

// ---- the real workers ------------------------------------------------------------------

fn ask(
    renderer: &worker::RenderSender,
    id: u64,
    path: &Path,
    reason: Reason,
    frame: Option<(u32, u32)>,
) {
    renderer
        .send(RenderRequest {
            id,
            path: path.to_path_buf(),
            reason,
            frame,
            tweaks: Default::default(),
        })
        .unwrap();
}

fn wait_for<T>(rx: &mpsc::Receiver<Msg>, mut pick: impl FnMut(Msg) -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let msg = rx.recv_timeout(left).expect("the worker answered in time");
        if let Some(t) = pick(msg) {
            return t;
        }
    }
}

#[test]
fn the_renderer_sends_a_coarse_then_a_full_cppn_and_reports_errors() {
    let dir = tempfile::tempdir().unwrap();
    let cppn = dir.path().join("c.rhai");
    std::fs::write(
        &cppn,
        r#"#{ kind: "cppn", size: 400, z: 4, layers: [8, 8], seed: 3 }"#,
    )
    .unwrap();
    let (tx, rx) = mpsc::channel();
    let renderer = worker::spawn_renderer(tx, DeviceArg::Cpu);
    ask(&renderer, 1, &cppn, Reason::Saved, None);
    let pick = |m| match m {
        Msg::Rendered(r) => Some(r),
        _ => None,
    };
    let coarse = wait_for(&rx, pick);
    assert!(coarse.coarse);
    assert_eq!(coarse.image.width(), worker::COARSE_SIDE);
    let full = wait_for(&rx, pick);
    assert!(!full.coarse && full.saved_at.is_some());
    assert_eq!(
        (full.image.width(), full.size),
        (worker::PREVIEW_SIDE, (400, 400))
    );
    // Frames of the loop come from the cached network.
    renderer
        .send(RenderRequest {
            id: 2,
            path: cppn.clone(),
            reason: Reason::Selected,
            frame: Some((3, 10)),
            tweaks: Default::default(),
        })
        .unwrap();
    let frame = wait_for(&rx, pick);
    assert_eq!(frame.frame, Some(3));

    std::fs::write(&cppn, "#{ kind: \"cppn\",\n  layers: [8, \"x\"] }").unwrap();
    ask(&renderer, 3, &cppn, Reason::Saved, None);
    let error = wait_for(&rx, |m| match m {
        Msg::RenderFailed { id: 3, error, .. } => Some(error),
        _ => None,
    });
    assert!(error.contains("c.rhai:2:"), "{error}");
}

#[test]
fn the_folder_watch_sees_in_place_and_rename_saves() {
    let dir = tempfile::tempdir().unwrap();
    let sketch = dir.path().join("a.rhai");
    std::fs::write(&sketch, "#{}").unwrap();
    let (tx, rx) = mpsc::channel();
    let _watch = worker::watch_folder(dir.path(), tx).unwrap();
    let changed = |rx: &mpsc::Receiver<Msg>| {
        wait_for(rx, |m| match m {
            Msg::FilesChanged(p) => Some(p),
            _ => None,
        })
    };
    std::thread::sleep(Duration::from_millis(100));
    std::fs::write(&sketch, "#{ kind: \"truchet\" }").unwrap();
    assert_eq!(changed(&rx), vec![sketch.clone()]);
    // vim / sed -i style: write a new file, rename it over the old one.
    let tmp = dir.path().join(".a.rhai.swp");
    std::fs::write(&tmp, "#{ kind: \"cppn\" }").unwrap();
    std::fs::rename(&tmp, &sketch).unwrap();
    assert_eq!(changed(&rx), vec![sketch.clone()]);
    // And it keeps watching after the rename.
    std::fs::write(&sketch, "#{ kind: \"gan\" }").unwrap();
    assert_eq!(changed(&rx), vec![sketch]);
    // New files show in the list.
    std::fs::write(dir.path().join("b.rhai"), "#{}").unwrap();
    let listed = wait_for(&rx, |m| match m {
        Msg::SketchesListed(l) if l.len() == 2 => Some(l),
        _ => None,
    });
    assert!(listed[1].ends_with("b.rhai"));
}

#[test]
fn a_fitting_cppn_says_so_and_renders_when_fitted() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy("sketches/images/arcs64.png", dir.path().join("t.png")).unwrap();
    let sketch = dir.path().join("f.rhai");
    std::fs::write(
        &sketch,
        r#"#{ kind: "cppn", size: 64, layers: [8, 8], seed: 1,
              fit: #{ image: "t.png", steps: 20, lr: 0.01 } }"#,
    )
    .unwrap();
    let (tx, rx) = mpsc::channel();
    let renderer = worker::spawn_renderer(tx, DeviceArg::Cpu);
    // Moving onto it costs nothing: it waits to be asked.
    ask(&renderer, 6, &sketch, Reason::Selected, None);
    let note = wait_for(&rx, |m| match m {
        Msg::Busy { id: 6, note, .. } => Some(note),
        _ => None,
    });
    assert!(note.starts_with("press enter to fit"), "{note}");
    std::thread::sleep(Duration::from_millis(200));
    assert!(rx.try_recv().is_err(), "no fit started");
    ask(&renderer, 7, &sketch, Reason::Asked, None);
    let note = wait_for(&rx, |m| match m {
        Msg::Busy { id: 7, note, .. } => Some(note),
        _ => None,
    });
    assert!(
        note.contains("fitting the network to") && note.contains("20 steps"),
        "{note}"
    );
    // The renderer is free meanwhile; the fitted render arrives on its own.
    let done = wait_for(&rx, |m| match m {
        Msg::Rendered(r) if r.id == 7 && !r.coarse => Some(r),
        _ => None,
    });
    assert_eq!(done.size, (64, 64));

    // In the app: the note shows until the picture comes.
    let (mut app, effects) = studio(&["f"]);
    let req = render_request(&effects);
    app.update(Msg::Busy {
        id: req.id,
        path: req.path.clone(),
        note: "fitting the network to t.png (20 steps)…".into(),
    });
    assert!(app.busy.is_some());
    assert!(app.log.back().unwrap().text.starts_with("f: fitting"));
    app.update(rendered(&req, Kind::Cppn, false));
    assert!(app.busy.is_none());
}

#[test]
fn a_picked_mutation_of_a_fitted_cppn_renders_its_own_weights_without_fitting() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy("sketches/images/arcs64.png", dir.path().join("t.png")).unwrap();
    let sketch = dir.path().join("m.rhai");
    std::fs::write(
        &sketch,
        r#"#{ kind: "cppn", size: 32, layers: [8], seed: 4,
              fit: #{ image: "t.png", steps: 10, size: 16 } }"#,
    )
    .unwrap();
    let (tx, rx) = mpsc::channel();
    let renderer = worker::spawn_renderer(tx, DeviceArg::Cpu);
    ask(&renderer, 1, &sketch, Reason::Asked, None);
    wait_for(&rx, |m| match m {
        Msg::Rendered(r) if r.id == 1 && !r.coarse => Some(()),
        _ => None,
    });
    let children = worker::render_variations(
        &easel::studio::variations::VariationRequest {
            id: 1,
            path: sketch.clone(),
            parent: Default::default(),
            breed: easel::studio::variations::Breed::Mutations {
                seeds: vec![7],
                strength: 0.5,
                generation: 1,
            },
        },
        worker::GRID_COARSE_SIDE,
    )
    .unwrap();
    // The picked weights are the picture: there is nothing to fit for them.
    renderer
        .send(RenderRequest {
            id: 2,
            path: sketch.clone(),
            reason: Reason::Asked,
            frame: None,
            tweaks: children[0].tweaks.clone(),
        })
        .unwrap();
    let answer = wait_for(&rx, |m| match m {
        Msg::Rendered(r) if r.id == 2 && !r.coarse => Some(Ok(())),
        Msg::Busy { id: 2, note, .. } => Some(Err(note)),
        _ => None,
    });
    assert_eq!(answer, Ok(()));
}

#[test]
fn a_fit_that_fails_shows_its_error_instead_of_fitting_forever() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy("sketches/images/arcs64.png", dir.path().join("t.png")).unwrap();
    let (tx, rx) = mpsc::channel();
    let renderer = worker::spawn_renderer(tx, DeviceArg::Cpu);
    for (k, (body, expected)) in [
        (r#"activation: "sign""#, "sign has no gradient"),
        (r#"output: "hsv""#, "fitting works with output"),
    ]
    .into_iter()
    .enumerate()
    {
        let sketch = dir.path().join(format!("f{k}.rhai"));
        std::fs::write(
            &sketch,
            format!(
                r#"#{{ kind: "cppn", size: 32, layers: [8, 8], seed: 1, {body},
                      fit: #{{ image: "t.png", steps: 30, size: 16 }} }}"#
            ),
        )
        .unwrap();
        let id = 20 + k as u64;
        ask(&renderer, id, &sketch, Reason::Asked, None);
        let error = wait_for(&rx, |m| match m {
            Msg::RenderFailed { id: i, error, .. } if i == id => Some(error),
            _ => None,
        });
        assert!(error.contains(expected), "{error}");
        // Asked again (select, save): the error comes back at once, no second fit.
        ask(&renderer, id + 100, &sketch, Reason::Asked, None);
        let again = wait_for(&rx, |m| match m {
            Msg::RenderFailed { id: i, error, .. } if i == id + 100 => Some(error),
            Msg::Busy { id: i, .. } if i == id + 100 => Some("busy again".into()),
            _ => None,
        });
        assert_eq!(again, error);
    }
}

#[test]
fn the_studio_opens_on_the_last_sketch_viewed_else_on_one_that_renders_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let names = ["a_fit.rhai", "b.rhai", "c.rhai"];
    std::fs::write(
        dir.path().join(names[0]),
        r#"#{ kind: "cppn", fit: #{ image: "t.png" } }"#,
    )
    .unwrap();
    for n in &names[1..] {
        std::fs::write(dir.path().join(n), r#"#{ kind: "truchet" }"#).unwrap();
    }
    let sketches: Vec<PathBuf> = names.iter().map(|n| dir.path().join(n)).collect();
    let none = easel::studio::LastViewed::new();
    assert_eq!(easel::studio::first_sketch(dir.path(), &sketches, &none), 1);
    let mut last = easel::studio::LastViewed::new();
    last.insert(easel::studio::folder_key(dir.path()), "c.rhai".into());
    assert_eq!(easel::studio::first_sketch(dir.path(), &sketches, &last), 2);
    // A remembered sketch that is gone: back to the first quick one.
    last.insert(easel::studio::folder_key(dir.path()), "gone.rhai".into());
    assert_eq!(easel::studio::first_sketch(dir.path(), &sketches, &last), 1);
}

#[test]
fn c_charts_the_swd_of_both_generators_and_back() {
    let mut app = busy_studio();
    assert!(screen(&app, 160, 48).contains("Losses · D, G"));
    app.update(key('c'));
    assert!(screen(&app, 160, 48).contains("SWD appears every eval_every steps"));
    let run = app.run.as_mut().unwrap();
    for m in run.metrics.iter_mut().filter(|m| m.step % 40 == 0) {
        m.swd = Some(300.0 - m.step as f64);
        m.swd_raw = Some(250.0 - m.step as f64);
    }
    let s = screen(&app, 160, 48);
    assert!(s.contains("SWD · EMA, raw · lower is better"), "{s}");
    assert!(
        s.contains("260.00") && s.contains("130.00"),
        "y axis spans both: {s}"
    );
    app.update(key('c'));
    assert!(screen(&app, 160, 48).contains("Losses · D, G"));
}

#[test]
fn the_run_panel_shows_the_newest_swd_the_least_varied_class_and_every_class() {
    let mut app = busy_studio();
    let run = app.run.as_mut().unwrap();
    let m = run.metrics.last_mut().unwrap();
    m.swd = Some(87.4);
    m.swd_raw = Some(60.2);
    m.classes = vec![
        easel::run::ClassScore {
            name: "arcs".into(),
            swd: 50.0,
            diversity: 0.93,
            fidelity: Some(0.98),
        },
        easel::run::ClassScore {
            name: "tri".into(),
            swd: 140.0,
            diversity: 0.11,
            fidelity: None,
        },
    ];
    let s = screen(&app, 160, 48);
    assert!(s.contains("SWD 87 · raw 60 (step 120)"), "{s}");
    assert!(s.contains("least varied: tri 0.11"), "{s}");
    // Only classes with a fidelity figure compete for "least recognised".
    assert!(s.contains("least recognised: arcs 0.98"), "{s}");
    // Every class in a row under the chart, the collapsed one in red.
    assert!(
        s.contains("Classes · diversity·recognised · step 120"),
        "{s}"
    );
    assert!(
        s.contains("arcs 0.93·0.98") && s.contains("tri 0.11"),
        "{s}"
    );
    let buf = screen_buffer(&app, 160, 48);
    let at = find_text(&buf, "tri 0.11").expect("the class row");
    assert_eq!(
        buf[at].fg,
        ratatui::style::Color::Red,
        "a collapsed class is red"
    );
    let run = app.run.as_mut().unwrap();
    run.metrics.last_mut().unwrap().classes[1].fidelity = Some(0.4);
    let s = screen(&app, 160, 48);
    assert!(s.contains("least recognised: tri 0.40"), "{s}");
}

#[test]
fn a_run_on_a_gpu_shows_the_device_its_name_and_the_memory_in_use() {
    let mut app = busy_studio();
    let s = screen(&app, 160, 48);
    assert!(!s.contains("GiB") && !s.contains("cuda"), "a CPU run: {s}");
    let status = app.run.as_mut().unwrap().status.as_mut().unwrap();
    status.device = "cuda:0".into();
    status.gpu = Some(easel::device::Gpu {
        name: "NVIDIA H200".into(),
        memory_used: 12 << 30,
        memory_total: 140 << 30,
    });
    let s = screen(&app, 160, 48);
    assert!(s.contains("· cuda:0"), "{s}");
    assert!(s.contains("NVIDIA H200 · 12.0/140 GiB"), "{s}");
}

// ---- variations and export -----------------------------------------------------------

use easel::studio::app::{parse_export, ExportTarget};
use easel::studio::variations::{self, Breed, Variant};

/// A studio over a temporary folder holding a small Truchet and a small CPPN sketch.
fn variation_studio() -> (
    tempfile::TempDir,
    App,
    mpsc::Receiver<Msg>,
    worker::RenderSender,
) {
    let dir = tempfile::tempdir().unwrap();
    let sketches = dir.path().join("sketches");
    std::fs::create_dir(&sketches).unwrap();
    std::fs::write(
        sketches.join("c.rhai"),
        "// a small CPPN\n#{ kind: \"cppn\", size: 96, z: 2, layers: [8, 8], seed: 3 }\n",
    )
    .unwrap();
    std::fs::write(
        sketches.join("t.rhai"),
        "#{ kind: \"truchet\", family: \"arcs\", size: 64, tile: 16, seed: 5 }",
    )
    .unwrap();
    let (mut app, effects) = App::new(
        Mode::Studio {
            dir: sketches.clone(),
        },
        vec![sketches.join("c.rhai"), sketches.join("t.rhai")],
        0,
    );
    app.clock = || "12:00:00".to_string();
    let (tx, rx) = mpsc::channel();
    let renderer = worker::spawn_renderer(tx, DeviceArg::Cpu);
    renderer.send(render_request(&effects)).unwrap();
    finish_render(&mut app, &rx);
    (dir, app, rx, renderer)
}

/// Feeds the renderer's answers to the app until the full picture is in; returns it.
fn finish_render(app: &mut App, rx: &mpsc::Receiver<Msg>) -> Arc<DynamicImage> {
    wait_for(rx, |m| {
        let full = match &m {
            Msg::Rendered(r) if !r.coarse => Some(r.image.clone()),
            Msg::RenderFailed { error, .. } => panic!("{error}"),
            _ => None,
        };
        app.update(m);
        full
    })
}

fn variation_request(effects: &[Effect]) -> variations::VariationRequest {
    effects
        .iter()
        .find_map(|e| match e {
            Effect::RenderVariations(r) => Some(r.clone()),
            _ => None,
        })
        .expect("a variations request")
}

fn bred(app: &mut App, effects: &[Effect]) -> (variations::VariationRequest, Vec<Variant>) {
    let req = variation_request(effects);
    let children = worker::render_variations(&req, worker::GRID_SIDE).unwrap();
    app.update(Msg::VariationsRendered {
        id: req.id,
        children: children.clone(),
        coarse: false,
    });
    (req, children)
}

fn distinct_images(children: &[Variant]) -> usize {
    let mut seen: Vec<&[u8]> = children.iter().map(|c| c.image.as_bytes()).collect();
    seen.sort();
    seen.dedup();
    seen.len()
}

#[test]
fn v_breeds_nine_seeds_a_pick_becomes_current_and_backspace_goes_back() {
    let (_dir, mut app, rx, renderer) = variation_studio();
    let req = render_request(&app.update(key('j')));
    let truchet = req.path.clone();
    renderer.send(req).unwrap();
    finish_render(&mut app, &rx);

    let (req, children) = {
        let e = app.update(key('v'));
        bred(&mut app, &e)
    };
    let Breed::Seeds(seeds) = &req.breed else {
        panic!("a Truchet sketch varies its seed: {:?}", req.breed)
    };
    assert_eq!(children.len(), 9);
    assert_eq!(distinct_images(&children), 9, "nine different pictures");
    assert!(!seeds.contains(&5), "the parent's own seed is not a child");
    assert!(app
        .variations
        .as_ref()
        .is_some_and(|g| g.children.len() == 9));

    // 3 picks the third: its seed becomes the sketch's, and the grid closes.
    let pick = render_request(&app.update(key('3')));
    assert_eq!(pick.tweaks.seed_for(5), seeds[2]);
    assert!(app.variations.is_none());
    renderer.send(pick).unwrap();
    let picked = finish_render(&mut app, &rx);
    assert_eq!(picked.as_bytes(), children[2].image.as_bytes());
    assert!(caption(&app).starts_with(&format!("seed {}", seeds[2])));

    // v again breeds from the picked one.
    let next = variation_request(&app.update(key('v')));
    assert_eq!(next.parent.seed_for(5), seeds[2]);
    assert_eq!(
        next.breed,
        Breed::Seeds(variations::child_seeds(seeds[2], 0))
    );
    // v in the grid: nine more of the same parent.
    let more = variation_request(&app.update(key('v')));
    assert_eq!(
        more.breed,
        Breed::Seeds(variations::child_seeds(seeds[2], 1))
    );

    // Backspace: the file's own seed again.
    let back = render_request(&app.update(code(KeyCode::Backspace)));
    assert_eq!((back.path.clone(), back.tweaks.seed_for(5)), (truchet, 5));
    assert!(app.history.is_empty());
    let nothing = app.update(code(KeyCode::Backspace));
    assert!(nothing.is_empty());
    assert!(app
        .log
        .back()
        .unwrap()
        .text
        .contains("nothing to go back to"));
}

#[test]
fn a_picked_cppn_mutation_saved_with_s_is_a_sketch_that_renders_the_same_pixels() {
    let (dir, mut app, rx, renderer) = variation_studio();
    let (req, children) = {
        let e = app.update(key('v'));
        bred(&mut app, &e)
    };
    let Breed::Mutations {
        seeds, generation, ..
    } = &req.breed
    else {
        panic!("a CPPN sketch mutates its weights: {:?}", req.breed)
    };
    assert_eq!((seeds.len(), *generation), (9, 1));
    assert_eq!(distinct_images(&children), 9);
    // Reproducible: the same request breeds the same children.
    let again = worker::render_variations(&req, worker::GRID_SIDE).unwrap();
    assert_eq!(again[4].image.as_bytes(), children[4].image.as_bytes());
    // A stronger mutation moves further from the parent.
    let weak = app.variations.as_ref().unwrap().children[0].tweaks.clone();
    app.update(key('>'));
    let (_, strong) = {
        let e = app.update(key('>'));
        bred(&mut app, &e)
    };
    let parent = easel::cppn::net::Network::clone(&{
        let s = spec::load(&req.path).unwrap();
        match s.spec {
            Spec::Cppn(c) => c.network(),
            _ => unreachable!(),
        }
    });
    let distance = |t: &easel::studio::app::Tweaks| -> f32 {
        let m = t.mutant.as_ref().unwrap();
        m.network.layers[0]
            .w
            .iter()
            .zip(&parent.layers[0].w)
            .map(|(a, b)| (a - b).abs())
            .sum()
    };
    assert!(distance(&strong[0].tweaks) > distance(&weak));

    // 5 picks the fifth of the strong grid; its full-size render is the current picture.
    let pick = render_request(&app.update(key('5')));
    assert!(pick.tweaks.mutant.is_some());
    renderer.send(pick).unwrap();
    let shown = finish_render(&mut app, &rx);
    assert!(caption(&app).contains("gen 1"), "{}", caption(&app));

    // v from the picked one: generation 2, bred from its weights.
    let next = variation_request(&app.update(key('v')));
    assert_eq!(
        next.parent.mutant.as_ref().map(|m| m.network.clone()),
        strong[4].tweaks.mutant.as_ref().map(|m| m.network.clone())
    );
    assert!(matches!(next.breed, Breed::Mutations { generation: 2, .. }));
    app.update(code(KeyCode::Esc));
    assert!(app.variations.is_none());

    // s saves it as a new sketch next to the parent, which renders the same pixels.
    let job = match app.update(key('s')).as_slice() {
        [Effect::SaveMutant(job)] => job.clone(),
        other => panic!("expected a SaveMutant, got {other:?}"),
    };
    let favourites = dir.path().join("favourites");
    let (saved, favourite) = easel::studio::save_mutant(&job, &favourites).unwrap();
    assert_eq!(saved, dir.path().join("sketches/c-v1.rhai"));
    let text = std::fs::read_to_string(&saved).unwrap();
    assert!(
        text.starts_with("// a small CPPN"),
        "the parent's text stays: {text}"
    );
    let loaded = spec::load(&saved).unwrap();
    let mut spec = loaded.spec.clone();
    let (w, h) = worker::fit_within(spec.size(), worker::PREVIEW_SIDE);
    spec.set_size(w, h);
    assert_eq!(spec.render().unwrap().as_bytes(), shown.as_bytes());
    // The favourite's recipe holds the new sketch, weights and all.
    let recipe = easel::recipe::read_recipe(&favourite).unwrap();
    assert_eq!(recipe.source, text);
    // A second save never overwrites the first.
    let (second, _) = easel::studio::save_mutant(&job, &favourites).unwrap();
    assert_eq!(second, dir.path().join("sketches/c-v2.rhai"));

    // Backspace: the seeded network again.
    let back = render_request(&app.update(code(KeyCode::Backspace)));
    assert!(back.tweaks.mutant.is_none());
}

#[test]
fn explicit_weights_of_the_wrong_shape_are_located_errors() {
    let bad = "#{ kind: \"cppn\", z: 0, layers: [2],\n  weights: [#{ w: [1.0, 2.0], b: [0.0, 0.0] },\n            #{ w: [1, 2, 3, 4, 5, 6], b: [0, 0, 0] }] }";
    let e = spec::load_source(Path::new("w.rhai"), bad.into())
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("w.rhai:2:12:") && e.contains("layer 1") && e.contains("expected 6"),
        "{e}"
    );
    let good = bad.replace("[1.0, 2.0]", "[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]");
    let loaded = spec::load_source(Path::new("w.rhai"), good).unwrap();
    let Spec::Cppn(c) = loaded.spec else {
        unreachable!()
    };
    assert_eq!(c.render_network().unwrap().layers[1].w[5], 6.0);
}

#[test]
fn the_export_prompt_reads_sizes_and_gif() {
    assert_eq!(
        parse_export("", (640, 480)),
        Ok(ExportTarget::Still {
            width: 4096,
            height: 3072
        })
    );
    assert_eq!(
        parse_export(" 2048 ", (512, 512)),
        Ok(ExportTarget::Still {
            width: 2048,
            height: 2048
        })
    );
    assert_eq!(
        parse_export("3840x2160", (512, 512)),
        Ok(ExportTarget::Still {
            width: 3840,
            height: 2160
        })
    );
    assert_eq!(
        parse_export("gif", (300, 200)),
        Ok(ExportTarget::Gif { side: 300 })
    );
    assert_eq!(
        parse_export("GIF 128", (300, 200)),
        Ok(ExportTarget::Gif { side: 128 })
    );
    for bad in ["0", "big", "99999", "16384x16384", "gif x"] {
        let e = parse_export(bad, (512, 512)).unwrap_err();
        assert!(e.contains("size") || e.contains("pixels"), "{bad}: {e}");
    }
}

#[test]
fn e_exports_in_the_background_with_a_recipe() {
    let (dir, mut app, rx, renderer) = variation_studio();
    let req = render_request(&app.update(key('j')));
    renderer.send(req).unwrap();
    finish_render(&mut app, &rx);
    assert!(app.update(key('e')).is_empty());
    assert_eq!(app.prompt.as_deref(), Some(""));
    for c in ['1', '2', 'x'] {
        app.update(key(c));
    }
    app.update(code(KeyCode::Backspace));
    app.update(key('8'));
    assert_eq!(app.prompt.as_deref(), Some("128"));
    let job = match app.update(code(KeyCode::Enter)).as_slice() {
        [Effect::Export(job)] => job.clone(),
        other => panic!("expected an export, got {other:?}"),
    };
    assert!(app.prompt.is_none());
    assert_eq!(
        job.target,
        ExportTarget::Still {
            width: 128,
            height: 128
        }
    );
    let lines = std::sync::Mutex::new(vec![]);
    let out = easel::studio::export(&job, &dir.path().join("exports"), &|l| {
        lines.lock().unwrap().push(l)
    })
    .unwrap();
    assert!(lines.lock().unwrap()[0].contains("128x128"));
    let recipe = easel::recipe::read_recipe(&out).unwrap();
    assert_eq!((recipe.width, recipe.height, recipe.seed), (128, 128, 5));
    assert_eq!(image::open(&out).unwrap().width(), 128);
    // A bad size is said in the log, and nothing is exported.
    app.update(key('e'));
    app.update(key('z'));
    assert!(app.update(code(KeyCode::Enter)).is_empty());
    assert_eq!(app.log.back().unwrap().level, Level::Error);
    // Esc cancels.
    app.update(key('e'));
    assert!(app.update(code(KeyCode::Esc)).is_empty());
    assert!(app.prompt.is_none());
}

/// A CPPN studio with its grid of mutations open (gradients stand in for the pictures).
fn grid_studio() -> App {
    let (mut app, effects) = studio(&["cppn_silk", "truchet_arcs"]);
    let req = render_request(&effects);
    app.update(rendered(&req, Kind::Cppn, false));
    let grid = variation_request(&app.update(key('v')));
    let children = (0..9)
        .map(|k| Variant {
            tweaks: Default::default(),
            image: gradient(48 + 8 * k, 48),
        })
        .collect();
    app.update(Msg::VariationsRendered {
        id: grid.id,
        children,
        coarse: false,
    });
    app
}

#[test]
fn snapshot_variations_80x24() {
    insta::assert_snapshot!(screen(&grid_studio(), 80, 24));
}

#[test]
fn snapshot_variations_160x48() {
    insta::assert_snapshot!(screen(&grid_studio(), 160, 48));
}

// ---- fitting the preview, downsampling the chart ---------------------------------------

/// Mean over the image of |pixel − the mean of its (2r+1)² neighbourhood|, in grey
/// levels: moiré and aliasing show up as structure a blurred copy does not have.
fn deviation_from_local_mean(img: &DynamicImage, r: i64) -> f64 {
    let grey = img.to_luma8();
    let (w, h) = (grey.width() as i64, grey.height() as i64);
    let at = |x: i64, y: i64| {
        f64::from(
            grey.get_pixel(x.clamp(0, w - 1) as u32, y.clamp(0, h - 1) as u32)
                .0[0],
        )
    };
    let mut total = 0.0;
    for y in 0..h {
        for x in 0..w {
            let mut sum = 0.0;
            for dy in -r..=r {
                for dx in -r..=r {
                    sum += at(x + dx, y + dy);
                }
            }
            total += (at(x, y) - sum / ((2 * r + 1) * (2 * r + 1)) as f64).abs();
        }
    }
    total / (w * h) as f64
}

fn checker(w: u32, h: u32) -> DynamicImage {
    DynamicImage::ImageRgb8(RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([if (x + y) % 2 == 0 { 0 } else { 255 }; 3])
    }))
}

#[test]
fn a_one_pixel_checker_fitted_to_a_small_area_is_an_even_grey() {
    let img = checker(640, 400);
    // 23x9 cells of 10x20 pixels: a shrink by 2.78, not a whole factor.
    let fitted = worker::fit_for_display(&img, (230, 180));
    assert_eq!((fitted.width(), fitted.height()), (230, 143));
    let grey = fitted.to_luma8();
    let mean = grey.pixels().map(|p| f64::from(p.0[0])).sum::<f64>() / grey.len() as f64;
    assert!((mean - 127.5).abs() < 3.0, "mean {mean}");
    let worst = grey
        .pixels()
        .map(|p| (f64::from(p.0[0]) - 127.5).abs())
        .fold(0.0, f64::max);
    assert!(worst < 8.0, "a pixel {worst} grey levels off mid-grey");
    let deviation = deviation_from_local_mean(&fitted, 3);
    assert!(
        deviation < 2.0,
        "moiré: deviation from the local mean {deviation}"
    );
    // The measure does see moiré: point sampling leaves stripes of black and white.
    let sampled = img.resize_exact(230, 143, image::imageops::FilterType::Nearest);
    let sampled_deviation = deviation_from_local_mean(&sampled, 3);
    assert!(sampled_deviation > 20.0, "{sampled_deviation}");
}

#[test]
fn the_truchet_maze_fitted_keeps_its_colour_without_moire() {
    let sketch = spec::load(&path("truchet_maze")).unwrap();
    let img = sketch.spec.render().unwrap();
    assert_eq!((img.width(), img.height()), (640, 400));
    // The maze's 16-pixel tiles shrunk tenfold (a preview of 64x40 half-block pixels):
    // its 3-pixel lines are finer than the output pixels, where point sampling aliases.
    let fitted = worker::fit_for_display(&img, (64, 80));
    assert_eq!((fitted.width(), fitted.height()), (64, 40));
    let mean = |i: &DynamicImage| {
        let g = i.to_luma8();
        g.pixels().map(|p| f64::from(p.0[0])).sum::<f64>() / g.len() as f64
    };
    let (source, shown) = (mean(&img), mean(&fitted));
    assert!((source - shown).abs() < 2.0, "{source} vs {shown}");
    let deviation = deviation_from_local_mean(&fitted, 3);
    let sampled = img.resize_exact(64, 40, image::imageops::FilterType::Nearest);
    let sampled_deviation = deviation_from_local_mean(&sampled, 3);
    assert!(
        deviation < 10.0 && deviation < sampled_deviation / 3.0,
        "{deviation} vs point sampling's {sampled_deviation}"
    );
}

#[test]
fn small_pictures_are_enlarged_with_crisp_pixels_and_odd_sizes_do_not_panic() {
    let img = checker(4, 2);
    let big = worker::fit_for_display(&img, (100, 100));
    assert_eq!((big.width(), big.height()), (100, 50));
    let grey = big.to_luma8();
    assert!(grey.pixels().all(|p| p.0[0] == 0 || p.0[0] == 255));
    for (w, h, bw, bh) in [
        (1, 1, 1, 1),
        (0, 0, 10, 10),
        (3, 1000, 7, 7),
        (640, 400, 0, 5),
        (5, 5, 1, 1),
    ] {
        let img = DynamicImage::new_rgb8(w, h);
        let out = worker::fit_for_display(&img, (bw, bh));
        if w > 0 && h > 0 && bw > 0 && bh > 0 {
            assert!(
                out.width() <= bw.max(1) && out.height() <= bh.max(1),
                "{w}x{h} in {bw}x{bh}"
            );
            assert!(out.width() >= 1 && out.height() >= 1);
        }
    }
}

#[test]
fn the_fitter_thread_fits_the_newest_request_and_wakes_the_ui() {
    let (tx, rx) = mpsc::channel();
    let (requests, slot) = worker::spawn_fitter(tx);
    let key = worker::FitKey {
        grid: true,
        serial: 7,
        box_px: (64, 64),
    };
    let images = vec![
        (Arc::new(checker(640, 400)), (64, 64)),
        (Arc::new(checker(4, 8)), (40, 64)),
    ];
    requests.send(worker::FitRequest { key, images }).unwrap();
    assert!(matches!(
        rx.recv_timeout(Duration::from_secs(10)).unwrap(),
        Msg::Tick(_)
    ));
    let (fitted_key, fitted) = slot.lock().unwrap().take().expect("fitted pictures");
    assert_eq!(fitted_key, key);
    let sizes: Vec<_> = fitted.iter().map(|i| (i.width(), i.height())).collect();
    assert_eq!(sizes, vec![(64, 40), (32, 64)]);
}

#[test]
fn chart_downsampling_bounds_the_points_and_keeps_extremes_and_means() {
    let points: Vec<(f64, f64)> = (0..10_000)
        .map(|i| (i as f64, ((i * 7919) % 1000) as f64 / 100.0))
        .collect();
    let mut spiky = points.clone();
    spiky[4321].1 = 99.0;
    spiky[1234].1 = -5.0;
    for max in [2, 3, 40, 161] {
        let kept = view::downsample_extremes(&spiky, max);
        assert!(kept.len() <= max.max(2), "{} > {max}", kept.len());
        assert!(kept.windows(2).all(|w| w[0].0 < w[1].0), "in x order");
        assert!(kept.contains(&(4321.0, 99.0)) && kept.contains(&(1234.0, -5.0)));
        let means = view::downsample_means(&points, max);
        assert!(means.len() <= max && !means.is_empty());
        let all = points.iter().map(|p| p.1).sum::<f64>() / points.len() as f64;
        // Equal buckets: the mean of the means is the mean.
        if points.len().is_multiple_of(means.len()) {
            let of_means = means.iter().map(|p| p.1).sum::<f64>() / means.len() as f64;
            assert!((of_means - all).abs() < 1e-9, "{of_means} vs {all}");
        }
    }
    let means = view::downsample_means(&[(0.0, 1.0), (1.0, 3.0), (2.0, 5.0), (3.0, 7.0)], 2);
    assert_eq!(means, vec![(0.5, 2.0), (2.5, 6.0)]);
    // Few points pass through untouched.
    let few = &points[..10];
    assert_eq!(view::downsample_extremes(few, 40), few);
    assert_eq!(view::downsample_means(few, 40), few);
    assert!(view::downsample_means(&[], 4).is_empty());
    assert!(view::downsample_extremes(&[], 4).is_empty());
}

// ---- cancellable renders ---------------------------------------------------------------

/// A Truchet sketch big enough to take a while to render, written into `dir`.
fn big_truchet(dir: &Path, name: &str, side: u32) -> PathBuf {
    let file = dir.join(format!("{name}.rhai"));
    std::fs::write(
        &file,
        format!(
            r#"#{{ kind: "truchet", family: "arcs", size: [{side}, {side}], tile: 24, seed: 5 }}"#
        ),
    )
    .unwrap();
    file
}

/// Runs `render` with a cancel check that turns true from its `after`-th call on (the
/// renderers ask once per row: a cancel a tenth of the way down, whatever the CPU load);
/// returns its outcome and how long it took.
fn cancelled_after<T>(
    after: usize,
    render: impl FnOnce(&(dyn Fn() -> bool + Sync)) -> T,
) -> (T, Duration) {
    let calls = std::sync::atomic::AtomicUsize::new(0);
    let started = Instant::now();
    let outcome = render(&|| calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed) >= after);
    (outcome, started.elapsed())
}

/// Asserts that `cancelled()` (a render stopped a tenth of the way) takes well under half
/// the time of `full()`. Each is timed back to back, up to three times: this machine's
/// other load only ever slows one attempt, while a render that ignores its cancel fails
/// all three.
fn assert_prompt(full: impl Fn() -> Duration, cancelled: impl Fn() -> Duration) {
    let mut tries = vec![];
    for _ in 0..3 {
        let (full_time, took) = (full(), cancelled());
        if took < full_time / 2 {
            return;
        }
        tries.push((took, full_time));
    }
    panic!("cancelled renders took as long as full ones: (cancelled, full) {tries:?}");
}

#[test]
fn a_cancelled_truchet_render_returns_promptly_with_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let sketch = spec::load(&big_truchet(dir.path(), "big", 3000)).unwrap();
    let Spec::Truchet(t) = &sketch.spec else {
        panic!("a truchet sketch")
    };
    let full = easel::truchet::render_unless(t, &|| false).unwrap();
    assert_eq!(full.map(|i| i.width()), Some(3000));
    let (outcome, _) = cancelled_after(300, |c| easel::truchet::render_unless(t, c));
    assert!(
        outcome.unwrap().is_none(),
        "a cancelled render gives no picture"
    );
    assert_prompt(
        || {
            let started = Instant::now();
            let _ = easel::truchet::render_unless(t, &|| false);
            started.elapsed()
        },
        || cancelled_after(300, |c| easel::truchet::render_unless(t, c)).1,
    );
    // Already cancelled: nothing is rasterised at all.
    assert!(easel::truchet::render_unless(t, &|| true)
        .unwrap()
        .is_none());
}

#[test]
fn a_cancelled_cppn_render_returns_promptly_with_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.rhai");
    std::fs::write(
        &file,
        r#"#{ kind: "cppn", size: 1200, z: 4, layers: [32, 32, 32], seed: 3 }"#,
    )
    .unwrap();
    let sketch = spec::load(&file).unwrap();
    let Spec::Cppn(c) = &sketch.spec else {
        panic!("a cppn sketch")
    };
    let net = c.render_network().unwrap();
    let z = c.z();
    let full = easel::cppn::render::render_unless(c, &net, &z, &|| false);
    // The same pixels as the plain render.
    assert_eq!(
        full.as_ref().map(|i| i.as_bytes()),
        Some(easel::cppn::render::render(c, &net, &z).as_bytes())
    );
    let cancelled = || {
        cancelled_after(120, |cancel| {
            easel::cppn::render::render_unless(c, &net, &z, cancel)
        })
    };
    assert!(
        cancelled().0.is_none(),
        "a cancelled render gives no picture"
    );
    assert_prompt(
        || {
            let started = Instant::now();
            let _ = easel::cppn::render::render_unless(c, &net, &z, &|| false);
            started.elapsed()
        },
        || cancelled().1,
    );
}

#[test]
fn a_newer_request_stops_the_running_render_and_is_the_one_shown() {
    let dir = tempfile::tempdir().unwrap();
    let big = big_truchet(dir.path(), "big", 4000);
    let small = big_truchet(dir.path(), "small", 64);
    // How long the big render takes here and now: the newer save arrives a tenth of the
    // way into it, whatever the machine's speed (a fixed wait let a fast machine finish).
    let full_time = {
        let Spec::Truchet(t) = spec::load(&big).unwrap().spec else {
            panic!("a truchet sketch")
        };
        let started = Instant::now();
        easel::truchet::render_unless(&t, &|| false).unwrap();
        started.elapsed()
    };
    let (tx, rx) = mpsc::channel();
    let renderer = worker::spawn_renderer(tx, DeviceArg::Cpu);
    ask(&renderer, 1, &big, Reason::Saved, None);
    std::thread::sleep(full_time / 10);
    ask(&renderer, 2, &small, Reason::Saved, None);
    let shown = wait_for(&rx, |m| match m {
        Msg::Rendered(r) => Some(r),
        _ => None,
    });
    assert_eq!(
        (shown.id, shown.image.width()),
        (2, 64),
        "the newer render comes first"
    );
    // The superseded render never turns up.
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        rx.try_iter()
            .all(|m| !matches!(m, Msg::Rendered(r) if r.id == 1)),
        "the superseded render was finished and sent"
    );
}

#[test]
fn u_upscales_the_shown_picture_and_s_then_saves_the_upscale_in_its_recipe() {
    let (mut app, effects) = studio(&["a"]);
    assert!(app.update(key('u')).is_empty(), "nothing shown yet");
    app.update(rendered(&render_request(&effects), Kind::Truchet, false));
    let shown = app.picture.clone().unwrap();
    let [Effect::Upscale(job)] = &app.update(key('u'))[..] else {
        panic!("u asks for an upscale");
    };
    assert_eq!((&job.path, job.serial), (&shown.path, shown.serial));
    let up = spec::Upscaling::new("realesr-animevideov3-x4");
    let (w, h) = (shown.image.width() * 4, shown.image.height() * 4);
    let big = Arc::new(DynamicImage::ImageRgb8(RgbImage::new(w, h)));
    app.update(Msg::Upscaled(easel::studio::app::Upscaled {
        path: job.path.clone(),
        serial: job.serial,
        result: Ok((big.clone(), up.clone())),
    }));
    let now = app.picture.clone().unwrap();
    assert_eq!(now.image, big, "the upscaled picture is shown");
    assert!(now.caption.contains("upscaled"), "{}", now.caption);
    assert!(app.update(key('u')).is_empty(), "not twice");
    let [Effect::SaveFavourite(Favourite::Sketch { upscale, .. })] = &app.update(key('s'))[..]
    else {
        panic!("s saves the sketch");
    };
    assert_eq!(upscale.as_ref(), Some(&up));
    // An upscale that finishes after the preview moved on is not shown.
    let job_serial = now.serial;
    app.update(rendered(&render_request(&effects), Kind::Truchet, false));
    app.update(Msg::Upscaled(easel::studio::app::Upscaled {
        path: path("a"),
        serial: job_serial,
        result: Ok((big.clone(), up)),
    }));
    assert_ne!(app.picture.clone().unwrap().image, big);
}

#[test]
fn an_upscaled_favourite_renders_again_to_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let sketch_path = Path::new("sketches/truchet_triangles.rhai");
    let source = std::fs::read_to_string(sketch_path).unwrap();
    // Small, so the test is quick: the sketch at 48x48, upscaled x2.
    let source = source.replace("size: 512,", "size: 48,");
    assert!(source.contains("size: 48,"));
    let saved = save_favourite(
        dir.path(),
        &Favourite::Sketch {
            path: sketch_path.into(),
            source: Arc::new(source),
            seed: Some(3),
            knobs: Knobs::new(),
            upscale: Some(spec::Upscaling::new("realesr-animevideov3-x2")),
        },
    )
    .unwrap();
    let recipe = easel::recipe::read_recipe(&saved).unwrap();
    let saved_img = image::open(&saved).unwrap();
    assert_eq!(
        (saved_img.width(), saved_img.height()),
        (recipe.width * 2, recipe.height * 2)
    );
    let again = dir.path().join("again.png");
    common::easel_in(
        dir.path(),
        &[
            "render",
            "--from",
            saved.to_str().unwrap(),
            "-o",
            "again.png",
        ],
    );
    assert_eq!(image::open(&again).unwrap(), saved_img);
    let up = spec::Upscaling::of_png(&again).unwrap();
    assert_eq!(up.map(|u| u.model), Some("realesr-animevideov3-x2".into()));
}
