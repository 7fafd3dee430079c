//! Task heads on sentence vectors: linear, or an MLP (Linear → GELU → dropout → Linear).
//! Training-free heads (nearest centroid, zero-shot label prompts) are linear heads whose weights
//! are set rather than learned, so they checkpoint, predict and report like any other.

use std::collections::HashMap;

use ndarray::{Array2, ArrayD, ArrayView2, Axis};
use serde::{Deserialize, Serialize};

use crate::nn::{act, Linear, ParamId, ParamStore, Rng};

/// The heads a task can have — the one head enum. Its name is the one spelling of a head
/// everywhere: run files, flags, tables and reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum HeadKind {
    Linear,
    /// Linear → GELU → dropout → Linear.
    Mlp,
    /// Cosine to each class's mean training vector (training-free).
    Centroid,
    /// Cosine to the embedding of each label's description (training-free).
    ZeroShot,
}

impl HeadKind {
    pub fn name(self) -> &'static str {
        match self {
            HeadKind::Linear => "linear",
            HeadKind::Mlp => "mlp",
            HeadKind::Centroid => "centroid",
            HeadKind::ZeroShot => "zero-shot",
        }
    }

    pub fn is_training_free(self) -> bool {
        matches!(self, HeadKind::Centroid | HeadKind::ZeroShot)
    }

    /// The learning rate, epochs and patience a head of this kind trains with when the run does
    /// not set them, each chosen on dev macro-F1 over Banking77, SST-2 and GoEmotions-Ekman
    /// (bench-results/heads.md for the linear head, bench-results/mlp.md for the MLP).
    pub fn defaults(self) -> HeadDefaults {
        match self {
            HeadKind::Mlp => HeadDefaults {
                lr: MLP_LR,
                epochs: MLP_EPOCHS,
                patience: MLP_PATIENCE,
            },
            _ => HeadDefaults {
                lr: 2e-2,
                epochs: 20,
                patience: 5,
            },
        }
    }
}

/// The MLP head's defaults (see [`HeadKind::defaults`]).
const MLP_LR: f32 = 1e-3;
const MLP_EPOCHS: usize = 60;
const MLP_PATIENCE: usize = 8;

/// How a head trains unless the run says otherwise ([`HeadKind::defaults`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HeadDefaults {
    pub lr: f32,
    pub epochs: usize,
    pub patience: usize,
}

/// An MLP head's hidden width and dropout.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MlpShape {
    pub hidden: usize,
    pub dropout: f32,
}

/// How a head is built: its kind, and an MLP head's shape (only an MLP head has one). A manifest
/// writes it `{"type": "mlp", "hidden": 256, "dropout": 0.1}`, or `{"type": "linear"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeadSpec {
    #[serde(rename = "type")]
    pub kind: HeadKind,
    #[serde(flatten)]
    pub mlp: Option<MlpShape>,
}

impl HeadSpec {
    pub const LINEAR: HeadSpec = HeadSpec {
        kind: HeadKind::Linear,
        mlp: None,
    };

    /// A head of `kind`; `mlp` is its shape when the kind is an MLP (ignored otherwise).
    pub fn new(kind: HeadKind, mlp: MlpShape) -> Self {
        Self {
            kind,
            mlp: (kind == HeadKind::Mlp).then_some(mlp),
        }
    }

    pub fn is_training_free(&self) -> bool {
        self.kind.is_training_free()
    }

    /// The name shown in tables and reports (the kind's one spelling).
    pub fn name(&self) -> &'static str {
        self.kind.name()
    }

    /// Why this spec cannot build a head, if it cannot (a manifest's is checked, not trusted).
    pub fn refusal(&self) -> Option<String> {
        match (self.kind, &self.mlp) {
            (HeadKind::Mlp, None) => {
                Some("an mlp head without its hidden width and dropout".into())
            }
            (HeadKind::Mlp, Some(m)) if m.hidden == 0 || !(0.0..1.0).contains(&m.dropout) => {
                Some(format!(
                    "an mlp head with hidden {} and dropout {}",
                    m.hidden, m.dropout
                ))
            }
            (HeadKind::Mlp, Some(_)) | (_, None) => None,
            (k, Some(_)) => Some(format!("a {} head with an MLP shape", k.name())),
        }
    }

    /// (in, out) of each linear layer, in order.
    fn layer_dims(&self, input_dim: usize, num_classes: usize) -> Vec<(usize, usize)> {
        match self.mlp {
            Some(m) => vec![(input_dim, m.hidden), (m.hidden, num_classes)],
            None => vec![(input_dim, num_classes)],
        }
    }
}

/// Where a head's tensors come from when it is built: the one constructor serves a fresh head
/// and a loaded one, so the tensor names (`heads.<task>.<layer>.weight|bias`, PyTorch layout)
/// are written in one place.
pub enum HeadWeights<'a> {
    /// Uniform ±1/√in initialisation, as PyTorch's `nn.Linear`.
    Random(&'a mut Rng),
    /// Tensors by name (a checkpoint's); each is taken out of the map and its shape checked.
    Named(&'a mut HashMap<String, ArrayD<f32>>),
}

/// Logit scale of the training-free heads: softmax(20 · cosine) gives usable probabilities.
pub(crate) const COSINE_SCALE: f32 = 20.0;

#[derive(Debug, Clone)]
pub struct Head {
    pub task: String,
    pub spec: HeadSpec,
    pub layers: Vec<Linear>,
    pub num_classes: usize,
    pub input_dim: usize,
}

/// What the forward pass keeps for the backward pass.
pub struct HeadTrace {
    input: Array2<f32>,
    /// MLP only: the first layer's output before GELU, the dropout mask, and the hidden layer.
    pre_act: Option<Array2<f32>>,
    mask: Option<Array2<f32>>,
    hidden: Option<Array2<f32>>,
}

impl Head {
    /// Builds task `task`'s head into `store` with tensors from `weights`. A missing tensor or a
    /// shape other than the spec's is an error naming the tensor.
    pub fn build(
        store: &mut ParamStore,
        task: &str,
        spec: HeadSpec,
        input_dim: usize,
        num_classes: usize,
        mut weights: HeadWeights,
    ) -> Result<Self, String> {
        let mut layers = Vec::new();
        for (l, (in_dim, out_dim)) in spec
            .layer_dims(input_dim, num_classes)
            .into_iter()
            .enumerate()
        {
            let prefix = format!("heads.{task}.{l}");
            let layer = match &mut weights {
                HeadWeights::Random(rng) => Linear::new(store, &prefix, in_dim, out_dim, rng),
                HeadWeights::Named(tensors) => {
                    let mut take = |part: &str, shape: &[usize]| -> Result<ParamId, String> {
                        let name = format!("{prefix}.{part}");
                        let value = tensors
                            .remove(&name)
                            .ok_or_else(|| format!("tensor {name} missing"))?;
                        if value.shape() != shape {
                            return Err(format!(
                                "tensor {name} has shape {:?}, expected {shape:?}",
                                value.shape()
                            ));
                        }
                        Ok(store.add(name, value))
                    };
                    let weight = take("weight", &[out_dim, in_dim])?;
                    let bias = take("bias", &[out_dim])?;
                    Linear::from_params(store, weight, bias)
                }
            };
            layers.push(layer);
        }
        Ok(Self {
            task: task.to_string(),
            spec,
            layers,
            num_classes,
            input_dim,
        })
    }

    /// A freshly initialised head.
    pub fn new(
        store: &mut ParamStore,
        task: &str,
        spec: HeadSpec,
        input_dim: usize,
        num_classes: usize,
        rng: &mut Rng,
    ) -> Self {
        Self::build(
            store,
            task,
            spec,
            input_dim,
            num_classes,
            HeadWeights::Random(rng),
        )
        .expect("random weights always fit")
    }

    /// This head's tensors by name, as [`HeadWeights::Named`] takes them (copying a head
    /// from one store into another).
    pub fn tensors(&self, store: &ParamStore) -> HashMap<String, ArrayD<f32>> {
        self.param_ids()
            .into_iter()
            .map(|id| (store.get(id).name.clone(), store.get(id).value.clone()))
            .collect()
    }

    /// A training-free head: logits = scale · cos(x, prototype_c); the prototypes are normalised here.
    pub fn from_prototypes(
        store: &mut ParamStore,
        task: &str,
        spec: HeadSpec,
        prototypes: ArrayView2<f32>,
    ) -> Self {
        let (k, d) = prototypes.dim();
        let mut rng = Rng::new(0);
        let head = Self::new(store, task, spec, d, k, &mut rng);
        let mut w = prototypes.to_owned();
        for mut row in w.axis_iter_mut(Axis(0)) {
            let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
            row.mapv_inplace(|v| COSINE_SCALE * v / norm);
        }
        store.set(head.layers[0].weight, w.into_dyn());
        store.set(
            head.layers[0].bias,
            ndarray::ArrayD::zeros(ndarray::IxDyn(&[k])),
        );
        head
    }

    pub fn param_ids(&self) -> Vec<ParamId> {
        self.layers
            .iter()
            .flat_map(|l| [l.weight, l.bias])
            .collect()
    }

    /// Inference: no dropout.
    pub fn forward(&self, store: &ParamStore, x: ArrayView2<f32>) -> Array2<f32> {
        match self.layers.as_slice() {
            [l] => l.forward(store, x),
            [l0, l1] => l1.forward(store, act::gelu(l0.forward(store, x).view()).view()),
            _ => unreachable!("heads have one or two layers"),
        }
    }

    /// Training forward pass (dropout on for MLP heads). Takes the batch by value: the trace
    /// keeps it for the backward pass without a copy.
    pub fn forward_train(
        &self,
        store: &ParamStore,
        x: Array2<f32>,
        rng: &mut Rng,
    ) -> (Array2<f32>, HeadTrace) {
        match (self.layers.as_slice(), &self.spec.mlp) {
            ([l0, l1], Some(MlpShape { dropout, .. })) => {
                let pre = l0.forward(store, x.view());
                let mut h = act::gelu(pre.view());
                let mask = (*dropout > 0.0).then(|| act::dropout_mask(h.dim(), *dropout, rng));
                if let Some(m) = &mask {
                    h *= m;
                }
                let logits = l1.forward(store, h.view());
                (
                    logits,
                    HeadTrace {
                        input: x,
                        pre_act: Some(pre),
                        mask,
                        hidden: Some(h),
                    },
                )
            }
            _ => (
                self.forward(store, x.view()),
                HeadTrace {
                    input: x,
                    pre_act: None,
                    mask: None,
                    hidden: None,
                },
            ),
        }
    }

    /// Accumulates parameter gradients; returns the gradient w.r.t. the input vectors when
    /// `input_grad` is set (the frost line needs it; cached, frozen vectors do not).
    pub fn backward(
        &self,
        store: &mut ParamStore,
        trace: &HeadTrace,
        dlogits: ArrayView2<f32>,
        input_grad: bool,
    ) -> Option<Array2<f32>> {
        match self.layers.as_slice() {
            [l] => l.backward(store, trace.input.view(), dlogits, input_grad),
            [l0, l1] => {
                let h = trace.hidden.as_ref().expect("MLP trace");
                let pre = trace.pre_act.as_ref().expect("MLP trace");
                let mut dh = l1
                    .backward(store, h.view(), dlogits, true)
                    .expect("asked for dx");
                if let Some(m) = &trace.mask {
                    dh *= m;
                }
                let dpre = act::gelu_backward(pre.view(), dh.view());
                l0.backward(store, trace.input.view(), dpre.view(), input_grad)
            }
            _ => unreachable!(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_is_written_as_manifests_always_wrote_it() {
        let mlp = HeadSpec::new(
            HeadKind::Mlp,
            MlpShape {
                hidden: 256,
                dropout: 0.1,
            },
        );
        let text = serde_json::to_string(&mlp).unwrap();
        assert_eq!(text, r#"{"type":"mlp","hidden":256,"dropout":0.1}"#);
        assert_eq!(serde_json::from_str::<HeadSpec>(&text).unwrap(), mlp);
        let linear = serde_json::to_string(&HeadSpec::LINEAR).unwrap();
        assert_eq!(linear, r#"{"type":"linear"}"#);
        let centroid: HeadSpec = serde_json::from_str(r#"{"type":"centroid"}"#).unwrap();
        assert_eq!((centroid.kind, centroid.mlp), (HeadKind::Centroid, None));
        assert_eq!(centroid.refusal(), None);
        let bare: HeadSpec = serde_json::from_str(r#"{"type":"mlp"}"#).unwrap();
        assert!(bare.refusal().unwrap().contains("hidden width"));
    }
}
