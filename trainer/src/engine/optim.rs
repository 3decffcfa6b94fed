//! AdamW whose moments and step counts live in tensors we own, so they can be checkpointed and
//! reset. (Its hyperparameters are `run_dir::config::AdamWConfig`; the learning rate of each step
//! comes from `cost_model::lr`.)
//!
//! The update is `torch.optim.AdamW`'s, run by PyTorch's own fused kernel (`fused=True`), per
//! parameter with a gradient:
//! ```text
//! p   ← p · (1 − lr·wd)                      decoupled decay, only tensors with ≥ 2 dims
//! m   ← β1·m + (1−β1)·g
//! v   ← β2·v + (1−β2)·g²
//! p   ← p − lr/(1−β1^t) · m / (√v / √(1−β2^t) + ε)
//! ```
//! Frozen tensors (no gradient) are skipped entirely: no step, no decay, and their step count `t`
//! does not advance, exactly as PyTorch skips parameters whose `.grad` is `None`.
//!
//! Nothing here reads a value back to the host: the gradient norm, the clipping factor and the
//! "loss or norm not finite, skip this update" decision stay on the device, so a training step
//! is queued without a single synchronisation (the caller reads the loss once, at the end).

use std::collections::HashMap;

use anyhow::{bail, Context};
use run_dir::config::AdamWConfig;
use tch::{Kind, Tensor};

use crate::device::native::{self, AdamWStep, AdamWTensors, NativeError};

/// The learning rate of an update: a number, or a 0-d float32 tensor on the parameters' device
/// (what a CUDA graph reads: the rate is written into it before each replay).
#[derive(Clone, Copy)]
pub enum Lr<'a> {
    Value(f64),
    Device(&'a Tensor),
}

struct ParamState {
    name: String,
    param: Tensor,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    /// Updates applied so far: a 0-d float tensor on the parameter's device, as the fused kernel
    /// wants it (and as PyTorch keeps it).
    step: Tensor,
    decay: bool,
}

/// What [`AdamW::clipped_step`] leaves on the device: read both with [`StepValues::read`].
pub struct StepValues {
    /// The loss the caller passed in (0-d float).
    pub loss: Tensor,
    /// The global gradient norm before clipping (0-d float).
    pub grad_norm: Tensor,
}

impl StepValues {
    /// `(loss, grad_norm)` on the host: one device synchronisation for both.
    pub fn read(&self) -> (f64, f64) {
        let both = Tensor::stack(&[self.loss.to_kind(Kind::Float), self.grad_norm.to_kind(Kind::Float)], 0);
        let host: Vec<f64> =
            Vec::try_from(both.to_kind(Kind::Double).to_device(tch::Device::Cpu)).expect("two scalars convert to f64");
        (host[0], host[1])
    }
}

/// AdamW over named parameters.
pub struct AdamW {
    pub config: AdamWConfig,
    states: Vec<ParamState>,
}

impl AdamW {
    /// An optimizer over `params` (name, tensor); moments start at zero.
    pub fn new(params: Vec<(String, Tensor)>, config: AdamWConfig) -> AdamW {
        let states = params
            .into_iter()
            .map(|(name, param)| ParamState {
                exp_avg: param.zeros_like().detach(),
                exp_avg_sq: param.zeros_like().detach(),
                step: Tensor::zeros([], (Kind::Float, param.device())),
                decay: param.dim() >= 2,
                name,
                param,
            })
            .collect();
        AdamW { config, states }
    }

    /// Drop every parameter's gradient (`zero_grad(set_to_none=True)`): the next backward writes
    /// fresh gradients instead of adding to zeroed ones, and frozen parameters hold no gradient
    /// memory at all.
    pub fn zero_grad(&mut self) -> Result<(), NativeError> {
        self.states.iter().try_for_each(|s| native::clear_grad(&s.param))
    }

    /// The states that take part in this step (trainable, with a gradient), with their gradients.
    fn active(&self) -> Vec<(&ParamState, Tensor)> {
        self.states
            .iter()
            .filter(|s| s.param.requires_grad())
            .map(|s| (s, s.param.grad()))
            .filter(|(_, g)| g.defined())
            .collect()
    }

    /// Give every trainable parameter a zeroed gradient buffer, allocated where it has none, so
    /// that backward accumulates into memory that stays put (what a CUDA graph replays into).
    pub fn zero_grad_buffers(&self) -> Result<(), NativeError> {
        let trainable: Vec<Tensor> =
            self.states.iter().filter(|s| s.param.requires_grad()).map(|s| s.param.shallow_clone()).collect();
        native::zero_grad_buffers(&trainable)
    }

    /// The gradients that take part in the next update (trainable parameters with a gradient),
    /// in the parameters' fixed (name) order: what data-parallel ranks sum.
    pub fn gradients(&self) -> Vec<Tensor> {
        self.active().into_iter().map(|(_, g)| g).collect()
    }

    /// Every state tensor (moments and step counts of every parameter), in a fixed order: what a
    /// rank receives from rank 0 after a resume.
    pub fn state_handles(&self) -> Vec<Tensor> {
        self.states
            .iter()
            .flat_map(|s| [s.exp_avg.shallow_clone(), s.exp_avg_sq.shallow_clone(), s.step.shallow_clone()])
            .collect()
    }

    fn norm_of(&self, grads: &[Tensor]) -> Result<Tensor, NativeError> {
        if grads.is_empty() {
            // On the parameters' device, so it combines with the loss without a transfer.
            let device = self.states.first().map_or(tch::Device::Cpu, |s| s.param.device());
            return Ok(Tensor::zeros([], (Kind::Float, device)));
        }
        native::global_norm(grads)
    }

    /// The fused update of the `active` states: two kernel calls, tensors with weight decay and
    /// tensors without.
    fn update(&self, active: &[(&ParamState, Tensor)], lr: Lr, skip_if: Option<&Tensor>) -> Result<(), NativeError> {
        let AdamWConfig { beta1, beta2, eps, weight_decay } = self.config;
        for decay in [true, false] {
            let group: Vec<&(&ParamState, Tensor)> = active.iter().filter(|(s, _)| s.decay == decay).collect();
            let pick = |f: fn(&ParamState) -> &Tensor| group.iter().map(|(s, _)| f(s).shallow_clone()).collect();
            let (params, exp_avgs, exp_avg_sqs, steps): (Vec<Tensor>, Vec<Tensor>, Vec<Tensor>, Vec<Tensor>) =
                (pick(|s| &s.param), pick(|s| &s.exp_avg), pick(|s| &s.exp_avg_sq), pick(|s| &s.step));
            let grads: Vec<Tensor> = group.iter().map(|(_, g)| g.shallow_clone()).collect();
            let tensors = AdamWTensors {
                params: &params,
                grads: &grads,
                exp_avgs: &exp_avgs,
                exp_avg_sqs: &exp_avg_sqs,
                steps: &steps,
            };
            let (value, tensor) = match lr {
                Lr::Value(v) => (v, None),
                Lr::Device(t) => (0.0, Some(t)),
            };
            let hp = AdamWStep { lr: value, beta1, beta2, weight_decay: if decay { weight_decay } else { 0.0 }, eps };
            tch::no_grad(|| native::fused_adamw(&tensors, hp, tensor, skip_if))?;
        }
        Ok(())
    }

    /// The end of a training step once the gradients are in: clip them (when `max_norm` is set)
    /// and update, unless the loss or the gradient norm is not finite, in which case the update
    /// is skipped. All of it is decided on the device; nothing waits for it.
    pub fn clipped_step(&mut self, loss: &Tensor, lr: Lr, max_norm: Option<f64>) -> Result<StepValues, NativeError> {
        // The active set is gathered once: norm, clipping and update all use it.
        let active = self.active();
        let grads: Vec<Tensor> = active.iter().map(|(_, g)| g.shallow_clone()).collect();
        let grad_norm = self.norm_of(&grads)?;
        let finite = loss.isfinite().logical_and(&grad_norm.isfinite());
        let skip = finite.logical_not().to_kind(Kind::Float);
        if let Some(max_norm) = max_norm {
            clip(&grads, &grad_norm, max_norm)?;
        }
        self.update(&active, lr, Some(&skip))?;
        Ok(StepValues { loss: loss.shallow_clone(), grad_norm })
    }

    /// The state of block `block`'s parameters (`transformer.h.<block>.*`), each as (exp_avg,
    /// exp_avg_sq, step), in name order (the same order for every block): shared handles, what
    /// growth moves when a block moves.
    pub fn block_state(&self, block: usize) -> Vec<[Tensor; 3]> {
        let prefix = format!("transformer.h.{block}.");
        let mut mine: Vec<&ParamState> = self.states.iter().filter(|s| s.name.starts_with(&prefix)).collect();
        mine.sort_by(|a, b| a.name.cmp(&b.name));
        mine.into_iter()
            .map(|s| [s.exp_avg.shallow_clone(), s.exp_avg_sq.shallow_clone(), s.step.shallow_clone()])
            .collect()
    }

    /// Forget the moments and step counts (a new optimizer, as the reference code makes for
    /// continual training).
    pub fn reset(&mut self) {
        self.reset_where(|_| true);
    }

    /// Forget the moments and step counts of the parameters whose names `pick` chooses, as if
    /// they had never been updated.
    pub fn reset_where(&mut self, pick: impl Fn(&str) -> bool) {
        tch::no_grad(|| {
            for s in self.states.iter_mut().filter(|s| pick(&s.name)) {
                let _ = s.exp_avg.zero_();
                let _ = s.exp_avg_sq.zero_();
                let _ = s.step.zero_();
            }
        });
    }

    /// Moments and steps as named tensors: `<param>.exp_avg`, `<param>.exp_avg_sq`, `<param>.step`
    /// (an int64 scalar).
    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::with_capacity(3 * self.states.len());
        for s in &self.states {
            out.push((format!("{}.exp_avg", s.name), s.exp_avg.shallow_clone()));
            out.push((format!("{}.exp_avg_sq", s.name), s.exp_avg_sq.shallow_clone()));
            out.push((format!("{}.step", s.name), s.step.to_kind(Kind::Int64)));
        }
        out
    }

    /// Restore what [`AdamW::state_tensors`] saved; every parameter must be present.
    pub fn load_state(&mut self, mut saved: HashMap<String, Tensor>) -> anyhow::Result<()> {
        tch::no_grad(|| {
            for s in &mut self.states {
                let mut take = |suffix: &str| {
                    saved.remove(&format!("{}.{suffix}", s.name)).with_context(|| {
                        format!("optimizer state has no `{}.{suffix}`; the checkpoint is from another model", s.name)
                    })
                };
                let (m, v, step) = (take("exp_avg")?, take("exp_avg_sq")?, take("step")?);
                if m.size() != s.exp_avg.size() || v.size() != s.exp_avg_sq.size() {
                    bail!("optimizer state for `{}` has shape {:?}, expected {:?}", s.name, m.size(), s.exp_avg.size());
                }
                if step.numel() != 1 || step.reshape([]).int64_value(&[]) < 0 {
                    bail!("optimizer state `{}.step` is not a non-negative count", s.name);
                }
                s.exp_avg.copy_(&m);
                s.exp_avg_sq.copy_(&v);
                s.step.copy_(&step.reshape([]));
            }
            Ok(())
        })
    }
}

/// Scale `grads` in place by `min(1, max_norm / (norm + 1e-6))`, without reading `norm`.
fn clip(grads: &[Tensor], norm: &Tensor, max_norm: f64) -> Result<(), NativeError> {
    if grads.is_empty() {
        return Ok(());
    }
    let coef = (max_norm / (norm + 1e-6)).clamp_max(1.0);
    tch::no_grad(|| native::scale_(grads, &coef))
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    /// A one-parameter optimizer whose gradient is `grad` after [`backward_with`].
    fn one_param() -> (Tensor, AdamW) {
        let w = Tensor::from_slice(&[1.0f32, -2.0, 3.0, 0.5]).view([2, 2]).set_requires_grad(true);
        let opt = AdamW::new(vec![("w".into(), w.shallow_clone())], AdamWConfig::default());
        (w, opt)
    }

    fn backward_with(w: &Tensor, grad: &[f32]) {
        (w * Tensor::from_slice(grad).view([2, 2])).sum(Kind::Float).backward();
    }

    fn values(t: &Tensor) -> Vec<f32> {
        Vec::try_from(t.detach().flatten(0, -1)).unwrap()
    }

    fn step_count(opt: &AdamW) -> i64 {
        opt.state_tensors().into_iter().find(|(n, _)| n == "w.step").unwrap().1.int64_value(&[])
    }

    #[test]
    fn a_non_finite_loss_or_norm_skips_the_update_on_the_device() {
        let (w, mut opt) = one_param();
        let before = values(&w);
        for (loss, grad) in [(f32::NAN, [1.0, 1.0, 1.0, 1.0]), (1.0, [f32::INFINITY, 0.0, 0.0, 0.0])] {
            opt.zero_grad().unwrap();
            backward_with(&w, &grad);
            let out = opt.clipped_step(&Tensor::from(loss), Lr::Value(1e-2), Some(1.0)).unwrap();
            let (l, n) = out.read();
            assert!(!(l.is_finite() && n.is_finite()));
            assert_eq!(values(&w), before, "skipped update changed the parameter");
            assert_eq!(step_count(&opt), 0, "skipped update advanced the step");
        }
        opt.zero_grad().unwrap();
        backward_with(&w, &[1.0, 1.0, 1.0, 1.0]);
        let (loss, norm) = opt.clipped_step(&Tensor::from(0.5f32), Lr::Value(1e-2), Some(1.0)).unwrap().read();
        assert_eq!(loss, 0.5);
        assert_relative_eq!(norm, 2.0, epsilon = 1e-6);
        assert_ne!(values(&w), before);
        assert_eq!(step_count(&opt), 1);
    }

    #[test]
    fn clipping_scales_the_gradient_to_the_maximum_norm() {
        let (w, mut opt) = one_param();
        backward_with(&w, &[3.0, 0.0, 4.0, 0.0]);
        // The norm is the one before clipping; the update sees the clipped gradient (lr 0: the
        // parameter stays, the gradient can be read after).
        let (_, norm) = opt.clipped_step(&Tensor::from(1.0f32), Lr::Value(0.0), Some(1.0)).unwrap().read();
        assert_relative_eq!(norm, 5.0, epsilon = 1e-6);
        let clipped = values(&w.grad());
        assert_relative_eq!(clipped[0] as f64, 3.0 / (5.0 + 1e-6), epsilon = 1e-6);
        assert_relative_eq!(clipped[2] as f64, 4.0 / (5.0 + 1e-6), epsilon = 1e-6);
        // Below the maximum: untouched.
        let (_, norm) = opt.clipped_step(&Tensor::from(1.0f32), Lr::Value(0.0), Some(10.0)).unwrap().read();
        assert_relative_eq!(norm, 1.0, epsilon = 1e-6);
        assert_eq!(values(&w.grad()), clipped);
    }

    #[test]
    fn zero_grad_frees_frozen_gradients_and_the_step_count_round_trips() {
        let (w, mut opt) = one_param();
        backward_with(&w, &[1.0; 4]);
        opt.clipped_step(&Tensor::from(1.0f32), Lr::Value(1e-2), None).unwrap();
        let _ = w.set_requires_grad(false);
        opt.zero_grad().unwrap();
        assert!(!w.grad().defined(), "a frozen parameter keeps no gradient memory");
        let saved: HashMap<String, Tensor> = opt.state_tensors().into_iter().collect();
        assert_eq!(saved["w.step"].kind(), Kind::Int64);
        let (_, mut fresh) = one_param();
        fresh.load_state(saved).unwrap();
        assert_eq!(step_count(&fresh), 1);
        let bad: HashMap<String, Tensor> = opt
            .state_tensors()
            .into_iter()
            .map(|(n, t)| if n == "w.step" { (n, Tensor::from(-3i64)) } else { (n, t) })
            .collect();
        assert!(fresh.load_state(bad).unwrap_err().to_string().contains("w.step"));
    }
}
