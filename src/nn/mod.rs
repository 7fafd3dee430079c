//! Small neural-network pieces on ndarray with explicit forward and backward passes: parameters
//! in one store, layers that refer to them by id, losses, AdamW and learning-rate schedules.
//! The optimizer is built from the list of parameter ids it may update — that list is all a
//! training regime decides.

pub mod act;
pub mod adapter;
pub mod attention;
pub mod attention_core;
pub mod bert;
pub mod gemm;
pub mod layernorm;
pub mod linear;
pub mod loss;
pub mod optim;
pub mod params;
pub mod rng;
pub mod schedule;
pub mod tensors;
pub mod vecmath;

pub use linear::Linear;
pub use params::{Param, ParamId, ParamStore};
pub use rng::Rng;
