//! placeholder
pub struct Engine;
#[derive(Default)]
pub struct EngineConfig;
