use std::process::ExitCode;

// mimalloc keeps freed memory for reuse: on these VMs fresh pages are expensive (page
// faults), and Candle allocates a new buffer for every tensor op. In front of it, a cache
// of large freed blocks serves training's same-sized tensors step after step (the 64x64
// DCGAN step: 2.14–2.59 s without it, 1.64–1.86 s with it). Built without transparent huge
// pages (Cargo.toml says why). See README, Benchmarks.
#[global_allocator]
static GLOBAL: easel::alloc::BlockCache<mimalloc::MiMalloc> =
    easel::alloc::BlockCache::new(mimalloc::MiMalloc);

fn main() -> ExitCode {
    easel::cli::main()
}
