//! GPT-2, exactly as the reference (build-nanogpt's `train_gpt2.py`): learned positions, pre-LN
//! blocks, tanh GELU, causal scaled-dot-product attention, the LM head tied to `wte`, init std 0.02
//! with residual projections scaled by `(2·L)^-0.5`.
//!
//! Parameter names and layouts follow Hugging Face's GPT-2 (`transformer.h.0.attn.c_attn.weight`,
//! Conv1D weights stored `[in, out]`), so a checkpoint exports without renaming or transposing.
//! All `L` blocks exist from the start; a forward pass runs only the first `active_layers`.
//!
//! Architecture only: the training loss and its backward pass are in [`crate::engine::loss`].

use cost_model::flops::Trainable;
use run_dir::config::GptShape;
use tch::nn::{Init, Path, VarStore};
use tch::{Kind, Tensor};

/// LayerNorm parameters.
struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
}

impl LayerNorm {
    fn new(p: &Path, d: i64) -> Self {
        LayerNorm { weight: p.var("weight", &[d], Init::Const(1.0)), bias: p.var("bias", &[d], Init::Const(0.0)) }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let d = self.weight.size()[0];
        x.layer_norm([d], Some(&self.weight), Some(&self.bias), 1e-5, true)
    }
}

/// HF's Conv1D: `y = x · W + b` with `W` stored `[in, out]`.
struct Conv1D {
    weight: Tensor,
    bias: Tensor,
}

impl Conv1D {
    fn new(p: &Path, d_in: i64, d_out: i64, std: f64) -> Self {
        Conv1D {
            weight: p.var("weight", &[d_in, d_out], Init::Randn { mean: 0.0, stdev: std }),
            bias: p.var("bias", &[d_out], Init::Const(0.0)),
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let size = x.size();
        let d_in = *size.last().expect("input has a feature dimension");
        let mut out_size = size.clone();
        *out_size.last_mut().expect("non-empty") = self.weight.size()[1];
        self.bias.addmm(&x.reshape([-1, d_in]), &self.weight).view(out_size.as_slice())
    }
}

/// One pre-LN transformer block.
struct Block {
    ln_1: LayerNorm,
    c_attn: Conv1D,
    attn_proj: Conv1D,
    ln_2: LayerNorm,
    c_fc: Conv1D,
    mlp_proj: Conv1D,
    heads: i64,
}

impl Block {
    fn new(p: &Path, cfg: &GptShape) -> Self {
        let d = cfg.d_model as i64;
        let std = 0.02;
        // Residual projections: std 0.02·(2·L)^-0.5, so the residual stream's variance does not grow
        // with depth (GPT-2 paper; build-nanogpt's NANOGPT_SCALE_INIT).
        let proj_std = 0.02 * (2.0 * cfg.layers as f64).powf(-0.5);
        Block {
            ln_1: LayerNorm::new(&(p / "ln_1"), d),
            c_attn: Conv1D::new(&(p / "attn" / "c_attn"), d, 3 * d, std),
            attn_proj: Conv1D::new(&(p / "attn" / "c_proj"), d, d, proj_std),
            ln_2: LayerNorm::new(&(p / "ln_2"), d),
            c_fc: Conv1D::new(&(p / "mlp" / "c_fc"), d, 4 * d, std),
            mlp_proj: Conv1D::new(&(p / "mlp" / "c_proj"), 4 * d, d, proj_std),
            heads: cfg.heads as i64,
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let (b, t, d) = x.size3().expect("block input is [B, T, d]");
        let head_dim = d / self.heads;
        let qkv = self.c_attn.forward(&self.ln_1.forward(x));
        let parts = qkv.split(d, -1);
        let heads = |t_: &Tensor| t_.view([b, t, self.heads, head_dim]).transpose(1, 2);
        let (q, k, v) = (heads(&parts[0]), heads(&parts[1]), heads(&parts[2]));
        let y = Tensor::scaled_dot_product_attention(&q, &k, &v, None::<Tensor>, 0.0, true, None, false);
        let y = y.transpose(1, 2).contiguous().view([b, t, d]);
        let x = x + self.attn_proj.forward(&y);
        let h = self.c_fc.forward(&self.ln_2.forward(&x)).gelu("tanh");
        &x + self.mlp_proj.forward(&h)
    }

    fn parameters(&self) -> [&Tensor; 12] {
        [
            &self.ln_1.weight,
            &self.ln_1.bias,
            &self.c_attn.weight,
            &self.c_attn.bias,
            &self.attn_proj.weight,
            &self.attn_proj.bias,
            &self.ln_2.weight,
            &self.ln_2.bias,
            &self.c_fc.weight,
            &self.c_fc.bias,
            &self.mlp_proj.weight,
            &self.mlp_proj.bias,
        ]
    }
}

/// GPT-2 with all its blocks; forward runs the first `active_layers`.
pub struct Gpt {
    pub config: GptShape,
    wte: Tensor,
    wpe: Tensor,
    blocks: Vec<Block>,
    ln_f: LayerNorm,
}

impl Gpt {
    /// Create and initialise every parameter in `vs` (seed with `tch::manual_seed` first).
    pub fn new(vs: &VarStore, config: GptShape) -> Gpt {
        let root = vs.root() / "transformer";
        let d = config.d_model as i64;
        let std = Init::Randn { mean: 0.0, stdev: 0.02 };
        let wte = (&root / "wte").var("weight", &[config.vocab as i64, d], std);
        let wpe = (&root / "wpe").var("weight", &[config.context as i64, d], std);
        let blocks = (0..config.layers).map(|i| Block::new(&(&root / "h" / i), &config)).collect();
        let ln_f = LayerNorm::new(&(&root / "ln_f"), d);
        Gpt { config, wte, wpe, blocks, ln_f }
    }

    /// Logits `[B, T, vocab]` for token ids `[B, T]`, through the first `active_layers` blocks.
    pub fn forward(&self, idx: &Tensor, active_layers: usize) -> Tensor {
        let (_, t) = idx.size2().expect("input ids are [B, T]");
        let positions = Tensor::arange(t, (Kind::Int64, idx.device()));
        let mut x = Tensor::embedding(&self.wte, idx, -1, false, false) + self.wpe.index_select(0, &positions);
        for block in &self.blocks[..active_layers] {
            x = block.forward(&x);
        }
        self.ln_f.forward(&x).matmul(&self.wte.tr())
    }

    /// Freeze and unfreeze parameters: blocks `first_trainable..active_layers` and (with
    /// `embeddings`) wte/wpe/ln_f train; everything else gets no gradient at all.
    pub fn apply_trainable(&mut self, trainable: Trainable) {
        let set = |t: &Tensor, on: bool| {
            let _ = t.set_requires_grad(on);
        };
        for (i, block) in self.blocks.iter().enumerate() {
            let on = i >= trainable.first_trainable as usize && i < trainable.active_layers as usize;
            block.parameters().into_iter().for_each(|p| set(p, on));
        }
        for p in [&self.wte, &self.wpe, &self.ln_f.weight, &self.ln_f.bias] {
            set(p, trainable.embeddings);
        }
    }

    /// Whether the parameter `name` (a Hugging Face name, as in the checkpoint) trains under
    /// `trainable`: the same rule as [`Gpt::apply_trainable`], by name.
    pub fn trains(name: &str, trainable: Trainable) -> bool {
        match name.strip_prefix("transformer.h.").and_then(|rest| rest.split('.').next()?.parse::<u32>().ok()) {
            Some(block) => block >= trainable.first_trainable && block < trainable.active_layers,
            None => trainable.embeddings,
        }
    }

    /// The 12 parameter tensors of block `i` (shared handles), in a fixed order.
    pub fn block_parameters(&self, i: usize) -> [&Tensor; 12] {
        self.blocks[i].parameters()
    }

    /// The output projections of block `i` (`attn.c_proj`, `mlp.c_proj`: weights and biases),
    /// whose zeroing makes the block an identity on the residual stream.
    pub fn block_output_projections(&self, i: usize) -> [&Tensor; 4] {
        let b = &self.blocks[i];
        [&b.attn_proj.weight, &b.attn_proj.bias, &b.mlp_proj.weight, &b.mlp_proj.bias]
    }

    /// Number of parameters that currently train.
    pub fn trainable_params(&self) -> i64 {
        self.all_parameters().into_iter().filter(|p| p.requires_grad()).map(|p| p.numel() as i64).sum()
    }

    /// Every parameter tensor (shared handles; the tied head counted once).
    pub fn all_parameters(&self) -> Vec<&Tensor> {
        let mut all = vec![&self.wte, &self.wpe];
        for b in &self.blocks {
            all.extend(b.parameters());
        }
        all.extend([&self.ln_f.weight, &self.ln_f.bias]);
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn tiny() -> GptShape {
        GptShape { layers: 2, heads: 2, d_model: 16, context: 8, vocab: 64 }
    }

    #[test]
    fn names_and_shapes_follow_hugging_face() {
        let vs = VarStore::new(Device::Cpu);
        let _ = Gpt::new(&vs, tiny());
        let vars = vs.variables();
        assert_eq!(vars["transformer.h.1.attn.c_attn.weight"].size(), vec![16, 48]);
        assert_eq!(vars["transformer.h.0.mlp.c_proj.weight"].size(), vec![64, 16]);
        assert_eq!(vars["transformer.wte.weight"].size(), vec![64, 16]);
        assert!(vars.contains_key("transformer.ln_f.bias"));
        assert_eq!(vars.len(), 2 + 12 * 2 + 2);
    }

    #[test]
    fn initial_loss_is_near_log_vocab_and_causal() {
        tch::manual_seed(0);
        let vs = VarStore::new(Device::Cpu);
        let model = Gpt::new(&vs, tiny());
        let idx = Tensor::randint(64, [4, 8], (Kind::Int64, Device::Cpu));
        let loss = crate::engine::loss::mean_loss(&model, &idx, &idx, 2, 64).double_value(&[]);
        assert!((loss - (64f64).ln()).abs() < 0.3, "random init loss {loss} vs ln 64");
        // Changing the last token must not change earlier positions' logits.
        let logits = model.forward(&idx, 2);
        let idx2 = idx.copy();
        let _ = idx2.get(0).get(7).fill_(3);
        let logits2 = model.forward(&idx2, 2);
        assert!(logits.narrow(1, 0, 7).allclose(&logits2.narrow(1, 0, 7), 1e-6, 1e-6, false));
    }

    #[test]
    fn the_rule_by_name_is_the_rule_applied_to_tensors() {
        let vs = VarStore::new(Device::Cpu);
        let mut model = Gpt::new(&vs, tiny());
        for trainable in [
            Trainable::all(2),
            Trainable::all(1),
            Trainable { active_layers: 2, first_trainable: 1, embeddings: false },
            Trainable { active_layers: 2, first_trainable: 1, embeddings: true },
        ] {
            model.apply_trainable(trainable);
            for (name, tensor) in vs.variables() {
                assert_eq!(Gpt::trains(&name, trainable), tensor.requires_grad(), "{name} under {trainable:?}");
            }
        }
    }

    /// For each active block, whether its input carries a gradient path, i.e. whether backward
    /// will reach below it.
    fn block_inputs_require_grad(model: &Gpt, idx: &Tensor, active_layers: usize) -> Vec<bool> {
        let (_, t) = idx.size2().unwrap();
        let positions = Tensor::arange(t, (Kind::Int64, idx.device()));
        let mut x = Tensor::embedding(&model.wte, idx, -1, false, false) + model.wpe.index_select(0, &positions);
        let mut flags = Vec::with_capacity(active_layers);
        for block in &model.blocks[..active_layers] {
            flags.push(x.requires_grad());
            x = block.forward(&x);
        }
        flags
    }

    #[test]
    fn backward_never_visits_the_blocks_below_the_lowest_trainable_one() {
        // With only the top blocks training and frozen embeddings, no block input below the
        // lowest trainable block carries a gradient path: phase 1's backward stops there.
        let vs = VarStore::new(Device::Cpu);
        let mut model = Gpt::new(&vs, GptShape { layers: 4, ..tiny() });
        let idx = Tensor::randint(64, [2, 8], (Kind::Int64, Device::Cpu));
        for (embeddings, expected) in [(false, [false, false, false, true]), (true, [true; 4])] {
            model.apply_trainable(Trainable { active_layers: 4, first_trainable: 2, embeddings });
            assert_eq!(block_inputs_require_grad(&model, &idx, 4), expected, "embeddings trainable: {embeddings}");
        }
    }

    #[test]
    fn freezing_counts_trainable_parameters() {
        let vs = VarStore::new(Device::Cpu);
        let mut model = Gpt::new(&vs, tiny());
        let block = 12 * 16 * 16 + 13 * 16; // 12d² weights + biases/LN of one block
        let embeddings = 64 * 16 + 8 * 16 + 2 * 16;
        model.apply_trainable(Trainable::all(2));
        assert_eq!(model.trainable_params(), (2 * block + embeddings) as i64);
        model.apply_trainable(Trainable { active_layers: 2, first_trainable: 1, embeddings: false });
        assert_eq!(model.trainable_params(), block as i64);
    }
}
