//! Several machines, made on one: network and host-name namespaces (`ip netns`, `unshare`), so
//! what crosses between "machines" crosses a real interface, never loopback.
//!
//! - Two nodes of a data-parallel job, each in its own network namespace joined by a veth pair,
//!   meeting at node 0's address (`--nnodes 2 --node-rank R --master-addr 10.77.0.1`): the run
//!   equals the one-process run as two local ranks do; killing one node ends the other within
//!   the timeout, naming the lost rank.
//! - Two groups of study workers on two "hosts" (UTS namespaces) sharing one runs directory:
//!   every run trained exactly once, though one group is killed midway (its claims expire and
//!   the other takes them over, one line each).
//!
//! They need root (namespaces); elsewhere each test prints why it is skipped and passes.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use run_dir::{LineKind, MetricsLine};

mod common;

/// Why namespaces cannot be made here, or `None` when they can.
fn namespaces_unavailable() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root".into());
    }
    for (tool, args) in [("ip", &["netns", "list"][..]), ("unshare", &["--uts", "true"][..])] {
        match Command::new(tool).args(args).output() {
            Ok(o) if o.status.success() => {}
            Ok(o) => {
                return Some(format!(
                    "`{tool} {}` failed: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&o.stderr).trim()
                ))
            }
            Err(e) => return Some(format!("no `{tool}` ({e})")),
        }
    }
    None
}

fn skip(test: &str, why: &str) {
    eprintln!("{test}: skipped: {why} (needs root with `ip netns` and `unshare`)");
}

fn sh(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(out.status.success(), "{}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
}

/// Two network namespaces joined by a veth pair, 10.77.<net>.1 and .2; removed on drop.
struct TwoHosts {
    names: [String; 2],
    addrs: [String; 2],
}

impl TwoHosts {
    fn new(net: u8) -> TwoHosts {
        let pid = std::process::id();
        let names = [format!("sw{pid}a"), format!("sw{pid}b")];
        let addrs = [format!("10.77.{net}.1"), format!("10.77.{net}.2")];
        let (va, vb) = (format!("v{pid}a"), format!("v{pid}b"));
        for n in &names {
            sh(&["ip", "netns", "add", n]);
        }
        sh(&["ip", "link", "add", &va, "type", "veth", "peer", "name", &vb]);
        for ((n, v), a) in names.iter().zip([&va, &vb]).zip(&addrs) {
            sh(&["ip", "link", "set", v, "netns", n]);
            sh(&["ip", "-n", n, "addr", "add", &format!("{a}/24"), "dev", v]);
            sh(&["ip", "-n", n, "link", "set", v, "up"]);
            sh(&["ip", "-n", n, "link", "set", "lo", "up"]);
        }
        TwoHosts { names, addrs }
    }

    /// `train args` inside host `i`'s namespace, node `i` of two.
    fn node(&self, i: usize, dir: &Path, args: &[String]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.names[i], env!("CARGO_BIN_EXE_train")])
            .args(args)
            .args([
                "--nnodes",
                "2",
                "--node-rank",
                &i.to_string(),
                "--master-addr",
                &self.addrs[0],
                "--master-port",
                "29611",
            ])
            .env("GLOO_SOCKET_IFNAME", format!("v{}{}", std::process::id(), ["a", "b"][i]))
            .current_dir(dir);
        c
    }
}

impl Drop for TwoHosts {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = Command::new("ip").args(["netns", "del", n]).output();
        }
    }
}

fn args(run: &str) -> Vec<String> {
    let mut a: Vec<String> = common::SMALL_MODEL_ARGS.iter().map(|s| s.to_string()).collect();
    for s in ["model.layers=4", "tokens_per_step=64", "steps=12", "warmup_steps=2", "val_every=4", "checkpoint_every=4"]
    {
        a.extend(["--set".to_string(), s.to_string()]);
    }
    a.extend(["--run".into(), run.into(), "--quiet".into(), "--dist-timeout".into(), "20".into()]);
    a
}

fn losses(run: &Path) -> Vec<(LineKind, u64, f64)> {
    common::read_metrics(run)
        .into_iter()
        .filter(|l| matches!(l.kind, LineKind::Train | LineKind::Val))
        .map(|l: MetricsLine| (l.kind, l.step, l.loss.or(l.val_loss).unwrap()))
        .collect()
}

fn ok(out: &Output, what: &str) {
    assert!(out.status.success(), "{what}: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn two_nodes_in_two_network_namespaces_train_what_one_process_does() {
    if let Some(why) = namespaces_unavailable() {
        return skip("two_nodes_in_two_network_namespaces_train_what_one_process_does", &why);
    }
    let dir = tempfile::tempdir().unwrap();
    common::text_dataset(dir.path(), "it was the best of times, it was the worst of times. ", 60, 1200);
    let one = Command::new(env!("CARGO_BIN_EXE_train")).args(args("one")).current_dir(dir.path()).output().unwrap();
    ok(&one, "one process");

    let hosts = TwoHosts::new(1);
    // Node 0's launcher and rank hold rank 0's run directory; node 1's rank writes nothing.
    let spawn = |i: usize| hosts.node(i, dir.path(), &args("two")).stderr(Stdio::piped()).spawn().unwrap();
    let (a, b) = (spawn(0), spawn(1));
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    ok(&a, "node 0");
    ok(&b, "node 1");
    let (x, y) = (losses(&dir.path().join("runs/one")), losses(&dir.path().join("runs/two")));
    assert_eq!(x.len(), y.len());
    let gap = x.iter().zip(&y).map(|(p, q)| (p.2 - q.2).abs()).fold(0.0, f64::max);
    eprintln!("two nodes over a veth pair vs one process: losses within {gap:.2e} over {} lines", x.len());
    assert!(gap < 1e-5, "two nodes differ from one process by {gap}");

    // Killing node 1 (its launcher and rank) ends node 0 within the timeout, naming the lost rank.
    let mut long = args("killed");
    long.extend(["--set".into(), "steps=100000".into()]);
    let a = hosts.node(0, dir.path(), &long).stderr(Stdio::piped()).spawn().unwrap();
    let mut b = hosts.node(1, dir.path(), &long).stderr(Stdio::null()).spawn().unwrap();
    let log = dir.path().join("runs/killed/metrics.jsonl");
    wait_for(|| std::fs::read_to_string(&log).is_ok_and(|t| t.lines().count() > 3), Duration::from_secs(60));
    kill_tree(&mut b);
    let killed = Instant::now();
    let out = wait_output(a, Duration::from_secs(60));
    let said = String::from_utf8_lossy(&out.stderr);
    eprintln!("node 0 ended {:.1} s after node 1 was killed: {}", killed.elapsed().as_secs_f64(), said.trim());
    assert!(!out.status.success());
    assert!(killed.elapsed() < Duration::from_secs(40), "node 0 outlived its peer by {:?}", killed.elapsed());
    assert!(said.contains("rank 1"), "the lost rank is not named: {said}");
    assert!(said.lines().filter(|l| !l.trim().is_empty()).count() <= 2, "more than a line or two: {said}");
}

fn wait_for(mut done: impl FnMut() -> bool, limit: Duration) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "timed out");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn wait_output(mut child: Child, limit: Duration) -> Output {
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    child.wait_with_output().unwrap()
}

/// SIGKILL `child` (an `ip netns exec` or `unshare` that exec'd the launcher, so the same PID):
/// its children die with it.
fn kill_tree(child: &mut Child) {
    // SAFETY: signalling a child we started.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    let _ = child.wait();
}

const DESIGN: &str = r#"
format = 4
runs_dir = "unused"
protocol = "fair"
quick = true
preset = "tiny"
device = "cpu"
overrides = [
  "model.layers=4", "model.heads=2", "model.d_model=32", "model.context=16", "micro_batch=4",
  "tokens_per_step=128", "warmup_steps=2", "val_tokens=128", "steps=400", "val_every=100",
  "checkpoint_every=50", "data_dir=DATA",
]
seeds = [1, 2, 3]
budgets = [0.5, 1.0]
budget_unit = "flops"
regime = "a test"
trade_offs = "a test"

[[arms]]
name = "baseline"
label = "full model"
schedule = { kind = "baseline" }

[[arms]]
name = "one-layer"
label = "one-layer expansion"
schedule = { kind = "incremental", method = "one-layer" }
"#;

/// `train study` as a group of workers on host `host` (a UTS namespace of its own).
fn study_on(host: &str, design: &Path, runs: &Path, dir: &Path) -> Command {
    let mut c = Command::new("unshare");
    c.args(["--uts", "sh", "-c", &format!("hostname {host} && exec \"$0\" \"$@\"")])
        .arg(env!("CARGO_BIN_EXE_train"))
        .args(["study", "--design"])
        .arg(design)
        .arg("--runs-dir")
        .arg(runs)
        .args(["--jobs", "1", "--quiet"])
        .env("STAGEWISE_THREADS", "1")
        .env("STAGEWISE_CLAIM_TIMEOUT", "3")
        .current_dir(dir);
    c
}

#[test]
fn two_hosts_share_a_study_and_train_every_run_once_though_one_is_killed() {
    if let Some(why) = namespaces_unavailable() {
        return skip("two_hosts_share_a_study_and_train_every_run_once_though_one_is_killed", &why);
    }
    let dir = tempfile::tempdir().unwrap();
    let data = common::text_dataset(dir.path(), "the cat sat on the mat. a dog ran in the fog. ", 200, 1000);
    let design = dir.path().join("design.toml");
    std::fs::write(&design, DESIGN.replace("DATA", data.to_str().unwrap())).unwrap();
    let (alone, shared) = (dir.path().join("alone"), dir.path().join("shared"));
    ok(&study_on("node-a", &design, &alone, dir.path()).output().unwrap(), "one host alone");

    // Host a claims a run and is killed while it trains it; host b trains the rest and takes a's
    // claim over once its heartbeat is older than the timeout.
    let mut a = study_on("node-a", &design, &shared, dir.path()).stderr(Stdio::null()).spawn().unwrap();
    let b = study_on("node-b", &design, &shared, dir.path()).stderr(Stdio::piped()).spawn().unwrap();
    let claims = shared.join(".claims");
    let held_by_a = || {
        std::fs::read_dir(&claims).into_iter().flatten().flatten().any(|e| {
            std::fs::read_to_string(e.path()).is_ok_and(|t| t.contains("\"node-a\""))
                && std::fs::read_dir(shared.join(e.file_name().to_string_lossy().trim_end_matches(".claim"))).is_ok()
        })
    };
    wait_for(held_by_a, Duration::from_secs(120));
    std::thread::sleep(Duration::from_millis(500));
    kill_tree(&mut a);
    let out = wait_output(b, Duration::from_secs(600));
    ok(&out, "host b");
    let said = String::from_utf8_lossy(&out.stderr);
    let takeovers: Vec<&str> = said.lines().filter(|l| l.contains("taking it over")).collect();
    eprintln!("host b: {}", takeovers.join(" | "));
    assert!(takeovers.iter().any(|l| l.contains("node-a") && l.contains("no heartbeat")), "{said}");

    // Every run and branch once, equal to one host's study bit for bit.
    let d = run_dir::study::StudyDesign::read(&alone).unwrap().unwrap();
    let mut compared = 0;
    for run in d.runs() {
        for name in run.dirs(d.budget_unit) {
            let numbers = |root: &Path| -> Vec<(LineKind, u64, u64)> {
                let lines = common::read_metrics(&root.join(&name));
                let mut seen = std::collections::HashSet::new();
                for l in &lines {
                    let key = (format!("{:?}", l.kind), l.step);
                    assert!(seen.insert(key), "{name}: {:?} step {} logged twice", l.kind, l.step);
                }
                lines
                    .iter()
                    .filter(|l| matches!(l.kind, LineKind::Train | LineKind::Val))
                    .map(|l| (l.kind, l.step, l.loss.or(l.val_loss).unwrap().to_bits()))
                    .collect()
            };
            assert_eq!(numbers(&alone), numbers(&shared), "{name}");
            compared += 1;
        }
    }
    eprintln!("{compared} runs and branches trained once each across two hosts, equal to one host's");
}
