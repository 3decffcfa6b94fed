//! # trainer
//!
//! GPT-2 in tch (libtorch): baseline and layer-wise incremental schedules built from
//! [`cost_model::Plan`]. This crate grows issue by issue; today it holds the device selection that
//! every later module uses.

pub mod device;
