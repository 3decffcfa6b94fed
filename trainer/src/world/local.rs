//! `train --nproc N ...`: start N local ranks of the same command, as `torchrun --nproc-per-node
//! N` would: each child gets `RANK`, `WORLD_SIZE`, `LOCAL_RANK`, `LOCAL_WORLD_SIZE`,
//! `MASTER_ADDR=127.0.0.1` and a free `MASTER_PORT`; on CPU the cores are split between them.
//! On several machines, `--nnodes M --node-rank R --master-addr A --master-port P` on each (as
//! torchrun's flags): node R's ranks are `R·N .. (R+1)·N` of `M·N`, meeting at `A:P`. The
//! ranks are a [`Group`]: signals forwarded, and when one rank dies the others are stopped
//! (no orphans: a child also dies with the launcher), naming the rank.

use std::ffi::OsString;
use std::process::Command;

use anyhow::Context;

use crate::world::children::Group;

/// The flags that describe the launch, which the ranks get as variables instead.
const LAUNCH_FLAGS: [&str; 5] = ["--nproc", "--nnodes", "--node-rank", "--master-addr", "--master-port"];

/// `args` without the launch flags (`--nproc N`, `--nnodes N`, `--node-rank R`, `--master-addr
/// A`, `--master-port P`, each also as `--flag=value`).
pub fn without_launch_flags(args: &[OsString]) -> Vec<OsString> {
    let mut out = Vec::new();
    let mut skip_next = false;
    for arg in args {
        if skip_next {
            skip_next = false;
            continue;
        }
        match arg.to_str() {
            Some(a) if LAUNCH_FLAGS.contains(&a) => skip_next = true,
            Some(a) if LAUNCH_FLAGS.iter().any(|f| a.starts_with(&format!("{f}="))) => {}
            _ => out.push(arg.clone()),
        }
    }
    out
}

/// Where this node's ranks sit in a job of `nnodes` nodes, as `torchrun --nnodes N --node-rank
/// R --master-addr A --master-port P` has them: ranks `R·nproc .. (R+1)·nproc` of `N·nproc`,
/// meeting at rank 0's store on `master`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nodes {
    pub nnodes: usize,
    pub node_rank: usize,
    /// Rank 0's host and port; on one node `127.0.0.1` and a free port when not given.
    pub master: Option<(String, u16)>,
}

impl Nodes {
    /// One node.
    pub fn single() -> Nodes {
        Nodes { nnodes: 1, node_rank: 0, master: None }
    }

    /// Check the launch: a node rank inside the job, and a rendezvous every node can reach
    /// when there are several.
    pub fn check(&self) -> anyhow::Result<()> {
        if self.nnodes == 0 {
            anyhow::bail!("--nnodes 0: a job has at least one node");
        }
        if self.node_rank >= self.nnodes {
            anyhow::bail!(
                "--node-rank {} is not below --nnodes {}; number the nodes 0..{}",
                self.node_rank,
                self.nnodes,
                self.nnodes
            );
        }
        if self.nnodes > 1 && self.master.is_none() {
            anyhow::bail!(
                "--nnodes {}: every node needs rank 0's address; give --master-addr HOST --master-port PORT (or MASTER_ADDR and MASTER_PORT)",
                self.nnodes
            );
        }
        Ok(())
    }
}

/// A port nobody listens on right now (the rendezvous of rank 0).
fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port on 127.0.0.1")?;
    Ok(listener.local_addr()?.port())
}

/// Run `args` (this binary's arguments without the launch flags) as this node's `nproc` ranks;
/// returns the exit code for the launcher: 0 when every rank succeeded, 128 + the signal when the
/// launcher was interrupted (SIGINT, SIGTERM: forwarded, the ranks stop), else the failing
/// rank's (2 for bad input, 1 otherwise).
pub fn run_local(nproc: usize, nodes: &Nodes, args: &[OsString], cuda: bool) -> anyhow::Result<u8> {
    nodes.check()?;
    let exe = std::env::current_exe().context("finding this binary")?;
    let (addr, port) = match &nodes.master {
        Some((addr, port)) => (addr.clone(), *port),
        None => ("127.0.0.1".to_string(), free_port()?),
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = (cores / nproc).max(1);
    let world_size = nodes.nnodes * nproc;
    let mut group = Group::forwarding_signals();
    for local in 0..nproc {
        let rank = nodes.node_rank * nproc + local;
        let mut command = Command::new(&exe);
        command
            .args(args)
            .env("RANK", rank.to_string())
            .env("LOCAL_RANK", local.to_string())
            .env("WORLD_SIZE", world_size.to_string())
            .env("LOCAL_WORLD_SIZE", nproc.to_string())
            .env("GROUP_RANK", nodes.node_rank.to_string())
            .env("MASTER_ADDR", &addr)
            .env("MASTER_PORT", port.to_string());
        if !cuda {
            command.env("STAGEWISE_THREADS", threads.to_string());
        }
        // One node talks over loopback; several over the interface that reaches rank 0 (Gloo
        // finds it from the host name unless GLOO_SOCKET_IFNAME names it).
        if nodes.nnodes == 1 && std::env::var_os("GLOO_SOCKET_IFNAME").is_none() {
            command.env("GLOO_SOCKET_IFNAME", "lo");
        }
        group.spawn(format!("rank {rank}"), command)?;
    }
    let ended = group.wait(|| {})?;
    Ok(ended.exit_code())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nproc_is_taken_out_of_the_arguments() {
        let args: Vec<OsString> =
            ["--nproc", "2", "--set", "steps=3", "--nproc=4", "--run", "a"].map(OsString::from).to_vec();
        let left: Vec<OsString> = ["--set", "steps=3", "--run", "a"].map(OsString::from).to_vec();
        assert_eq!(without_launch_flags(&args), left);
        let nodes: Vec<OsString> =
            ["--nnodes", "2", "--node-rank=1", "--master-addr", "10.0.0.1", "--master-port", "29500", "--run", "a"]
                .map(OsString::from)
                .to_vec();
        assert_eq!(without_launch_flags(&nodes), ["--run", "a"].map(OsString::from).to_vec());
        assert!(free_port().unwrap() > 0);
    }

    #[test]
    fn several_nodes_need_a_rendezvous_and_a_rank_inside_the_job() {
        assert!(Nodes::single().check().is_ok());
        let two = Nodes { nnodes: 2, node_rank: 1, master: Some(("10.0.0.1".into(), 29500)) };
        assert!(two.check().is_ok());
        let err = Nodes { master: None, ..two.clone() }.check().unwrap_err().to_string();
        assert!(err.contains("--master-addr"), "{err}");
        let err = Nodes { node_rank: 2, ..two }.check().unwrap_err().to_string();
        assert!(err.contains("--node-rank 2"), "{err}");
    }
}
