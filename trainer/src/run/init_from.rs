//! `train --init-from PATH`: a run that starts from pretrained weights instead of random ones, so
//! a released or earlier model can be grown (a 6-layer GPT-2 stacked into a 12-layer one).
//!
//! A source is a Hugging Face GPT-2 directory (`config.json` and `model.safetensors`, or
//! `pytorch_model.bin` in torch's zip format; our own `train export` writes one), or one of our
//! runs (its latest checkpoint) or checkpoint directories. It may be shallower than the model:
//! its blocks fill the first ones (and the schedule's first stage should train that many), the
//! embeddings and final norm come with it, deeper blocks keep their own initialisation. Width,
//! heads and vocabulary must match; the source's positions must cover the context. The weights'
//! names are Hugging Face's (ours are too), with or without the `transformer.` prefix; the
//! tied head and the attention mask buffers of old checkpoints are not parameters and are skipped.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use run_dir::{GptShape, InitSource, RunDir};
use tch::nn::VarStore;
use tch::Tensor;

/// A source's shape, from its `config.json` (or its run's `run.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceShape {
    pub layers: usize,
    pub d_model: usize,
    pub heads: usize,
    pub positions: usize,
    pub vocab: usize,
}

impl std::fmt::Display for SourceShape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} layers, d_model {}, {} heads, {} positions, vocabulary {}",
            self.layers, self.d_model, self.heads, self.positions, self.vocab
        )
    }
}

/// A source resolved: its weights file and shape.
#[derive(Debug, Clone)]
pub struct Source {
    pub weights: PathBuf,
    pub shape: SourceShape,
}

/// Where `path`'s weights and shape are: a Hugging Face directory, a run directory (its latest
/// checkpoint) or a checkpoint directory.
pub fn resolve(path: &Path) -> anyhow::Result<Source> {
    if !path.exists() {
        bail!("--init-from {}: no such file or directory", path.display());
    }
    if path.join("config.json").is_file() {
        let text = std::fs::read_to_string(path.join("config.json"))?;
        let config: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("--init-from {}: config.json is not JSON", path.display()))?;
        let get = |key: &str| -> anyhow::Result<usize> {
            config[key].as_u64().map(|v| v as usize).with_context(|| {
                format!("--init-from {}: config.json has no `{key}`; is it a GPT-2 checkpoint?", path.display())
            })
        };
        let shape = SourceShape {
            layers: get("n_layer")?,
            d_model: get("n_embd")?,
            heads: get("n_head")?,
            positions: get("n_positions")?,
            vocab: get("vocab_size")?,
        };
        let weights = ["model.safetensors", "pytorch_model.bin"].iter().map(|f| path.join(f)).find(|p| p.is_file());
        let weights = weights.with_context(|| {
            format!("--init-from {}: neither model.safetensors nor pytorch_model.bin is there", path.display())
        })?;
        return Ok(Source { weights, shape });
    }
    // One of our runs, or one of its checkpoints.
    let (run, checkpoint) = if path.join("run.json").is_file() {
        let run = RunDir::new(path);
        let latest = crate::run::checkpoint::list(&run).pop().map(|(_, dir)| dir);
        let dir = latest.with_context(|| format!("--init-from {}: the run has no checkpoint yet", path.display()))?;
        (run, dir)
    } else if path.join("model.safetensors").is_file() && path.join("state.json").is_file() {
        let run = path.parent().and_then(Path::parent).context("a checkpoint lies in <run>/checkpoints/")?;
        (RunDir::new(run), path.to_path_buf())
    } else {
        bail!(
            "--init-from {}: not a Hugging Face GPT-2 directory (config.json), a run (run.json) or a checkpoint",
            path.display()
        );
    };
    let header = run.read_header()?;
    let model = header.config.model;
    let layers = header
        .plan
        .step(crate::run::checkpoint::read_state(&checkpoint)?.step)
        .map_or(model.layers, |s| s.trainable.active_layers as usize);
    let shape = SourceShape {
        layers,
        d_model: model.d_model,
        heads: model.heads,
        positions: model.context,
        vocab: header.config.tokenizer.vocab_size(),
    };
    Ok(Source { weights: checkpoint.join("model.safetensors"), shape })
}

/// Refuse a source that cannot fill a model of `shape` with a tokenizer of `vocab` ids, naming
/// both shapes.
pub fn check(source: &Source, shape: GptShape, vocab: usize) -> anyhow::Result<()> {
    let s = source.shape;
    let fits = s.d_model == shape.d_model
        && s.heads == shape.heads
        && s.vocab == vocab
        && s.layers <= shape.layers
        && s.positions >= shape.context;
    if !fits {
        bail!(
            "--init-from {}: the source is {s}; the model is {} layers, d_model {}, {} heads, context {}, vocabulary {vocab}: width, heads and vocabulary must match, the source no deeper than the model and its positions at least the context",
            source.weights.display(),
            shape.layers,
            shape.d_model,
            shape.heads,
            shape.context
        );
    }
    Ok(())
}

/// The source's tensors by our names (Hugging Face's with the `transformer.` prefix).
fn tensors(weights: &Path) -> anyhow::Result<Vec<(String, Tensor)>> {
    let named = if weights.extension().is_some_and(|e| e == "safetensors") {
        Tensor::read_safetensors(weights).with_context(|| format!("reading {}", weights.display()))?
    } else {
        Tensor::loadz_multi(weights).with_context(|| {
            format!(
                "reading {} (torch's zip format; an older pickle cannot be read: save it as model.safetensors)",
                weights.display()
            )
        })?
    };
    Ok(named
        .into_iter()
        .filter(|(name, _)| {
            !name.ends_with(".attn.bias") && !name.ends_with(".attn.masked_bias") && name != "lm_head.weight"
        })
        .map(|(name, t)| match name.starts_with("transformer.") {
            true => (name, t),
            false => (format!("transformer.{name}"), t),
        })
        .collect())
}

/// The source at `path` checked against a model of `shape` with a tokenizer of `vocab` ids, as
/// the run records it (before anything is written: a bad source is bad input).
pub fn describe(path: &Path, shape: GptShape, vocab: usize) -> anyhow::Result<InitSource> {
    let source = resolve(path)?;
    check(&source, shape, vocab)?;
    let sha256 = crate::data::documents::file_sha256(&source.weights)?;
    Ok(InitSource { path: path.to_path_buf(), weights: source.weights, sha256, layers: source.shape.layers })
}

/// Copy the recorded source into `vs` (a model of the source's width, at least its depth): each
/// of its tensors into ours, the embeddings into their first rows (our padded vocabulary, the
/// source's positions beyond the context left out). A source whose file changed since the run
/// recorded it is refused.
pub fn load(source: &InitSource, vs: &VarStore) -> anyhow::Result<()> {
    let weights = &source.weights;
    let now = crate::data::documents::file_sha256(weights)?;
    if now != source.sha256 {
        bail!(
            "--init-from {}: {} changed since the run started (SHA-256 {} then, {now} now)",
            source.path.display(),
            weights.display(),
            source.sha256
        );
    }
    let ours = vs.variables();
    let theirs = tensors(weights)?;
    let expected = 4 + 12 * source.layers;
    if theirs.len() != expected {
        bail!(
            "--init-from {}: {} tensors, a GPT-2 of {} layers has {expected}",
            weights.display(),
            theirs.len(),
            source.layers
        );
    }
    tch::no_grad(|| {
        for (name, tensor) in &theirs {
            let Some(target) = ours.get(name) else {
                bail!("--init-from {}: `{name}` is not a parameter of a GPT-2 of this shape", weights.display());
            };
            let tensor = tensor.to_kind(target.kind()).to_device(target.device());
            let (theirs_shape, ours_shape) = (tensor.size(), target.size());
            if theirs_shape[1..] != ours_shape[1..] || (theirs_shape.len() == 1 && theirs_shape != ours_shape) {
                bail!("--init-from {}: `{name}` is {theirs_shape:?} there, {ours_shape:?} here", weights.display());
            }
            let rows = theirs_shape[0].min(ours_shape[0]);
            target.narrow(0, 0, rows).copy_(&tensor.narrow(0, 0, rows));
        }
        Ok(())
    })
}
