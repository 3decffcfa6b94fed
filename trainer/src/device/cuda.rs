//! The CUDA plugin (`libstagewise_cuda.so`, `csrc/cuda_plugin.cpp`): CUDA graphs, the side stream
//! they are captured on, and events, through the versioned table of `csrc/cuda_api.h`.
//!
//! [`CudaApi`] mirrors that header's `SwCudaApi` field for field. The one symbol looked up,
//! `sw_cuda_api`, has the same signature in every version; it fills the table only for the
//! version asked for, and the table's size is checked too, so a plugin built from another
//! version is refused with a message instead of being called through a wrong signature.
//!
//! Everything here must run on one OS thread (CUDA's current stream is per thread): the
//! training loop's.

use std::ffi::c_char;
use std::sync::OnceLock;

use crate::device::native::NativeError;
use crate::device::plugin::{self, PluginError, PluginTable};

/// `SW_CUDA_API_VERSION` of `csrc/cuda_api.h`.
pub const API_VERSION: u32 = 1;

/// The plugin's file name.
pub const PLUGIN: &str = "libstagewise_cuda.so";

/// A memory pool shared by graphs (`SwGraphPool`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GraphPool {
    first: u64,
    second: u64,
}

#[repr(C)]
struct RawGraph {
    _opaque: [u8; 0],
}

#[repr(C)]
struct RawEvent {
    _opaque: [u8; 0],
}

type Message = *mut c_char;

/// `SwCudaApi`, field for field.
#[repr(C)]
pub struct CudaApi {
    version: u32,
    size: u32,
    free_message: unsafe extern "C" fn(Message),
    init: unsafe extern "C" fn(device: i8) -> Message,
    pool: unsafe extern "C" fn(out: *mut GraphPool) -> Message,
    side_stream_enter: unsafe extern "C" fn(device: i8) -> Message,
    side_stream_exit: unsafe extern "C" fn(device: i8) -> Message,
    graph_new: unsafe extern "C" fn(out: *mut *mut RawGraph) -> Message,
    graph_begin: unsafe extern "C" fn(graph: *mut RawGraph, pool: GraphPool) -> Message,
    graph_end: unsafe extern "C" fn(graph: *mut RawGraph) -> Message,
    graph_abort: unsafe extern "C" fn(graph: *mut RawGraph) -> Message,
    graph_replay: unsafe extern "C" fn(graph: *mut RawGraph) -> Message,
    graph_free: unsafe extern "C" fn(graph: *mut RawGraph),
    event_new: unsafe extern "C" fn(out: *mut *mut RawEvent) -> Message,
    event_record: unsafe extern "C" fn(event: *mut RawEvent, device: i8) -> Message,
    event_synchronize: unsafe extern "C" fn(event: *mut RawEvent) -> Message,
    event_free: unsafe extern "C" fn(event: *mut RawEvent),
}

// SAFETY: `#[repr(C)]`, field for field `SwCudaApi`, starting with version and size.
unsafe impl PluginTable for CudaApi {
    const PLUGIN: &'static str = PLUGIN;
    const ENTRY: &'static std::ffi::CStr = c"sw_cuda_api";
    const VERSION: u32 = API_VERSION;
}

/// The plugin's table, loaded once per process.
pub fn api() -> Result<&'static CudaApi, PluginError> {
    static API: OnceLock<Result<CudaApi, PluginError>> = OnceLock::new();
    API.get_or_init(plugin::load_table::<CudaApi>).as_ref().map_err(Clone::clone)
}

impl CudaApi {
    fn check(&self, op: &'static str, message: Message) -> Result<(), NativeError> {
        if message.is_null() {
            return Ok(());
        }
        // SAFETY: a NUL-terminated string the plugin malloc'd, freed once by the plugin.
        let text =
            unsafe { std::ffi::CStr::from_ptr(message) }.to_string_lossy().lines().next().unwrap_or("").to_string();
        unsafe { (self.free_message)(message) };
        Err(NativeError { op, message: text })
    }

    /// Bind `device`'s context to this thread (see `init` in cuda_api.h): before the first matmul.
    pub fn init(&self, device: usize) -> Result<(), NativeError> {
        // SAFETY: a plain call into the plugin.
        self.check("cuda init", unsafe { (self.init)(device as i8) })
    }

    /// A new memory pool for graphs to share.
    pub fn pool(&self) -> Result<GraphPool, NativeError> {
        let mut pool = GraphPool::default();
        // SAFETY: a valid out-pointer.
        self.check("graph_pool_handle", unsafe { (self.pool)(&mut pool) })?;
        Ok(pool)
    }

    /// `f` with the side stream of `device` current (after the work queued before it; the work
    /// queued after waits for `f`'s), as PyTorch warms up and captures graphs.
    pub fn on_side_stream<T>(&self, device: usize, f: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<T> {
        // SAFETY: plain calls into the plugin; enter and exit pair up on this thread.
        self.check("side stream", unsafe { (self.side_stream_enter)(device as i8) })?;
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        let exited = self.check("side stream", unsafe { (self.side_stream_exit)(device as i8) });
        let value = match result {
            Ok(value) => value?,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        exited?;
        Ok(value)
    }

    /// A new, empty graph.
    pub fn graph(&'static self) -> Result<Graph, NativeError> {
        let mut raw = std::ptr::null_mut();
        // SAFETY: a valid out-pointer; the graph is freed by Graph's Drop.
        self.check("CUDAGraph", unsafe { (self.graph_new)(&mut raw) })?;
        Ok(Graph { api: self, raw })
    }

    /// A new event.
    pub fn event(&'static self) -> Result<Event, NativeError> {
        let mut raw = std::ptr::null_mut();
        // SAFETY: a valid out-pointer; freed by Event's Drop.
        self.check("CUDAEvent", unsafe { (self.event_new)(&mut raw) })?;
        Ok(Event { api: self, raw })
    }
}

/// A CUDA graph: captured once, replayed every step.
pub struct Graph {
    api: &'static CudaApi,
    raw: *mut RawGraph,
}

impl Graph {
    /// Capture the work `f` queues on the current stream (the side stream: call it inside
    /// [`CudaApi::on_side_stream`]) into this graph, allocating from `pool`. Nothing runs: replay
    /// it to run it. If `f` fails (a host sync, an op that cannot be captured) the capture is
    /// ended and the error returned.
    pub fn capture(&mut self, pool: GraphPool, f: impl FnOnce() -> anyhow::Result<()>) -> anyhow::Result<()> {
        // SAFETY: a live graph.
        self.api.check("capture_begin", unsafe { (self.api.graph_begin)(self.raw, pool) })?;
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        match result {
            Ok(Ok(())) => {
                // SAFETY: a live graph under capture.
                Ok(self.api.check("capture_end", unsafe { (self.api.graph_end)(self.raw) })?)
            }
            Ok(Err(e)) => {
                // SAFETY: a live graph; aborting an ended capture is a no-op.
                let _ = self.api.check("capture_abort", unsafe { (self.api.graph_abort)(self.raw) });
                Err(e)
            }
            Err(panic) => {
                let _ = self.api.check("capture_abort", unsafe { (self.api.graph_abort)(self.raw) });
                let what = panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
                    .unwrap_or("a panic");
                anyhow::bail!("{}", what.lines().next().unwrap_or(what))
            }
        }
    }

    /// Launch the captured work on the current stream.
    pub fn replay(&self) -> Result<(), NativeError> {
        // SAFETY: a live, captured graph.
        self.api.check("replay", unsafe { (self.api.graph_replay)(self.raw) })
    }
}

impl Drop for Graph {
    fn drop(&mut self) {
        // SAFETY: allocated by graph_new, freed once.
        unsafe { (self.api.graph_free)(self.raw) }
    }
}

/// A CUDA event: recorded after some work, waited for on the host.
pub struct Event {
    api: &'static CudaApi,
    raw: *mut RawEvent,
}

impl Event {
    /// Record on `device`'s current stream.
    pub fn record(&self, device: usize) -> Result<(), NativeError> {
        // SAFETY: a live event.
        self.api.check("event record", unsafe { (self.api.event_record)(self.raw, device as i8) })
    }

    /// Wait until the work queued before the record is done.
    pub fn synchronize(&self) -> Result<(), NativeError> {
        // SAFETY: a live event.
        self.api.check("event synchronize", unsafe { (self.api.event_synchronize)(self.raw) })
    }
}

impl Drop for Event {
    fn drop(&mut self) {
        // SAFETY: allocated by event_new, freed once.
        unsafe { (self.api.event_free)(self.raw) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_mirrors_the_headers_layout() {
        // Two u32, then 15 function pointers (cuda_api.h); the plugin checks the same size.
        assert_eq!(std::mem::size_of::<CudaApi>(), 8 + 15 * std::mem::size_of::<usize>());
        let header = include_str!("../../csrc/cuda_api.h");
        let pointers = header.lines().filter(|l| l.trim_start().contains("(*")).count();
        assert_eq!(pointers, 15, "cuda_api.h and CudaApi must list the same entries");
        assert!(header.contains(&format!("#define SW_CUDA_API_VERSION {API_VERSION}")));
    }

    #[test]
    fn without_the_plugin_the_reason_names_the_fix() {
        // CPU builds never have it (unless someone put one on LD_LIBRARY_PATH).
        if let Err(e) = api() {
            assert!(e.to_string().contains("just gpu-build") || e.to_string().contains("libtorch"), "{e}");
        }
    }
}
