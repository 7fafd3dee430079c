//! What trains in the native layers above a frost line: every weight (`Full`), the bias terms
//! alone (`BitFit`), or low-rank factors beside frozen weights (`Lora`). The regime names the
//! tuning; the layers say which of their parameters it selects ([`super::bert::BertLayer::tuned_ids`]).

use std::fmt;

use ndarray::{Array2, ArrayView2, Ix2};
use serde::{Deserialize, Serialize};

use super::params::{zeros, ParamId, ParamStore};
use super::rng::Rng;

/// Which parameters of the layers above the frost line train.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Tuning {
    /// Every weight, bias and LayerNorm parameter.
    #[default]
    Full,
    /// The bias terms alone: the six dense layers' biases and both LayerNorms' β (BitFit, Ben
    /// Zaken et al. 2022); weights and LayerNorm gains γ stay frozen.
    BitFit,
    /// Low-rank factors on the targeted dense layers (`train.lora`); every base parameter stays
    /// frozen, bit for bit.
    Lora,
}

impl Tuning {
    /// The regime-string word (`bitfit,frost-line=4`); `None` for full layers.
    pub fn word(self) -> Option<&'static str> {
        match self {
            Tuning::Full => None,
            Tuning::BitFit => Some("bitfit"),
            Tuning::Lora => Some("lora"),
        }
    }

    pub fn from_word(word: &str) -> Option<Self> {
        match word {
            "bitfit" => Some(Tuning::BitFit),
            "lora" => Some(Tuning::Lora),
            _ => None,
        }
    }

    /// The layers' learning rate when the run sets none: few parameters take larger steps
    /// (LoRA's RoBERTa-base recipe uses 4e-4–5e-4, BitFit's 1e-4–1e-3; LoRA's 1e-3 here, with
    /// factors on all six dense matrices, came within 0.5 of full layers on Banking77,
    /// GoEmotions-Ekman and WNUT-17 where 5e-4 on Q/K/V/O did not: bench-results/adapters.md).
    pub fn default_encoder_lr(self) -> f32 {
        match self {
            Tuning::Full => 5e-5,
            Tuning::BitFit => 1e-3,
            Tuning::Lora => 1e-3,
        }
    }
}

/// Whose copy of what the regime tunes a task trains (`tasks.X.adapter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Adapter {
    /// One copy, tuned by every task that shares it.
    #[default]
    Shared,
    /// The task's own copy (named `adapters.<task>.…`) on the one frozen backbone, so tasks do
    /// not pull one copy in two directions.
    Own,
}

impl Adapter {
    pub fn is_shared(&self) -> bool {
        *self == Adapter::Shared
    }
}

/// A dense layer of a BERT layer that LoRA may adapt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoraTarget {
    Query,
    Key,
    Value,
    /// The attention block's output projection (O).
    AttentionOutput,
    /// The feed-forward block's first matrix.
    Intermediate,
    /// The feed-forward block's second matrix.
    Output,
}

impl fmt::Display for LoraTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LoraTarget::Query => "query",
            LoraTarget::Key => "key",
            LoraTarget::Value => "value",
            LoraTarget::AttentionOutput => "attention_output",
            LoraTarget::Intermediate => "intermediate",
            LoraTarget::Output => "output",
        })
    }
}

/// `train.lora`: the factors' rank, their scale α (the update is (α / r)·B·A) and the dense
/// layers they adapt. The defaults are LoRA's: r = 8, α = 16, on Q, K, V and O.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoraShape {
    pub rank: usize,
    pub alpha: f32,
    pub targets: Vec<LoraTarget>,
}

impl Default for LoraShape {
    fn default() -> Self {
        Self {
            rank: 8,
            alpha: 16.0,
            targets: vec![
                LoraTarget::Query,
                LoraTarget::Key,
                LoraTarget::Value,
                LoraTarget::AttentionOutput,
                LoraTarget::Intermediate,
                LoraTarget::Output,
            ],
        }
    }
}

impl LoraShape {
    /// Why this shape cannot train, if it cannot (checked where a run file is read).
    pub fn refusal(&self) -> Option<String> {
        if self.rank == 0 {
            return Some("train.lora.rank = 0: must be at least 1".into());
        }
        if !(self.alpha.is_finite() && self.alpha > 0.0) {
            return Some(format!(
                "train.lora.alpha = {}: must be a finite number > 0",
                self.alpha
            ));
        }
        if self.targets.is_empty() {
            return Some("train.lora.targets is empty: name at least one of query, key, value, attention_output, intermediate, output".into());
        }
        let mut seen = self.targets.clone();
        seen.sort_unstable();
        if let Some(w) = seen.windows(2).find(|w| w[0] == w[1]) {
            return Some(format!("train.lora.targets names {} twice", w[0]));
        }
        None
    }

    pub fn scale(&self) -> f32 {
        self.alpha / self.rank as f32
    }
}

/// The two factors of one adapted dense layer: `A` `[rank, in]`, `B` `[out, rank]`, named
/// `<layer>.lora_a` / `<layer>.lora_b`. `B` starts at zero, so an adapter starts as the identity.
#[derive(Debug, Clone, Copy)]
pub struct Lora {
    pub a: ParamId,
    pub b: ParamId,
    pub scale: f32,
}

impl Lora {
    /// Fresh factors for a `[out, in]` weight named `prefix`: A ~ U(−1/√in, 1/√in) (PyTorch's
    /// default init, as PEFT's), B = 0.
    pub fn new(
        store: &mut ParamStore,
        prefix: &str,
        (out_dim, in_dim): (usize, usize),
        shape: &LoraShape,
        rng: &mut Rng,
    ) -> Self {
        let bound = 1.0 / (in_dim as f64).sqrt();
        let mut a = zeros(&[shape.rank, in_dim]);
        a.mapv_inplace(|_| ((rng.uniform() * 2.0 - 1.0) * bound) as f32);
        Self {
            a: store.add(format!("{prefix}.lora_a"), a),
            b: store.add(format!("{prefix}.lora_b"), zeros(&[out_dim, shape.rank])),
            scale: shape.scale(),
        }
    }

    pub fn ids(&self) -> [ParamId; 2] {
        [self.a, self.b]
    }

    fn factor<'a>(store: &'a ParamStore, id: ParamId) -> ArrayView2<'a, f32> {
        store
            .get(id)
            .value
            .view()
            .into_dimensionality::<Ix2>()
            .expect("2-D LoRA factor")
    }

    /// `y += scale · (x Aᵀ) Bᵀ`.
    pub fn forward_into(&self, store: &ParamStore, x: ArrayView2<f32>, y: &mut Array2<f32>) {
        let kernel = store.kernel();
        let h = kernel.dot(&x, &Self::factor(store, self.a).t());
        kernel.gemm(
            self.scale,
            &h.view(),
            &Self::factor(store, self.b).t(),
            1.0,
            &mut y.view_mut(),
        );
    }

    /// Accumulates dA and dB; adds the adapter's share of dx into `dx` when given.
    pub fn backward(
        &self,
        store: &mut ParamStore,
        x: ArrayView2<f32>,
        dy: ArrayView2<f32>,
        dx: Option<&mut Array2<f32>>,
    ) {
        let kernel = store.kernel();
        let a = Self::factor(store, self.a).to_owned();
        let b = Self::factor(store, self.b).to_owned();
        let h = kernel.dot(&x, &a.t());
        // dh = scale · dy B: the gradient at the rank-r bottleneck.
        let mut dh = Array2::zeros((x.nrows(), a.nrows()));
        kernel.gemm(self.scale, &dy, &b.view(), 0.0, &mut dh.view_mut());
        {
            let gb = &mut store.get_mut(self.b).grad;
            let mut gb = gb.view_mut().into_dimensionality::<Ix2>().expect("2-D");
            kernel.gemm(self.scale, &dy.t(), &h.view(), 1.0, &mut gb);
        }
        {
            let ga = &mut store.get_mut(self.a).grad;
            let mut ga = ga.view_mut().into_dimensionality::<Ix2>().expect("2-D");
            kernel.gemm(1.0, &dh.t(), &x, 1.0, &mut ga);
        }
        if let Some(dx) = dx {
            kernel.gemm(1.0, &dh.view(), &a.view(), 1.0, &mut dx.view_mut());
        }
    }

    /// `scale · B A`, the `[out, in]` update this adapter adds to its weight.
    pub fn delta(&self, store: &ParamStore) -> Array2<f32> {
        let b = Self::factor(store, self.b);
        let a = Self::factor(store, self.a);
        let mut d = Array2::zeros((b.nrows(), a.ncols()));
        store
            .kernel()
            .gemm(self.scale, &b, &a, 0.0, &mut d.view_mut());
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_refuse_what_cannot_train() {
        assert!(LoraShape::default().refusal().is_none());
        let bad = |f: &dyn Fn(&mut LoraShape)| {
            let mut s = LoraShape::default();
            f(&mut s);
            s.refusal().expect("refused")
        };
        assert!(bad(&|s| s.rank = 0).contains("rank"));
        assert!(bad(&|s| s.alpha = f32::NAN).contains("alpha"));
        assert!(bad(&|s| s.targets.clear()).contains("at least one"));
        assert!(bad(&|s| s.targets.push(LoraTarget::Query)).contains("query twice"));
        assert_eq!(LoraShape::default().scale(), 2.0);
    }
}
