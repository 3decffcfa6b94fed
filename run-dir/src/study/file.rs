//! A design file (`studies/*.toml`): its format and upgrades, the typed `[config]` table
//! flattened into `TrainConfig::set` assignments, and the measured throughput its estimate uses.

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use super::{StudyDesign, BUILTIN_DESIGNS};
use crate::TrainConfig;

/// A design file (`studies/*.toml`): the design, and where its runs go by default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StudyFile {
    /// The runs directory (`train study --runs-dir` overrides it); its parent gets the report.
    pub runs_dir: std::path::PathBuf,
    /// Runs trained at once (`train study --jobs` overrides it): processes sharing the machine
    /// (on a CPU each gets its share of the cores).
    #[serde(default = "one_job")]
    pub jobs: usize,
    /// GPUs each run trains on, data parallel (a CUDA design; `--jobs` workers each take their
    /// own group of this many of the visible GPUs).
    #[serde(default = "one_job", skip_serializing_if = "is_one")]
    pub gpus_per_run: usize,
    /// A measured training rate of this design's shape, for the device-hours `--plan` prints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throughput: Option<Throughput>,
    /// Every run's config over the preset's (`[config]`, `run.json`'s keys): moved into the
    /// design's `overrides`, before the listed ones, when the file is read (empty after).
    #[serde(default, skip_serializing_if = "ConfigTable::is_empty")]
    pub config: ConfigTable,
    #[serde(flatten)]
    pub design: StudyDesign,
}

/// A config as a typed TOML table: `run.json`'s `config` keys, nested tables (or dotted keys)
/// for nested ones (`model.d_model = 16`), in the order written. It is set through the one route
/// a `--set key=value` takes ([`TrainConfig::set`]): [`ConfigTable::assignments`]. A value TOML
/// cannot write (`null`) stays an override (`overrides = ["grad_clip=null"]`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ConfigTable(toml::Table);

impl ConfigTable {
    /// True when the table sets nothing.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The table as `key=value` assignments in the order written: nested tables as dotted keys;
    /// values as `--set` reads them (JSON, a string as itself unless it would read as JSON).
    /// Each must set a config of `preset`: an unknown key or a wrong type is named here.
    pub fn assignments(&self, preset: &str) -> anyhow::Result<Vec<String>> {
        let mut out = Vec::new();
        flatten("", &self.0, &mut out)?;
        let mut config = TrainConfig::preset(preset)?;
        for assignment in &out {
            config.set(assignment)?;
        }
        Ok(out)
    }
}

/// The assignments of `table`'s keys under `prefix`, into `out`.
fn flatten(prefix: &str, table: &toml::Table, out: &mut Vec<String>) -> anyhow::Result<()> {
    for (key, value) in table {
        let key = format!("{prefix}{key}");
        let text = match value {
            toml::Value::Table(nested) => {
                flatten(&format!("{key}."), nested, out)?;
                continue;
            }
            toml::Value::String(s) if serde_json::from_str::<serde_json::Value>(s).is_err() => s.clone(),
            toml::Value::Float(x) if !x.is_finite() => bail!("{key} = {x}: give a finite number"),
            toml::Value::Datetime(_) => bail!("{key} = {value}: no config key takes a date"),
            other => serde_json::to_string(other)?,
        };
        out.push(format!("{key}={text}"));
    }
    Ok(())
}

/// A measured rate of training FLOPs (the cost model's count) on a device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Throughput {
    /// The device, e.g. `H200`.
    pub device: String,
    pub flops_per_second: f64,
    /// Where the number was measured (a committed bench file and what in it).
    pub source: String,
}

fn one_job() -> usize {
    1
}

fn is_one(n: &usize) -> bool {
    *n == 1
}

impl StudyFile {
    /// The design `name` names: a built-in one (`cpu`, `quick`, `paper`, `gpu`, `gpu-pilot`), else a
    /// TOML file at that path; read and validated.
    pub fn load(name: &str) -> anyhow::Result<StudyFile> {
        let (text, origin) = match BUILTIN_DESIGNS.iter().find(|(n, _)| *n == name) {
            Some((_, text)) => (text.to_string(), format!("the built-in design {name}")),
            None => {
                let text = std::fs::read_to_string(name).with_context(|| {
                    let names: Vec<&str> = BUILTIN_DESIGNS.iter().map(|(n, _)| *n).collect();
                    format!("--design {name}: neither a built-in design ({}) nor a readable file", names.join(", "))
                })?;
                (text, name.to_string())
            }
        };
        StudyFile::parse(&text).with_context(|| origin)
    }

    /// A design file's text, validated.
    pub fn parse(text: &str) -> anyhow::Result<StudyFile> {
        let mut file: StudyFile = toml::from_str(text).map_err(|e| anyhow::anyhow!("{}", e.to_string().trim()))?;
        if file.design.format == 4 {
            file.design.upgrade_v4();
        }
        // The typed tables go first, as overrides: one route into the config, as `--set`.
        let preset = &file.design.preset;
        let config = std::mem::take(&mut file.config).assignments(preset).context("[config]")?;
        file.design.overrides.splice(0..0, config);
        for arm in file.design.arms.iter_mut().chain(file.design.ablations.iter_mut()) {
            let config = std::mem::take(&mut arm.config).assignments(preset);
            arm.overrides.splice(0..0, config.with_context(|| format!("arm {}: config", arm.name))?);
        }
        file.design.expand_methods()?;
        file.design.validate()?;
        if file.jobs == 0 {
            bail!("jobs = 0: at least one run at a time");
        }
        if let Some(t) =
            file.throughput.as_ref().filter(|t| !(t.flops_per_second.is_finite() && t.flops_per_second > 0.0))
        {
            bail!("throughput.flops_per_second = {}: a measured positive rate", t.flops_per_second);
        }
        file.design.normalise();
        Ok(file)
    }
}
