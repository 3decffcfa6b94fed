//! Training configuration: presets, `--set key=value` overrides, and validation.
//!
//! The resolved configuration is saved in `run.json`, so a run can always be resumed or repeated
//! from its own directory.

use std::path::PathBuf;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::data::TokenizerKind;
use crate::model::GptConfig;
use crate::optim::{AdamWConfig, LrSchedule};

/// How the learning rate moves (the numbers are in [`TrainConfig`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LrKind {
    /// `lr_max` every step (the reference code).
    Constant,
    /// Linear warmup over `warmup_steps`, cosine to `lr_min` at the run's last step.
    Cosine,
}

/// What to do when a step's loss or gradient norm is not finite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum OnNan {
    /// Stop before the update, naming the step; the last good checkpoint stays as it is.
    #[default]
    Stop,
    /// Skip the update for this batch and go on (the step still counts).
    Skip,
}

/// Everything a training run needs to know. Field names are the `--set` keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// The preset this configuration started from.
    pub preset: String,
    pub model: GptConfig,
    pub tokenizer: TokenizerKind,
    /// Directory of token shards (`just data` writes them).
    pub data_dir: PathBuf,
    /// Sequences per forward/backward pass.
    pub micro_batch: usize,
    /// Tokens per optimizer step; a multiple of `micro_batch × context` (the rest is accumulation).
    pub tokens_per_step: usize,
    /// Steps of the baseline run: its compute is the budget incremental runs are held to.
    pub steps: u64,
    pub lr_schedule: LrKind,
    pub lr_max: f64,
    pub lr_min: f64,
    pub warmup_steps: u64,
    pub adamw: AdamWConfig,
    /// Clip the global gradient norm to this value; `null` for no clipping (the reference code).
    pub grad_clip: Option<f64>,
    /// Validation loss every this many steps (and at the last step); 0 turns it off.
    pub val_every: u64,
    /// Micro-batches of the fixed validation slice at the start of the val shard.
    pub val_batches: usize,
    /// Checkpoint every this many steps (and at the last step); 0 keeps only the final one.
    pub checkpoint_every: u64,
    /// bf16 autocast on CUDA (CPU always trains in fp32).
    pub bf16: bool,
    /// TF32 for fp32 matmuls on CUDA (`torch.backends.cuda.matmul.allow_tf32`); no effect on CPU.
    #[serde(default = "default_tf32")]
    pub tf32: bool,
    /// Training loss: 0 = PyTorch's `cross_entropy` differentiated by autograd (what runs made
    /// before this key existed used); N > 0 = the gradient made in the forward pass, N tokens at a
    /// time (less memory traffic, fp32 only for one chunk; see `trainer::loss`).
    #[serde(default)]
    pub loss_chunk_tokens: usize,
    pub seed: u64,
    /// HellaSwag validation file (official jsonl format) to evaluate on; `null` for none.
    #[serde(default)]
    pub hellaswag: Option<PathBuf>,
    /// HellaSwag every this many steps (and at the last step); 0 = only at the last step.
    #[serde(default)]
    pub hellaswag_every: u64,
    /// Evaluate on the first this many examples only; `null` for all.
    #[serde(default)]
    pub hellaswag_limit: Option<usize>,
    /// A non-finite loss or gradient norm: `stop` (default) or `skip` the batch.
    #[serde(default)]
    pub on_nan: OnNan,
}

/// Run configurations written before `tf32` existed ran with PyTorch's default on CUDA: TF32
/// off. Presets other than `paper` turn it on, as build-nanogpt's
/// `torch.set_float32_matmul_precision('high')` and the PyTorch anchor benchmark do.
fn default_tf32() -> bool {
    false
}

/// Names of the presets, for help texts and errors.
pub const PRESETS: [&str; 3] = ["tiny", "gpt2-124m", "paper"];

impl TrainConfig {
    /// A named preset.
    ///
    /// - `tiny`: CPU-sized, byte-level GPT-2 with the full 12 layers, so every incremental schedule
    ///   (4, 8, 12 stages) runs; d = 64, 4 heads, context 64, 16 sequences (1,024 tokens) a step.
    /// - `gpt2-124m`: our GPU defaults: bf16, warmup + cosine 6e-4 → 6e-5, clipping at 1.0,
    ///   524,288 tokens a step as 16×1024 micro-batches with 32 accumulation steps.
    /// - `paper`: exactly the reference code: fp32 (no TF32), constant lr 6e-4, no clipping, micro-batch 32,
    ///   16 accumulation steps, validation every 250 steps on 20 micro-batches.
    pub fn preset(name: &str) -> anyhow::Result<TrainConfig> {
        let gpt2 = GptConfig { layers: 12, heads: 12, d_model: 768, context: 1024, vocab: 50_304 };
        let base = TrainConfig {
            preset: name.to_string(),
            model: gpt2,
            tokenizer: TokenizerKind::Gpt2,
            data_dir: PathBuf::from("data/edufineweb"),
            micro_batch: 16,
            tokens_per_step: 524_288,
            steps: 10_000,
            lr_schedule: LrKind::Cosine,
            lr_max: 6e-4,
            lr_min: 6e-5,
            warmup_steps: 715,
            adamw: AdamWConfig::default(),
            grad_clip: Some(1.0),
            val_every: 250,
            val_batches: 20,
            checkpoint_every: 1000,
            bf16: true,
            tf32: true,
            loss_chunk_tokens: 1024,
            seed: 1337,
            hellaswag: None,
            hellaswag_every: 250,
            hellaswag_limit: None,
            on_nan: OnNan::Stop,
        };
        Ok(match name {
            "tiny" => TrainConfig {
                model: GptConfig {
                    layers: 12,
                    heads: 4,
                    d_model: 64,
                    context: 64,
                    vocab: TokenizerKind::Bytes.padded_vocab_size(),
                },
                tokenizer: TokenizerKind::Bytes,
                data_dir: PathBuf::from("data/corpus-bytes"),
                micro_batch: 16,
                tokens_per_step: 1024,
                steps: 1000,
                lr_max: 2e-3,
                lr_min: 2e-4,
                warmup_steps: 50,
                val_every: 100,
                val_batches: 8,
                checkpoint_every: 250,
                bf16: false,
                hellaswag_every: 100,
                ..base
            },
            "gpt2-124m" => base,
            "paper" => TrainConfig {
                micro_batch: 32,
                lr_schedule: LrKind::Constant,
                grad_clip: None,
                bf16: false,
                tf32: false,
                ..base
            },
            other => bail!("unknown preset `{other}`; choose one of {}", PRESETS.join(", ")),
        })
    }

    /// Apply `key=value` (dotted keys reach nested fields: `model.d_model=128`, `adamw.beta2=0.99`).
    /// The value is read as JSON when it parses (numbers, `true`, `null`), else as a string.
    pub fn set(&mut self, assignment: &str) -> anyhow::Result<()> {
        let (key, raw) = assignment
            .split_once('=')
            .with_context(|| format!("--set {assignment}: expected key=value, e.g. --set steps=200"))?;
        let mut root = serde_json::to_value(&*self)?;
        let mut slot = &mut root;
        for part in key.split('.') {
            let keys = slot.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>().join(", ")).unwrap_or_default();
            slot = slot
                .get_mut(part)
                .with_context(|| format!("--set {assignment}: unknown key `{key}`; valid keys here: {keys}"))?;
        }
        *slot = serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_string()));
        *self = serde_json::from_value(root).with_context(|| format!("--set {assignment}: wrong type for `{key}`"))?;
        Ok(())
    }

    /// The learning-rate schedule over a run of `total_steps` steps.
    pub fn lr(&self, total_steps: u64) -> LrSchedule {
        match self.lr_schedule {
            LrKind::Constant => LrSchedule::Constant { lr: self.lr_max },
            LrKind::Cosine => LrSchedule::WarmupCosine {
                lr_max: self.lr_max,
                lr_min: self.lr_min,
                warmup_steps: self.warmup_steps,
                decay_steps: total_steps,
            },
        }
    }

    /// Reject values that cannot train; each message names the key and what to set it to.
    pub fn validate(&self) -> anyhow::Result<()> {
        let m = &self.model;
        let positive = [
            ("model.layers", m.layers),
            ("model.heads", m.heads),
            ("model.d_model", m.d_model),
            ("model.context", m.context),
            ("model.vocab", m.vocab),
            ("micro_batch", self.micro_batch),
            ("tokens_per_step", self.tokens_per_step),
        ];
        for (key, value) in positive {
            if value == 0 {
                bail!("{key} = 0: must be positive");
            }
        }
        if m.d_model % m.heads != 0 {
            bail!("model.d_model = {} is not divisible by model.heads = {}", m.d_model, m.heads);
        }
        if m.vocab < self.tokenizer.vocab_size() {
            bail!(
                "model.vocab = {} is smaller than the {} tokenizer's {} tokens; set model.vocab={}",
                m.vocab,
                self.tokenizer.name(),
                self.tokenizer.vocab_size(),
                self.tokenizer.padded_vocab_size()
            );
        }
        let per_micro = self.micro_batch * m.context;
        if self.tokens_per_step % per_micro != 0 {
            bail!(
                "tokens_per_step = {} is not a multiple of micro_batch × context = {per_micro}; set tokens_per_step={}",
                self.tokens_per_step,
                per_micro * (self.tokens_per_step / per_micro).max(1)
            );
        }
        if self.steps == 0 {
            bail!("steps = 0: a run needs at least one step");
        }
        for (key, value) in [("lr_max", self.lr_max), ("lr_min", self.lr_min)] {
            if !(value.is_finite() && value >= 0.0) {
                bail!("{key} = {value}: must be a finite number >= 0");
            }
        }
        let a = &self.adamw;
        if !(0.0..1.0).contains(&a.beta1) || !(0.0..1.0).contains(&a.beta2) {
            bail!("adamw betas ({}, {}) must be in [0, 1)", a.beta1, a.beta2);
        }
        if a.eps.is_nan() || a.eps <= 0.0 || a.weight_decay.is_nan() || a.weight_decay < 0.0 {
            bail!("adamw.eps must be > 0 and adamw.weight_decay >= 0");
        }
        if let Some(clip) = self.grad_clip {
            if clip.is_nan() || clip <= 0.0 {
                bail!("grad_clip = {clip}: must be > 0, or null for no clipping");
            }
        }
        if self.val_every > 0 && self.val_batches == 0 {
            bail!("val_batches = 0 with val_every = {}: set val_batches >= 1 or val_every=0", self.val_every);
        }
        Ok(())
    }

    /// The cost model's view of this model's shape.
    pub fn model_shape(&self) -> cost_model::ModelShape {
        cost_model::ModelShape {
            layers: self.model.layers as u32,
            d_model: self.model.d_model as u64,
            context: self.model.context as u64,
            vocab: self.model.vocab as u64,
            tokens_per_step: self.tokens_per_step as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_valid() {
        for name in PRESETS {
            TrainConfig::preset(name).unwrap().validate().unwrap();
        }
        let paper = TrainConfig::preset("paper").unwrap();
        let plan = crate::schedule::ScheduleSpec::Baseline.plan(&paper).unwrap();
        assert_eq!(crate::train::micro_batch_shape(&paper, &plan.segments[0]).unwrap(), (32, 16));
        assert_eq!(paper.grad_clip, None);
        assert!(TrainConfig::preset("huge").is_err());
    }

    #[test]
    fn set_overrides_nested_keys_and_rejects_unknown_ones() {
        let mut c = TrainConfig::preset("tiny").unwrap();
        c.set("model.d_model=128").unwrap();
        c.set("grad_clip=null").unwrap();
        c.set("data_dir=elsewhere").unwrap();
        c.set("adamw.beta2=0.99").unwrap();
        assert_eq!((c.model.d_model, c.grad_clip, c.adamw.beta2), (128, None, 0.99));
        assert_eq!(c.data_dir, PathBuf::from("elsewhere"));
        assert!(c.set("model.depth=3").unwrap_err().to_string().contains("unknown key `model.depth`"));
        assert!(c.set("steps=many").is_err());
        assert!(c.set("steps").is_err());
    }

    #[test]
    fn configs_saved_before_the_speed_keys_resume_as_they_ran() {
        // run.json written before `tf32` and `loss_chunk_tokens` existed: TF32 off and PyTorch's
        // cross_entropy, which is what those runs used.
        let mut old = serde_json::to_value(TrainConfig::preset("gpt2-124m").unwrap()).unwrap();
        let fields = old.as_object_mut().unwrap();
        fields.remove("tf32");
        fields.remove("loss_chunk_tokens");
        let c: TrainConfig = serde_json::from_value(old).unwrap();
        assert!(!c.tf32);
        assert_eq!(c.loss_chunk_tokens, 0);
        let new = TrainConfig::preset("gpt2-124m").unwrap();
        assert!(new.tf32 && new.loss_chunk_tokens == 1024);
        assert!(!TrainConfig::preset("paper").unwrap().tf32);
    }

    #[test]
    fn validation_names_the_key() {
        let mut c = TrainConfig::preset("tiny").unwrap();
        c.set("tokens_per_step=1000").unwrap();
        assert!(c.validate().unwrap_err().to_string().contains("tokens_per_step"));
        let mut c = TrainConfig::preset("tiny").unwrap();
        c.set("model.heads=3").unwrap();
        assert!(c.validate().unwrap_err().to_string().contains("model.heads"));
    }
}
