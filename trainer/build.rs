//! 1. Compile `csrc/native_ops.cpp`, the ATen operations tch does not bind (fused AdamW, foreach
//!    norm and scale, clearing a gradient, bf16 autocast, TF32), and `csrc/dist.cpp`, c10d's
//!    TCPStore and Gloo process group, against libtorch's headers (and Gloo's, vendored).
//! 2. Bake libtorch's library directory into our binaries and tests as an rpath, so they run
//!    without LD_LIBRARY_PATH. tch's own `cargo:rustc-link-arg` does not reach dependent crates;
//!    torch-sys exports the directory as DEP_TCH_LIBTORCH_LIB because it is a direct dependency.
//! 3. Record the libtorch version (scripts/install-libtorch writes `build-version`) for run.json.
use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    for file in ["csrc/native_ops.cpp", "csrc/dist.cpp", "csrc/dist.h", "csrc/shim.h"] {
        println!("cargo:rerun-if-changed={file}");
    }
    let lib_dir = std::env::var("DEP_TCH_LIBTORCH_LIB").map(PathBuf::from).expect(
        "torch-sys did not export DEP_TCH_LIBTORCH_LIB; run scripts/bootstrap (it installs libtorch into .libtorch)",
    );
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib_dir.display());
    compile_shims(&lib_dir);

    let version = std::fs::read_to_string(lib_dir.join("../build-version"))
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|_| "2.11.0".to_string());
    println!("cargo:rustc-env=TORCH_BUILD_VERSION={version}");
}

/// A C++ build with the compiler flags torch-sys uses for its own C++ (C++17, libtorch's C++11
/// ABI) and libtorch's headers.
fn torch_cpp(lib_dir: &Path) -> cc::Build {
    let include = lib_dir.join("../include");
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".to_string());
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .pic(true)
        .warnings(false)
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"));
    build
}

/// The C++ the trainer links: its native ops and the c10d shim.
fn compile_shims(lib_dir: &Path) {
    torch_cpp(lib_dir).file("csrc/native_ops.cpp").compile("stagewise_native_ops");
    // c10d with Gloo: its own translation unit (the c10d headers are slow to compile), against
    // the Gloo headers vendored in csrc/vendor (the wheel does not ship them).
    torch_cpp(lib_dir)
        .include("csrc/vendor")
        .define("USE_C10D_GLOO", None)
        .file("csrc/dist.cpp")
        .compile("stagewise_dist");
}
