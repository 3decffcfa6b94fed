//! Bake libtorch's library directory into our binaries and tests as an rpath, so they run without
//! LD_LIBRARY_PATH. tch's own `cargo:rustc-link-arg` does not reach dependent crates; torch-sys
//! exports the directory as DEP_TCH_LIBTORCH_LIB because it is a direct dependency.
//! Also record the libtorch version (scripts/install-libtorch writes `build-version`) for run.json.
fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let lib_dir = std::env::var("DEP_TCH_LIBTORCH_LIB").ok();
    if let Some(lib_dir) = &lib_dir {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib_dir}");
    }
    let version = lib_dir
        .map(|d| std::path::Path::new(&d).join("../build-version"))
        .and_then(|p| std::fs::read_to_string(p).ok())
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| "2.11.0".to_string());
    println!("cargo:rustc-env=TORCH_BUILD_VERSION={version}");
}
