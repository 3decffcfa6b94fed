//! Growth operators and placements on a tiny model, each for what it promises: `zero` leaves the
//! function unchanged wherever the new blocks go; `copy` and `stack` start new blocks equal to
//! the blocks they copy (values, not shared storage); placements order the blocks as
//! `cost_model::growth` documents; trained blocks keep their optimizer state when they move,
//! and new blocks start with none. The trainer applies the rules `init_rules` makes of them,
//! and any rules it is given.

use cost_model::growth::{copy_source, init_rules, layout, InitRule, Slot};
use run_dir::{GptShape, Growth, GrowthOptimizer, Placement};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};
use trainer::engine::growth;
use trainer::engine::model::Gpt;
use trainer::engine::optim::AdamW;

const PLACEMENTS: [Placement; 3] = [Placement::Top, Placement::Middle, Placement::Interleave];

/// A seeded 6-layer model and an AdamW over it (parameters in name order, as the trainer has them).
fn tiny() -> (VarStore, Gpt, AdamW) {
    tch::manual_seed(3);
    let vs = VarStore::new(Device::Cpu);
    let model = Gpt::new(&vs, GptShape { layers: 6, heads: 2, d_model: 16, context: 8, vocab: 64 });
    let mut params: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    params.sort_by(|a, b| a.0.cmp(&b.0));
    let optimizer = AdamW::new(params, Default::default());
    (vs, model, optimizer)
}

/// Grow `model` from `old` to `new` blocks by an operator, placement and optimizer choice.
fn grow(
    model: &Gpt,
    optimizer: &AdamW,
    (g, placement, state): (Growth, Placement, GrowthOptimizer),
    old: usize,
    new: usize,
) {
    growth::grow(model, optimizer, &init_rules(g, placement, state, old, new));
}

/// Deep copies of block `i`'s parameters.
fn values(model: &Gpt, i: usize) -> Vec<Tensor> {
    model.block_parameters(i).iter().map(|t| t.copy()).collect()
}

fn same(a: &[Tensor], b: &[Tensor]) -> bool {
    a.iter().zip(b).all(|(x, y)| x.equal(y))
}

/// Mark block `i`'s optimizer state with `i + 1` (moments and step count), as if it had trained.
fn mark_state(optimizer: &AdamW, i: usize) {
    tch::no_grad(|| {
        for state in optimizer.block_state(i) {
            for t in state {
                let _ = t.shallow_clone().fill_((i + 1) as f64);
            }
        }
    });
}

/// The one value block `j`'s optimizer state holds (all its tensors equal), or `None`.
fn state_value(optimizer: &AdamW, j: usize) -> Option<f64> {
    let all: Vec<f64> = optimizer
        .block_state(j)
        .iter()
        .flat_map(|s| s.iter().map(|t| t.to_kind(Kind::Double)).collect::<Vec<_>>())
        .flat_map(|t| Vec::<f64>::try_from(t.flatten(0, -1)).unwrap())
        .collect();
    all.windows(2).all(|w| w[0] == w[1]).then(|| all[0])
}

#[test]
fn zero_growth_leaves_the_function_unchanged_wherever_the_blocks_go() {
    for placement in PLACEMENTS {
        for (old, new) in [(2, 4), (3, 6), (4, 5), (1, 6)] {
            let (_vs, model, optimizer) = tiny();
            let idx = Tensor::randint(64, [2, 8], (Kind::Int64, Device::Cpu));
            let before = tch::no_grad(|| model.forward(&idx, old));
            assert!(!before.equal(&tch::no_grad(|| model.forward(&idx, new))), "random blocks change the output");
            grow(&model, &optimizer, (Growth::Zero, placement, GrowthOptimizer::Fresh), old, new);
            let after = tch::no_grad(|| model.forward(&idx, new));
            assert!(before.equal(&after), "{placement:?} {old} → {new}: zero blocks must be an exact identity");
        }
    }
}

#[test]
fn every_position_holds_what_the_layout_says() {
    for placement in PLACEMENTS {
        for growth in [Growth::Random, Growth::Copy, Growth::Stack] {
            for (old, new) in [(2, 4), (4, 6), (3, 6), (2, 5)] {
                let (_vs, model, optimizer) = tiny();
                let before: Vec<Vec<Tensor>> = (0..6).map(|i| values(&model, i)).collect();
                grow(&model, &optimizer, (growth, placement, GrowthOptimizer::Fresh), old, new);
                for (j, slot) in layout(placement, old, new).into_iter().enumerate() {
                    // A trained block moved here; a copy of the block the operator names; or the
                    // new block's own initialisation (the block at old + index from step 0).
                    let from = match slot {
                        Slot::Trained(i) => i,
                        Slot::New { index, beside } => copy_source(growth, old, index, beside).unwrap_or(old + index),
                    };
                    let what = format!("{growth:?} {placement:?} {old} → {new}: position {j} ({slot:?})");
                    assert!(same(&values(&model, j), &before[from]), "{what} should hold block {from}");
                }
            }
        }
    }
}

#[test]
fn the_middle_placement_inserts_copies_beside_the_middle_blocks() {
    // 4 trained blocks grown to 6 by copies, in runs of 2 as MIDAS's blocks: the lower middle
    // run (blocks 0, 1) and its copy right after it: 0 1 +0 +1 2 3.
    let (_vs, model, optimizer) = tiny();
    let before: Vec<Vec<Tensor>> = (0..4).map(|i| values(&model, i)).collect();
    grow(&model, &optimizer, (Growth::Copy, Placement::Middle, GrowthOptimizer::Fresh), 4, 6);
    for (position, block) in [(0, 0), (1, 1), (2, 0), (3, 1), (4, 2), (5, 3)] {
        assert!(same(&values(&model, position), &before[block]), "position {position} holds block {block}");
    }
    // Copies, not shared storage: changing the original leaves its copy as it was.
    tch::no_grad(|| {
        let _ = model.block_parameters(1)[2].shallow_clone().fill_(7.0);
    });
    assert!(same(&values(&model, 3), &before[1]));
    assert!(!same(&values(&model, 1), &before[1]));
}

#[test]
fn trained_blocks_take_their_optimizer_state_along_and_new_blocks_start_without() {
    for placement in PLACEMENTS {
        for growth in [Growth::Random, Growth::Zero, Growth::Copy, Growth::Stack] {
            let (_vs, model, optimizer) = tiny();
            for i in 0..3 {
                mark_state(&optimizer, i);
            }
            grow(&model, &optimizer, (growth, placement, GrowthOptimizer::Fresh), 3, 5);
            for (j, slot) in layout(placement, 3, 5).into_iter().enumerate() {
                let expected = match slot {
                    Slot::Trained(i) => (i + 1) as f64,
                    Slot::New { .. } => 0.0,
                };
                assert_eq!(
                    state_value(&optimizer, j),
                    Some(expected),
                    "{growth:?} {placement:?}: position {j} ({slot:?})"
                );
            }
        }
    }
}

#[test]
fn copies_take_their_sources_optimizer_state_when_asked() {
    // GrowthOptimizer::Copy: a copied block starts with its source's moments and step count, as
    // if it had trained beside it; a random new block still starts with none.
    for placement in PLACEMENTS {
        for growth in [Growth::Random, Growth::Copy, Growth::Stack] {
            let (_vs, model, optimizer) = tiny();
            for i in 0..3 {
                mark_state(&optimizer, i);
            }
            grow(&model, &optimizer, (growth, placement, GrowthOptimizer::Copy), 3, 5);
            for (j, slot) in layout(placement, 3, 5).into_iter().enumerate() {
                let expected = match slot {
                    Slot::Trained(i) => (i + 1) as f64,
                    Slot::New { index, beside } => {
                        copy_source(growth, 3, index, beside).map_or(0.0, |from| (from + 1) as f64)
                    }
                };
                assert_eq!(
                    state_value(&optimizer, j),
                    Some(expected),
                    "{growth:?} {placement:?}: position {j} ({slot:?})"
                );
            }
        }
    }
}

#[test]
fn growing_from_no_blocks_starts_every_block_from_its_own_values() {
    // A zero-layer first stage (embeddings and head alone) grows by random or zero.
    let (_vs, model, optimizer) = tiny();
    let idx = Tensor::randint(64, [2, 8], (Kind::Int64, Device::Cpu));
    let head_alone = tch::no_grad(|| model.forward(&idx, 0));
    grow(&model, &optimizer, (Growth::Zero, Placement::Middle, GrowthOptimizer::Fresh), 0, 6);
    assert!(head_alone.equal(&tch::no_grad(|| model.forward(&idx, 6))));
    let (_vs, fresh, optimizer) = tiny();
    let before: Vec<Vec<Tensor>> = (0..6).map(|i| values(&fresh, i)).collect();
    grow(&fresh, &optimizer, (Growth::Random, Placement::Interleave, GrowthOptimizer::Fresh), 0, 6);
    assert!((0..6).all(|i| same(&values(&fresh, i), &before[i])));
}

#[test]
fn any_rules_given_are_applied_as_they_say() {
    // Rules no operator makes: trained blocks swapped, a copy with its source's state, a zero block.
    let (_vs, model, optimizer) = tiny();
    for i in 0..3 {
        mark_state(&optimizer, i);
    }
    let before: Vec<Vec<Tensor>> = (0..6).map(|i| values(&model, i)).collect();
    let rules = [
        InitRule::Trained(1),
        InitRule::Trained(0),
        InitRule::Copy { from: 2, state: true },
        InitRule::Zeros { own: 5 },
        InitRule::Copy { from: 0, state: false },
    ];
    growth::grow(&model, &optimizer, &rules);
    for (j, from) in [(0, 1), (1, 0), (2, 2), (4, 0)] {
        assert!(same(&values(&model, j), &before[from]), "position {j} holds block {from}");
    }
    let states: Vec<Option<f64>> = (0..5).map(|j| state_value(&optimizer, j)).collect();
    assert_eq!(states, [Some(2.0), Some(1.0), Some(3.0), Some(0.0), Some(0.0)]);
    // The zero block: block 5's values but its output projections, which are zero.
    let outputs = model.block_output_projections(3);
    assert!(outputs.iter().all(|t| t.abs().sum(Kind::Double).double_value(&[]) == 0.0));
    let zero = |t: &Tensor| t.abs().sum(Kind::Double).double_value(&[]) == 0.0;
    assert!(values(&model, 3).iter().zip(&before[5]).all(|(now, was)| now.equal(was) || zero(now)));
}
