use std::process::ExitCode;

// mimalloc keeps freed memory for reuse: on these VMs fresh pages are expensive (page
// faults), and Candle allocates a new buffer for every tensor op. See README, Benchmarks.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    easel::cli::main()
}
