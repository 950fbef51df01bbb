//! The sandboxed Rhai engine that sketches run in.
//!
//! Scripts get no file, network or module access, and hard limits on operations, call
//! depth, expression depth and collection sizes. On top of that a wall-clock deadline is
//! checked from `on_progress`, so a runaway loop ends with an error instead of a hang.

use std::cell::Cell;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::{Rng as _, SeedableRng};
use rand_pcg::Pcg64Mcg;
use rhai::{Dynamic, Engine, EvalAltResult, FnPtr, AST};

/// How long one script phase (evaluating the sketch, or running a rule over the whole
/// grid) may take before it is stopped.
pub const DEFAULT_TIME_LIMIT: Duration = Duration::from_millis(500);
/// A backstop in case the clock is not consulted often enough.
const MAX_OPERATIONS: u64 = 200_000_000;

/// A compiled sketch script and the engine to run it with. `Send + Sync` (rhai's `sync`
/// feature), so rules can be evaluated from worker threads.
pub struct Script {
    pub engine: Engine,
    pub ast: AST,
}

impl std::fmt::Debug for Script {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Script").finish_non_exhaustive()
    }
}

thread_local! {
    /// The deadline of the script phase running on this thread. Thread-local because the
    /// same script may run on several threads at once (dataset generation).
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
    static TICKS: Cell<u32> = const { Cell::new(0) };
}

/// Called on every script operation: reads the clock only every 1024th call, which
/// keeps the check under 1% of run time. (Counting here rather than using the engine's
/// operation count, which restarts with every rule call.)
fn deadline_passed() -> bool {
    let ticks = TICKS.with(|t| {
        let n = t.get().wrapping_add(1);
        t.set(n);
        n
    });
    ticks.is_multiple_of(1024) && DEADLINE.with(|d| d.get().is_some_and(|t| Instant::now() > t))
}

impl Script {
    pub fn compile(source: &str) -> Result<Script, rhai::ParseError> {
        let engine = sandboxed_engine();
        let ast = engine.compile(source)?;
        Ok(Script { engine, ast })
    }

    /// Runs `f` with a wall-clock budget; scripts still running at the deadline stop
    /// with an `ErrorTerminated`.
    pub fn with_time_limit<T>(&self, limit: Duration, f: impl FnOnce(&Self) -> T) -> T {
        let previous = DEADLINE.with(|d| d.replace(Some(Instant::now() + limit)));
        let out = f(self);
        DEADLINE.with(|d| d.set(previous));
        out
    }

    /// Evaluates the whole script (its last expression is the sketch map).
    pub fn eval(&self) -> Result<Dynamic, Box<EvalAltResult>> {
        self.engine.eval_ast::<Dynamic>(&self.ast)
    }

    /// Evaluates the whole script with `params` (the knobs' values) bound as a constant
    /// the script and its closures can read (`params.hue`).
    pub fn eval_with_params(&self, params: rhai::Map) -> Result<Dynamic, Box<EvalAltResult>> {
        let mut scope = rhai::Scope::new();
        scope.push_constant("params", params);
        self.engine
            .eval_ast_with_scope::<Dynamic>(&mut scope, &self.ast)
    }

    pub fn call(
        &self,
        f: &FnPtr,
        args: impl rhai::FuncArgs,
    ) -> Result<Dynamic, Box<EvalAltResult>> {
        f.call::<Dynamic>(&self.engine, &self.ast, args)
    }

    /// A script-level function `name` taking `arity` parameters, if the sketch defines one.
    pub fn has_fn(&self, name: &str, arity: usize) -> bool {
        self.ast
            .iter_functions()
            .any(|f| f.name == name && f.params.len() == arity)
    }

    /// Where the body of script-level function `name`/`arity` starts (its `{`), for
    /// errors about what the function returned.
    pub fn fn_position(&self, name: &str, arity: usize) -> rhai::Position {
        self.ast
            .iter_fn_def()
            .find(|f| f.name == name && f.params.len() == arity)
            .map(|f| f.body.start_position())
            .unwrap_or(rhai::Position::NONE)
    }
}

fn sandboxed_engine() -> Engine {
    let mut engine = Engine::new();
    // No `import` of files, no `eval` of strings built at run time.
    engine.set_module_resolver(rhai::module_resolvers::DummyModuleResolver::new());
    engine.disable_symbol("eval");
    // Unoptimised ASTs keep map literals as written (the optimiser folds constant maps
    // into values), which is what lets errors point at the line of a bad value.
    engine.set_optimization_level(rhai::OptimizationLevel::None);
    engine
        .set_max_operations(MAX_OPERATIONS)
        .set_max_call_levels(64)
        .set_max_expr_depths(64, 32)
        .set_max_string_size(64 * 1024)
        .set_max_array_size(1 << 20)
        .set_max_map_size(4096)
        .set_max_variables(1024)
        .set_max_functions(512);
    engine.on_progress(move |_ops| {
        if deadline_passed() {
            Some(Dynamic::from("time limit exceeded (an endless loop?)"))
        } else {
            None
        }
    });
    // `print`/`debug` would write into the middle of the studio's screen.
    engine.on_print(|_| {});
    engine.on_debug(|_, _, _| {});
    register_rng(&mut engine);
    engine
}

/// The seeded random generator handed to rule closures as `rng`.
#[derive(Clone, Debug)]
pub struct ScriptRng(Arc<Mutex<Pcg64Mcg>>);

impl ScriptRng {
    pub fn new(seed: u64) -> Self {
        ScriptRng(Arc::new(Mutex::new(Pcg64Mcg::seed_from_u64(seed))))
    }

    pub fn with<T>(&self, f: impl FnOnce(&mut Pcg64Mcg) -> T) -> T {
        f(&mut self.0.lock().expect("rng lock poisoned"))
    }
}

fn register_rng(engine: &mut Engine) {
    fn range_err(msg: String) -> Box<EvalAltResult> {
        msg.into()
    }
    engine
        .register_type_with_name::<ScriptRng>("Rng")
        // rng.int(n): 0 <= x < n
        .register_fn(
            "int",
            |r: &mut ScriptRng, n: i64| -> Result<i64, Box<EvalAltResult>> {
                if n <= 0 {
                    return Err(range_err(format!(
                        "rng.int({n}): the bound must be positive"
                    )));
                }
                Ok(r.with(|g| g.random_range(0..n)))
            },
        )
        // rng.int(lo, hi): lo <= x < hi
        .register_fn(
            "int",
            |r: &mut ScriptRng, lo: i64, hi: i64| -> Result<i64, Box<EvalAltResult>> {
                if hi <= lo {
                    return Err(range_err(format!("rng.int({lo}, {hi}): needs lo < hi")));
                }
                Ok(r.with(|g| g.random_range(lo..hi)))
            },
        )
        // rng.float(): 0 <= x < 1
        .register_fn("float", |r: &mut ScriptRng| -> f64 {
            r.with(|g| g.random::<f64>())
        })
        .register_fn("float", |r: &mut ScriptRng, lo: f64, hi: f64| -> f64 {
            r.with(|g| lo + (hi - lo) * g.random::<f64>())
        })
        // rng.chance(p): true with probability p
        .register_fn("chance", |r: &mut ScriptRng, p: f64| -> bool {
            r.with(|g| g.random::<f64>() < p)
        })
        .register_fn("pick", |r: &mut ScriptRng, items: rhai::Array| -> Dynamic {
            if items.is_empty() {
                return Dynamic::UNIT;
            }
            let k = r.with(|g| g.random_range(0..items.len()));
            items[k].clone()
        });
}
