// `easel init` embeds sketches/ (include_dir): rebuild when a bundled sketch changes.
fn main() {
    println!("cargo:rerun-if-changed=sketches");
}
