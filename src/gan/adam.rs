//! Adam with its state in the open (Candle's `AdamW` keeps its moments private), so a
//! checkpoint can hold the moments and a resumed run continues exactly.

use std::collections::{BTreeMap, HashMap};

use candle_core::backprop::GradStore;
use candle_core::{Result, Tensor};

use super::layers::Params;

pub struct Adam {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Steps taken.
    pub t: u64,
    m: BTreeMap<String, Tensor>,
    v: BTreeMap<String, Tensor>,
}

impl Adam {
    pub fn new(params: &Params, lr: f64, (beta1, beta2): (f64, f64)) -> Result<Self> {
        let mut m = BTreeMap::new();
        let mut v = BTreeMap::new();
        for (name, var) in &params.vars {
            m.insert(name.clone(), var.as_tensor().zeros_like()?);
            v.insert(name.clone(), var.as_tensor().zeros_like()?);
        }
        Ok(Adam {
            lr,
            beta1,
            beta2,
            eps: 1e-8,
            t: 0,
            m,
            v,
        })
    }

    /// One update of every parameter that has a gradient.
    pub fn step(&mut self, params: &Params, grads: &GradStore) -> Result<()> {
        self.t += 1;
        let (b1, b2) = (self.beta1, self.beta2);
        let c1 = 1.0 - b1.powi(self.t as i32);
        let c2 = 1.0 - b2.powi(self.t as i32);
        for (name, var) in &params.vars {
            let Some(g) = grads.get(var.as_tensor()) else {
                continue;
            };
            // Gradients carry the step's whole autograd graph; moments built from them
            // would chain every step's graph to the next (24 GB after 70 steps).
            let g = g.detach();
            let g = &g;
            let m = ((&self.m[name] * b1)? + (g * (1.0 - b1))?)?;
            let v = ((&self.v[name] * b2)? + (g.sqr()? * (1.0 - b2))?)?;
            let update = ((&m / c1)? / ((&v / c2)?.sqrt()? + self.eps)?)?;
            var.set(&(var.as_tensor() - (update * self.lr)?)?)?;
            self.m.insert(name.clone(), m.detach());
            self.v.insert(name.clone(), v.detach());
        }
        Ok(())
    }

    pub fn state(&self, prefix: &str) -> Vec<(String, Tensor)> {
        let m = self
            .m
            .iter()
            .map(|(n, t)| (format!("{prefix}m.{n}"), t.clone()));
        let v = self
            .v
            .iter()
            .map(|(n, t)| (format!("{prefix}v.{n}"), t.clone()));
        m.chain(v).collect()
    }

    pub fn load(
        &mut self,
        prefix: &str,
        tensors: &HashMap<String, Tensor>,
        t: u64,
    ) -> anyhow::Result<()> {
        for (kind, store) in [("m", &mut self.m), ("v", &mut self.v)] {
            for (n, slot) in store.iter_mut() {
                let key = format!("{prefix}{kind}.{n}");
                *slot = tensors
                    .get(&key)
                    .ok_or_else(|| anyhow::anyhow!("checkpoint lacks {key}"))?
                    .clone();
            }
        }
        self.t = t;
        Ok(())
    }
}
