//! Using a trained checkpoint: its heads' input vectors made as training made them
//! ([`encoder`]), and its heads scored on a split ([`score`]). `predict` and `eval` run on this;
//! the checkpoint module itself only saves, loads and checks.

pub mod encoder;
pub mod score;

pub use encoder::CheckpointEncoder;
pub use score::evaluate_checkpoint;
