//! What decides the bits of a CPU run, fixed before libtorch computes anything.
//!
//! **The cause** (issue 25). When nobody sets it, ATen's intra-op thread count is oneMKL's
//! `mkl_get_max_threads()` (`at::init_num_threads`), a number oneMKL works out in each process
//! (its own reading of the cores, and `MKL_DYNAMIC`), and ATen splits its reductions by that
//! count. A process that got one thread where another got two logs other last bits: on the
//! 40-step growing run of the issue, one intra-op thread instead of two gives exactly the deviant
//! losses reported there (step 28: 4.306586265563965 instead of 4.306585788726807), and so does
//! another oneMKL code branch (`MKL_CBWR=AUTO` is oneMKL's own choice per process too). oneMKL's
//! own thread count does not change a bit under `STRICT` (measured: BLAS on one thread, ATen on
//! two, identical logs), nor does memory alignment (glibc malloc tunables, oneMKL's FastMM off).
//!
//! **The fix**: the thread count is ours (`STAGEWISE_THREADS`, else `OMP_NUM_THREADS`, else the
//! physical cores this process may run on, read from the kernel's topology), and so is oneMKL's
//! branch (from the CPU's instruction sets, `STRICT`); neither library may adjust them
//! (`OMP_DYNAMIC`, `MKL_DYNAMIC` false). They are set in the environment the process *starts*
//! with: libgomp reads `OMP_*` when it is loaded, before `main`, so a process whose environment
//! is not pinned yet re-executes itself once with it pinned (same PID, arguments and open
//! descriptors). Cost: one `exec` at start-up and none per step (see the README's measurements).

use std::collections::BTreeMap;
use std::ffi::OsString;

/// Set in the environment of a process that re-executed itself to pin its numerics: never twice.
const PINNED_MARKER: &str = "STAGEWISE_NUMERICS_PINNED";

/// The environment a CPU run computes with, every variable oneMKL, libgomp and ATen read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pinned {
    /// Intra-op threads (ATen's, libgomp's and oneMKL's alike).
    pub threads: usize,
    /// oneMKL's conditional numerical reproducibility mode, e.g. `AVX512,STRICT`.
    pub mkl_cbwr: String,
}

impl Pinned {
    /// What this process should compute with, from its environment (`var`) and the machine:
    /// `STAGEWISE_THREADS` (which `--nproc` and `study --jobs` set per process), else
    /// `OMP_NUM_THREADS` (a user's or torchrun's), else the physical cores; `MKL_CBWR` when the
    /// user set it, else the widest branch the CPU runs, strictly.
    pub fn choose(var: impl Fn(&str) -> Option<String>, physical_cores: impl FnOnce() -> usize) -> Pinned {
        let count = |name: &str| var(name).and_then(|v| v.trim().parse::<usize>().ok()).filter(|&n| n > 0);
        let threads = count("STAGEWISE_THREADS").or_else(|| count("OMP_NUM_THREADS")).unwrap_or_else(physical_cores);
        let mkl_cbwr =
            var("MKL_CBWR").filter(|v| !v.trim().is_empty()).unwrap_or_else(|| format!("{},STRICT", mkl_branch()));
        Pinned { threads: threads.max(1), mkl_cbwr }
    }

    /// The variables to set, by name.
    pub fn environment(&self) -> BTreeMap<&'static str, String> {
        let n = self.threads.to_string();
        BTreeMap::from([
            ("OMP_NUM_THREADS", n.clone()),
            ("MKL_NUM_THREADS", n),
            ("OMP_DYNAMIC", "FALSE".to_string()),
            ("MKL_DYNAMIC", "FALSE".to_string()),
            ("MKL_CBWR", self.mkl_cbwr.clone()),
        ])
    }

    /// The variables whose value in `var` differs from what they must be.
    pub fn unpinned(&self, var: impl Fn(&str) -> Option<String>) -> Vec<&'static str> {
        self.environment()
            .into_iter()
            .filter(|(name, value)| var(name).as_deref() != Some(value))
            .map(|(n, _)| n)
            .collect()
    }
}

/// oneMKL's widest code branch this CPU runs (`MKL_CBWR`'s names): the one `AUTO` picks on an
/// Intel CPU, named so that no process can pick another.
pub fn mkl_branch() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        let avx512 = std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512dq")
            && std::arch::is_x86_feature_detected!("avx512vl");
        if avx512 {
            return "AVX512";
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            return "AVX2";
        }
        if std::arch::is_x86_feature_detected!("avx") {
            return "AVX";
        }
        if std::arch::is_x86_feature_detected!("sse4.2") {
            return "SSE4_2";
        }
    }
    "COMPATIBLE"
}

/// The physical cores this process may run on: distinct (package, core) pairs of the CPUs in its
/// affinity mask, from the kernel's topology (the same answer on whichever CPU it is asked);
/// the number of CPUs in the mask when the topology cannot be read.
pub fn physical_cores() -> usize {
    let cpus = affinity_cpus();
    let read = |cpu: usize, what: &str| {
        std::fs::read_to_string(format!("/sys/devices/system/cpu/cpu{cpu}/topology/{what}"))
            .ok()
            .map(|s| s.trim().to_string())
    };
    let cores: Option<std::collections::BTreeSet<(String, String)>> =
        cpus.iter().map(|&cpu| Some((read(cpu, "physical_package_id")?, read(cpu, "core_id")?))).collect();
    match cores {
        Some(cores) if !cores.is_empty() => cores.len(),
        _ => cpus.len().max(1),
    }
}

/// The CPUs in this process's affinity mask.
fn affinity_cpus() -> Vec<usize> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; sched_getaffinity fills it for pid 0 (us).
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) } == 0;
    if !ok {
        return (0..std::thread::available_parallelism().map_or(1, |n| n.get())).collect();
    }
    // SAFETY: CPU_ISSET reads the set filled above, for indices below its capacity.
    (0..libc::CPU_SETSIZE as usize).filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) }).collect()
}

/// First thing in `main`, before any torch call: make this process compute with its [`Pinned`]
/// numerics. When its environment does not hold them yet, it re-executes itself with them (and
/// does not return); when that fails, it says so once and goes on with ATen's thread count set
/// (the `OMP_*` that libgomp read at load time then stay as they were). Returns what it pinned.
pub fn pin_or_reexec() -> Pinned {
    let var = |name: &str| std::env::var(name).ok();
    let pinned = Pinned::choose(var, physical_cores);
    let unpinned = pinned.unpinned(var);
    if !unpinned.is_empty() && std::env::var_os(PINNED_MARKER).is_none() {
        let error = reexec(&pinned);
        eprintln!(
            "warning: could not restart with {} pinned ({error}); CPU results may differ in their last bits between processes",
            unpinned.join(", ")
        );
    }
    // ATen's own count, so that every thread that initialises its pool takes this one.
    tch::set_num_threads(pinned.threads as i32);
    pinned
}

/// Replace this process by itself with `pinned`'s environment; returns only on failure.
fn reexec(pinned: &Pinned) -> std::io::Error {
    use std::os::unix::process::CommandExt;
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => return e,
    };
    let mut args: Vec<OsString> = std::env::args_os().collect();
    let arg0 = if args.is_empty() { exe.clone().into_os_string() } else { args.remove(0) };
    std::process::Command::new(exe).arg0(arg0).args(args).envs(pinned.environment()).env(PINNED_MARKER, "1").exec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| pairs.iter().find(|(n, _)| *n == name).map(|(_, v)| v.to_string())
    }

    #[test]
    fn the_thread_count_is_ours_never_a_librarys() {
        assert_eq!(Pinned::choose(env(&[]), || 6).threads, 6);
        assert_eq!(Pinned::choose(env(&[("OMP_NUM_THREADS", "3")]), || 6).threads, 3);
        // --nproc and study --jobs set STAGEWISE_THREADS per process: it wins over an inherited OMP_NUM_THREADS.
        assert_eq!(Pinned::choose(env(&[("OMP_NUM_THREADS", "2"), ("STAGEWISE_THREADS", "1")]), || 6).threads, 1);
        assert_eq!(Pinned::choose(env(&[("STAGEWISE_THREADS", "zero"), ("OMP_NUM_THREADS", "0")]), || 4).threads, 4);
    }

    #[test]
    fn onemkl_runs_one_named_branch_strictly_unless_the_user_chose() {
        let auto = Pinned::choose(env(&[]), || 2);
        assert_eq!(auto.mkl_cbwr, format!("{},STRICT", mkl_branch()));
        assert!(!auto.mkl_cbwr.starts_with("AUTO"), "AUTO is oneMKL's choice per process");
        assert_eq!(Pinned::choose(env(&[("MKL_CBWR", "COMPATIBLE")]), || 2).mkl_cbwr, "COMPATIBLE");
    }

    #[test]
    fn a_pinned_environment_needs_no_restart_and_any_other_does() {
        let pinned = Pinned { threads: 2, mkl_cbwr: "AVX2,STRICT".into() };
        let full: Vec<(&str, String)> = pinned.environment().into_iter().collect();
        let pairs: Vec<(&str, &str)> = full.iter().map(|(n, v)| (*n, v.as_str())).collect();
        assert!(pinned.unpinned(env(&pairs)).is_empty());
        let mut dynamic = pairs.clone();
        dynamic.retain(|(n, _)| *n != "MKL_DYNAMIC");
        assert_eq!(pinned.unpinned(env(&dynamic)), vec!["MKL_DYNAMIC"]);
        assert_eq!(pinned.unpinned(env(&[])).len(), 5);
    }

    #[test]
    fn physical_cores_are_at_least_one_and_at_most_the_cpus_we_may_use() {
        let cores = physical_cores();
        assert!(cores >= 1 && cores <= affinity_cpus().len().max(1), "{cores}");
    }
}
