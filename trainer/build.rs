//! Bake libtorch's library directory into our binaries and tests as an rpath, so they run without
//! LD_LIBRARY_PATH. tch's own `cargo:rustc-link-arg` does not reach dependent crates; torch-sys
//! exports the directory as DEP_TCH_LIBTORCH_LIB because it is a direct dependency.
fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(lib_dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib_dir}");
    }
}
