//! Export a checkpoint in Hugging Face's GPT-2 layout: `model.safetensors` (our parameter names
//! already are HF's) and `config.json`, loadable by `transformers.GPT2LMHeadModel`.
//!
//! Only what the checkpoint's step really uses is exported: the active blocks (`n_layer`), and the
//! tokenizer's vocabulary without the rows padded on for speed.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde_json::json;
use tch::nn::VarStore;
use tch::{Device, Tensor};

use run_dir::RunDir;

use crate::engine::model::Gpt;
use crate::run::checkpoint;

/// Export the checkpoint of `step` (the latest when `None`) to `<run_dir>/export/`.
pub fn export(run_dir: &Path, step: Option<u64>) -> anyhow::Result<PathBuf> {
    let run = RunDir::new(run_dir);
    let info = run.read_header()?;
    let checkpoints = checkpoint::list(&run);
    let (step, dir) = match step {
        Some(s) => checkpoints.into_iter().find(|(c, _)| *c == s).with_context(|| {
            format!("{}: no checkpoint of step {s}; see {}/checkpoints/", run_dir.display(), run_dir.display())
        })?,
        None => checkpoints
            .into_iter()
            .last()
            .with_context(|| format!("{}: no checkpoint to export yet", run_dir.display()))?,
    };
    let config = info.config.model;
    let mut vs = VarStore::new(Device::Cpu);
    let _model = Gpt::new(&vs, config);
    checkpoint::load_model(&dir, &mut vs)?;
    let active = info.plan.step(step).map_or(config.layers, |s| s.trainable.active_layers as usize);
    let vocab = info.config.tokenizer.vocab_size() as i64;

    let mut tensors: Vec<(String, Tensor)> = Vec::new();
    for (name, tensor) in vs.variables() {
        let block =
            name.strip_prefix("transformer.h.").and_then(|r| r.split('.').next()).and_then(|i| i.parse::<usize>().ok());
        if block.is_some_and(|b| b >= active) {
            continue;
        }
        let tensor = if name == "transformer.wte.weight" { tensor.narrow(0, 0, vocab) } else { tensor };
        tensors.push((name, tensor.contiguous()));
    }
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    if tensors.is_empty() {
        bail!("{}: checkpoint holds no parameters", dir.display());
    }

    let out = run.export_dir();
    let tmp = run_dir.join(format!(".export-tmp-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    Tensor::write_safetensors(&tensors, tmp.join("model.safetensors"))?;
    let eot = info.config.tokenizer.eot();
    let hf_config = json!({
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": vocab,
        "n_positions": config.context,
        "n_ctx": config.context,
        "n_embd": config.d_model,
        "n_layer": active,
        "n_head": config.heads,
        "n_inner": null,
        "activation_function": "gelu_new",
        "resid_pdrop": 0.0,
        "embd_pdrop": 0.0,
        "attn_pdrop": 0.0,
        "layer_norm_epsilon": 1e-5,
        "initializer_range": 0.02,
        "bos_token_id": eot,
        "eos_token_id": eot,
        "tie_word_embeddings": true,
        "torch_dtype": "float32",
        "stagewise": { "run": info.name, "step": step, "tokenizer": info.config.tokenizer.name() },
    });
    // Inside the temp directory, which is renamed into place whole.
    std::fs::write(tmp.join("config.json"), serde_json::to_string_pretty(&hf_config)?)?;
    if out.exists() {
        std::fs::remove_dir_all(&out).with_context(|| format!("replacing {}", out.display()))?;
    }
    std::fs::rename(&tmp, &out)?;
    Ok(out)
}
