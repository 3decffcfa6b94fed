//! Where the blocks a stage adds go, and how they start: the layout of a grown stack and the
//! [`InitRule`] of each of its positions, as pure data (the trainer applies the rules, in
//! `trainer::engine::growth`, and knows no operator or placement).
//!
//! Growing from `old` trained blocks to `new` active ones gives `new` positions, bottom first,
//! each holding a trained block (moved there, with its optimizer state) or a new block. Where
//! the new blocks go is the [`Placement`]:
//!
//! - `top`: above the trained stack (the paper; gradual stacking; G_stack).
//! - `middle`: right above the middle run of trained blocks they sit beside. With `k` new
//!   blocks, the trained stack is read as runs of `k` blocks and the lower middle run is the one
//!   (run `⌈i/2⌉` of `i`, as MIDAS copies the middle block of `i` and inserts the copy right
//!   after it: Saunshi et al. 2024); when `k` does not divide the stack, the `k` blocks centred
//!   in it. More new blocks than trained ones go on top, beside the whole stack.
//! - `interleave`: new block `k` right above trained block `floor(k·old/added)`, so with as
//!   many new blocks as trained ones every block is followed by its new neighbour.
//!
//! How a new block starts is the [`Growth`] operator:
//!
//! - `random`: its own initialisation from step 0 (the reference code: nothing to do);
//! - `zero`: as random, with its output projections zeroed, so the grown network computes
//!   exactly what it did (function-preserving);
//! - `copy`: a copy of the trained block it sits beside (`copy-top` with the top placement);
//! - `stack`: new block `k` copies trained block `k mod old`: the trained stack repeated
//!   (G_stack, Du et al. 2024, when placed on top).
//!
//! What the optimizer does at a growth is the [`GrowthOptimizer`] (new blocks fresh, new blocks
//! with their source's moments, or a fresh AdamW for everything), and the learning rate may ramp
//! up again after it ([`GrowthRewarmup`]); trained blocks keep their state wherever they move.
//! [`init_rules`] turns operator, placement and optimizer into one rule per position.

use serde::{Deserialize, Serialize};

/// The AdamW state at a growth.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum GrowthOptimizer {
    /// New blocks start with no moments and no steps; trained blocks keep theirs.
    #[default]
    Fresh,
    /// A new block that copies a trained one (`copy`, `stack`) takes its moments and step count
    /// too, as if it had trained beside it; other new blocks start fresh.
    Copy,
    /// Every parameter's state is dropped: a fresh AdamW from the growth on (G_stack's official
    /// code, which trains the grown model as a new run).
    Reset,
}

impl GrowthOptimizer {
    /// The name as written in `run.json` and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            GrowthOptimizer::Fresh => "fresh",
            GrowthOptimizer::Copy => "copy",
            GrowthOptimizer::Reset => "reset",
        }
    }

    /// True for the default (what `run.json` leaves out).
    pub fn is_fresh(&self) -> bool {
        *self == GrowthOptimizer::Fresh
    }
}

/// A linear ramp of the learning rate after each growth.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrowthRewarmup {
    /// The rate goes on as the schedule has it (Bu: "continue training with the same learning rate").
    #[default]
    None,
    /// A ramp as long as the run's own warmup: with a fresh optimizer, the schedule restarted
    /// (G_stack's official code warms the grown model up again).
    Warmup,
    /// A ramp of this many steps.
    Steps(u64),
}

impl GrowthRewarmup {
    /// True for the default (what `run.json` leaves out).
    pub fn is_none(&self) -> bool {
        *self == GrowthRewarmup::None
    }

    /// Steps of the ramp in a run warming up over `warmup_steps`.
    pub fn steps(self, warmup_steps: u64) -> u64 {
        match self {
            GrowthRewarmup::None => 0,
            GrowthRewarmup::Warmup => warmup_steps,
            GrowthRewarmup::Steps(n) => n,
        }
    }
}

impl std::str::FromStr for GrowthRewarmup {
    type Err = String;
    /// `none`, `warmup` or a step count.
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" | "0" => Ok(GrowthRewarmup::None),
            "warmup" => Ok(GrowthRewarmup::Warmup),
            n => n
                .parse()
                .map(GrowthRewarmup::Steps)
                .map_err(|_| format!("`{n}`: give none, warmup or a number of steps")),
        }
    }
}

/// How the blocks a stage adds start out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Growth {
    /// Their own initialisation from step 0, as the reference code: nothing to do.
    #[default]
    Random,
    /// Output projections zeroed: each new block is an identity when it is added.
    Zero,
    /// A copy of the trained block each sits beside (with `top`: the top blocks, in order).
    #[serde(alias = "copy-top")]
    #[value(alias = "copy-top")]
    Copy,
    /// The trained stack repeated from the bottom (G_stack with `top`).
    Stack,
}

impl Growth {
    /// The name as written in `run.json` and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Growth::Random => "random",
            Growth::Zero => "zero",
            Growth::Copy => "copy",
            Growth::Stack => "stack",
        }
    }

    /// True when the operator copies trained blocks (and so needs some).
    pub fn copies(self) -> bool {
        matches!(self, Growth::Copy | Growth::Stack)
    }
}

/// Where the blocks a stage adds go among the trained ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Placement {
    /// Above the trained stack.
    #[default]
    Top,
    /// Beside the middle trained blocks (MIDAS).
    Middle,
    /// Each above a trained block, spread through the stack.
    Interleave,
}

impl Placement {
    /// The name as written in `run.json` and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Placement::Top => "top",
            Placement::Middle => "middle",
            Placement::Interleave => "interleave",
        }
    }

    /// True for the default, `top` (left out of `run.json`).
    pub fn is_top(&self) -> bool {
        *self == Placement::Top
    }
}

/// One position of a grown stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Slot {
    /// Trained block `i` (its index before growing).
    Trained(usize),
    /// The `index`-th new block (0-based), beside trained block `beside` (`None` when nothing
    /// was trained yet).
    New { index: usize, beside: Option<usize> },
}

/// The positions of a stack grown from `old` trained blocks to `new` by `placement`, bottom
/// first. Every trained block appears once, in its order; every new block once, in its order.
pub fn layout(placement: Placement, old: usize, new: usize) -> Vec<Slot> {
    let added = new.saturating_sub(old);
    if old == 0 {
        return (0..added).map(|index| Slot::New { index, beside: None }).collect();
    }
    let trained = |range: std::ops::Range<usize>| range.map(Slot::Trained).collect::<Vec<_>>();
    match placement {
        Placement::Top => {
            // Beside the top `added` blocks in order; more than there are wrap around them.
            let beside = |k: usize| old - 1 - ((added - 1 - k) % old);
            let mut out = trained(0..old);
            out.extend((0..added).map(|index| Slot::New { index, beside: Some(beside(index)) }));
            out
        }
        Placement::Middle => {
            // The middle run of `width` trained blocks, and the new blocks right above it.
            let width = added.min(old);
            let start = match old % width {
                0 => width * ((old / width - 1) / 2),
                _ => (old - width) / 2,
            };
            let mut out = trained(0..start + width);
            out.extend((0..added).map(|index| Slot::New { index, beside: Some(start + index % width) }));
            out.extend(trained(start + width..old));
            out
        }
        Placement::Interleave => {
            let mut out = Vec::with_capacity(new);
            for block in 0..old {
                out.push(Slot::Trained(block));
                let here = (0..added).filter(|k| k * old / added == block);
                out.extend(here.map(|index| Slot::New { index, beside: Some(block) }));
            }
            out
        }
    }
}

/// The trained block whose values new block `index` starts from under `growth` (`None`: its
/// own initialisation), given its `beside` block and `old` trained blocks.
pub fn copy_source(growth: Growth, old: usize, index: usize, beside: Option<usize>) -> Option<usize> {
    match growth {
        Growth::Random | Growth::Zero => None,
        Growth::Copy => beside,
        Growth::Stack => (old > 0).then(|| index % old),
    }
}

/// How one position of a grown stack starts: its values and its optimizer state (moments and
/// step count). Every block exists from step 0 (the active ones are the first `n`), so a block's
/// "own initialisation" is the values some block drew at step 0, and indices are the blocks'
/// before the growth.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum InitRule {
    /// Trained block `i`, values and optimizer state (moved here when `i` is another position).
    Trained(usize),
    /// A fresh random block: the values block `own` drew at step 0, no optimizer state.
    Random { own: usize },
    /// As `Random`, with its output projections zeroed: an identity when it is added.
    Zeros { own: usize },
    /// A copy of trained block `from`'s values (never shared storage); with `state`, its moments
    /// and step count too (as if it had trained beside it), else none.
    Copy { from: usize, state: bool },
}

/// The rule of every position of a stack grown from `old` trained blocks to `new` by `growth`
/// at `placement`, with the optimizer state `optimizer` keeps, bottom first ([`layout`],
/// [`copy_source`]). `Reset` keeps no state for copies; dropping every other parameter's state
/// is the caller's. Not growing (`new <= old`): the trained blocks where they are.
pub fn init_rules(
    growth: Growth,
    placement: Placement,
    optimizer: GrowthOptimizer,
    old: usize,
    new: usize,
) -> Vec<InitRule> {
    if new <= old {
        return (0..new).map(InitRule::Trained).collect();
    }
    let rule = |slot: Slot| match slot {
        Slot::Trained(i) => InitRule::Trained(i),
        Slot::New { index, beside } => match copy_source(growth, old, index, beside) {
            Some(from) => InitRule::Copy { from, state: optimizer == GrowthOptimizer::Copy },
            None if growth == Growth::Zero => InitRule::Zeros { own: old + index },
            None => InitRule::Random { own: old + index },
        },
    };
    layout(placement, old, new).into_iter().map(rule).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn show(slots: &[Slot]) -> String {
        let one = |s: &Slot| match s {
            Slot::Trained(i) => format!("{i}"),
            Slot::New { beside: Some(b), .. } => format!("+{b}"),
            Slot::New { beside: None, .. } => "+".into(),
        };
        slots.iter().map(one).collect::<Vec<_>>().join(" ")
    }

    #[test]
    fn placements_put_new_blocks_where_documented() {
        // 4 trained blocks grown to 6: new blocks shown as +b, b the block they sit beside.
        assert_eq!(show(&layout(Placement::Top, 4, 6)), "0 1 2 3 +2 +3");
        assert_eq!(show(&layout(Placement::Middle, 4, 6)), "0 1 +0 +1 2 3");
        // Runs that do not divide the stack: the blocks centred in it.
        assert_eq!(show(&layout(Placement::Middle, 5, 7)), "0 1 2 +1 +2 3 4");
        assert_eq!(show(&layout(Placement::Interleave, 4, 6)), "0 +0 1 2 +2 3");
        // Doubling: interleave follows every block with its neighbour; middle and top copy all.
        assert_eq!(show(&layout(Placement::Interleave, 3, 6)), "0 +0 1 +1 2 +2");
        assert_eq!(show(&layout(Placement::Middle, 3, 6)), "0 1 2 +0 +1 +2");
        assert_eq!(show(&layout(Placement::Top, 2, 5)), "0 1 +1 +0 +1");
        // MIDAS on 12 layers in runs of 2 (its blocks): the copy of run ⌈i/2⌉ of i right after it,
        // B0 → B0 B1 → B0 B2 B1 → B0 B2 B3 B1 → ... (Saunshi et al. 2024).
        assert_eq!(show(&layout(Placement::Middle, 2, 4)), "0 1 +0 +1");
        assert_eq!(show(&layout(Placement::Middle, 4, 6)), "0 1 +0 +1 2 3");
        assert_eq!(show(&layout(Placement::Middle, 6, 8)), "0 1 2 3 +2 +3 4 5");
        assert_eq!(show(&layout(Placement::Middle, 8, 10)), "0 1 2 3 +2 +3 4 5 6 7");
        assert_eq!(show(&layout(Placement::Middle, 10, 12)), "0 1 2 3 4 5 +4 +5 6 7 8 9");
        assert_eq!(show(&layout(Placement::Middle, 5, 6)), "0 1 2 +2 3 4");
        // Nothing trained yet: new blocks only, beside nothing.
        assert_eq!(show(&layout(Placement::Middle, 0, 3)), "+ + +");
    }

    #[test]
    fn operators_pick_their_sources() {
        let sources = |g: Growth, placement: Placement, old: usize, new: usize| {
            layout(placement, old, new)
                .into_iter()
                .filter_map(|s| match s {
                    Slot::New { index, beside } => Some(copy_source(g, old, index, beside)),
                    Slot::Trained(_) => None,
                })
                .collect::<Vec<_>>()
        };
        // G_stack 2x: 6 → 12 on top repeats blocks 0..5.
        assert_eq!(sources(Growth::Stack, Placement::Top, 6, 12), (0..6).map(Some).collect::<Vec<_>>());
        // Copy on top: the top blocks in order (the former copy-top).
        assert_eq!(sources(Growth::Copy, Placement::Top, 6, 9), vec![Some(3), Some(4), Some(5)]);
        assert_eq!(sources(Growth::Zero, Placement::Top, 6, 9), vec![None; 3]);
        assert_eq!(sources(Growth::Copy, Placement::Top, 0, 2), vec![None; 2]);
        // The old name still reads.
        assert_eq!(serde_json::from_str::<Growth>("\"copy-top\"").unwrap(), Growth::Copy);
    }

    #[test]
    fn each_position_gets_the_rule_of_its_operator_and_optimizer() {
        use InitRule::*;
        // G_stack 2x, 3 → 6 on top, moments copied or not: blocks 0..2 again.
        let stack = |optimizer| init_rules(Growth::Stack, Placement::Top, optimizer, 3, 6);
        let copies = |state| [Copy { from: 0, state }, Copy { from: 1, state }, Copy { from: 2, state }];
        assert_eq!(stack(GrowthOptimizer::Copy)[3..], copies(true));
        assert_eq!(stack(GrowthOptimizer::Fresh)[3..], copies(false));
        assert_eq!(stack(GrowthOptimizer::Reset)[3..], copies(false));
        assert_eq!(stack(GrowthOptimizer::Copy)[..3], [Trained(0), Trained(1), Trained(2)]);
        // Random and zero new blocks take the values drawn for blocks old.. at step 0, wherever
        // they go; trained blocks move up past them.
        let random = init_rules(Growth::Random, Placement::Interleave, GrowthOptimizer::Copy, 2, 4);
        assert_eq!(random, [Trained(0), Random { own: 2 }, Trained(1), Random { own: 3 }]);
        let zero = init_rules(Growth::Zero, Placement::Middle, GrowthOptimizer::Fresh, 4, 6);
        assert_eq!(zero, [Trained(0), Trained(1), Zeros { own: 4 }, Zeros { own: 5 }, Trained(2), Trained(3)]);
        // MIDAS's middle copies, and growing from nothing.
        let midas = init_rules(Growth::Copy, Placement::Middle, GrowthOptimizer::Copy, 4, 6);
        assert_eq!(midas[2..4], [Copy { from: 0, state: true }, Copy { from: 1, state: true }]);
        assert_eq!(
            init_rules(Growth::Random, Placement::Top, GrowthOptimizer::Fresh, 0, 2),
            [Random { own: 0 }, Random { own: 1 }]
        );
        assert_eq!(
            init_rules(Growth::Copy, Placement::Middle, GrowthOptimizer::Copy, 3, 3),
            [Trained(0), Trained(1), Trained(2)]
        );
    }

    proptest! {
        #[test]
        fn every_block_appears_once_in_order(old in 0usize..20, added in 1usize..30, p in 0usize..3) {
            let placement = [Placement::Top, Placement::Middle, Placement::Interleave][p];
            let slots = layout(placement, old, old + added);
            prop_assert_eq!(slots.len(), old + added);
            let trained: Vec<usize> = slots.iter().filter_map(|s| match s { Slot::Trained(i) => Some(*i), _ => None }).collect();
            prop_assert_eq!(trained, (0..old).collect::<Vec<_>>());
            let news: Vec<usize> = slots.iter().filter_map(|s| match s { Slot::New { index, .. } => Some(*index), _ => None }).collect();
            prop_assert_eq!(news, (0..added).collect::<Vec<_>>());
            // A new block sits right above the block it is beside, or above other new blocks
            // beside the same run of trained blocks.
            for (position, slot) in slots.iter().enumerate() {
                if let Slot::New { beside: Some(b), .. } = slot {
                    prop_assert!(*b < old);
                    let below = slots[..position].iter().rev().find_map(|s| match s { Slot::Trained(i) => Some(*i), _ => None });
                    if placement == Placement::Interleave {
                        prop_assert_eq!(below, Some(*b));
                    }
                }
            }
        }
    }
}
