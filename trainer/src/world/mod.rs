//! The world: this process's place in a data-parallel job, and everything ranks do together.
//!
//! - [`env`]: where a process is in the job, from torchrun's (or Slurm's) variables;
//! - [`local`]: `train --nproc N`, the local launcher;
//! - [`children`]: child processes that die with their parent (ranks, study workers);
//! - [`c10d`]: the rendezvous, the Gloo or NCCL process group, the collectives (PyTorch's c10d);
//! - here, [`World`]: rank and size, [`World::from_env`] (join the job the environment describes,
//!   on the GPU of this local rank), the collectives a step needs, and [`World::decide`]: what
//!   rank 0 decides alone (it owns the run directory), on every rank.
//!
//! Micro-batch `i` of a step is rank `i mod size`'s, and the gradients and loss are summed in one
//! all-reduce before clipping, so the data stream, the losses and the parameters do not depend on
//! the number of ranks. A world of one talks to nobody.

pub mod c10d;
pub mod children;
pub mod env;
pub mod local;

use std::time::Duration;

use anyhow::{bail, Context};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tch::{Device, Kind, Tensor};

pub use c10d::{Backend, BackendChoice, Reduce};
pub use env::{restart_attempt, Launch};

use crate::error::{bad_input, BadInput};
use c10d::ProcessGroup;

/// How long a rank waits for the others (rendezvous, every collective) before giving up; a dead
/// peer shows up as this timeout at the latest. `train --dist-timeout SECONDS` changes it.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

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

impl std::fmt::Debug for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "World {{ rank: {}, size: {}, local_rank: {} }}", self.rank, self.size, self.local_rank)
    }
}

impl World {
    /// A world of one process.
    pub fn single() -> World {
        World { rank: 0, size: 1, local_rank: 0, group: None, collective_device: None, skip_gradient_sum: false }
    }

    /// The job this process's environment describes (a world of one without torchrun's or
    /// Slurm's variables), and the device it trains on: on CUDA, the GPU of its local rank.
    pub fn from_env(device: Device, choice: BackendChoice, timeout: Duration) -> anyhow::Result<(World, Device)> {
        let launch = Launch::from_vars(|name| std::env::var(name).ok()).map_err(bad_input)?;
        let Some(launch) = launch else { return Ok((World::single(), device)) };
        let backend = choice.resolve(device);
        backend.collective_device(device).map_err(bad_input)?;
        // One GPU per local rank (ranks share GPUs when there are fewer, as Gloo allows).
        let gpus = tch::Cuda::device_count().max(1) as usize;
        let device = if device.is_cuda() { Device::Cuda(launch.local_rank % gpus) } else { device };
        Ok((World::join(&launch, device, backend, timeout)?, device))
    }

    /// Join the job `launch` describes, with `backend` for tensors on `device`; every rank must
    /// call this.
    pub fn join(launch: &Launch, device: Device, backend: Backend, timeout: Duration) -> anyhow::Result<World> {
        let collective_device = backend.collective_device(device)?;
        let group = ProcessGroup::join(launch, backend, timeout)?;
        Ok(World {
            rank: launch.rank,
            size: launch.world_size,
            local_rank: launch.local_rank,
            group: Some(group),
            collective_device,
            skip_gradient_sum: std::env::var("STAGEWISE_SKIP_ALLREDUCE").is_ok_and(|v| v == "1"),
        })
    }

    /// End the job's process group cleanly (PyTorch's `destroy_process_group()`): every rank,
    /// after its last collective, on success. (On failure the group is dropped and aborts.)
    pub fn shutdown(&self) -> anyhow::Result<()> {
        self.group.as_ref().map_or(Ok(()), ProcessGroup::shutdown)
    }

    /// True for the rank that writes the run directory (rank 0).
    pub fn is_main(&self) -> bool {
        self.rank == 0
    }

    /// Micro-batch `index` of a step goes to rank `index mod size`.
    pub fn owns(&self, index: usize) -> bool {
        index % self.size == self.rank
    }

    /// Run `collective` on one flattened copy of `tensors` (one dtype), on the device the backend
    /// reduces on, then copy the result back into them.
    fn through_flat(
        &self,
        tensors: &[&Tensor],
        collective: impl FnOnce(&ProcessGroup, &Tensor) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let Some(group) = &self.group else { return Ok(()) };
        let mut flat = flatten(tensors.iter().copied());
        if let Some(device) = self.collective_device.filter(|d| flat.device() != *d) {
            flat = flat.to_device(device);
        }
        collective(group, &flat).with_context(|| format!("rank {}", self.rank))?;
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
        if tensors.is_empty() {
            return Ok(());
        }
        self.through_flat(&tensors.iter().collect::<Vec<_>>(), |g, flat| g.all_reduce(flat, op))
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
        let mut kinds: Vec<Kind> = Vec::new();
        for t in tensors {
            if !kinds.contains(&t.kind()) {
                kinds.push(t.kind());
            }
        }
        for kind in kinds {
            let same: Vec<&Tensor> = tensors.iter().filter(|t| t.kind() == kind).collect();
            self.through_flat(&same, |g, flat| g.broadcast(flat, 0).context("broadcast from rank 0"))?;
        }
        Ok(())
    }

    /// Rank 0's `message` on every rank (bytes: a run header, a state, an error).
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

    /// What rank 0 decides (`on_main`, which alone may touch the run directory), on every rank:
    /// rank 0 sends its result, or its error (bad input stays bad input), to the others.
    pub fn decide<T: Serialize + DeserializeOwned>(
        &self,
        on_main: impl FnOnce() -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        if self.size == 1 {
            return on_main();
        }
        if self.is_main() {
            let result = on_main();
            let message = match &result {
                Ok(value) => [vec![0u8], serde_json::to_vec(value)?].concat(),
                Err(e) => {
                    let kind = if e.downcast_ref::<BadInput>().is_some() { 2u8 } else { 1 };
                    [vec![kind], format!("{e:#}").into_bytes()].concat()
                }
            };
            self.broadcast_bytes(Some(&message))?;
            return result;
        }
        let message = self.broadcast_bytes(None)?;
        let (kind, body) = message.split_first().context("empty decision from rank 0")?;
        match kind {
            0 => Ok(serde_json::from_slice(body).context("rank 0's decision")?),
            2 => Err(bad_input(anyhow::anyhow!("rank 0: {}", String::from_utf8_lossy(body)))),
            _ => bail!("rank 0: {}", String::from_utf8_lossy(body)),
        }
    }
}

/// One contiguous copy of `tensors`, outside autograd (parameters require gradients).
fn flatten<'a>(tensors: impl Iterator<Item = &'a Tensor>) -> Tensor {
    tch::no_grad(|| Tensor::cat(&tensors.map(|t| t.detach().reshape([-1])).collect::<Vec<_>>(), 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_world_of_one_reduces_nothing_and_decides_alone() {
        let world = World::single();
        let t = Tensor::from_slice(&[1.0f32, 2.0]);
        world.all_reduce(std::slice::from_ref(&t), Reduce::Sum).unwrap();
        assert_eq!(Vec::<f32>::try_from(&t).unwrap(), vec![1.0, 2.0]);
        assert!(world.agree(3.5).unwrap());
        assert_eq!(world.broadcast_bytes(Some(b"abc")).unwrap(), b"abc");
        assert!(world.is_main() && world.owns(5));
        assert_eq!(world.decide(|| Ok(7u32)).unwrap(), 7);
        let (single, device) = World::from_env(Device::Cpu, BackendChoice::Auto, DEFAULT_TIMEOUT).unwrap();
        assert_eq!((single.size, device), (1, Device::Cpu), "no launch variables in the test environment");
    }
}
