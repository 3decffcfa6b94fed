//! What a run measures of its model while it trains, split over the data-parallel ranks: the
//! validation loss on a fixed sample, HellaSwag, and whether the ranks still hold the same
//! parameters.

use std::collections::BTreeMap;

use anyhow::bail;
use run_dir::{RunHeader, TrainConfig};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use crate::data::loader::validation_batches;
use crate::data::TokenDataset;
use crate::engine::loss;
use crate::engine::model::Gpt;
use crate::run::eval;
use crate::world::{Reduce, World};

/// The run's fixed validation sample: the same windows for every run on the same data.
pub struct ValidationSample {
    batches: Vec<(Tensor, Tensor)>,
}

impl ValidationSample {
    /// The sample `header`'s config asks for (none when the run neither validates nor grows).
    pub fn new(header: &RunHeader, dataset: &TokenDataset, device: Device) -> anyhow::Result<ValidationSample> {
        let config = &header.config;
        if !header.uses_validation() {
            return Ok(ValidationSample { batches: Vec::new() });
        }
        let batches = validation_batches(
            &dataset.val,
            config.val_tokens,
            config.model.context,
            config.micro_batch,
            config.val_spread,
            device,
        )?;
        Ok(ValidationSample { batches })
    }

    /// The loss through `active` blocks, or `None` without a sample.
    pub fn loss_if_any(
        &self,
        model: &Gpt,
        active: usize,
        config: &TrainConfig,
        world: &World,
    ) -> anyhow::Result<Option<f64>> {
        match self.batches.is_empty() {
            true => Ok(None),
            false => self.loss(model, active, config, world).map(Some),
        }
    }

    /// Mean loss over the sample through `active` blocks: every window weighs the same. Each rank
    /// computes its share of the batches (batch `j` is rank `j mod world`'s); the sums are reduced.
    pub fn loss(&self, model: &Gpt, active: usize, config: &TrainConfig, world: &World) -> anyhow::Result<f64> {
        let autocast = config.bf16 && self.batches.first().is_some_and(|(x, _)| x.device().is_cuda());
        let full_rows = self.batches.first().map_or(1, |(x, _)| x.size()[0]) as f64;
        let mine: Vec<&(Tensor, Tensor)> =
            self.batches.iter().enumerate().filter(|(j, _)| world.owns(*j)).map(|(_, b)| b).collect();
        let (sum, weights) = tch::no_grad(|| {
            // Summed on the device and read once: one sync for the whole pass. A batch weighs its
            // rows (1.0 for a full one, so equal batches give the plain mean).
            let weighted: Vec<Tensor> = mine
                .iter()
                .map(|(x, y)| {
                    let mean = crate::device::native::autocast(autocast, || {
                        loss::mean_loss(model, x, y, active, config.scored_vocab())
                    });
                    mean.to_kind(Kind::Double) * (x.size()[0] as f64 / full_rows)
                })
                .collect();
            let weights: f64 = mine.iter().map(|(x, _)| x.size()[0] as f64 / full_rows).sum();
            let sum =
                if weighted.is_empty() { 0.0 } else { Tensor::stack(&weighted, 0).sum(Kind::Double).double_value(&[]) };
            (sum, weights)
        });
        if world.size == 1 {
            return Ok(sum / weights);
        }
        let totals = Tensor::from_slice(&[sum, weights]);
        world.all_reduce(std::slice::from_ref(&totals), Reduce::Sum)?;
        Ok(totals.double_value(&[0]) / totals.double_value(&[1]))
    }
}

/// HellaSwag through `active` blocks: every rank scores its share of the examples, the counts
/// are summed.
pub fn hellaswag(
    model: &Gpt,
    active: usize,
    examples: &eval::Rendered,
    config: &TrainConfig,
    device: Device,
    world: &World,
) -> anyhow::Result<eval::Score> {
    let autocast = config.bf16 && device.is_cuda();
    let mine = eval::evaluate(model, active, examples, 16, config.scored_vocab(), device, autocast);
    let counts = Tensor::from_slice(&[mine.right as f64, mine.right_norm as f64, mine.n as f64, mine.n_skipped as f64]);
    world.all_reduce(std::slice::from_ref(&counts), Reduce::Sum)?;
    let count = |i: i64| counts.double_value(&[i]) as usize;
    Ok(eval::Score::from_counts(count(0), count(1), count(2), count(3)))
}

/// The model's parameters in name order: the same order on every rank.
pub fn parameters_by_name(vs: &VarStore) -> Vec<Tensor> {
    let by_name: BTreeMap<String, Tensor> = vs.variables().into_iter().collect();
    by_name.into_values().collect()
}

/// Every rank must hold the same parameters (they all apply the same summed update): a checksum
/// per rank, compared. A mismatch stops the run before rank 0 checkpoints it.
pub fn check_ranks_agree(vs: &VarStore, world: &World, step: u64) -> anyhow::Result<()> {
    if world.size == 1 {
        return Ok(());
    }
    let checksum = tch::no_grad(|| {
        // Summed in name order, so every rank adds the same numbers the same way; one read back
        // to the host, not one per parameter.
        let sums: Vec<Tensor> = parameters_by_name(vs).iter().map(|t| t.sum(Kind::Double)).collect();
        Tensor::stack(&sums, 0).sum(Kind::Double).double_value(&[])
    });
    if !world.agree(checksum)? {
        bail!(
            "step {step}: the ranks' parameters differ (rank {} checksum {checksum}); after every step they must be identical: is the data the same on every rank?",
            world.rank
        );
    }
    Ok(())
}
