//! A run's model and optimizer, freshly initialised: what training, resuming and `bench` start
//! from.

use run_dir::TrainConfig;
use tch::nn::VarStore;
use tch::{Device, Tensor};

use crate::engine::model::Gpt;
use crate::engine::optim::AdamW;

/// A freshly initialised model and its optimizer. All randomness of a run is drawn here: a
/// resumed run draws the same numbers, then overwrites them from the checkpoint. On CUDA, sets
/// bf16 autocast and TF32 as the config asks.
pub fn init_model(config: &TrainConfig, device: Device) -> anyhow::Result<(VarStore, Gpt, AdamW)> {
    // libtorch's generator is global: hold a lock from seeding to the last draw so another
    // thread initialising a model at the same time cannot interleave its draws with ours.
    static INIT_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let guard = INIT_LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    tch::manual_seed(config.seed as i64);
    let vs = VarStore::new(device);
    let model = Gpt::new(&vs, config.model);
    drop(guard);
    let mut params: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    params.sort_by(|a, b| a.0.cmp(&b.0));
    let optimizer = AdamW::new(params, config.adamw);
    if device.is_cuda() {
        if config.bf16 {
            crate::device::native::use_bf16_autocast_on_cuda()?;
        }
        crate::device::native::allow_tf32(config.tf32)?;
        crate::device::native::sdpa_backend(config.sdpa_backend)?;
    }
    set_determinism(config.deterministic)?;
    crate::device::native::single_threaded_autograd()?;
    Ok((vs, model, optimizer))
}

/// `deterministic`: ATen's deterministic algorithms, and cuBLAS's fixed workspace
/// (`CUBLAS_WORKSPACE_CONFIG=:4096:8`, unless set; read when the first cuBLAS handle is made, which
/// is after this: the model's initialisation runs no matmul). Off again for a run without it.
fn set_determinism(on: bool) -> anyhow::Result<()> {
    if on && std::env::var_os("CUBLAS_WORKSPACE_CONFIG").is_none() {
        std::env::set_var("CUBLAS_WORKSPACE_CONFIG", ":4096:8");
    }
    Ok(crate::device::native::set_deterministic(on)?)
}
