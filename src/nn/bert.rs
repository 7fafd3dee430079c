//! BERT encoder layers run natively — the part of the backbone above the frost line — with
//! forward and backward passes, weights loaded by name from the model's `model.safetensors`
//! (`encoder.layer.{i}.…`), and the model's pooling (mean / CLS, optional L2) with its backward.

use std::path::{Path, PathBuf};

use ndarray::{s, Array2, ArrayD, ArrayView2, IxDyn};

use super::act;
use super::adapter::{Adapter, Lora, LoraShape, LoraTarget, Tuning};
use super::attention::{AttentionTrace, Segments, SelfAttention};
use super::layernorm::{LayerNorm, LayerNormTrace};
use super::linear::Linear;
use super::params::{ParamId, ParamStore};
use crate::error::{Error, Result};
use crate::pool::{l2_normalize, Pooling, PoolingMode};

#[derive(Debug, Clone)]
pub struct BertLayer {
    pub index: usize,
    pub attention: SelfAttention,
    pub attention_output: Linear,
    pub attention_norm: LayerNorm,
    pub intermediate: Linear,
    pub output: Linear,
    pub output_norm: LayerNorm,
}

pub struct LayerTrace {
    attention: AttentionTrace,
    ctx: Array2<f32>,
    norm1: LayerNormTrace,
    y1: Array2<f32>,
    inter: Array2<f32>,
    gelu: Array2<f32>,
    norm2: LayerNormTrace,
}

impl BertLayer {
    /// A randomly initialised layer (tests and small experiments; real layers come from
    /// [`NativeEncoder::load`]). LayerNorm starts at γ = 1, β = 0 plus noise so tests see all terms.
    pub fn random(
        store: &mut ParamStore,
        index: usize,
        hidden: usize,
        heads: usize,
        inter: usize,
        rng: &mut super::Rng,
    ) -> Self {
        let p = format!("encoder.layer.{index}");
        let norm = |store: &mut ParamStore, name: &str, rng: &mut super::Rng| {
            let g = ArrayD::from_shape_fn(IxDyn(&[hidden]), |_| {
                1.0 + 0.1 * (rng.uniform() as f32 - 0.5)
            });
            let b = ArrayD::from_shape_fn(IxDyn(&[hidden]), |_| 0.1 * (rng.uniform() as f32 - 0.5));
            LayerNorm {
                weight: store.add(format!("{p}.{name}.weight"), g),
                bias: store.add(format!("{p}.{name}.bias"), b),
                eps: 1e-12,
            }
        };
        let attention_norm = norm(store, "attention.output.LayerNorm", rng);
        let output_norm = norm(store, "output.LayerNorm", rng);
        Self {
            index,
            attention: SelfAttention {
                query: Linear::new(
                    store,
                    &format!("{p}.attention.self.query"),
                    hidden,
                    hidden,
                    rng,
                ),
                key: Linear::new(
                    store,
                    &format!("{p}.attention.self.key"),
                    hidden,
                    hidden,
                    rng,
                ),
                value: Linear::new(
                    store,
                    &format!("{p}.attention.self.value"),
                    hidden,
                    hidden,
                    rng,
                ),
                heads,
            },
            attention_output: Linear::new(
                store,
                &format!("{p}.attention.output.dense"),
                hidden,
                hidden,
                rng,
            ),
            attention_norm,
            intermediate: Linear::new(
                store,
                &format!("{p}.intermediate.dense"),
                hidden,
                inter,
                rng,
            ),
            output: Linear::new(store, &format!("{p}.output.dense"), inter, hidden, rng),
            output_norm,
        }
    }

    fn dense(&self) -> [(LoraTarget, &Linear); 6] {
        let a = &self.attention;
        [
            (LoraTarget::Query, &a.query),
            (LoraTarget::Key, &a.key),
            (LoraTarget::Value, &a.value),
            (LoraTarget::AttentionOutput, &self.attention_output),
            (LoraTarget::Intermediate, &self.intermediate),
            (LoraTarget::Output, &self.output),
        ]
    }

    fn dense_mut(&mut self) -> [(LoraTarget, &mut Linear); 6] {
        let a = &mut self.attention;
        [
            (LoraTarget::Query, &mut a.query),
            (LoraTarget::Key, &mut a.key),
            (LoraTarget::Value, &mut a.value),
            (LoraTarget::AttentionOutput, &mut self.attention_output),
            (LoraTarget::Intermediate, &mut self.intermediate),
            (LoraTarget::Output, &mut self.output),
        ]
    }

    /// The layer's own parameters, as the model file holds them (no adapter factors).
    pub fn param_ids(&self) -> Vec<ParamId> {
        self.dense()
            .iter()
            .flat_map(|(_, l)| [l.weight, l.bias])
            .chain([
                self.attention_norm.weight,
                self.attention_norm.bias,
                self.output_norm.weight,
                self.output_norm.bias,
            ])
            .collect()
    }

    /// The parameters `tuning` trains: all of them, the bias terms (dense biases and LayerNorm
    /// β), or the LoRA factors.
    pub fn tuned_ids(&self, tuning: Tuning) -> Vec<ParamId> {
        match tuning {
            Tuning::Full => self.param_ids(),
            Tuning::BitFit => self
                .dense()
                .iter()
                .map(|(_, l)| l.bias)
                .chain([self.attention_norm.bias, self.output_norm.bias])
                .collect(),
            Tuning::Lora => self
                .dense()
                .iter()
                .filter_map(|(_, l)| l.lora.as_ref())
                .flat_map(Lora::ids)
                .collect(),
        }
    }

    /// Every parameter id the layer refers to, to re-point (see [`NativeEncoder::own_copy`]).
    fn ids_mut(&mut self) -> Vec<&mut ParamId> {
        let Self {
            attention,
            attention_output,
            attention_norm,
            intermediate,
            output,
            output_norm,
            ..
        } = self;
        let mut ids: Vec<&mut ParamId> = Vec::new();
        for norm in [attention_norm, output_norm] {
            ids.push(&mut norm.weight);
            ids.push(&mut norm.bias);
        }
        let dense = [
            &mut attention.query,
            &mut attention.key,
            &mut attention.value,
            attention_output,
            intermediate,
            output,
        ];
        for Linear {
            weight, bias, lora, ..
        } in dense
        {
            ids.push(weight);
            ids.push(bias);
            if let Some(l) = lora {
                ids.push(&mut l.a);
                ids.push(&mut l.b);
            }
        }
        ids
    }

    /// Fresh LoRA factors on the dense layers `shape` targets, named after their weights.
    pub fn attach_lora(&mut self, store: &mut ParamStore, shape: &LoraShape, rng: &mut super::Rng) {
        for (target, linear) in self.dense_mut() {
            if shape.targets.contains(&target) {
                let weight = &store.get(linear.weight).name;
                let name = weight.trim_end_matches(".weight").to_string();
                linear.lora = Some(Lora::new(
                    store,
                    &name,
                    (linear.out_dim, linear.in_dim),
                    shape,
                    rng,
                ));
            }
        }
    }

    /// Folds every LoRA factor into its weight (see [`Linear::merge_lora`]).
    pub fn merge_lora(&mut self, store: &mut ParamStore) {
        for (_, linear) in self.dense_mut() {
            linear.merge_lora(store);
        }
    }

    /// `x`: packed `[Σ tokens, hidden]` (see [`Segments`]); returns the layer output, same shape.
    pub fn forward(
        &self,
        store: &ParamStore,
        x: Array2<f32>,
        seg: &Segments,
    ) -> (Array2<f32>, LayerTrace) {
        let (ctx, attention) = self.attention.forward(store, x, seg);
        let mut r1 = self.attention_output.forward(store, ctx.view());
        r1 += &attention.input();
        let (y1, norm1) = self.attention_norm.forward(store, r1.view());
        let inter = self.intermediate.forward(store, y1.view());
        let gelu = act::gelu(inter.view());
        let mut r2 = self.output.forward(store, gelu.view());
        r2 += &y1;
        let (y2, norm2) = self.output_norm.forward(store, r2.view());
        (
            y2,
            LayerTrace {
                attention,
                ctx,
                norm1,
                y1,
                inter,
                gelu,
                norm2,
            },
        )
    }

    /// Accumulates this layer's gradients; returns dx.
    pub fn backward(
        &self,
        store: &mut ParamStore,
        t: &LayerTrace,
        dy: ArrayView2<f32>,
    ) -> Array2<f32> {
        let dr2 = self.output_norm.backward(store, &t.norm2, dy);
        let dgelu = self
            .output
            .backward(store, t.gelu.view(), dr2.view(), true)
            .expect("dx");
        let dinter = act::gelu_backward(t.inter.view(), dgelu.view());
        let mut dy1 = self
            .intermediate
            .backward(store, t.y1.view(), dinter.view(), true)
            .expect("dx");
        dy1 += &dr2;
        let dr1 = self.attention_norm.backward(store, &t.norm1, dy1.view());
        let dctx = self
            .attention_output
            .backward(store, t.ctx.view(), dr1.view(), true)
            .expect("dx");
        let mut dx = self.attention.backward(store, &t.attention, dctx.view());
        dx += &dr1;
        dx
    }
}

/// What the native layers read of a model folder: where its fp32 weights are and config.json's
/// shape (the backbone resolves both: `ModelFolder::native_source`).
#[derive(Debug, Clone)]
pub struct BertSource {
    pub weights: PathBuf,
    pub num_layers: usize,
    pub hidden: usize,
    pub heads: usize,
    pub layer_norm_eps: f32,
}

/// Layers `from..num_layers` of a BERT encoder.
#[derive(Debug, Clone)]
pub struct NativeEncoder {
    pub from: usize,
    pub layers: Vec<BertLayer>,
    pub hidden: usize,
}

impl NativeEncoder {
    /// Loads layers `from..L` from the folder's fp32 weights into `store` (names as in the
    /// file, without an architecture prefix). Names or shapes that do not match config.json are
    /// errors.
    pub fn load(store: &mut ParamStore, source: &BertSource, from: usize) -> Result<Self> {
        if from > source.num_layers {
            return Err(Error::Usage(format!(
                "frost line {from} is outside 0..={} (the model has {} layers)",
                source.num_layers, source.num_layers
            )));
        }
        let path = source.weights.as_path();
        let weights = read_safetensors(path)?;
        let hidden = source.hidden;
        let heads = source.heads;
        let eps = source.layer_norm_eps;
        let mut take = |name: String, shape: &[usize]| -> Result<ParamId> {
            let value = weights
                .iter()
                .find(|(n, _)| *n == name || n.strip_prefix("bert.") == Some(name.as_str()))
                .map(|(_, v)| v.clone())
                .ok_or_else(|| {
                    Error::model(
                        path,
                        format!(
                            "tensor {name} not found: the weights do not match this BERT graph"
                        ),
                    )
                })?;
            if value.shape() != shape {
                return Err(Error::model(
                    path,
                    format!(
                        "tensor {name} has shape {:?}, config.json implies {shape:?}",
                        value.shape()
                    ),
                ));
            }
            Ok(store.add(name, value))
        };
        let mut layers = Vec::new();
        for i in from..source.num_layers {
            let p = format!("encoder.layer.{i}");
            let mut linear = |name: &str, out_dim: usize, in_dim: usize| -> Result<Linear> {
                let w = take(format!("{p}.{name}.weight"), &[out_dim, in_dim])?;
                let b = take(format!("{p}.{name}.bias"), &[out_dim])?;
                Ok(Linear {
                    weight: w,
                    bias: b,
                    in_dim,
                    out_dim,
                    lora: None,
                })
            };
            let query = linear("attention.self.query", hidden, hidden)?;
            let key = linear("attention.self.key", hidden, hidden)?;
            let value = linear("attention.self.value", hidden, hidden)?;
            let attention_output = linear("attention.output.dense", hidden, hidden)?;
            let inter_dim = weights
                .iter()
                .find(|(n, _)| n.ends_with(&format!("{p}.intermediate.dense.bias")))
                .map(|(_, v)| v.len())
                .ok_or_else(|| {
                    Error::model(
                        path,
                        format!("tensor {p}.intermediate.dense.bias not found"),
                    )
                })?;
            let intermediate = linear("intermediate.dense", inter_dim, hidden)?;
            let output = linear("output.dense", hidden, inter_dim)?;
            let mut norm = |name: &str| -> Result<LayerNorm> {
                Ok(LayerNorm {
                    weight: take(format!("{p}.{name}.weight"), &[hidden])?,
                    bias: take(format!("{p}.{name}.bias"), &[hidden])?,
                    eps,
                })
            };
            let attention_norm = norm("attention.output.LayerNorm")?;
            let output_norm = norm("output.LayerNorm")?;
            layers.push(BertLayer {
                index: i,
                attention: SelfAttention {
                    query,
                    key,
                    value,
                    heads,
                },
                attention_output,
                attention_norm,
                intermediate,
                output,
                output_norm,
            });
        }
        Ok(Self {
            from,
            layers,
            hidden,
        })
    }

    /// Every layer's own parameters (what the model file holds for them).
    pub fn param_ids(&self) -> Vec<ParamId> {
        self.layers.iter().flat_map(BertLayer::param_ids).collect()
    }

    /// What `tuning` trains in the first `depth` layers (every layer: `self.layers.len()`).
    pub fn tuned_ids(&self, tuning: Tuning, depth: usize) -> Vec<ParamId> {
        self.layers[..depth]
            .iter()
            .flat_map(|l| l.tuned_ids(tuning))
            .collect()
    }

    /// LoRA factors on every layer (seeded by `seed`, so a run is reproducible).
    pub fn attach_lora(&mut self, store: &mut ParamStore, shape: &LoraShape, seed: u64) {
        let mut rng = super::Rng::new(seed);
        for layer in &mut self.layers {
            layer.attach_lora(store, shape, &mut rng);
        }
    }

    /// The same layers with task `owner`'s own copy of what `tuning` trains (new parameters
    /// named `adapters.<owner>.<name>`, starting from the current values); every other
    /// parameter stays the one shared, frozen copy.
    pub fn own_copy(&self, store: &mut ParamStore, tuning: Tuning, owner: &str) -> Self {
        let mut map = std::collections::HashMap::new();
        for id in self.tuned_ids(tuning, self.layers.len()) {
            let p = store.get(id);
            let (name, value) = (own_name(owner, &p.name), p.value.clone());
            map.insert(id, store.add(name, value));
        }
        let mut copy = self.clone();
        for layer in &mut copy.layers {
            for id in layer.ids_mut() {
                if let Some(&own) = map.get(id) {
                    *id = own;
                }
            }
        }
        copy
    }

    /// One encoder per task: the shared one, or for a task whose adapter is its own, an
    /// [`own_copy`](Self::own_copy) of what `tuning` trains. Training and loading a checkpoint
    /// build them here alike, so the parameters line up by name.
    pub fn per_task(
        &self,
        store: &mut ParamStore,
        tuning: Tuning,
        tasks: &[(&str, Adapter)],
    ) -> Vec<Self> {
        tasks
            .iter()
            .map(|&(name, adapter)| match adapter {
                Adapter::Shared => self.clone(),
                Adapter::Own => self.own_copy(store, tuning, name),
            })
            .collect()
    }

    /// The layers' parameters under the model file's names, in a store of their own: task
    /// `owner`'s own copies (`adapters.<owner>.…`) lose their prefix. What an export writes.
    pub fn model_tensors(&self, store: &ParamStore, owner: &str) -> ParamStore {
        let prefix = own_name(owner, "");
        let mut out = ParamStore::default();
        for id in self.param_ids() {
            let p = store.get(id);
            let name = p.name.strip_prefix(&prefix).unwrap_or(&p.name);
            out.add(name, p.value.clone());
        }
        out
    }

    /// What `tuning` trains over several encoders (one per task, [`per_task`](Self::per_task)):
    /// `depth(i)` layers of the `i`-th, a shared parameter once, in first-seen order.
    pub fn tuned_union(
        encoders: &[Self],
        tuning: Tuning,
        depth: impl Fn(usize) -> usize,
    ) -> Vec<ParamId> {
        let mut seen = std::collections::HashSet::new();
        encoders
            .iter()
            .enumerate()
            .flat_map(|(i, e)| e.tuned_ids(tuning, depth(i)))
            .filter(|id| seen.insert(*id))
            .collect()
    }

    /// Folds the LoRA factors into the weights: predict and export run plain layers.
    pub fn merge_lora(&mut self, store: &mut ParamStore) {
        for layer in &mut self.layers {
            layer.merge_lora(store);
        }
    }

    /// The output after every native layer.
    pub fn forward(
        &self,
        store: &ParamStore,
        x: Array2<f32>,
        seg: &Segments,
    ) -> (Array2<f32>, Vec<LayerTrace>) {
        self.forward_to(store, x, seg, self.layers.len())
    }

    /// The output after the first `depth` native layers (a token task reading a lower layer
    /// runs only the layers up to it).
    pub fn forward_to(
        &self,
        store: &ParamStore,
        mut x: Array2<f32>,
        seg: &Segments,
        depth: usize,
    ) -> (Array2<f32>, Vec<LayerTrace>) {
        let mut traces = Vec::with_capacity(depth);
        for layer in &self.layers[..depth] {
            let (y, t) = layer.forward(store, x, seg);
            traces.push(t);
            x = y;
        }
        (x, traces)
    }

    /// Inference only: no traces kept.
    pub fn infer(&self, store: &ParamStore, x: Array2<f32>, seg: &Segments) -> Array2<f32> {
        self.infer_to(store, x, seg, self.layers.len())
    }

    /// Inference through the first `depth` native layers.
    pub fn infer_to(
        &self,
        store: &ParamStore,
        x: Array2<f32>,
        seg: &Segments,
        depth: usize,
    ) -> Array2<f32> {
        self.layers[..depth]
            .iter()
            .fold(x, |x, layer| layer.forward(store, x, seg).0)
    }

    /// Back through the layers `traces` came from (the first `traces.len()`).
    pub fn backward(&self, store: &mut ParamStore, traces: &[LayerTrace], mut dy: Array2<f32>) {
        for (layer, t) in self.layers[..traces.len()].iter().zip(traces).rev() {
            dy = layer.backward(store, t, dy.view());
        }
    }

    /// How many native layers a token task reading layer `token_layer` runs; an error when that
    /// layer is below the frost line (nothing there could train).
    pub fn depth_for(&self, task: &str, token_layer: usize) -> Result<usize> {
        if token_layer < self.from {
            return Err(Error::Usage(format!(
                "task {task:?} reads word features at layer {token_layer}, below frost line {}: nothing under it trains; set tasks.{task}.token_layer to at least {} (up to {}), or lower the frost line",
                self.from,
                self.from,
                self.from + self.layers.len()
            )));
        }
        Ok((token_layer - self.from).min(self.layers.len()))
    }
}

/// The name of task `owner`'s own copy of parameter `name` ([`NativeEncoder::own_copy`]).
fn own_name(owner: &str, name: &str) -> String {
    format!("adapters.{owner}.{name}")
}

/// Every F32 tensor of the model's safetensors file (other dtypes skipped).
pub fn read_safetensors(path: &Path) -> Result<Vec<(String, ArrayD<f32>)>> {
    if !path.is_file() {
        return Err(Error::model(path, "model.safetensors missing: the layers above the frost line are loaded from it; re-export the folder with scripts/export_onnx.py"));
    }
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    crate::nn::tensors::from_safetensors(&bytes, true).map_err(|e| Error::model(path, e))
}

/// Sentence pooling over packed `[Σ tokens, hidden]` states with its backward pass (mean or
/// CLS, optional L2 normalisation; max pooling has no frost-line support).
pub struct PoolTrace {
    pre_norm: Array2<f32>,
    seg: Segments,
    /// Max pooling: for each (sequence, dimension), the packed row that held the maximum (the
    /// first of equals) — where its gradient goes.
    argmax: Option<Array2<usize>>,
}

pub fn pool_forward(
    pooling: Pooling,
    y: ArrayView2<f32>,
    seg: &Segments,
) -> Result<(Array2<f32>, PoolTrace)> {
    let mut u = Array2::<f32>::zeros((seg.count(), y.ncols()));
    for b in 0..seg.count() {
        pooling.pool_tokens(y.slice(s![seg.range(b), ..]), u.row_mut(b));
    }
    let argmax = (pooling.mode == PoolingMode::Max).then(|| {
        let mut idx = Array2::<usize>::zeros(u.dim());
        for b in 0..seg.count() {
            let rows = seg.range(b);
            for (d, best) in idx.row_mut(b).iter_mut().enumerate() {
                *best = rows
                    .clone()
                    .find(|&r| y[[r, d]] == u[[b, d]])
                    .unwrap_or(rows.start);
            }
        }
        idx
    });
    let mut out = u.clone();
    if pooling.normalize {
        for row in out.rows_mut() {
            l2_normalize(row);
        }
    }
    Ok((
        out,
        PoolTrace {
            pre_norm: u,
            seg: seg.clone(),
            argmax,
        },
    ))
}

/// Gradient of the pooled vectors `dv` back to the packed token states.
pub fn pool_backward(pooling: Pooling, t: &PoolTrace, dv: ArrayView2<f32>) -> Array2<f32> {
    let hidden = dv.ncols();
    let mut du = dv.to_owned();
    if pooling.normalize {
        for (mut d, u) in du.rows_mut().into_iter().zip(t.pre_norm.rows()) {
            let n = u.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
            let dot = d.iter().zip(u.iter()).map(|(a, b)| a * b).sum::<f32>() / n;
            // d(u/|u|) = (I − v vᵀ) / |u| with v = u/|u|.
            d.zip_mut_with(&u, |x, &uv| *x = (*x - (uv / n) * dot) / n);
        }
    }
    let mut dy = Array2::<f32>::zeros((t.seg.total(), hidden));
    for b in 0..t.seg.count() {
        let rows = t.seg.range(b);
        match pooling.mode {
            PoolingMode::Cls => dy.row_mut(rows.start).assign(&du.row(b)),
            PoolingMode::Max => {
                let argmax = t.argmax.as_ref().expect("max pooling keeps its argmax");
                for (d, &r) in argmax.row(b).iter().enumerate() {
                    dy[[r, d]] += du[[b, d]];
                }
            }
            PoolingMode::Mean | PoolingMode::MeanSqrtLen => {
                let n = rows.len() as f32;
                let div = if pooling.mode == PoolingMode::Mean {
                    n
                } else {
                    n.sqrt()
                };
                let g = du.row(b).mapv(|v| v / div);
                for r in rows {
                    dy.row_mut(r).assign(&g);
                }
            }
        }
    }
    dy
}
