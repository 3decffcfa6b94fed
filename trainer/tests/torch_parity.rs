//! Our GPT-2 and AdamW against numbers PyTorch itself produced (fixtures made by the scripts beside
//! them in tests/fixtures/, with torch 2.11.0 on CPU). Nothing here is computed by the code under test.
//! Tolerances, not bits: the fixtures were written on another machine, whose kernels (AVX2 or
//! AVX-512, oneMKL's code path) round fp32 differently; the differences stay far below 1e-5.

use std::collections::HashMap;

use approx::assert_abs_diff_eq;
use run_dir::config::AdamWConfig;
use run_dir::GptShape;
use run_dir::LossKernel;
use serde_json::Value;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};
use trainer::engine::loss::{self, MicroStep};
use trainer::engine::model::Gpt;
use trainer::engine::optim::{AdamW, Lr};

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

fn ids(v: &Value) -> Tensor {
    let rows: Vec<Vec<i64>> = serde_json::from_value(v.clone()).unwrap();
    let (b, t) = (rows.len() as i64, rows[0].len() as i64);
    Tensor::from_slice(&rows.concat()).view([b, t])
}

#[test]
fn gpt2_loss_logits_and_gradients_match_pytorch() {
    let fx = fixture("gpt2_torch.json");
    let config: GptShape = serde_json::from_value(fx["config"].clone()).unwrap();
    let vs = VarStore::new(Device::Cpu);
    let model = Gpt::new(&vs, config);
    let vars: HashMap<String, Tensor> = vs.variables();
    tch::no_grad(|| {
        for (name, values) in fx["params"].as_object().unwrap() {
            let mut var = vars[name].shallow_clone();
            let shape = var.size();
            var.copy_(&Tensor::from_slice(&floats(values)).view(shape.as_slice()));
        }
    });
    let (idx, targets) = (ids(&fx["idx"]), ids(&fx["targets"]));
    // Both training losses: PyTorch's cross_entropy + autograd (0), and the gradient made in the
    // forward pass, 3 tokens at a time so that chunking is exercised (3).
    let kernels = [LossKernel::CrossEntropy, LossKernel::from_chunk_tokens(3)];
    let cases = fx["by_active_layers"].as_object().unwrap().iter().flat_map(|c| kernels.map(|k| (c, k)));
    for ((active, expected), kernel) in cases {
        let active: usize = active.parse().unwrap();
        for var in vars.values() {
            let mut g = var.grad();
            if g.defined() {
                let _ = g.zero_();
            }
        }
        let logits = model.forward(&idx, active);
        let row: Vec<f32> = Vec::try_from(logits.get(0).get(0)).unwrap();
        for (got, want) in row.iter().zip(floats(&expected["logits_first_row"])) {
            assert_abs_diff_eq!(*got, want, epsilon = 1e-5);
        }
        let loss = loss::mean_loss(&model, &idx, &targets, active, config.vocab);
        assert_abs_diff_eq!(loss.double_value(&[]), expected["loss"].as_f64().unwrap(), epsilon = 1e-5);
        let step = MicroStep { active_layers: active, autocast: false, grad_scale: 1.0, kernel, vocab: config.vocab };
        let trained = loss::forward_backward(&model, &idx, &targets, &step).unwrap();
        assert_abs_diff_eq!(trained.double_value(&[]), expected["loss"].as_f64().unwrap(), epsilon = 1e-5);
        for (name, want) in expected["grad_norms"].as_object().unwrap() {
            let g = vars[name].grad();
            let got = if g.defined() { g.norm().double_value(&[]) } else { 0.0 };
            assert_abs_diff_eq!(got, want.as_f64().unwrap(), epsilon = 1e-5);
        }
    }
}

#[test]
fn fused_adamw_matches_torch_optim_adamw() {
    let fx = fixture("adamw_torch.json");
    let w = Tensor::from_slice(&floats(&fx["w0"])).view([2, 3]).set_requires_grad(true);
    let b = Tensor::from_slice(&floats(&fx["b0"])).set_requires_grad(true);
    let config = AdamWConfig { beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: 0.1 };
    let mut opt = AdamW::new(vec![("w".into(), w.shallow_clone()), ("b".into(), b.shallow_clone())], config);
    let lr = fx["lr"].as_f64().unwrap();
    for (i, expected) in fx["steps"].as_array().unwrap().iter().enumerate() {
        // Set gradients through a backward pass of a linear function: d/dp sum(p * g) = g.
        opt.zero_grad().unwrap();
        let gw = Tensor::from_slice(&floats(&fx["grads_w"][i])).view([2, 3]);
        let mut loss = (&w * &gw).sum(Kind::Float);
        if !fx["grads_b"][i].is_null() {
            loss += (&b * Tensor::from_slice(&floats(&fx["grads_b"][i]))).sum(Kind::Float);
            let _ = b.set_requires_grad(true);
        } else {
            // Frozen for this step: no gradient, so no update, no decay, no step count.
            let _ = b.set_requires_grad(false);
        }
        loss.backward();
        opt.clipped_step(&loss, Lr::Value(lr), None).unwrap();
        let _ = b.set_requires_grad(true);
        for (tensor, key) in [(&w, "w"), (&b, "b")] {
            let got: Vec<f32> = Vec::try_from(tensor.detach().flatten(0, -1)).unwrap();
            for (g, want) in got.iter().zip(floats(&expected[key])) {
                assert_abs_diff_eq!(*g, want, epsilon = 1e-6);
            }
        }
    }
}
