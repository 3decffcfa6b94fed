//! `deterministic = true` (`train --deterministic`) turns on ATen's deterministic algorithms and
//! pins cuBLAS's workspace before the first matmul; a run without it turns them off again. (Its own
//! test binary: the flags are process-wide, and other tests initialise models concurrently.)

#[test]
fn a_deterministic_config_sets_the_flags_and_a_plain_one_clears_them() {
    std::env::remove_var("CUBLAS_WORKSPACE_CONFIG");
    let mut config = run_dir::TrainConfig::preset("tiny").unwrap();
    config.set("model.layers=1").unwrap();
    config.set("deterministic=true").unwrap();
    trainer::engine::init::init_model(&config, tch::Device::Cpu).unwrap();
    assert!(trainer::device::native::deterministic());
    assert_eq!(std::env::var("CUBLAS_WORKSPACE_CONFIG").as_deref(), Ok(":4096:8"));
    config.set("deterministic=false").unwrap();
    trainer::engine::init::init_model(&config, tch::Device::Cpu).unwrap();
    assert!(!trainer::device::native::deterministic());
}
