//! Training configuration: presets, `--set key=value` overrides, and validation.
//!
//! The resolved configuration is saved in `run.json`, so a run can always be resumed or repeated
//! from its own directory. Field names are the `--set` keys.

use std::num::NonZeroUsize;
use std::path::PathBuf;

use anyhow::{bail, Context};
use cost_model::lr::{DecayShape, LrCurve};
use cost_model::{ComputeUnit, Plan, Segment};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The shape of a GPT-2 model: the cost model's type, one from `cost` to `train` (`model` here).
pub use cost_model::ModelShape as GptShape;

/// Which tokenizer a dataset and model use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum TokenizerKind {
    /// GPT-2 BPE, 50,257 tokens, `<|endoftext|>` = 50256.
    Gpt2,
    /// One token per byte, 256 + end-of-text = 257 tokens.
    Bytes,
}

impl TokenizerKind {
    /// Number of distinct token ids.
    pub fn vocab_size(self) -> usize {
        match self {
            TokenizerKind::Gpt2 => 50_257,
            TokenizerKind::Bytes => 257,
        }
    }

    /// The end-of-text id placed before every document.
    pub fn eot(self) -> u16 {
        match self {
            TokenizerKind::Gpt2 => 50_256,
            TokenizerKind::Bytes => 256,
        }
    }

    /// The vocabulary the model's embedding uses: padded up to a multiple of 64 for fast matmuls
    /// (50,257 → 50,304 as in build-nanogpt; 257 → 320).
    pub fn padded_vocab_size(self) -> usize {
        self.vocab_size().div_ceil(64) * 64
    }

    /// Name used in file names and logs.
    pub fn name(self) -> &'static str {
        match self {
            TokenizerKind::Gpt2 => "gpt2",
            TokenizerKind::Bytes => "bytes",
        }
    }
}

/// AdamW's hyperparameters (the learning rate comes per step from the [`LrSchedule`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    /// The reference code's: betas (0.9, 0.95), eps 1e-8, weight decay 0.1.
    fn default() -> Self {
        AdamWConfig { beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: 0.1 }
    }
}

/// How the learning rate moves (the numbers are in [`TrainConfig`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LrKind {
    /// `lr_max` every step (the reference code).
    Constant,
    /// Linear warmup over `warmup_steps`, cosine to `lr_min` at the run's last step.
    Cosine,
    /// Warmup-stable-decay: warmup, `lr_max` held, then the last `cooldown_fraction` of the run's
    /// steps decay (`decay_shape`) to `lr_min`. Runs can be cooled down at any budget.
    Wsd,
}

/// What a WSD run's `cooldown_fraction` is a share of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum CooldownOf {
    /// The run's steps (runs before format 5: absent from their `run.json`).
    #[default]
    Steps,
    /// The run's FLOPs: the decay starts where the run has spent `1 − cooldown_fraction` of its
    /// compute, so every arm anneals over the same share of its compute (a growing run's early
    /// steps are cheap: the last 20% of its steps are more than 20% of its FLOPs).
    Flops,
}

impl CooldownOf {
    fn is_steps(&self) -> bool {
        *self == CooldownOf::Steps
    }
}

/// Which attention kernel `scaled_dot_product_attention` may use on CUDA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum SdpaBackend {
    /// PyTorch's choice (flash attention for bf16 on a Hopper GPU).
    #[default]
    Auto,
    Flash,
    Efficient,
    Cudnn,
    Math,
}

impl SdpaBackend {
    fn is_auto(&self) -> bool {
        *self == SdpaBackend::Auto
    }
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

/// How the training loss and its gradient are computed. Both give the same function (to float
/// rounding); they differ in speed and memory.
///
/// Written in `run.json` and `--set` as `"cross_entropy"` or `"chunked:<tokens>"` (the old key
/// `--set loss_chunk_tokens=N` still works: 0 = cross_entropy, N = chunked:N).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum LossKernel {
    /// PyTorch's `cross_entropy`, differentiated by autograd.
    CrossEntropy,
    /// The logits' gradient made in the forward pass, this many tokens at a time, and written over
    /// the logits (see `trainer::loss`): less memory traffic, fp32 only for one chunk.
    Chunked { tokens: NonZeroUsize },
}

impl TryFrom<String> for LossKernel {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        text.parse()
    }
}

impl std::str::FromStr for LossKernel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("loss kernel `{s}`: expected cross_entropy or chunked:<tokens>, e.g. chunked:1024");
        if s == "cross_entropy" {
            return Ok(LossKernel::CrossEntropy);
        }
        let tokens = s.strip_prefix("chunked:").ok_or_else(bad)?.parse::<NonZeroUsize>().map_err(|_| bad())?;
        Ok(LossKernel::Chunked { tokens })
    }
}

impl From<LossKernel> for String {
    fn from(kernel: LossKernel) -> String {
        match kernel {
            LossKernel::CrossEntropy => "cross_entropy".into(),
            LossKernel::Chunked { tokens } => format!("chunked:{tokens}"),
        }
    }
}

impl LossKernel {
    /// The kernel an old `loss_chunk_tokens` value meant: 0 = PyTorch's cross_entropy.
    pub fn from_chunk_tokens(tokens: usize) -> LossKernel {
        match NonZeroUsize::new(tokens) {
            None => LossKernel::CrossEntropy,
            Some(tokens) => LossKernel::Chunked { tokens },
        }
    }
}

/// How each micro-batch of a segment is shaped: rows of the segment's context, and how many
/// micro-batches one optimizer step accumulates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MicroBatches {
    /// Sequences per micro-batch.
    pub rows: usize,
    /// Micro-batches per optimizer step.
    pub per_step: usize,
}

/// Everything a training run needs to know. Field names are the `--set` keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// The preset this configuration started from.
    pub preset: String,
    pub model: GptShape,
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
    /// WSD: share of a run's (or cooldown branch's) steps, or FLOPs (`cooldown_fraction_of`),
    /// spent decaying to `lr_min` (0.2).
    pub cooldown_fraction: f64,
    /// WSD: what `cooldown_fraction` is a share of: `flops` (the fair protocol: equal annealing in
    /// compute for every arm) or `steps`. Absent from `run.json` at `steps`.
    #[serde(default, skip_serializing_if = "CooldownOf::is_steps")]
    pub cooldown_fraction_of: CooldownOf,
    /// WSD: `1-sqrt` or `linear`.
    pub decay_shape: DecayShape,
    /// Budgets (multiples of the plan's baseline budget, in `cooldown_unit`) that cooldown branches
    /// will be taken at: the run saves a checkpoint at each branch point `K`. Empty: none.
    pub cooldown_budgets: Vec<f64>,
    /// Unit of `cooldown_budgets`: `flops`, `paper_units` or `tokens`.
    pub cooldown_unit: ComputeUnit,
    pub adamw: AdamWConfig,
    /// Clip the global gradient norm to this value; `null` for no clipping (the reference code).
    pub grad_clip: Option<f64>,
    /// Validation loss every this many steps (and at the last step); 0 turns it off.
    pub val_every: u64,
    /// Tokens of the fixed validation sample (windows of `model.context` tokens).
    pub val_tokens: usize,
    /// `true`: the sample's windows are spread evenly over the whole val shard. `false`: the first
    /// `val_tokens` tokens of the shard (what runs before format 3 did).
    pub val_spread: bool,
    /// Checkpoint every this many steps (and at the last step); 0: only at the last step.
    pub checkpoint_every: u64,
    /// Checkpoints kept besides the final one and the branch points of cooldown branches: the
    /// `keep_checkpoints` latest; older ones are deleted once a newer one is complete (GPT-2 124M
    /// checkpoints are 1.5 GB each). Absent from `run.json` at its default, 3.
    #[serde(default = "three", skip_serializing_if = "is_three")]
    pub keep_checkpoints: usize,
    /// bf16 autocast on CUDA (CPU always trains in fp32).
    pub bf16: bool,
    /// TF32 for fp32 matmuls on CUDA (`torch.backends.cuda.matmul.allow_tf32`); no effect on CPU.
    pub tf32: bool,
    /// How the training loss's gradient is computed: `cross_entropy` or `chunked:<tokens>`.
    pub loss_kernel: LossKernel,
    /// Seed of the model's initialisation.
    pub seed: u64,
    /// Seed of the data order: a shuffle of the training windows, deterministic per seed and
    /// epoch. `null`: the shards in file order (runs before format 3).
    pub data_seed: Option<u64>,
    /// `true`: the softmax and loss also see the vocabulary rows padded on for speed (runs before
    /// format 3). `false`: only the tokenizer's real vocabulary, so padding never changes the
    /// function (llm.c's rule) and a trimmed export computes exactly what the run did.
    pub softmax_over_padding: bool,
    /// HellaSwag every this many steps (and at the last step); 0 = only at the last step.
    pub hellaswag_every: u64,
    /// Evaluate on the first this many examples only; `null` for all.
    pub hellaswag_limit: Option<usize>,
    /// A non-finite loss or gradient norm: `stop` (default) or `skip` the batch.
    pub on_nan: OnNan,
    /// CUDA: run each step as CUDA graphs (captured per configuration, replayed); `false` for
    /// the eager step. No effect on the CPU. Absent from `run.json` when `true`.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub cuda_graphs: bool,
    /// Deterministic algorithms (`torch.use_deterministic_algorithms(True)`, deterministic cuDNN):
    /// on a GPU, two runs and a stopped-and-resumed run give the same bits, at some cost in speed.
    /// The CPU is deterministic anyway. Absent from `run.json` when `false`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub deterministic: bool,
    /// TensorBoard event files beside `metrics.jsonl` (`<run>/tb/`), every line's numbers as
    /// scalars. Absent from `run.json` when `true`.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub tensorboard: bool,
    /// CUDA: the one attention kernel to allow (`flash`, `efficient`, `cudnn`, `math`), or `auto`
    /// (PyTorch's choice). Absent from `run.json` when `auto`.
    #[serde(default, skip_serializing_if = "SdpaBackend::is_auto")]
    pub sdpa_backend: SdpaBackend,
}

fn three() -> usize {
    3
}

fn is_three(n: &usize) -> bool {
    *n == 3
}

/// `true` (serde's default for keys that are on unless said otherwise).
fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// The field names `T`'s derived `Deserialize` reads (serde hands them to `deserialize_struct`):
/// for the config, every settable top-level key, with those `run.json` leaves out at their
/// defaults. A new field is a key without a list to edit.
fn field_names<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    /// A deserializer that records the fields it is asked for, and reads nothing.
    struct Fields(&'static [&'static str]);
    impl<'de> serde::Deserializer<'de> for &mut Fields {
        type Error = serde::de::value::Error;
        fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(serde::de::Error::custom("field names only"))
        }
        fn deserialize_struct<V: serde::de::Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            self.0 = fields;
            Err(serde::de::Error::custom("field names only"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
            unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
        }
    }
    let mut fields = Fields(&[]);
    let _ = T::deserialize(&mut fields);
    fields.0
}

/// The `--set` key that `loss_kernel` replaced: a number of tokens, 0 for PyTorch's cross_entropy.
const OLD_LOSS_KEY: &str = "loss_chunk_tokens";

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
        let gpt2 = GptShape::gpt2_124m();
        let base = TrainConfig {
            preset: name.to_string(),
            model: gpt2,
            tokenizer: TokenizerKind::Gpt2,
            data_dir: PathBuf::from("data/edufineweb"),
            micro_batch: 16,
            tokens_per_step: 524_288,
            steps: 10_000,
            lr_schedule: LrKind::Wsd,
            lr_max: 6e-4,
            lr_min: 6e-5,
            warmup_steps: 715,
            cooldown_fraction: 0.2,
            cooldown_fraction_of: CooldownOf::Flops,
            decay_shape: DecayShape::OneMinusSqrt,
            cooldown_budgets: Vec::new(),
            cooldown_unit: ComputeUnit::Flops,
            adamw: AdamWConfig::default(),
            grad_clip: Some(1.0),
            val_every: 250,
            // The reference code's 20 micro-batches of 32 × 1,024 tokens.
            val_tokens: 20 * 32 * 1024,
            val_spread: true,
            checkpoint_every: 1000,
            keep_checkpoints: 3,
            bf16: true,
            // build-nanogpt's `torch.set_float32_matmul_precision('high')`, as the PyTorch anchor.
            tf32: true,
            loss_kernel: LossKernel::Chunked { tokens: NonZeroUsize::new(1024).expect("non-zero") },
            seed: 1337,
            data_seed: Some(1337),
            softmax_over_padding: false,
            hellaswag_every: 250,
            hellaswag_limit: None,
            on_nan: OnNan::Stop,
            cuda_graphs: true,
            tensorboard: true,
            deterministic: false,
            sdpa_backend: SdpaBackend::Auto,
        };
        Ok(match name {
            "tiny" => TrainConfig {
                model: GptShape {
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
                val_tokens: 65_536,
                checkpoint_every: 250,
                bf16: false,
                hellaswag_every: 100,
                ..base
            },
            "gpt2-124m" => base,
            "paper" => TrainConfig {
                micro_batch: 32,
                lr_schedule: LrKind::Constant,
                cooldown_fraction_of: CooldownOf::Steps,
                warmup_steps: 0,
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
    /// The old key `loss_chunk_tokens=N` still works (it sets `loss_kernel`).
    pub fn set(&mut self, assignment: &str) -> anyhow::Result<()> {
        let (key, raw) = assignment
            .split_once('=')
            .with_context(|| format!("--set {assignment}: expected key=value, e.g. --set steps=200"))?;
        if key == OLD_LOSS_KEY {
            let tokens: usize = raw.parse().with_context(|| {
                format!("--set {assignment}: expected a number of tokens (0 = cross_entropy); better: --set loss_kernel=chunked:1024")
            })?;
            self.loss_kernel = LossKernel::from_chunk_tokens(tokens);
            return Ok(());
        }
        if key == "hellaswag" {
            bail!("--set {assignment}: the HellaSwag file is an input of the evaluation, not a config key; pass --hellaswag {raw}");
        }
        let mut root = serde_json::to_value(&*self)?;
        // Keys `run.json` leaves out at their defaults are keys all the same: the top level's are
        // the fields the config's `Deserialize` names; nested ones, those the JSON holds.
        let top: Vec<String> = field_names::<TrainConfig>().iter().map(|f| f.to_string()).collect();
        let mut slot = &mut root;
        for (depth, part) in key.split('.').enumerate() {
            let object = slot.as_object_mut();
            let keys = match (depth, &object) {
                (0, _) => top.clone(),
                (_, Some(object)) => object.keys().cloned().collect(),
                (_, None) => Vec::new(),
            };
            let (Some(object), true) = (object, keys.iter().any(|k| k == part)) else {
                bail!("--set {assignment}: unknown key `{key}`; valid keys here: {}", keys.join(", "));
            };
            slot = object.entry(part).or_insert(Value::Null);
        }
        *slot = serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_string()));
        *self = serde_json::from_value(root).with_context(|| format!("--set {assignment}: wrong type for `{key}`"))?;
        Ok(())
    }

    /// The learning rate by step over the run of `plan` (re-warmup aside: see
    /// `RunHeader::lr_schedule`).
    pub fn lr_curve(&self, plan: &Plan) -> LrCurve {
        let (lr_max, lr_min, warmup_steps) = (self.lr_max, self.lr_min, self.warmup_steps);
        let total_steps = plan.total_steps();
        match self.lr_schedule {
            LrKind::Constant => LrCurve::Constant { lr: lr_max },
            LrKind::Cosine => LrCurve::WarmupCosine { lr_max, lr_min, warmup_steps, decay_steps: total_steps },
            LrKind::Wsd => LrCurve::WarmupStableDecay {
                lr_max,
                lr_min,
                warmup_steps,
                decay_steps: self.decay_steps(plan, total_steps),
                last_step: total_steps,
                shape: self.decay_shape,
            },
        }
    }

    /// Steps of the WSD decay of a run of `plan` that ends at `last_step`: the last
    /// `cooldown_fraction` of its steps, or the steps that spend the last `cooldown_fraction` of
    /// its FLOPs (`cooldown_fraction_of`), rounded halves up; at most all of them.
    pub fn decay_steps(&self, plan: &Plan, last_step: u64) -> u64 {
        match self.cooldown_fraction_of {
            CooldownOf::Steps => cost_model::lr::decay_steps(self.cooldown_fraction, last_step),
            CooldownOf::Flops => {
                let total = plan.cumulative(last_step).flops;
                let start = plan
                    .step_at_compute(ComputeUnit::Flops, (1.0 - self.cooldown_fraction) * total)
                    .map_or(0.0, |at| at.exact);
                cost_model::round_half_up(last_step as f64 - start).min(last_step)
            }
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
        let Some(per_micro) = self.micro_batch.checked_mul(m.context) else {
            bail!(
                "micro_batch × model.context = {} × {} is more tokens than tokens_per_step = {}; lower micro_batch",
                self.micro_batch,
                m.context,
                self.tokens_per_step
            );
        };
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
        if self.val_every > 0 && self.val_tokens < m.context {
            bail!(
                "val_tokens = {} is less than one window of model.context = {}; set val_tokens >= {} or val_every=0",
                self.val_tokens,
                m.context,
                m.context
            );
        }
        if !(self.cooldown_fraction > 0.0 && self.cooldown_fraction < 1.0) {
            bail!("cooldown_fraction = {}: must be in (0, 1), e.g. 0.2", self.cooldown_fraction);
        }
        if let Some(bad) = self.cooldown_budgets.iter().find(|b| !(b.is_finite() && **b > 0.0)) {
            bail!("cooldown budget {bad}: budgets are positive multiples of the baseline budget, e.g. 0.5,1,2");
        }
        Ok(())
    }

    /// The ids the softmax runs over: the tokenizer's vocabulary, or the padded one for runs that
    /// had `softmax_over_padding`.
    pub fn scored_vocab(&self) -> usize {
        if self.softmax_over_padding {
            self.model.vocab
        } else {
            self.tokenizer.vocab_size()
        }
    }

    /// Parameters of the model that take part in the function: every block, `wpe`, `ln_f`, and
    /// the tokenizer's rows of the tied `wte` (rows padded on for speed are left out).
    pub fn parameters(&self) -> u64 {
        cost_model::comm::parameters(&GptShape { vocab: self.tokenizer.vocab_size(), ..self.model })
    }

    /// Rows per micro-batch and micro-batches per step for `segment`: every micro-batch holds
    /// `micro_batch × context` tokens (the config's), cut into rows of the segment's context.
    pub fn micro_batches(&self, segment: &Segment) -> anyhow::Result<MicroBatches> {
        let micro_tokens = self.micro_batch * self.model.context;
        let context = segment.context as usize;
        let tokens = segment.tokens_per_step as usize;
        if self.model.context % context != 0 {
            bail!(
                "stage {} context {context} does not divide model.context = {}; use powers of two in --stage-context",
                segment.stage,
                self.model.context
            );
        }
        if tokens == 0 || tokens % micro_tokens != 0 {
            bail!(
                "stage {} has {tokens} tokens per step, not a multiple of micro_batch × context = {micro_tokens}; fix --stage-tokens-per-step",
                segment.stage
            );
        }
        Ok(MicroBatches { rows: micro_tokens / context, per_step: tokens / micro_tokens })
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
        let plan = crate::ScheduleSpec::baseline().plan(&paper).unwrap();
        assert_eq!(paper.micro_batches(&plan.segments[0]).unwrap(), MicroBatches { rows: 32, per_step: 16 });
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
        // Unknown keys name the valid ones, those run.json leaves out at their defaults too.
        let top = c.set("depth=3").unwrap_err().to_string();
        for key in ["preset", "model", "steps", "cuda_graphs", "keep_checkpoints", "sdpa_backend", "tensorboard"] {
            assert!(top.contains(&format!(" {key},")) || top.ends_with(key), "{key}: {top}");
        }
        assert!(c.set("model.d_model.x=3").unwrap_err().to_string().contains("unknown key `model.d_model.x`"));
        assert!(c.set("cuda_graphs.x=3").unwrap_err().to_string().contains("unknown key `cuda_graphs.x`"));
        assert!(c.set("steps=many").is_err());
        assert!(c.set("steps").is_err());
        let moved = c.set("hellaswag=h.jsonl").unwrap_err().to_string();
        assert!(moved.contains("--hellaswag h.jsonl"), "{moved}");
    }

    #[test]
    fn every_field_of_the_config_is_a_key() {
        // The keys come from the config's own fields: each one, as run.json writes it with every
        // default left in, is settable.
        let c = TrainConfig::preset("tiny").unwrap();
        let names = field_names::<TrainConfig>();
        let written = serde_json::to_value(&c).unwrap();
        let written = written.as_object().unwrap();
        assert!(written.keys().all(|k| names.contains(&k.as_str())), "{names:?}");
        // What run.json leaves out at the defaults the tiny preset has.
        let left_out: [(&str, Value); 5] = [
            ("keep_checkpoints", 3.into()),
            ("sdpa_backend", "auto".into()),
            ("cuda_graphs", true.into()),
            ("tensorboard", true.into()),
            ("deterministic", false.into()),
        ];
        assert_eq!(names.len(), written.len() + left_out.len(), "{names:?}");
        for name in names {
            let value = written
                .get(*name)
                .cloned()
                .or_else(|| left_out.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()));
            let value = value.unwrap_or_else(|| panic!("{name}: neither written nor a known default"));
            let mut set = c.clone();
            set.set(&format!("{name}={value}")).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(set, c, "{name}={value}");
        }
    }

    #[test]
    fn the_loss_kernel_is_an_enum_and_its_old_key_still_reads_numbers() {
        let mut c = TrainConfig::preset("tiny").unwrap();
        c.set("loss_kernel=cross_entropy").unwrap();
        assert_eq!(c.loss_kernel, LossKernel::CrossEntropy);
        c.set("loss_kernel=chunked:256").unwrap();
        assert_eq!(c.loss_kernel, LossKernel::Chunked { tokens: NonZeroUsize::new(256).unwrap() });
        assert_eq!(serde_json::to_string(&c.loss_kernel).unwrap(), "\"chunked:256\"");
        // The key's old name still works on the command line, with its numbers: 0 = cross_entropy.
        c.set("loss_chunk_tokens=64").unwrap();
        assert_eq!(c.loss_kernel, LossKernel::Chunked { tokens: NonZeroUsize::new(64).unwrap() });
        c.set("loss_chunk_tokens=0").unwrap();
        assert_eq!(c.loss_kernel, LossKernel::CrossEntropy);
        // Under the new key a number is a mistake, not a silent cross_entropy.
        let bad = [
            "loss_kernel=0",
            "loss_kernel=64",
            "loss_kernel=chunked:0",
            "loss_kernel=chunked",
            "loss_kernel=fast",
            "loss_kernel=-1",
            "loss_chunk_tokens=fast",
        ];
        for bad in bad {
            assert!(c.set(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn execution_keys_at_their_defaults_stay_out_of_run_json() {
        // Runs written before these keys existed read back unchanged, and write back unchanged.
        let c = TrainConfig::preset("tiny").unwrap();
        let text = serde_json::to_string(&c).unwrap();
        assert!(!text.contains("cuda_graphs") && !text.contains("deterministic") && !text.contains("sdpa"), "{text}");
        assert!(!text.contains("keep_checkpoints"), "{text}");
        let back: TrainConfig = serde_json::from_str(&text).unwrap();
        assert!(back.cuda_graphs && !back.deterministic);
        let mut other = c.clone();
        other.set("cuda_graphs=false").unwrap_or_else(|e| panic!("{e}"));
        other.set("deterministic=true").unwrap();
        other.set("sdpa_backend=flash").unwrap();
        other.set("keep_checkpoints=5").unwrap();
        assert!(other.set("sdpa_backend=fastest").is_err());
        let text = serde_json::to_string(&other).unwrap();
        assert!(text.contains("\"sdpa_backend\":\"flash\"") && text.contains("\"keep_checkpoints\":5"), "{text}");
        assert!(text.contains("\"cuda_graphs\":false") && text.contains("\"deterministic\":true"), "{text}");
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
