//! Where this process is in a data-parallel job, from its environment: torchrun's variables
//! (`RANK`, `WORLD_SIZE`, `LOCAL_RANK`, `MASTER_ADDR`, `MASTER_PORT`, and under torchrun's elastic
//! agent `TORCHELASTIC_USE_AGENT_STORE` and `TORCHELASTIC_RESTART_COUNT`), or Slurm's task
//! variables under a plain `srun`. Without them a process is a world of one.

use anyhow::{bail, Context};

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
}
