//! The trainer's plugins: libraries that need `libtorch_cuda.so`, which only GPU machines have,
//! built by `scripts/build-cuda-plugins` (`just gpu-build`) and loaded at run time, so that the
//! CPU build and CI never see them: `libstagewise_nccl.so` (c10d's NCCL process group) and
//! `libstagewise_cuda.so` (CUDA graphs, streams, events; see [`crate::device::cuda`]).

use std::ffi::{c_void, CStr, CString};
use std::path::Path;

/// Why a plugin is not there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PluginError {
    #[error(
        "{name} is not next to the binary or on LD_LIBRARY_PATH; build it with `just gpu-build` (it lands in .gpu/)"
    )]
    NotFound { name: String },
    #[error("{name} would not load ({why}): it needs the CUDA build of libtorch 2.11.0 on LD_LIBRARY_PATH (torch's lib directory)")]
    Refused { name: String, why: String },
    #[error("{name} lacks the symbol {symbol}: it was built from another version; rebuild it with `just gpu-build`")]
    NoSymbol { name: String, symbol: String },
    #[error("{name}: {why}")]
    Version { name: String, why: String },
}

/// A plugin's versioned function table (`csrc/*_api.h`): a `#[repr(C)]` struct that starts with
/// `u32 version; u32 size;`, filled by one entry point whose signature never changes,
/// `const char *entry(uint32_t version, Table *out)` (NULL, or a malloc'd reason). The version
/// and the size are both checked, so a plugin built from another header is refused with a
/// message instead of being called through a wrong signature.
///
/// # Safety
/// The implementing type must be `#[repr(C)]`, mirror its header field for field, and begin
/// with the two `u32`s.
pub unsafe trait PluginTable: Sized + 'static {
    /// The plugin's file name.
    const PLUGIN: &'static str;
    /// The entry point.
    const ENTRY: &'static CStr;
    /// The header's `*_API_VERSION`.
    const VERSION: u32;
}

/// The header every table begins with.
#[repr(C)]
struct TableHead {
    version: u32,
    size: u32,
}

/// Load `T`'s plugin and fill its table (once per process is the caller's business: keep it in a
/// `OnceLock`).
pub fn load_table<T: PluginTable>() -> Result<T, PluginError> {
    type Entry<T> = unsafe extern "C" fn(u32, *mut T) -> *mut std::ffi::c_char;
    let found = symbol(T::PLUGIN, T::ENTRY)?;
    // SAFETY: the entry point has this signature in every version of the header (its contract).
    let entry: Entry<T> = unsafe { std::mem::transmute::<*mut c_void, Entry<T>>(found) };
    let mut table = std::mem::MaybeUninit::<T>::uninit();
    // SAFETY: the plugin writes a whole table when it returns NULL.
    let message = unsafe { entry(T::VERSION, table.as_mut_ptr()) };
    if let Some(why) = crate::device::native::take_message(message) {
        return Err(PluginError::Version { name: T::PLUGIN.into(), why });
    }
    // SAFETY: filled on success; every table begins with the head (PluginTable's contract).
    let table = unsafe { table.assume_init() };
    let head = unsafe { &*(&table as *const T).cast::<TableHead>() };
    if head.version != T::VERSION || head.size as usize != std::mem::size_of::<T>() {
        return Err(PluginError::Version {
            name: T::PLUGIN.into(),
            why: format!(
                "table version {} of {} bytes, this trainer reads version {} of {} bytes; rebuild it with `just gpu-build`",
                head.version,
                head.size,
                T::VERSION,
                std::mem::size_of::<T>()
            ),
        });
    }
    Ok(table)
}

/// `symbol` of the plugin `name`: the file next to the running binary, else the one the dynamic
/// loader finds on the library path. The library stays loaded for the life of the process.
pub fn symbol(name: &str, symbol: &CStr) -> Result<*mut c_void, PluginError> {
    let beside = std::env::current_exe().ok().and_then(|exe| Some(exe.parent()?.join(name)));
    let candidates: Vec<String> = beside
        .filter(|p| p.is_file())
        .map(|p| p.display().to_string())
        .into_iter()
        .chain(std::iter::once(name.to_string()))
        .collect();
    let mut refused = None;
    for candidate in candidates {
        let Ok(c) = CString::new(candidate.as_str()) else { continue };
        // SAFETY: dlopen with a valid C string; the handle is deliberately never closed.
        let handle = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
        if handle.is_null() {
            // SAFETY: dlerror returns NULL or a C string valid until the next dl* call.
            let why = unsafe { libc::dlerror() };
            if !why.is_null() && Path::new(&candidate).is_file() && refused.is_none() {
                let why = unsafe { CStr::from_ptr(why) }.to_string_lossy().into_owned();
                refused = Some(PluginError::Refused { name: candidate.clone(), why });
            }
            continue;
        }
        // SAFETY: dlsym on a live handle with a valid C string.
        let found = unsafe { libc::dlsym(handle, symbol.as_ptr()) };
        if found.is_null() {
            return Err(PluginError::NoSymbol { name: candidate, symbol: symbol.to_string_lossy().into_owned() });
        }
        return Ok(found);
    }
    Err(refused.unwrap_or(PluginError::NotFound { name: name.to_string() }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_plugin_says_how_to_build_it() {
        let err = symbol("libstagewise_nowhere.so", c"sw_nothing").unwrap_err();
        assert!(matches!(err, PluginError::NotFound { .. }));
        assert!(err.to_string().contains("just gpu-build"), "{err}");
    }

    #[test]
    fn a_library_without_the_symbol_is_named() {
        // libc is loadable everywhere and certainly has no plugin entry point.
        let err = symbol("libc.so.6", c"sw_cuda_api").unwrap_err();
        assert!(matches!(err, PluginError::NoSymbol { .. }), "{err}");
    }
}
