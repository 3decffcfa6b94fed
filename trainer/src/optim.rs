//! AdamW whose moments and step counts live in tensors we own, so they can be checkpointed and
//! reset, plus the learning-rate schedules.
//!
//! The update is `torch.optim.AdamW`'s (single-tensor path), per parameter with a gradient:
//! ```text
//! p   ← p · (1 − lr·wd)                      decoupled decay, only tensors with ≥ 2 dims
//! m   ← β1·m + (1−β1)·g
//! v   ← β2·v + (1−β2)·g²
//! p   ← p − lr/(1−β1^t) · m / (√v / √(1−β2^t) + ε)
//! ```
//! Frozen tensors (no gradient) are skipped entirely: no step, no decay, and their step count `t`
//! does not advance, exactly as PyTorch skips parameters whose `.grad` is `None`.

use std::collections::HashMap;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// AdamW's hyperparameters (the learning rate comes per step from a [`LrSchedule`]).
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

struct ParamState {
    name: String,
    param: Tensor,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    step: u64,
    decay: bool,
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
                step: 0,
                decay: param.dim() >= 2,
                name,
                param,
            })
            .collect();
        AdamW { config, states }
    }

    /// Zero the gradients of the trainable parameters (frozen ones keep whatever they had, which
    /// nothing reads: skipping them saves a kernel per frozen tensor).
    pub fn zero_grad(&mut self) {
        for s in self.states.iter_mut().filter(|s| s.param.requires_grad()) {
            let mut grad = s.param.grad();
            if grad.defined() {
                let _ = grad.zero_();
            }
        }
    }

    /// The gradients that take part in this step (trainable parameters with a gradient).
    pub fn active_grads(&self) -> Vec<Tensor> {
        self.states.iter().filter(|s| s.param.requires_grad()).map(|s| s.param.grad()).filter(|g| g.defined()).collect()
    }

    /// Global L2 norm of the active gradients (a 0-d tensor; reading it syncs the device).
    pub fn grad_norm(&self) -> Tensor {
        let grads = self.active_grads();
        if grads.is_empty() {
            return Tensor::from(0.0f32);
        }
        let squares: Vec<Tensor> = grads.iter().map(|g| g.to_kind(Kind::Float).square().sum(Kind::Float)).collect();
        Tensor::stack(&squares, 0).sum(Kind::Float).sqrt()
    }

    /// Scale the active gradients so their global norm is at most `max_norm` (as
    /// `torch.nn.utils.clip_grad_norm_`); `norm` is the norm before clipping.
    pub fn clip_grad_norm(&mut self, norm: f64, max_norm: f64) {
        let coef = max_norm / (norm + 1e-6);
        if coef < 1.0 {
            for mut g in self.active_grads() {
                let _ = g.g_mul_scalar_(coef);
            }
        }
    }

    /// One AdamW update at learning rate `lr`.
    pub fn step(&mut self, lr: f64) {
        let AdamWConfig { beta1, beta2, eps, weight_decay } = self.config;
        tch::no_grad(|| {
            for s in &mut self.states {
                let grad = s.param.grad();
                if !s.param.requires_grad() || !grad.defined() {
                    continue;
                }
                s.step += 1;
                let t = s.step as i32;
                if s.decay && weight_decay != 0.0 {
                    let _ = s.param.g_mul_scalar_(1.0 - lr * weight_decay);
                }
                let _ = s.exp_avg.lerp_(&grad, 1.0 - beta1);
                let _ = s.exp_avg_sq.g_mul_scalar_(beta2);
                let _ = s.exp_avg_sq.g_add_(&(&grad * &grad * (1.0 - beta2)));
                let bias_correction1 = 1.0 - beta1.powi(t);
                let bias_correction2_sqrt = (1.0 - beta2.powi(t)).sqrt();
                let denom = (s.exp_avg_sq.sqrt() / bias_correction2_sqrt) + eps;
                let update = &s.exp_avg / denom * (lr / bias_correction1);
                let _ = s.param.g_sub_(&update);
            }
        });
    }

    /// Forget the moments and step counts (a new optimizer, as the reference code makes for
    /// continual training).
    pub fn reset(&mut self) {
        tch::no_grad(|| {
            for s in &mut self.states {
                let _ = s.exp_avg.zero_();
                let _ = s.exp_avg_sq.zero_();
                s.step = 0;
            }
        });
    }

    /// Moments and steps as named tensors: `<param>.exp_avg`, `<param>.exp_avg_sq`, `<param>.step`.
    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::with_capacity(3 * self.states.len());
        for s in &self.states {
            out.push((format!("{}.exp_avg", s.name), s.exp_avg.shallow_clone()));
            out.push((format!("{}.exp_avg_sq", s.name), s.exp_avg_sq.shallow_clone()));
            out.push((format!("{}.step", s.name), Tensor::from(s.step as i64)));
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
                s.exp_avg.copy_(&m);
                s.exp_avg_sq.copy_(&v);
                s.step = u64::try_from(step.int64_value(&[])).context("negative optimizer step")?;
            }
            Ok(())
        })
    }
}

/// How the learning rate moves over the steps of a run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LrSchedule {
    /// The same rate every step (the reference code: 6e-4).
    Constant { lr: f64 },
    /// Linear warmup from `lr_max / warmup_steps` to `lr_max`, then cosine decay to `lr_min` at
    /// `decay_steps`, then `lr_min` (build-nanogpt's `get_lr`).
    WarmupCosine { lr_max: f64, lr_min: f64, warmup_steps: u64, decay_steps: u64 },
}

impl LrSchedule {
    /// Learning rate of step `step` (1-based: the first optimizer step is 1).
    pub fn lr(&self, step: u64) -> f64 {
        match *self {
            LrSchedule::Constant { lr } => lr,
            LrSchedule::WarmupCosine { lr_max, lr_min, warmup_steps, decay_steps } => {
                let it = step.saturating_sub(1); // build-nanogpt counts from 0
                if it < warmup_steps {
                    return lr_max * (it + 1) as f64 / warmup_steps as f64;
                }
                if it >= decay_steps {
                    return lr_min;
                }
                let ratio = (it - warmup_steps) as f64 / (decay_steps - warmup_steps).max(1) as f64;
                let coeff = 0.5 * (1.0 + (std::f64::consts::PI * ratio).cos());
                lr_min + coeff * (lr_max - lr_min)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    #[test]
    fn warmup_then_cosine_to_the_floor() {
        let s = LrSchedule::WarmupCosine { lr_max: 6e-4, lr_min: 6e-5, warmup_steps: 10, decay_steps: 110 };
        assert_relative_eq!(s.lr(1), 6e-5);
        assert_relative_eq!(s.lr(10), 6e-4);
        assert_relative_eq!(s.lr(11), 6e-4);
        assert_relative_eq!(s.lr(61), 6e-5 + 0.5 * (6e-4 - 6e-5), epsilon = 1e-12);
        assert_relative_eq!(s.lr(111), 6e-5);
        assert_relative_eq!(s.lr(5000), 6e-5);
        assert_relative_eq!(LrSchedule::Constant { lr: 6e-4 }.lr(77), 6e-4);
    }
}
