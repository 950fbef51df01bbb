// `easel init` embeds sketches/ and data/oxygen64 (include_dir): rebuild when they change.
fn main() {
    println!("cargo:rerun-if-changed=sketches");
    println!("cargo:rerun-if-changed=data/oxygen64");
}
