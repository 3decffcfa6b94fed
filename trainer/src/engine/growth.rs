//! Growing the model: the blocks a stage adds take their places and their first values by the
//! layout `cost_model::growth` computes (placement and operator are documented there).
//!
//! Every block exists from step 0 and the active ones are the first `n`, so a placement other
//! than `top` moves trained blocks up: their values and their optimizer state (moments and step
//! count) move with them. New blocks start from their own initialisation (`random`, `zero`) or a
//! copy of a trained block's values (`copy`, `stack`); their optimizer state is fresh, or with
//! `GrowthOptimizer::Copy` a copy's is its source block's (and with `Reset` every parameter's is
//! dropped afterwards, by the caller). Copies are of values, never shared tensors: the copies
//! then train on their own.

use cost_model::growth::{copy_source, layout, Slot};
use run_dir::{Growth, GrowthOptimizer, Placement};
use tch::Tensor;

use crate::engine::model::Gpt;
use crate::engine::optim::AdamW;

/// Grow `model` (and `optimizer`'s state) from `old` trained blocks to `new` active ones.
pub fn grow(
    model: &Gpt,
    optimizer: &AdamW,
    (growth, placement, state): (Growth, Placement, GrowthOptimizer),
    old: usize,
    new: usize,
) {
    if new <= old {
        return;
    }
    let slots = layout(placement, old, new);
    // Where position j's values come from: a trained block, a copied one, or its own init.
    let source = |slot: Slot| match slot {
        Slot::Trained(i) => i,
        Slot::New { index, beside } => copy_source(growth, old, index, beside).unwrap_or(old + index),
    };
    tch::no_grad(|| {
        // Snapshot every block that some other position takes its values from, before any write.
        let moved: Vec<(usize, usize)> =
            slots.iter().enumerate().map(|(j, &slot)| (j, source(slot))).filter(|(j, from)| j != from).collect();
        let snapshot =
            |block: usize| -> Vec<Tensor> { model.block_parameters(block).iter().map(|t| t.copy()).collect() };
        let values: Vec<(usize, Vec<Tensor>)> = moved.iter().map(|&(j, from)| (j, snapshot(from))).collect();
        // Whose optimizer state each position takes: a moved trained block its own; a copy its
        // source's when the copy's moments come with it.
        let state_source = |j: usize, slot: Slot| match slot {
            Slot::Trained(i) => (i != j).then_some(i),
            Slot::New { .. } if state == GrowthOptimizer::Copy && growth.copies() => Some(source(slot)),
            Slot::New { .. } => None,
        };
        let states: Vec<(usize, Vec<[Tensor; 3]>)> = slots
            .iter()
            .enumerate()
            .filter_map(|(j, &slot)| {
                let from = state_source(j, slot)?;
                Some((j, optimizer.block_state(from).iter().map(|s| s.each_ref().map(Tensor::copy)).collect()))
            })
            .collect();
        let copied_state: Vec<usize> = states.iter().map(|(j, _)| *j).collect();
        for (j, from) in values {
            for (dst, src) in model.block_parameters(j).into_iter().zip(&from) {
                dst.shallow_clone().copy_(src);
            }
        }
        for (j, from) in states {
            for (dst, src) in optimizer.block_state(j).iter().zip(&from) {
                for (d, s) in dst.iter().zip(src) {
                    d.shallow_clone().copy_(s);
                }
            }
        }
        for (j, slot) in slots.iter().enumerate() {
            if let Slot::New { .. } = slot {
                // A new block without its source's state: no moments, no steps taken (as a
                // parameter that never trained).
                if !copied_state.contains(&j) {
                    for tensor in optimizer.block_state(j).iter().flatten() {
                        let _ = tensor.shallow_clone().zero_();
                    }
                }
                if growth == Growth::Zero {
                    for t in model.block_output_projections(j) {
                        let _ = t.shallow_clone().zero_();
                    }
                }
            }
        }
    });
}
