//! Data-parallel training on PyTorch's own distributed engine (c10d), through the shim
//! `csrc/dist.cpp`: the TCPStore rendezvous `torchrun` sets up, a Gloo process group for CPU
//! tensors, a NCCL one for CUDA tensors (the plugin `libstagewise_nccl.so` that `just gpu-build`
//! builds), and the collectives a step needs.
//!
//! A process learns its place like under torchrun: `RANK`, `WORLD_SIZE`, `LOCAL_RANK`,
//! `MASTER_ADDR`, `MASTER_PORT` (and `TORCHELASTIC_USE_AGENT_STORE`, when torchrun's agent already
//! serves the store). Without them it is a world of one and nothing here talks to anyone.

use std::ffi::{c_char, c_void, CStr, CString};
use std::time::Duration;

use anyhow::{bail, Context};
use tch::{Device, Kind, Tensor};
use torch_sys::C_tensor;

use crate::native::take_message;

/// How long a rank waits for the others (rendezvous, every collective) before giving up; a dead
/// peer shows up as this timeout at the latest. `train --dist-timeout SECONDS` changes it.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

#[repr(C)]
struct SwStore {
    _opaque: [u8; 0],
}

#[repr(C)]
struct SwGroup {
    _opaque: [u8; 0],
}

extern "C" {
    fn sw_dist_store(
        host: *const c_char,
        port: u16,
        rank: i32,
        world: i32,
        client_only: bool,
        timeout_ms: i64,
        prefix: *const c_char,
        out: *mut *mut SwStore,
    ) -> *mut c_char;
    fn sw_dist_store_free(store: *mut SwStore);
    fn sw_dist_gloo(store: *mut SwStore, rank: i32, world: i32, timeout_ms: i64, out: *mut *mut SwGroup)
        -> *mut c_char;
    fn sw_dist_group_free(group: *mut SwGroup);
    fn sw_dist_group_shutdown(group: *mut SwGroup) -> *mut c_char;
    fn sw_dist_all_reduce(group: *mut SwGroup, tensor: *mut C_tensor, op: i32) -> *mut c_char;
    fn sw_dist_broadcast(group: *mut SwGroup, tensor: *mut C_tensor, root: i32) -> *mut c_char;
}

/// The NCCL plugin's constructor (`csrc/dist_nccl.cpp`), found with `dlsym`.
type NcclConstructor = unsafe extern "C" fn(*mut SwStore, i32, i32, i64, *mut *mut SwGroup) -> *mut c_char;

/// The shim's message (NULL = success) as a `Result`, freed.
fn check(what: &str, message: *mut c_char) -> anyhow::Result<()> {
    match take_message(message) {
        None => Ok(()),
        Some(text) => bail!("{what}: {text}"),
    }
}

/// Which process-group backend carries the collectives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// NCCL for CUDA tensors, Gloo for CPU tensors.
    Auto,
    Gloo,
    Nccl,
}

/// A reduction of [`World::all_reduce`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reduce {
    Sum = 0,
    Max = 1,
}

/// Where this process is in the job, from the variables torchrun (or `train --nproc`, or a Slurm
/// wrapper) sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    pub rank: usize,
    pub world_size: usize,
    pub local_rank: usize,
    pub master_addr: String,
    pub master_port: u16,
    /// torchrun's elastic agent serves the store: rank 0 connects as a client.
    pub agent_store: bool,
    /// torchrun's restart attempt (`TORCHELASTIC_RESTART_COUNT`): the store's keys live under
    /// `/worker/attempt_<n>/`, as `torch.distributed` puts them.
    pub restart_count: usize,
}

impl Launch {
    /// The prefix of this job's keys in the rendezvous store.
    pub fn store_prefix(&self) -> String {
        match self.agent_store {
            true => format!("/worker/attempt_{}/stagewise", self.restart_count),
            false => "stagewise".into(),
        }
    }

    /// The launch described by `var` (the environment, in the binary); `None` without
    /// `WORLD_SIZE` or with a world of one. Under Slurm's `srun` without torchrun's variables,
    /// `SLURM_PROCID`, `SLURM_NTASKS` and `SLURM_LOCALID` stand in for `RANK`, `WORLD_SIZE` and
    /// `LOCAL_RANK` (the batch script still exports `MASTER_ADDR` and `MASTER_PORT`).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> anyhow::Result<Option<Launch>> {
        let slurm = var("WORLD_SIZE").is_none() && var("SLURM_NTASKS").is_some() && var("SLURM_PROCID").is_some();
        let var = |name: &str| match (slurm, name) {
            (true, "RANK") => var("SLURM_PROCID"),
            (true, "WORLD_SIZE") => var("SLURM_NTASKS"),
            (true, "LOCAL_RANK") => var("SLURM_LOCALID"),
            _ => var(name),
        };
        let number = |name: &str| -> anyhow::Result<Option<usize>> {
            var(name)
                .map(|v| v.trim().parse::<usize>().with_context(|| format!("{name}={v:?} is not a number")))
                .transpose()
        };
        let Some(world_size) = number("WORLD_SIZE")? else { return Ok(None) };
        // A world of one forms a group only when a rendezvous is given (a one-rank NCCL smoke).
        if world_size == 0 || (world_size == 1 && var("MASTER_ADDR").is_none()) {
            return Ok(None);
        }
        let rank = number("RANK")?.context("WORLD_SIZE is set but RANK is not; set both (torchrun does)")?;
        if rank >= world_size {
            bail!("RANK={rank} is not below WORLD_SIZE={world_size}");
        }
        let master_addr = var("MASTER_ADDR").with_context(|| match slurm {
            true => format!(
                "Slurm task {rank} of {world_size} without MASTER_ADDR: export it in the batch script (MASTER_ADDR=$(scontrol show hostnames \"$SLURM_JOB_NODELIST\" | head -n1)) and start the ranks with srun"
            ),
            false => "MASTER_ADDR is not set: the host of rank 0".into(),
        })?;
        let master_port = var("MASTER_PORT")
            .context("MASTER_PORT is not set: a free port on rank 0's host")?
            .trim()
            .parse::<u16>()
            .context("MASTER_PORT is not a port number")?;
        Ok(Some(Launch {
            rank,
            world_size,
            local_rank: number("LOCAL_RANK")?.unwrap_or(0),
            master_addr,
            master_port,
            agent_store: var("TORCHELASTIC_USE_AGENT_STORE").is_some_and(|v| v.eq_ignore_ascii_case("true")),
            restart_count: restart_attempt(var)?,
        }))
    }
}

/// torchrun's restart attempt of this job (`TORCHELASTIC_RESTART_COUNT`): 0 on the first attempt
/// and outside torchrun; under `--max-restarts`, every later attempt reruns the same command.
pub fn restart_attempt(var: impl Fn(&str) -> Option<String>) -> anyhow::Result<usize> {
    var("TORCHELASTIC_RESTART_COUNT")
        .map(|v| v.trim().parse::<usize>().with_context(|| format!("TORCHELASTIC_RESTART_COUNT={v:?} is not a number")))
        .transpose()
        .map(|n| n.unwrap_or(0))
}

/// A c10d process group and its store.
struct ProcessGroup {
    store: *mut SwStore,
    group: *mut SwGroup,
}

// SAFETY: c10d process groups are used from one thread at a time here; the handles move with
// the World that owns them.
unsafe impl Send for ProcessGroup {}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        // SAFETY: handles the shim allocated, freed once.
        unsafe {
            sw_dist_group_free(self.group);
            sw_dist_store_free(self.store);
        }
    }
}

impl std::fmt::Debug for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "World {{ rank: {}, size: {}, local_rank: {} }}", self.rank, self.size, self.local_rank)
    }
}

/// This process's place in a data-parallel job: its rank among `size`, and the group that
/// connects them (none in a world of one).
pub struct World {
    pub rank: usize,
    pub size: usize,
    pub local_rank: usize,
    group: Option<ProcessGroup>,
    /// Where a collective's buffer must live: NCCL reduces CUDA tensors only, so small host
    /// values (validation sums, HellaSwag counts, messages) travel through this GPU; Gloo takes
    /// tensors where they are (`None`).
    collective_device: Option<Device>,
    /// Test hook (`STAGEWISE_SKIP_ALLREDUCE=1`): gradients are not summed, so ranks diverge.
    skip_gradient_sum: bool,
}

impl World {
    /// End the job's process group cleanly (PyTorch's `destroy_process_group()`): every rank,
    /// after its last collective, on success. (On failure the group is dropped and aborts.)
    pub fn shutdown(&self) -> anyhow::Result<()> {
        match &self.group {
            // SAFETY: a live group; further collectives would fail, and there are none.
            Some(g) => check("shutting down the process group", unsafe { sw_dist_group_shutdown(g.group) }),
            None => Ok(()),
        }
    }

    /// A world of one process.
    pub fn single() -> World {
        World { rank: 0, size: 1, local_rank: 0, group: None, collective_device: None, skip_gradient_sum: false }
    }

    /// Join the job `launch` describes, with `backend` for tensors on `device` (rendezvous at
    /// `MASTER_ADDR:MASTER_PORT`); every rank must call this.
    pub fn join(launch: &Launch, device: Device, backend: Backend, timeout: Duration) -> anyhow::Result<World> {
        let (rank, size) = (launch.rank as i32, launch.world_size as i32);
        let timeout_ms = timeout.as_millis() as i64;
        let host = CString::new(launch.master_addr.as_str()).context("MASTER_ADDR holds a NUL byte")?;
        let prefix = CString::new(launch.store_prefix()).expect("no NUL in the prefix");
        let use_nccl = match backend {
            Backend::Auto => device.is_cuda(),
            Backend::Nccl => true,
            Backend::Gloo => false,
        };
        // The plugin before the rendezvous: a rank that cannot build its group must not join.
        let nccl = if use_nccl { Some(nccl_plugin()?) } else { None };
        let mut store = std::ptr::null_mut();
        let rendezvous = format!(
            "rank {rank}: rendezvous at {}:{} ({} ranks, timeout {} s)",
            launch.master_addr,
            launch.master_port,
            size,
            timeout.as_secs()
        );
        // SAFETY: a valid C string and out-pointer; on success `store` is ours to free.
        check(&rendezvous, unsafe {
            sw_dist_store(
                host.as_ptr(),
                launch.master_port,
                rank,
                size,
                launch.agent_store,
                timeout_ms,
                prefix.as_ptr(),
                &mut store,
            )
        })?;
        let mut group = std::ptr::null_mut();
        let created = match nccl {
            // SAFETY: the plugin's constructor, with our store and an out-pointer.
            Some(constructor) => unsafe { constructor(store, rank, size, timeout_ms, &mut group) },
            // SAFETY: a live store and an out-pointer.
            None => unsafe { sw_dist_gloo(store, rank, size, timeout_ms, &mut group) },
        };
        if let Err(e) =
            check(&format!("rank {rank}: {} process group", if use_nccl { "NCCL" } else { "Gloo" }), created)
        {
            // SAFETY: the store from above, not used again.
            unsafe { sw_dist_store_free(store) };
            return Err(e);
        }
        Ok(World {
            rank: launch.rank,
            size: launch.world_size,
            local_rank: launch.local_rank,
            group: Some(ProcessGroup { store, group }),
            collective_device: use_nccl.then_some(device),
            skip_gradient_sum: std::env::var("STAGEWISE_SKIP_ALLREDUCE").is_ok_and(|v| v == "1"),
        })
    }

    /// True for the rank that writes the run directory (rank 0).
    pub fn is_main(&self) -> bool {
        self.rank == 0
    }

    /// Micro-batch `index` of a step goes to rank `index mod size`.
    pub fn owns(&self, index: usize) -> bool {
        index % self.size == self.rank
    }

    fn group(&self) -> Option<*mut SwGroup> {
        self.group.as_ref().map(|g| g.group)
    }

    /// `flat` where the backend can reduce it (a copy only for host tensors under NCCL).
    fn on_collective_device(&self, flat: Tensor) -> Tensor {
        match self.collective_device {
            Some(device) if flat.device() != device => flat.to_device(device),
            _ => flat,
        }
    }

    /// Run `collective` on one flattened copy of `tensors` (one dtype) where the backend takes
    /// it, then copy the result back into them.
    fn through_flat(
        &self,
        group: *mut SwGroup,
        tensors: &[&Tensor],
        what: &str,
        collective: impl FnOnce(*mut SwGroup, *mut C_tensor) -> *mut c_char,
    ) -> anyhow::Result<()> {
        let flat = self.on_collective_device(flatten(tensors.iter().copied()));
        check(&format!("rank {}: {what}", self.rank), collective(group, flat.as_ptr() as *mut C_tensor))?;
        let mut offset = 0;
        tch::no_grad(|| {
            for t in tensors {
                let n = t.numel() as i64;
                t.shallow_clone().copy_(&flat.narrow(0, offset, n).view_as(t));
                offset += n;
            }
        });
        Ok(())
    }

    /// Reduce `tensors` in place over all ranks, as one collective over a flattened copy (dense,
    /// contiguous, one dtype). Nothing to do in a world of one.
    pub fn all_reduce(&self, tensors: &[Tensor], op: Reduce) -> anyhow::Result<()> {
        let Some(group) = self.group() else { return Ok(()) };
        if tensors.is_empty() {
            return Ok(());
        }
        let what = "all-reduce (a peer rank died or stopped responding?)";
        // SAFETY: a live group and a tensor the call borrows.
        self.through_flat(group, &tensors.iter().collect::<Vec<_>>(), what, |g, t| unsafe {
            sw_dist_all_reduce(g, t, op as i32)
        })
    }

    /// Sum the step's gradients (`gradients()`, asked for only when there are other ranks) and
    /// its partial loss over all ranks, in one all-reduce: every rank ends with the same totals,
    /// bit for bit.
    pub fn sum_step(&self, gradients: impl FnOnce() -> Vec<Tensor>, loss: &Tensor) -> anyhow::Result<()> {
        if self.group.is_none() || self.skip_gradient_sum {
            return Ok(());
        }
        let mut summed = gradients();
        summed.push(loss.shallow_clone());
        self.all_reduce(&summed, Reduce::Sum)
    }

    /// Rank 0's values of `tensors` on every rank (one collective per dtype).
    pub fn broadcast(&self, tensors: &[Tensor]) -> anyhow::Result<()> {
        let Some(group) = self.group() else { return Ok(()) };
        let mut kinds: Vec<Kind> = Vec::new();
        for t in tensors {
            if !kinds.contains(&t.kind()) {
                kinds.push(t.kind());
            }
        }
        for kind in kinds {
            let same: Vec<&Tensor> = tensors.iter().filter(|t| t.kind() == kind).collect();
            // SAFETY: a live group and a tensor the call borrows.
            self.through_flat(group, &same, "broadcast from rank 0", |g, t| unsafe { sw_dist_broadcast(g, t, 0) })?;
        }
        Ok(())
    }

    /// Rank 0's `message` on every rank (bytes: a run header, a state, an error), for the
    /// decisions rank 0 makes alone (it reads and writes the run directory).
    pub fn broadcast_bytes(&self, message: Option<&[u8]>) -> anyhow::Result<Vec<u8>> {
        if self.group.is_none() {
            return Ok(message.unwrap_or_default().to_vec());
        }
        let bytes = message.unwrap_or_default();
        let length = Tensor::from_slice(&[bytes.len() as i64]);
        self.broadcast(std::slice::from_ref(&length))?;
        let n = length.int64_value(&[0]) as usize;
        let data = if self.is_main() {
            Tensor::from_slice(bytes)
        } else {
            Tensor::zeros([n as i64], (Kind::Uint8, Device::Cpu))
        };
        if n > 0 {
            self.broadcast(std::slice::from_ref(&data))?;
        }
        Vec::<u8>::try_from(&data).context("broadcast bytes")
    }

    /// True when every rank holds the same `value` (e.g. a parameter checksum).
    pub fn agree(&self, value: f64) -> anyhow::Result<bool> {
        if self.group.is_none() {
            return Ok(true);
        }
        let max = Tensor::from_slice(&[value, -value]);
        self.all_reduce(std::slice::from_ref(&max), Reduce::Max)?;
        let (high, low) = (max.double_value(&[0]), -max.double_value(&[1]));
        Ok(high == low)
    }
}

/// One contiguous copy of `tensors`, outside autograd (parameters require gradients).
fn flatten<'a>(tensors: impl Iterator<Item = &'a Tensor>) -> Tensor {
    tch::no_grad(|| Tensor::cat(&tensors.map(|t| t.detach().reshape([-1])).collect::<Vec<_>>(), 0))
}

/// The NCCL plugin's constructor: `libstagewise_nccl.so` next to the binary, or on the library
/// path.
fn nccl_plugin() -> anyhow::Result<NcclConstructor> {
    let beside = std::env::current_exe().ok().and_then(|exe| Some(exe.parent()?.join("libstagewise_nccl.so")));
    let candidates: Vec<String> = beside
        .filter(|p| p.is_file())
        .map(|p| p.display().to_string())
        .into_iter()
        .chain(std::iter::once("libstagewise_nccl.so".to_string()))
        .collect();
    let mut refused = Vec::new();
    for name in candidates {
        let c = CString::new(name.as_str()).context("plugin path")?;
        // SAFETY: dlopen/dlsym with valid C strings; the library stays loaded.
        let handle = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
        if handle.is_null() {
            // SAFETY: dlerror returns NULL or a C string valid until the next dl* call.
            let why = unsafe { libc::dlerror() };
            if !why.is_null() && std::path::Path::new(&name).is_file() {
                refused.push(format!("{name}: {}", unsafe { CStr::from_ptr(why) }.to_string_lossy()));
            }
            continue;
        }
        let symbol: *mut c_void = unsafe { libc::dlsym(handle, c"sw_dist_nccl".as_ptr()) };
        if !symbol.is_null() {
            // SAFETY: the plugin exports exactly this signature.
            return Ok(unsafe { std::mem::transmute::<*mut c_void, NcclConstructor>(symbol) });
        }
    }
    if let Some(why) = refused.first() {
        bail!(
            "the NCCL plugin would not load ({why}): it needs the CUDA build of libtorch 2.11.0 on LD_LIBRARY_PATH (torch's lib directory); or pass --dist-backend gloo"
        );
    }
    bail!(
        "the NCCL plugin libstagewise_nccl.so is not next to the binary or on LD_LIBRARY_PATH; build it with `just gpu-build` (it lands in .gpu/), or pass --dist-backend gloo"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
    }

    #[test]
    fn the_launch_comes_from_torchruns_variables() {
        assert_eq!(Launch::from_vars(vars(&[])).unwrap(), None);
        assert_eq!(Launch::from_vars(vars(&[("WORLD_SIZE", "1"), ("RANK", "0")])).unwrap(), None);
        let torchrun = [
            ("RANK", "3"),
            ("WORLD_SIZE", "8"),
            ("LOCAL_RANK", "1"),
            ("MASTER_ADDR", "node0"),
            ("MASTER_PORT", "29500"),
            ("TORCHELASTIC_USE_AGENT_STORE", "True"),
            ("TORCHELASTIC_RESTART_COUNT", "2"),
        ];
        let launch = Launch::from_vars(vars(&torchrun)).unwrap().unwrap();
        assert_eq!((launch.rank, launch.world_size, launch.local_rank, launch.master_port), (3, 8, 1, 29500));
        assert!(launch.agent_store);
        assert_eq!(launch.store_prefix(), "/worker/attempt_2/stagewise", "a restarted attempt reads only its own keys");
        // srun alone: Slurm's task variables, the rendezvous from the batch script.
        let srun = [
            ("SLURM_PROCID", "5"),
            ("SLURM_NTASKS", "16"),
            ("SLURM_LOCALID", "1"),
            ("MASTER_ADDR", "node0"),
            ("MASTER_PORT", "29500"),
        ];
        let launch = Launch::from_vars(vars(&srun)).unwrap().unwrap();
        assert_eq!((launch.rank, launch.world_size, launch.local_rank), (5, 16, 1));
        assert!(!launch.agent_store);
        // torchrun's variables win over Slurm's (torchrun inside an allocation).
        let both = [("SLURM_PROCID", "5"), ("SLURM_NTASKS", "16"), ("WORLD_SIZE", "1"), ("RANK", "0")];
        assert_eq!(Launch::from_vars(vars(&both)).unwrap(), None);
        let err = Launch::from_vars(vars(&srun[..3])).unwrap_err().to_string();
        assert!(err.contains("MASTER_ADDR"), "{err}");
        for (broken, needle) in [
            (vec![("WORLD_SIZE", "2")], "RANK"),
            (vec![("WORLD_SIZE", "2"), ("RANK", "2"), ("MASTER_ADDR", "a"), ("MASTER_PORT", "1")], "below"),
            (vec![("WORLD_SIZE", "2"), ("RANK", "0"), ("MASTER_PORT", "1")], "MASTER_ADDR"),
            (vec![("WORLD_SIZE", "2"), ("RANK", "0"), ("MASTER_ADDR", "a"), ("MASTER_PORT", "x")], "port"),
            (vec![("WORLD_SIZE", "two")], "WORLD_SIZE"),
        ] {
            let err = Launch::from_vars(vars(&broken)).unwrap_err().to_string();
            assert!(err.contains(needle), "{broken:?}: {err}");
        }
    }

    #[test]
    fn a_world_of_one_reduces_nothing() {
        let world = World::single();
        let t = Tensor::from_slice(&[1.0f32, 2.0]);
        world.all_reduce(std::slice::from_ref(&t), Reduce::Sum).unwrap();
        assert_eq!(Vec::<f32>::try_from(&t).unwrap(), vec![1.0, 2.0]);
        assert!(world.agree(3.5).unwrap());
        assert_eq!(world.broadcast_bytes(Some(b"abc")).unwrap(), b"abc");
        assert!(world.is_main() && world.owns(5));
    }
}
