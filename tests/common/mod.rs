//! Helpers shared by the test binaries that include it (`mod common;`).

use candle_core::Device;
use easel::gan::train::Trainer;

/// Every weight of a trainer's G, D and EMA generator, by name (sorted), on the CPU.
pub fn weights(t: &Trainer) -> Vec<(String, Vec<f32>)> {
    let mut v: Vec<(String, Vec<f32>)> =
        t.g.params
            .named_tensors("g.")
            .into_iter()
            .chain(t.d.params.named_tensors("d."))
            .chain(t.ema.params.named_tensors("ema."))
            .map(|(n, v)| {
                let v = v.to_device(&Device::Cpu).unwrap();
                (n, v.flatten_all().unwrap().to_vec1().unwrap())
            })
            .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}
