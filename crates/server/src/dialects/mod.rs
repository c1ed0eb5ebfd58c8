//! The APIs filedock speaks. Each dialect parses its own request shapes, calls core, and renders
//! its own answers and error envelope; none holds a business rule.

pub mod cyberun;
pub mod huawei;
pub mod juniortree;
pub mod native;
pub mod tokenops;
pub mod tus;
pub mod workflows;

pub use crate::config::{DialectsConfig, JuniortreeConfig, default_policies};
