//! The training loss: next-token cross-entropy, and the forward + backward pass of a micro-batch
//! ([`forward_backward`]) with one of two kernels ([`LossKernel`]): PyTorch's `cross_entropy`
//! differentiated by autograd, or a gradient made during the forward pass, a chunk of tokens at a
//! time, and written over the logits themselves.
//!
//! Why: PyTorch's `cross_entropy` under bf16 autocast upcasts all `[tokens, vocab]` logits to fp32,
//! keeps fp32 log-probabilities for the backward pass, then makes an fp32 gradient and casts it
//! back: about 36 bytes of memory traffic and 4 bytes of saved memory per logit, and GPT-2 has
//! 16,384 × 50,304 = 824M logits per micro-batch (~30 GB moved, 3.3 GB held). Here each chunk goes
//! logits → fp32 log-softmax → softmax → (softmax − one-hot)·scale → back into the logits' buffer:
//! about 20 bytes per logit, fp32 for one chunk at a time, and nothing saved, because the LM head's
//! backward needs the hidden states and `wte`, never the logits.
//!
//! The arithmetic is PyTorch's (log-softmax in fp32, mean over tokens, gradient
//! `(softmax − one_hot) / tokens`); the tests hold the loss and every parameter's gradient to
//! autograd through `cross_entropy`.

use run_dir::config::LossKernel;
use tch::{Kind, Reduction, Tensor};

use crate::device::native::NativeError;
use crate::engine::model::Gpt;

/// The logits of the first `vocab` ids: the softmax never sees the rows padded on for speed
/// (llm.c's rule), unless `vocab` is the padded size (runs before format 3).
pub fn scored(logits: &Tensor, vocab: usize) -> Tensor {
    let padded = *logits.size().last().expect("logits have a vocabulary dimension");
    if vocab as i64 >= padded {
        logits.shallow_clone()
    } else {
        logits.narrow(-1, 0, vocab as i64)
    }
}

/// Mean next-token cross-entropy of `targets` under `model` through `active_layers` blocks, the
/// softmax over the first `vocab` ids (the validation loss; differentiable when the parameters
/// require gradients).
pub fn mean_loss(model: &Gpt, idx: &Tensor, targets: &Tensor, active_layers: usize, vocab: usize) -> Tensor {
    let logits = scored(&model.forward(idx, active_layers), vocab);
    let width = logits.size()[2];
    logits.reshape([-1, width]).cross_entropy_loss::<Tensor>(&targets.view([-1]), None, Reduction::Mean, -100, 0.0)
}

/// How one micro-batch of a training step is run.
#[derive(Debug, Clone, Copy)]
pub struct MicroStep {
    /// Blocks the forward pass runs through.
    pub active_layers: usize,
    /// bf16 autocast (CUDA).
    pub autocast: bool,
    /// The gradient is of `grad_scale ×` the mean loss (1 / micro-batches per step).
    pub grad_scale: f64,
    pub kernel: LossKernel,
    /// The softmax runs over the first `vocab` ids (the tokenizer's; see [`scored`]).
    pub vocab: usize,
}

/// One micro-batch's forward and backward pass: the gradients of `step.grad_scale ×` the mean
/// loss accumulate into the trainable parameters, and the mean loss comes back (0-d, detached,
/// not read on the host, so nothing waits for the device).
pub fn forward_backward(model: &Gpt, idx: &Tensor, targets: &Tensor, step: &MicroStep) -> Result<Tensor, NativeError> {
    let MicroStep { active_layers, autocast, grad_scale, kernel, vocab } = *step;
    match kernel {
        LossKernel::CrossEntropy => {
            let loss =
                crate::device::native::autocast(autocast, || mean_loss(model, idx, targets, active_layers, vocab));
            (&loss * grad_scale).backward();
            Ok(loss.detach())
        }
        LossKernel::Chunked { tokens } => {
            let logits = crate::device::native::autocast(autocast, || model.forward(idx, active_layers));
            let padded = logits.size()[2];
            // The gradient overwrites the logits (a detached alias of the same memory): backward
            // through the head reads only the hidden states and `wte`.
            let buffer = logits.detach();
            let flat = buffer.view([-1, padded]);
            let loss = cross_entropy_grad_(&scored(&flat, vocab), &targets.view([-1]), grad_scale, tokens.get() as i64);
            if (vocab as i64) < padded {
                // Padded logits take no probability mass, so the loss does not depend on them.
                let _ = flat.narrow(1, vocab as i64, padded - vocab as i64).zero_();
            }
            if logits.requires_grad() {
                crate::device::native::backward_with(&logits, &buffer)?;
            }
            Ok(loss)
        }
    }
}

/// Mean cross-entropy of `logits` `[tokens, vocab]` against `targets` `[tokens]` (a 0-d fp32
/// tensor, not read on the host), overwriting `logits` with `grad_scale ×` the loss's gradient.
/// `logits` must be a buffer nobody needs any more (e.g. `detach()` of the head's output), and
/// `chunk_tokens` bounds the fp32 working set to `chunk_tokens × vocab` values.
pub fn cross_entropy_grad_(logits: &Tensor, targets: &Tensor, grad_scale: f64, chunk_tokens: i64) -> Tensor {
    let (tokens, _vocab) = logits.size2().expect("logits are [tokens, vocab]");
    let chunk = chunk_tokens.clamp(1, tokens.max(1));
    let device = logits.device();
    tch::no_grad(|| {
        // Device-side constants: building them from host numbers would cost a copy per chunk.
        let scale = Tensor::full([], grad_scale / tokens as f64, (Kind::Float, device));
        let minus_one = Tensor::full([chunk, 1], -1.0, (Kind::Float, device));
        let mut loss_sum = Tensor::zeros([], (Kind::Float, device));
        let mut start = 0;
        while start < tokens {
            let rows = chunk.min(tokens - start);
            let part = logits.narrow(0, start, rows);
            let target = targets.narrow(0, start, rows).unsqueeze(1);
            let mut probs = part.log_softmax(-1, Kind::Float);
            loss_sum -= probs.gather(1, &target, false).sum(Kind::Float);
            let _ = probs.exp_();
            let _ = probs.scatter_add_(1, &target, &minus_one.narrow(0, 0, rows));
            // One pass: scale and cast back to the logits' dtype, into the logits' memory.
            let _ = probs.mul_out(&part, &scale);
            start += rows;
        }
        loss_sum / tokens as f64
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;
    use cost_model::flops::Trainable;
    use run_dir::config::GptShape;
    use tch::nn::VarStore;
    use tch::Device;

    fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
        (a - b).abs().max().double_value(&[])
    }

    #[test]
    fn loss_and_gradient_match_autograd_through_cross_entropy() {
        tch::manual_seed(3);
        for (tokens, vocab, chunk) in [(37, 11, 8), (64, 320, 64), (5, 7, 1000), (16, 50, 1)] {
            let logits = (Tensor::randn([tokens, vocab], (Kind::Float, Device::Cpu)) * 3.0).set_requires_grad(true);
            let targets = Tensor::randint(vocab, [tokens], (Kind::Int64, Device::Cpu));
            let want = logits.cross_entropy_loss::<Tensor>(&targets, None, Reduction::Mean, -100, 0.0) * 0.25;
            want.backward();
            let buffer = logits.detach().copy();
            let got = cross_entropy_grad_(&buffer, &targets, 0.25, chunk);
            assert_relative_eq!(got.double_value(&[]) * 0.25, want.double_value(&[]), max_relative = 1e-6);
            assert!(max_abs_diff(&buffer, &logits.grad()) < 1e-7, "gradient differs ({tokens}x{vocab}, chunk {chunk})");
        }
    }

    #[test]
    fn padded_vocabulary_rows_never_change_the_loss_or_take_gradient() {
        // 64 rows in wte, 50 real ids: the loss is a function of the 50 only, for both kernels.
        tch::manual_seed(5);
        let vs = VarStore::new(Device::Cpu);
        let model = Gpt::new(&vs, GptShape { layers: 2, heads: 2, d_model: 16, context: 8, vocab: 64 });
        let idx = Tensor::randint(50, [3, 8], (Kind::Int64, Device::Cpu));
        let targets = Tensor::randint(50, [3, 8], (Kind::Int64, Device::Cpu));
        let wte = vs.variables()["transformer.wte.weight"].shallow_clone();
        let before = mean_loss(&model, &idx, &targets, 2, 50).double_value(&[]);
        tch::no_grad(|| {
            let _ = wte.narrow(0, 50, 14).fill_(3.0);
        });
        let after = mean_loss(&model, &idx, &targets, 2, 50).double_value(&[]);
        assert_eq!(before, after, "padded rows changed the loss");
        assert_ne!(after, mean_loss(&model, &idx, &targets, 2, 64).double_value(&[]), "the padded softmax differs");
        for kernel in [LossKernel::CrossEntropy, LossKernel::from_chunk_tokens(7)] {
            crate::device::native::clear_grad(&wte).unwrap();
            let step = MicroStep { active_layers: 2, autocast: false, grad_scale: 1.0, kernel, vocab: 50 };
            let loss = forward_backward(&model, &idx, &targets, &step).unwrap().double_value(&[]);
            assert!((loss - after).abs() < 1e-6, "{kernel:?}: {loss} vs {after}");
            let padded_grad = wte.grad().narrow(0, 50, 14).abs().max().double_value(&[]);
            assert_eq!(padded_grad, 0.0, "{kernel:?}: padded rows got a gradient");
        }
    }

    #[test]
    fn bf16_logits_get_a_bf16_gradient_in_place() {
        let logits = Tensor::randn([10, 30], (Kind::Float, Device::Cpu));
        let targets = Tensor::randint(30, [10], (Kind::Int64, Device::Cpu));
        let reference = logits.copy().set_requires_grad(true);
        reference.cross_entropy_loss::<Tensor>(&targets, None, Reduction::Mean, -100, 0.0).backward();
        let buffer = logits.to_kind(Kind::BFloat16);
        let loss = cross_entropy_grad_(&buffer, &targets, 1.0, 4);
        assert_eq!(buffer.kind(), Kind::BFloat16);
        assert_eq!(loss.kind(), Kind::Float);
        // bf16 keeps 8 bits of mantissa: the gradient agrees to bf16 precision.
        assert!(max_abs_diff(&buffer.to_kind(Kind::Float), &reference.grad()) < 2e-3);
    }

    #[test]
    fn both_training_losses_give_the_same_gradients_frozen_or_not() {
        tch::manual_seed(1);
        let vs = VarStore::new(Device::Cpu);
        let mut model = Gpt::new(&vs, GptShape { layers: 2, heads: 2, d_model: 16, context: 8, vocab: 64 });
        let idx = Tensor::randint(64, [3, 8], (Kind::Int64, Device::Cpu));
        let targets = Tensor::randint(64, [3, 8], (Kind::Int64, Device::Cpu));
        let all = Trainable::all(2);
        let top_only = Trainable { active_layers: 2, first_trainable: 1, embeddings: false };
        for trainable in [all, top_only] {
            model.apply_trainable(trainable);
            let mut grads = Vec::new();
            for kernel in [LossKernel::CrossEntropy, LossKernel::from_chunk_tokens(5)] {
                model.all_parameters().into_iter().for_each(|p| crate::device::native::clear_grad(p).unwrap());
                let step = MicroStep { active_layers: 2, autocast: false, grad_scale: 0.5, kernel, vocab: 64 };
                let loss = forward_backward(&model, &idx, &targets, &step).unwrap();
                let g: Vec<Option<Tensor>> = model
                    .all_parameters()
                    .into_iter()
                    .map(|p| Some(p.grad()).filter(|g| g.defined()).map(|g| g.copy()))
                    .collect();
                grads.push((loss.double_value(&[]), g));
            }
            let ((loss_a, a), (loss_b, b)) = (&grads[0], &grads[1]);
            assert!((loss_a - loss_b).abs() < 1e-6);
            for (ga, gb) in a.iter().zip(b) {
                match (ga, gb) {
                    (Some(x), Some(y)) => assert!((x - y).abs().max().double_value(&[]) < 1e-6),
                    (None, None) => {}
                    _ => panic!("one path made a gradient the other did not"),
                }
            }
            let with_grad = a.iter().filter(|g| g.is_some()).count();
            assert_eq!(with_grad, if trainable.embeddings { 28 } else { 12 });
        }
    }
}
