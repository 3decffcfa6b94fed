//! What the `train` binary runs, one function per command; `src/bin/train/` only parses the
//! arguments (clap) and calls these. Every error that means "fix your input" exits 2 with one
//! line naming the fix ([`classify`]).

mod data;
mod study;

pub use data::{data, download_hellaswag, print_bpe, Data, Source};
pub use study::{study, study_design, worker_gpus, DataNeed, Study, StudyMode};

use std::path::{Path, PathBuf};

use cost_model::{ComputeUnit, PlanError};
use run_dir::{ScheduleSpec, TrainConfig};
use stagewise_cli::CliError;

use crate::error::BadInput;
use crate::run::options::TrainOptions;
use crate::run::trainer::{self, TrainSummary};

/// Errors that mean "fix your input" exit 2; a schedule the cost model rejects names the flag
/// that sets the field it is about.
pub fn classify(e: anyhow::Error) -> CliError {
    let Some(BadInput(inner)) = e.downcast_ref::<BadInput>() else {
        return CliError::from(e);
    };
    match inner.chain().find_map(|c| c.downcast_ref::<PlanError>()) {
        Some(plan) => CliError::bad_input(anyhow::anyhow!("{e}; set {}", flag_of(plan.field()))),
        None => CliError::bad_input(e),
    }
}

/// The `train` flag for a field of the model or schedule.
pub fn flag_of(field: &str) -> String {
    match field {
        "base_steps" => "--set steps=N".into(),
        "layers" | "d_model" | "context" | "vocab" | "heads" => format!("--set model.{field}=N"),
        "tokens_per_step" => "--set tokens_per_step=N".into(),
        schedule_field => format!("--{}", schedule_field.replace('_', "-")),
    }
}

/// A configuration: the preset, then each `key=value` assignment in order. The one route from
/// the command line to a configuration: `--set` and every flag that sets a config key (`--seed`,
/// `--on-nan`, `--cooldown-budgets`, ...) arrive here as assignments.
pub fn config_from(preset: &str, assignments: &[String]) -> Result<TrainConfig, CliError> {
    let mut config = TrainConfig::preset(preset).map_err(CliError::bad_input)?;
    for assignment in assignments {
        config.set(assignment).map_err(CliError::bad_input)?;
    }
    Ok(config)
}

/// What `train` (without a subcommand) is asked to do.
pub enum Train {
    /// A new run `name` in `runs_dir`.
    Start { config: Box<TrainConfig>, schedule: Box<ScheduleSpec>, runs_dir: PathBuf, name: Option<String> },
    /// Continue the run in this directory.
    Resume(PathBuf),
}

/// Train; returns what the run ended with. Under torchrun's `--max-restarts`, a restarted attempt
/// reruns the first attempt's command: a named run resumes from its last checkpoint; an unnamed
/// one would get a new timestamped name, so it says so.
pub fn train(request: Train, options: &TrainOptions) -> Result<TrainSummary, CliError> {
    let (config, schedule, runs_dir, name) = match request {
        Train::Resume(run_dir) => return trainer::resume(&run_dir, options).map_err(classify),
        Train::Start { config, schedule, runs_dir, name } => (config, schedule, runs_dir, name),
    };
    let named = name.is_some();
    let name = name.unwrap_or_else(|| {
        format!("{}-{}-{}", config.preset, schedule.name(), chrono::Utc::now().format("%Y%m%d-%H%M%S"))
    });
    if name.is_empty() || name.contains('/') {
        return Err(CliError::bad_input(anyhow::anyhow!(
            "--run {name:?}: a run name is one directory name, without '/'"
        )));
    }
    let run_dir = runs_dir.join(&name);
    let attempt = crate::world::restart_attempt(|v| std::env::var(v).ok()).map_err(CliError::bad_input)?;
    if attempt > 0 && !named && options.world.is_main() {
        eprintln!("torchrun restart {attempt}: without --run (or --run-name) this starts a new run; name the run to resume it after a restart");
    }
    match (attempt, named) {
        (0, _) | (_, false) => trainer::start(&run_dir, *config, *schedule, options),
        (_, true) => trainer::start_or_resume(&run_dir, *config, *schedule, options, attempt),
    }
    .map_err(classify)
}

/// `train cooldown`: the run's cooldown branch at `budget`, trained.
pub fn cooldown(run: &Path, budget: f64, unit: ComputeUnit, options: &TrainOptions) -> Result<TrainSummary, CliError> {
    trainer::cooldown(run, budget, unit, options).map_err(classify)
}

/// `train export`: a checkpoint in Hugging Face GPT-2 layout.
pub fn export(run: &Path, step: Option<u64>) -> Result<(), CliError> {
    let out = crate::jobs::export::export(run, step).map_err(CliError::bad_input)?;
    println!("exported to {}", out.display());
    Ok(())
}

/// Commands that run in one process: `--nproc N` with N > 1 is refused for them, naming why.
pub fn check_nproc(nproc: usize, one_process: Option<&str>) -> Result<(), CliError> {
    if nproc == 0 {
        return Err(CliError::bad_input(anyhow::anyhow!(
            "--nproc 0: give the number of local ranks to start (1 or more)"
        )));
    }
    match one_process.filter(|_| nproc > 1) {
        Some(command) => {
            Err(CliError::bad_input(anyhow::anyhow!("{command} runs in one process; drop --nproc {nproc}")))
        }
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_errors_name_trains_flags() {
        assert_eq!(flag_of("base_steps"), "--set steps=N");
        assert_eq!(flag_of("d_model"), "--set model.d_model=N");
        assert_eq!(flag_of("phase1_share"), "--phase1-share");
        let e = crate::error::bad_input(anyhow::Error::new(PlanError::NoBaseSteps));
        let cli = classify(e);
        assert_eq!(cli.exit_code, stagewise_cli::EXIT_BAD_INPUT);
        assert!(cli.error.to_string().ends_with("set --set steps=N"), "{}", cli.error);
        assert_eq!(classify(anyhow::anyhow!("disk on fire")).exit_code, stagewise_cli::EXIT_FAILURE);
    }

    #[test]
    fn every_flag_reaches_the_config_as_an_assignment() {
        let config =
            config_from("tiny", &["seed=7".into(), "on_nan=skip".into(), "cooldown_budgets=[0.5,1]".into()]).unwrap();
        assert_eq!(
            (config.seed, config.on_nan, config.cooldown_budgets.clone()),
            (7, run_dir::config::OnNan::Skip, vec![0.5, 1.0])
        );
        assert_eq!(config_from("huge", &[]).unwrap_err().exit_code, stagewise_cli::EXIT_BAD_INPUT);
        assert!(config_from("tiny", &["model.depth=3".into()]).is_err());
    }

    #[test]
    fn single_process_commands_refuse_ranks() {
        assert!(check_nproc(2, Some("train data")).unwrap_err().error.to_string().contains("drop --nproc 2"));
        assert!(check_nproc(0, None).is_err());
        assert!(check_nproc(1, Some("train data")).is_ok() && check_nproc(4, None).is_ok());
    }
}
