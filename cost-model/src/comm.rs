//! Communication of data-parallel training: how long the gradient all-reduce of one optimizer
//! step takes, predicted from the bytes it moves and the link's bandwidth.
//!
//! A ring all-reduce (NCCL's and Gloo's algorithm for large buffers) sends and receives
//! `2 (N − 1) / N` times the buffer through every rank's link, so its time is that many bytes
//! over the per-direction bandwidth; latency is ignored (the gradient of a GPT-2 is hundreds of
//! megabytes).

use crate::ModelShape;

/// Parameters of a GPT-2 of `shape` (the tied head counted once; every row of the padded
/// embedding included, since its gradient is reduced too).
pub fn parameters(shape: &ModelShape) -> u64 {
    let d = shape.d_model as u64;
    let block = 12 * d * d + 13 * d;
    shape.layers as u64 * block + (shape.vocab + shape.context) as u64 * d + 2 * d
}

/// Bytes every rank sends (and receives) in a ring all-reduce of `bytes` over `world` ranks.
pub fn ring_bytes_per_rank(bytes: f64, world: u32) -> f64 {
    if world <= 1 {
        return 0.0;
    }
    2.0 * f64::from(world - 1) / f64::from(world) * bytes
}

/// Seconds of one all-reduce of the gradients of `shape` (`bytes_per_value` each: 4 for fp32) over
/// `world` ranks linked at `bandwidth` bytes per second each way.
pub fn allreduce_seconds(shape: &ModelShape, bytes_per_value: f64, world: u32, bandwidth: f64) -> f64 {
    ring_bytes_per_rank(parameters(shape) as f64 * bytes_per_value, world) / bandwidth
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    #[test]
    fn gpt2_124m_on_eight_gpus() {
        let shape = ModelShape::gpt2_124m();
        assert_eq!(parameters(&shape), 124_475_904);
        // fp32 gradients: 498 MB; a ring over 8 ranks moves 7/4 of it through each link.
        let bytes = ring_bytes_per_rank(124_475_904.0 * 4.0, 8);
        assert_relative_eq!(bytes, 1.75 * 497_903_616.0);
        // At 450 GB/s each way (NVLink 4, H100 SXM): 1.94 ms.
        assert_relative_eq!(allreduce_seconds(&shape, 4.0, 8, 450e9), bytes / 450e9);
        assert!((allreduce_seconds(&shape, 4.0, 8, 450e9) - 1.936e-3).abs() < 1e-6);
        assert_eq!(allreduce_seconds(&shape, 4.0, 1, 450e9), 0.0);
    }
}
