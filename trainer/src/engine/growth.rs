//! Growing the model: each position of the grown stack starts as its [`InitRule`] says (the rules
//! come from the run's schedule: `cost_model::growth::init_rules` documents operators and
//! placements; nothing here names one).
//!
//! Every block exists from step 0 and the active ones are the first `n`, so a trained block
//! that another position takes moves up: its values and its optimizer state (moments and step
//! count) move with it. A new block starts from its own initialisation (`Random`, `Zeros`) or a
//! copy of a trained block's values (`Copy`), with no optimizer state or, when the rule says so,
//! its source's. Copies are of values, never shared tensors: the copies then train on their own.

use cost_model::growth::InitRule;
use tch::Tensor;

use crate::engine::model::Gpt;
use crate::engine::optim::AdamW;

/// Grow `model` (and `optimizer`'s state) to `rules.len()` active blocks, position `j` starting
/// as `rules[j]` says. Every source is read before anything is written, so rules may move
/// blocks in any order.
pub fn grow(model: &Gpt, optimizer: &AdamW, rules: &[InitRule]) {
    // Where position j's values come from: a trained block, a copied one, or its own init.
    let values_from = |rule: InitRule| match rule {
        InitRule::Trained(i) | InitRule::Copy { from: i, .. } => i,
        InitRule::Random { own } | InitRule::Zeros { own } => own,
    };
    // Whose optimizer state position j takes: a moved trained block its own, a copy its
    // source's when the rule says so; `None`: it stays (trained in place) or starts fresh.
    let state_from = |j: usize, rule: InitRule| match rule {
        InitRule::Trained(i) => (i != j).then_some(i),
        InitRule::Copy { from, state: true } => Some(from),
        InitRule::Copy { state: false, .. } | InitRule::Random { .. } | InitRule::Zeros { .. } => None,
    };
    tch::no_grad(|| {
        // Snapshot every block that some other position takes its values from, before any write.
        let snapshot =
            |block: usize| -> Vec<Tensor> { model.block_parameters(block).iter().map(|t| t.copy()).collect() };
        let values: Vec<(usize, Vec<Tensor>)> = rules
            .iter()
            .enumerate()
            .map(|(j, &rule)| (j, values_from(rule)))
            .filter(|(j, from)| j != from)
            .map(|(j, from)| (j, snapshot(from)))
            .collect();
        let states: Vec<(usize, Vec<[Tensor; 3]>)> = rules
            .iter()
            .enumerate()
            .filter_map(|(j, &rule)| {
                let from = state_from(j, rule)?;
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
        for (j, &rule) in rules.iter().enumerate() {
            if matches!(rule, InitRule::Trained(_)) {
                continue;
            }
            // A new block without its source's state: no moments, no steps taken (as a
            // parameter that never trained).
            if !copied_state.contains(&j) {
                for tensor in optimizer.block_state(j).iter().flatten() {
                    let _ = tensor.shallow_clone().zero_();
                }
            }
            if let InitRule::Zeros { .. } = rule {
                for t in model.block_output_projections(j) {
                    let _ = t.shallow_clone().zero_();
                }
            }
        }
    });
}
