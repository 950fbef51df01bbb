//! What a sketch file describes: [`Spec`] (one of the kinds), [`Sketch`] (a loaded file
//! with its classes) and loading. This layer sits above the kinds (`truchet`, `cppn`,
//! `gan`), which sit above `sketch` (the sandboxed engine and located errors).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use image::DynamicImage;
use rhai::Map;

use crate::recipe::Recipe;
use crate::sketch::{engine, reader, Knobs, Locator, MapReader, Params, Script, SketchError};

use crate::cppn::CppnSpec;
use crate::gan::data::DataSketch;
use crate::gan::GanSpec;
use crate::truchet::TruchetSpec;

/// The kinds a sketch can be (`kind: "…"`). Each has its own spec and renderer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Truchet,
    Cppn,
    Gan,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Truchet, Kind::Cppn, Kind::Gan];

    /// The name a sketch writes.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Truchet => "truchet",
            Kind::Cppn => "cppn",
            Kind::Gan => "gan",
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Slow work a spec needs before it renders, said for people. Today that is a CPPN's
/// `fit:` that this process has not done yet (seconds to minutes of training).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preparation {
    /// The verb, bare and as it happens: `("fit", "fitting")`.
    pub verb: (&'static str, &'static str),
    /// What it works on: "the network to sketches/images/arcs64.png".
    pub object: String,
    /// How many steps it takes.
    pub steps: u64,
}

impl Preparation {
    /// "fit the network to t.png (600 steps)".
    pub fn task(&self) -> String {
        format!("{} {} ({} steps)", self.verb.0, self.object, self.steps)
    }

    /// "fitting the network to t.png (600 steps)".
    pub fn doing(&self) -> String {
        format!("{} {} ({} steps)", self.verb.1, self.object, self.steps)
    }
}

/// How far [`Spec::prepare`] has got.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    /// Steps done, of `total`.
    pub done: u64,
    pub total: u64,
    /// How it is going: "loss 0.00123  PSNR 29.1 dB".
    pub detail: String,
}

/// A fully resolved description of what to make.
#[derive(Debug, Clone)]
pub enum Spec {
    Truchet(TruchetSpec),
    Cppn(CppnSpec),
    // Boxed: a GAN spec is much the largest, and specs are passed around by value.
    Gan(Box<GanSpec>),
}

impl Spec {
    pub fn kind(&self) -> Kind {
        match self {
            Spec::Truchet(_) => Kind::Truchet,
            Spec::Cppn(_) => Kind::Cppn,
            Spec::Gan(_) => Kind::Gan,
        }
    }

    pub fn size(&self) -> (u32, u32) {
        match self {
            Spec::Truchet(t) => (t.width, t.height),
            Spec::Cppn(c) => (c.width, c.height),
            Spec::Gan(g) => (g.image_size as u32, g.image_size as u32),
        }
    }

    pub fn seed(&self) -> u64 {
        match self {
            Spec::Truchet(t) => t.seed,
            Spec::Cppn(c) => c.seed,
            Spec::Gan(g) => g.seed,
        }
    }

    pub fn set_size(&mut self, width: u32, height: u32) {
        match self {
            Spec::Truchet(t) => {
                t.width = width;
                t.height = height;
            }
            Spec::Cppn(c) => {
                c.width = width;
                c.height = height;
            }
            // A GAN's image size is part of its architecture; samples are that size.
            Spec::Gan(_) => {}
        }
    }

    pub fn set_seed(&mut self, seed: u64) {
        match self {
            Spec::Truchet(t) => t.seed = seed,
            Spec::Cppn(c) => c.seed = seed,
            Spec::Gan(g) => g.seed = seed,
        }
    }

    /// The slow work this spec needs before [`render`](Self::render) returns quickly,
    /// or `None` when it renders straight away. [`prepare`](Self::prepare) does it;
    /// without that, `render` does it on first use, reporting nothing.
    pub fn preparation(&self) -> Option<Preparation> {
        match self {
            Spec::Cppn(c) => c.pending_fit().map(|f| Preparation {
                verb: ("fit", "fitting"),
                object: format!("the network to {}", f.image_path.display()),
                steps: f.steps as u64,
            }),
            Spec::Truchet(_) | Spec::Gan(_) => None,
        }
    }

    /// Does the work [`preparation`](Self::preparation) describes, calling `progress`
    /// as it goes (every tenth step), and returns a line on how it went; `None` when
    /// there was nothing to do. The outcome, an error too, is kept for the process:
    /// `render` gives the same error at once instead of working again.
    pub fn prepare(
        &self,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<Option<String>, SketchError> {
        let Spec::Cppn(c) = self else {
            return Ok(None);
        };
        let Some(fit) = c.pending_fit() else {
            return Ok(None);
        };
        let total = fit.steps as u64;
        let (_, report) = crate::cppn::fit::fitted(c, fit, &mut |step, loss| {
            let done = step as u64 + 1;
            if done.is_multiple_of(10) || done == total {
                progress(&Progress {
                    done,
                    total,
                    detail: format!(
                        "loss {loss:.5}  PSNR {:.1} dB",
                        crate::cppn::fit::psnr(loss as f64)
                    ),
                });
            }
        })
        .map_err(|e| cppn_error(c, e))?;
        Ok(report.map(|r| r.summary(fit)))
    }

    /// Renders the image this spec describes. Script errors (in a rule) come back
    /// located in the sketch file.
    pub fn render(&self) -> Result<DynamicImage, SketchError> {
        match self {
            Spec::Truchet(t) => crate::truchet::render(t),
            Spec::Cppn(c) => c.render().map_err(|e| cppn_error(c, e)),
            Spec::Gan(_) => Err(SketchError::whole_file(
                Path::new(""),
                "a GAN sketch is trained, not rendered: `easel train SKETCH`, then `easel sample RUN`",
            )),
        }
    }
}

/// Opens the data sketch of a GAN (`data: #{ from: "x.rhai" }`) for its data loader,
/// which sits below this layer and so cannot load sketches itself.
pub fn data_sketch(path: &Path) -> anyhow::Result<Box<dyn DataSketch>> {
    Ok(Box::new(load(path)?))
}

impl DataSketch for Sketch {
    fn class_names(&self) -> Vec<String> {
        self.classes.iter().map(|(name, _)| name.clone()).collect()
    }

    fn picture(&self, class: usize, k: u64, side: u32) -> anyhow::Result<DynamicImage> {
        let mut spec = match self.classes.get(class) {
            Some((_, s)) => s.clone(),
            None => self.spec.clone(),
        };
        spec.set_seed(spec.seed().wrapping_add(k));
        spec.set_size(side, side);
        Ok(spec.render().map_err(|e| e.or_file(&self.path))?)
    }
}

/// A CPPN's error (a fit's, mostly) names its fit image, if it has one.
fn cppn_error(c: &CppnSpec, e: anyhow::Error) -> SketchError {
    let file = c
        .fit
        .as_ref()
        .map(|f| f.image_path.clone())
        .unwrap_or_default();
    SketchError::whole_file(&file, format!("{e:#}"))
}

/// A loaded sketch: its source, its base spec, and its classes (if it lists any).
#[derive(Debug, Clone)]
pub struct Sketch {
    pub path: PathBuf,
    pub source: String,
    pub spec: Spec,
    /// Named variants (`classes: #{ name: #{ overrides } }`), in name order; empty when
    /// the sketch lists none.
    pub classes: Vec<(String, Spec)>,
    /// The knobs it declares (`params: #{ ... }`), and the values it was loaded with.
    pub params: Params,
    pub knobs: Knobs,
}

impl Sketch {
    /// Fits `fit:` CPPNs (the base and every class) on `device`.
    pub fn set_fit_device(&mut self, device: crate::device::DeviceArg) {
        let specs = std::iter::once(&mut self.spec).chain(self.classes.iter_mut().map(|(_, s)| s));
        for spec in specs {
            if let Spec::Cppn(CppnSpec { fit: Some(f), .. }) = spec {
                f.device = device;
            }
        }
    }

    /// Renders the sketch (or one of its classes) with optional seed and size overrides,
    /// and returns the image with the recipe that makes it again.
    pub fn render(
        &self,
        class: Option<&str>,
        seed: Option<u64>,
        size: Option<(u32, u32)>,
    ) -> anyhow::Result<(DynamicImage, Recipe)> {
        let spec = self.spec_for(class, seed, size)?;
        let img = spec.render().map_err(|e| e.or_file(&self.path))?;
        let (width, height) = spec.size();
        let recipe = Recipe {
            name: self.name(),
            source: self.source.clone(),
            seed: spec.seed(),
            width,
            height,
            class: class.map(str::to_string),
            knobs: self.knobs.clone(),
        };
        Ok((img, recipe))
    }

    /// The spec that [`render`](Self::render) renders for the same arguments: the class's
    /// (or the base one) with the seed and size given.
    pub fn spec_for(
        &self,
        class: Option<&str>,
        seed: Option<u64>,
        size: Option<(u32, u32)>,
    ) -> Result<Spec, SketchError> {
        let mut spec = self.class_spec(class)?.clone();
        if let Some(s) = seed {
            spec.set_seed(s);
        }
        if let Some((w, h)) = size {
            spec.set_size(w, h);
        }
        Ok(spec)
    }

    /// The file's stem, e.g. `truchet_arcs` for `sketches/truchet_arcs.rhai`.
    pub fn name(&self) -> String {
        self.path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "sketch".into())
    }

    /// The spec of class `name`, or the base spec for `None`.
    pub fn class_spec(&self, name: Option<&str>) -> Result<&Spec, SketchError> {
        match name {
            None => Ok(&self.spec),
            Some(n) => self
                .classes
                .iter()
                .find(|(c, _)| c == n)
                .map(|(_, s)| s)
                .ok_or_else(|| {
                    let names: Vec<&str> = self.classes.iter().map(|(c, _)| c.as_str()).collect();
                    SketchError::whole_file(
                        &self.path,
                        if names.is_empty() {
                            format!("unknown class \"{n}\": this sketch lists no classes")
                        } else {
                            format!(
                                "unknown class \"{n}\"; expected one of {}",
                                names.join(", ")
                            )
                        },
                    )
                }),
        }
    }
}

pub fn load(path: &Path) -> Result<Sketch, SketchError> {
    let source = std::fs::read_to_string(path)
        .map_err(|e| SketchError::whole_file(path, format!("cannot read sketch: {e}")))?;
    load_source(path, source)
}

/// Loads a sketch from source text; `path` is used for messages and the sketch's name.
pub fn load_source(path: &Path, source: String) -> Result<Sketch, SketchError> {
    load_with(path, source, &[])
}

/// Loads a sketch with some top-level keys replaced (how `sweep` varies a parameter).
pub fn load_with(
    path: &Path,
    source: String,
    overrides: &[(String, rhai::Dynamic)],
) -> Result<Sketch, SketchError> {
    load_full(path, source, overrides, &Knobs::new())
}

/// Loads a sketch with some of its knobs set (`render --set`, a favourite's recipe, the
/// studio's knob panel); the others keep their defaults. A knob it does not declare, or
/// a value out of range, is an error naming the knob, the value and the range.
pub fn load_knobs(path: &Path, source: String, knobs: &Knobs) -> Result<Sketch, SketchError> {
    load_full(path, source, &[], knobs)
}

/// The knobs a sketch declares, without running it.
pub fn declared_params(path: &Path, source: &str) -> Result<Params, SketchError> {
    let script = Script::compile(source).map_err(|e| SketchError::from_parse(path, &e))?;
    Params::declared(path, &script.ast)
}

fn load_full(
    path: &Path,
    source: String,
    overrides: &[(String, rhai::Dynamic)],
    set: &Knobs,
) -> Result<Sketch, SketchError> {
    let script = Script::compile(&source).map_err(|e| SketchError::from_parse(path, &e))?;
    let script = Arc::new(script);
    let params = Params::declared(path, &script.ast)?;
    let knobs = params
        .resolve(set)
        .map_err(|message| SketchError::whole_file(path, message))?;
    let value = script
        .with_time_limit(engine::DEFAULT_TIME_LIMIT, |s| {
            if params.is_empty() {
                s.eval()
            } else {
                s.eval_with_params(params.constant(&knobs))
            }
        })
        .map_err(|e| SketchError::from_eval(path, &e))?;
    let Some(map) = value.clone().try_cast::<Map>() else {
        let end = rhai::Position::new(source.lines().count().max(1) as u16, 1);
        return Err(SketchError::new(
            path,
            end,
            format!(
                "a sketch must evaluate to a map like #{{ kind: \"truchet\", ... }}, got {}",
                reader::describe(&value)
            ),
        ));
    };
    let mut map = map;
    for (key, value) in overrides {
        map.insert(key.as_str().into(), value.clone());
    }
    let locator = Locator::from_ast(&script.ast);

    let mut base = MapReader::new(path, &locator, map.clone());
    let classes_map = base.map("classes")?;
    if classes_map.as_ref().is_some_and(|m| m.is_empty()) {
        return Err(base.error_at(
            "classes",
            None,
            "\"classes\" is empty; name at least one class, e.g. classes: #{ big: #{ tile: 64 } }, or leave the key out",
        ));
    }
    let spec = parse_spec(base, &script)?;

    let mut classes = Vec::new();
    for (name, overrides) in classes_map.unwrap_or_default() {
        let reader = MapReader::new(path, &locator, Map::new());
        let Some(overrides) = overrides.clone().try_cast::<Map>() else {
            return Err(reader.type_error(&name, &overrides, "a map of overrides #{ ... }"));
        };
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(reader.error_at(
                &name,
                None,
                format!("class name \"{name}\" must use only letters, digits, '_' and '-' (it names a folder)"),
            ));
        }
        let mut merged = map.clone();
        merged.remove("classes");
        merged.extend(overrides);
        let spec = parse_spec(MapReader::new(path, &locator, merged), &script)?;
        classes.push((name.to_string(), spec));
    }
    Ok(Sketch {
        path: path.to_path_buf(),
        source,
        spec,
        classes,
        params,
        knobs,
    })
}

fn parse_spec(mut map: MapReader, script: &Arc<Script>) -> Result<Spec, SketchError> {
    if !map.contains("kind") {
        return Err(SketchError::whole_file(
            map.file(),
            format!(
                "missing key \"kind\"; expected one of {}",
                Kind::ALL.map(Kind::name).join(", ")
            ),
        ));
    }
    let names = Kind::ALL.map(Kind::name);
    let kind = map.choice("kind", "sketch kind", &names, "")?;
    // The knobs' declaration, already read from the script (see `sketch::params`).
    map.raw("params");
    // Paths inside a sketch (textures, fit images, data) are relative to its folder.
    let dir = map
        .file()
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let kind = Kind::ALL
        .into_iter()
        .find(|k| k.name() == kind)
        .expect("choice() returns a listed name");
    let spec = match kind {
        Kind::Truchet => Spec::Truchet(TruchetSpec::parse(&mut map, script)?),
        Kind::Cppn => Spec::Cppn(CppnSpec::parse(&mut map, &dir)?),
        Kind::Gan => Spec::Gan(Box::new(GanSpec::parse(&mut map, &dir)?)),
    };
    map.finish()?;
    Ok(spec)
}

/// The weights of a CPPN network (bred in the studio), as the spec layer hands them out.
pub use crate::cppn::net::Network as CppnNetwork;

/// An ESRGAN upscale applied to a picture: kept with a favourite (as the PNG text chunk
/// [`crate::recipe::KEY_UPSCALE`], the same JSON `easel upscale` writes) so the picture
/// can be made again. The studio and the commands reach the upscaler through this.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Upscaling {
    /// A shipped model's name or a path.
    pub model: String,
    pub tile: u32,
    pub tile_pad: u32,
}

impl Upscaling {
    /// The model `easel upscale` and the studio's `u` use unless told otherwise: the
    /// fastest shipped one (0.6 M parameters; a 384² preview took 4 s on two cores).
    pub const DEFAULT_MODEL: &'static str = "realesr-animevideov3-x4";

    /// `model` with the default tiling.
    pub fn new(model: &str) -> Self {
        let t = crate::upscale::Tiling::default();
        Upscaling {
            model: model.to_string(),
            tile: t.tile,
            tile_pad: t.pad,
        }
    }

    /// The upscale an easel PNG records, if any.
    pub fn of_png(path: &Path) -> anyhow::Result<Option<Self>> {
        crate::recipe::read_json_tag(path, crate::recipe::KEY_UPSCALE, "upscale")
    }

    /// The text chunk recording this upscale of `input` (what it was made from), by the
    /// model [`Self::apply`] loaded.
    pub fn tag(&self, input: &str) -> anyhow::Result<(&'static str, String)> {
        let up = self.loaded()?;
        Ok(self.tag_by(&up, input))
    }

    /// The text chunk recording this upscale of `input` by `up` (the one JSON
    /// `easel upscale`, favourites and `render --from` all write).
    pub fn tag_by(&self, up: &crate::upscale::Upscaler, input: &str) -> (&'static str, String) {
        let json = serde_json::json!({
            "model": self.model,
            "file": up.file.display().to_string(),
            "input": input,
            "scale": up.scale(),
            "tile": self.tile,
            "tile_pad": self.tile_pad,
            "precision": up.precision.name(),
        });
        (crate::recipe::KEY_UPSCALE, json.to_string())
    }

    /// The model on the CPU, loaded once per process and kept for the next call.
    fn loaded(&self) -> anyhow::Result<Arc<crate::upscale::Upscaler>> {
        use crate::upscale::Upscaler;
        use std::sync::Mutex;
        static LOADED: Mutex<Option<(String, Arc<Upscaler>)>> = Mutex::new(None);
        let mut loaded = LOADED.lock().unwrap_or_else(|e| e.into_inner());
        Ok(match &*loaded {
            Some((model, up)) if *model == self.model => up.clone(),
            _ => {
                let up = Arc::new(Upscaler::load(&self.model, &candle_core::Device::Cpu)?);
                *loaded = Some((self.model.clone(), up.clone()));
                up
            }
        })
    }

    /// Upscales `image` on the CPU, calling `progress(done, total)` per tile. The model
    /// is loaded once per process and kept for the next call.
    pub fn apply(
        &self,
        image: &DynamicImage,
        progress: &mut dyn FnMut(usize, usize),
    ) -> anyhow::Result<DynamicImage> {
        let up = self.loaded()?;
        let tiling = crate::upscale::Tiling {
            tile: self.tile,
            pad: self.tile_pad,
        };
        up.upscale(image, tiling, progress)
    }
}
