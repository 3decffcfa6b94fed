//! Growth operators: how the blocks a stage adds start out.
//!
//! - `random`: as the reference code, every block was initialised at step 0 (with the final
//!   depth's residual scaling) and a new block simply starts taking part: nothing to do.
//! - `zero`: the new blocks' output projections (`attn.c_proj`, `mlp.c_proj`, weights and biases)
//!   are zeroed, so each new block adds nothing to the residual stream and the network computes
//!   exactly what it computed before growing (function-preserving).
//! - `copy-top`: the new blocks copy the top trained blocks, in order (gradual stacking).
//! - `stack`: the new blocks repeat the trained stack from the bottom (G_stack-like).
//!
//! Copies are of values, never shared tensors: the copies then train independently.

use run_dir::Growth;

use crate::model::Gpt;

/// Which trained block new block `old_active + i` copies from, for the copy operators.
pub fn copy_source(growth: Growth, old_active: usize, new_active: usize, i: usize) -> Option<usize> {
    let added = new_active - old_active;
    match growth {
        Growth::Random | Growth::Zero => None,
        _ if old_active == 0 => None,
        // The top `added` blocks in order; when more are added than exist, wrap around them.
        Growth::CopyTop => Some(old_active - 1 - ((added - 1 - i) % old_active)),
        Growth::Stack => Some(i % old_active),
    }
}

/// Initialise blocks `old_active..new_active` of `model` by `growth`.
pub fn grow(model: &mut Gpt, growth: Growth, old_active: usize, new_active: usize) {
    if old_active == 0 || new_active <= old_active {
        return;
    }
    tch::no_grad(|| match growth {
        Growth::Random => {}
        Growth::Zero => {
            for block in old_active..new_active {
                for t in model.block_output_projections(block) {
                    let _ = t.shallow_clone().zero_();
                }
            }
        }
        Growth::CopyTop | Growth::Stack => {
            for (i, block) in (old_active..new_active).enumerate() {
                let source = copy_source(growth, old_active, new_active, i).expect("copy operator");
                let from = model.block_parameters(source);
                for (dst, src) in model.block_parameters(block).into_iter().zip(from) {
                    dst.shallow_clone().copy_(src);
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_sources_follow_the_operator() {
        // 6 trained blocks, 3 new: copy-top takes 3,4,5; stack takes 0,1,2.
        let top: Vec<_> = (0..3).map(|i| copy_source(Growth::CopyTop, 6, 9, i).unwrap()).collect();
        let stack: Vec<_> = (0..3).map(|i| copy_source(Growth::Stack, 6, 9, i).unwrap()).collect();
        assert_eq!((top, stack), (vec![3, 4, 5], vec![0, 1, 2]));
        // 2 trained, 3 new: both wrap around the trained ones.
        let top: Vec<_> = (0..3).map(|i| copy_source(Growth::CopyTop, 2, 5, i).unwrap()).collect();
        assert_eq!(top, vec![1, 0, 1]);
        let stack: Vec<_> = (0..3).map(|i| copy_source(Growth::Stack, 2, 5, i).unwrap()).collect();
        assert_eq!(stack, vec![0, 1, 0]);
        assert_eq!(copy_source(Growth::Zero, 2, 5, 0), None);
    }
}
