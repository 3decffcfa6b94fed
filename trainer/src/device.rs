//! Which device tensors live on.

use tch::Device;

/// Device names a user can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceChoice {
    /// CUDA when available, else CPU.
    Auto,
    Cpu,
    Cuda,
}

/// Resolve a choice to a tch device; `None` when CUDA is asked for but absent.
pub fn resolve(choice: DeviceChoice) -> Option<Device> {
    match choice {
        DeviceChoice::Cpu => Some(Device::Cpu),
        DeviceChoice::Cuda => tch::Cuda::is_available().then_some(Device::Cuda(0)),
        DeviceChoice::Auto => Some(Device::cuda_if_available()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Kind, Tensor};

    #[test]
    fn libtorch_multiplies_matrices_on_cpu() {
        let device = resolve(DeviceChoice::Cpu).unwrap();
        let a = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0])
            .reshape([2, 2])
            .to_device(device);
        let b = Tensor::from_slice(&[5.0f32, 6.0, 7.0, 8.0])
            .reshape([2, 2])
            .to_device(device);
        let c = a.matmul(&b);
        let got: Vec<f32> = Vec::try_from(c.flatten(0, -1)).unwrap();
        assert_eq!(got, vec![19.0, 22.0, 43.0, 50.0]);
        assert_eq!(c.kind(), Kind::Float);
    }
}
