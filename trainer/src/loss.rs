//! The training loss: next-token cross-entropy whose gradient is made during the forward pass, a
//! chunk of tokens at a time, and written over the logits themselves.
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

use tch::{Kind, Tensor};

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
    use tch::{Device, Reduction};

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
}
