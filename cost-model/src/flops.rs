//! Architecture-aware FLOPs of one training token of GPT-2, given which parts train.
//!
//! Counting convention (as in the GPT-3/Chinchilla papers): a matrix multiply of an `m×k` by a
//! `k×n` matrix costs `2·m·k·n`; layer norms, GELU, softmax and the embedding lookup are ignored.
//! Per token:
//! - a block's weight matmuls cost `24·d²` forward (qkv `6d²`, attention output `2d²`, MLP `16d²`),
//! - its attention scores and weighted sum cost `4·T·d` forward (full `T`, not halved for the mask),
//! - the LM head costs `2·d·V` forward.
//!
//! Backward of a matmul is two matmuls of the forward's size: the weight gradient (paid only when
//! the weight trains) and the input gradient (paid only when something below still needs a
//! gradient). So:
//! - a trainable block pays `2·(24d² + 4Td)`: its layer norms train, so even the lowest trainable
//!   block needs the gradient of its first matmul's input;
//! - a frozen block with something trainable below it (an older block, or the embeddings) pays its
//!   input gradients, `24d² + 8Td`;
//! - a frozen block with nothing trainable below pays nothing: backward stops above it;
//! - the head pays its input gradient `2dV` whenever anything trains, plus its weight gradient
//!   `2dV` when the (tied) embeddings train.

use serde::{Deserialize, Serialize};

use crate::ModelShape;

/// Which parameters of the active model train in a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trainable {
    /// Blocks `0..active_layers` run forward.
    pub active_layers: u32,
    /// Blocks `first_trainable..active_layers` train; lower ones are frozen.
    pub first_trainable: u32,
    /// wte/wpe/ln_f and the tied LM head train.
    pub embeddings: bool,
}

impl Trainable {
    /// Everything active trains: a baseline, phase-2 or continual step.
    pub fn all(active_layers: u32) -> Self {
        Trainable { active_layers, first_trainable: 0, embeddings: true }
    }
}

/// Forward and backward FLOPs of one token.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TokenFlops {
    pub forward: f64,
    pub backward: f64,
}

impl TokenFlops {
    /// Forward plus backward.
    pub fn total(&self) -> f64 {
        self.forward + self.backward
    }
}

/// FLOPs of one training token through the active part of `shape` with `trainable` parts training.
pub fn token_flops(shape: &ModelShape, trainable: Trainable) -> TokenFlops {
    let d = shape.d_model as f64;
    let t = shape.context as f64;
    let v = shape.vocab as f64;
    let block_weights = 24.0 * d * d;
    let block_attention = 4.0 * t * d;
    let head = 2.0 * d * v;

    let active = trainable.active_layers;
    let forward = f64::from(active) * (block_weights + block_attention) + head;

    let mut backward = 0.0;
    for block in 0..active {
        let trains = block >= trainable.first_trainable;
        let grad_needed_below = trainable.embeddings || block > trainable.first_trainable;
        backward += if trains {
            2.0 * (block_weights + block_attention)
        } else if grad_needed_below {
            block_weights + 2.0 * block_attention
        } else {
            0.0
        };
    }
    let anything_trains = trainable.embeddings || trainable.first_trainable < active;
    if anything_trains {
        backward += head;
    }
    if trainable.embeddings {
        backward += head;
    }
    TokenFlops { forward, backward }
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    #[test]
    fn full_gpt2_step_is_three_times_forward() {
        let shape = ModelShape::gpt2_124m();
        let f = token_flops(&shape, Trainable::all(12));
        assert_relative_eq!(f.backward, 2.0 * f.forward);
        // 12 blocks · (24·768² + 4·1024·768) + 2·768·50304 forward FLOPs per token.
        let expected_forward = 12.0 * (24.0 * 768.0f64.powi(2) + 4.0 * 1024.0 * 768.0) + 2.0 * 768.0 * 50304.0;
        assert_relative_eq!(f.forward, expected_forward);
    }

    #[test]
    fn frozen_blocks_with_frozen_embeddings_cost_no_backward() {
        let shape = ModelShape::gpt2_124m();
        let only_top = token_flops(&shape, Trainable { active_layers: 6, first_trainable: 3, embeddings: false });
        let small = token_flops(&shape, Trainable { active_layers: 3, first_trainable: 0, embeddings: false });
        // Training the top 3 of 6 costs the same backward as training a 3-block model without
        // embedding gradients: the frozen blocks below are never visited.
        assert_relative_eq!(only_top.backward, small.backward);
    }

    #[test]
    fn trainable_embeddings_make_frozen_blocks_pay_input_gradients() {
        let shape = ModelShape::gpt2_124m();
        let new_only = token_flops(&shape, Trainable { active_layers: 6, first_trainable: 3, embeddings: false });
        let with_emb = token_flops(&shape, Trainable { active_layers: 6, first_trainable: 3, embeddings: true });
        let (d, t, v) = (768.0, 1024.0, 50304.0);
        let frozen_block = 24.0 * d * d + 8.0 * t * d;
        assert_relative_eq!(with_emb.backward - new_only.backward, 3.0 * frozen_block + 2.0 * d * v);
    }
}
