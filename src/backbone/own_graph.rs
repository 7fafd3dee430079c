//! A graph on frostline's own operators, rewritten in memory when a CPU session opens it
//! (nothing is written to the model folder). The portable `model.onnx`, its cuts and int8
//! graphs stay as written — for ONNX Runtime anywhere, CUDA, and `export --with-heads` — while
//! frostline runs the layers' non-product work on its own kernels.
//!
//! An fp32 graph:
//! - `com.microsoft.Attention(x, W, b, mask)` → `MatMul(x, W)` + `ai.frostline.AttentionCore`
//!   (ORT's attention core runs three small GEMM calls per head: on 20-token texts more call
//!   than arithmetic);
//! - `MatMul(x, W)` by a weight matrix → `ai.frostline.MatMulF32` where the CPU has AVX-512F
//!   (the weights packed once per session; [`crate::nn::gemm::f32_packed`]);
//! - `com.microsoft.BiasGelu` → `ai.frostline.BiasGelu` (AVX-512 erf);
//! - `Add(product, bias)`, `Add(·, residual)`, `LayerNormalization` → one
//!   `ai.frostline.BiasResidualLayerNorm`, one pass over memory for three.
//!
//! The per-token int8 graph (written on frostline's operators by the quantizer):
//! - `ScaleSplit` + `MultiHeadAttention` → `AttentionCore` with the QKV product's row scales;
//! - `ScaleBiasResidual` + `LayerNormalization` + the `QuantizeRows` of its output → one
//!   `BiasResidualLayerNorm` that also writes the next product's codes;
//! - `Mul` (row scale) + `BiasGelu` + `QuantizeRows` → `BiasGeluQuantize` (the GELU's output
//!   never goes to memory).
//!
//! The results agree with ORT's kernels to float rounding (not bit for bit: the sums run in
//! another order), as ORT's CUDA kernels do with its CPU ones. In int8 a rounding difference
//! can move a value across a quantization step, which the next layers carry: vectors of the two
//! kernel sets agree to int8 rounding (mean cosine 0.9996, min 0.9957 on 120 mixed texts), not
//! to 1e-7, so the cache keeps int8 vectors of frostline's kernels apart
//! ([`crate::cache::CacheKey`]).
//! `--kernels onnxruntime` runs every graph as written on ORT's kernels: what a served graph
//! gives under ONNX Runtime, bit for bit. Only the patterns above, with the attributes
//! named, are rewritten; any other node — or one of these with attributes this does not know —
//! runs as written, and graphs quantized by other recipes are left alone.

use std::collections::{HashMap, HashSet};

use super::graph_ops::OpCounts;
use super::onnx_proto::{put_bytes, put_varint, Fields, Value};
use super::own_ops::DOMAIN;
use crate::nn::gemm::f32_packed::F32Weights;
use crate::nn::gemm::int8::{Int8Kernel, Int8Weights};

const MS: &str = "com.microsoft";

/// frostline's product kernels a CPU session hands the graph's weight products to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ProductKernels {
    /// The int8 kernel, which takes `MatMulIntegerToFloat` (bit for bit).
    pub int8: Option<Int8Kernel>,
    /// Whether the fp32 kernel runs here, which takes `MatMul` by a weight matrix.
    pub fp32: bool,
}

impl ProductKernels {
    /// The ones this CPU runs: the one place the choice is made.
    pub(crate) fn of_this_cpu() -> Self {
        Self {
            int8: Int8Kernel::get().ok(),
            fp32: F32Weights::available().is_ok(),
        }
    }
}

/// A graph rewritten onto frostline's operators.
#[derive(Debug)]
pub(crate) struct Rewritten {
    /// The serialized model.
    pub bytes: Vec<u8>,
    /// Its operators, for `doctor`.
    pub ops: OpCounts,
}

/// `model` (a serialized ONNX model) with its layers on frostline's operators; `None` when it
/// is quantized by a recipe this does not know or has nothing this rewrites. `kernels`: the
/// product kernels of frostline's this CPU runs, which then take the weight products they fit.
pub(crate) fn on_own_ops(
    model: &[u8],
    kernels: ProductKernels,
) -> Result<Option<Rewritten>, String> {
    let mut graph_bytes = None;
    let mut has_own_domain = false;
    for field in Fields::new(model) {
        let (number, value) = field?;
        match number {
            7 => graph_bytes = Some(value.bytes()?),
            8 => has_own_domain |= opset_domain(value.bytes()?)? == DOMAIN,
            _ => {}
        }
    }
    let graph_bytes = graph_bytes.ok_or("the model has no graph")?;
    let Some(graph) = rewrite_graph(graph_bytes, kernels)? else {
        return Ok(None);
    };
    let mut bytes = Vec::with_capacity(model.len() + 4096);
    for field in Fields::new(model) {
        let (number, value) = field?;
        if number == 7 {
            put_bytes(&mut bytes, 7, &graph);
        } else {
            value.write(number, &mut bytes);
        }
    }
    if !has_own_domain {
        let mut opset = Vec::new();
        put_bytes(&mut opset, 1, DOMAIN.as_bytes());
        put_varint(&mut opset, 2 << 3);
        put_varint(&mut opset, 1);
        put_bytes(&mut bytes, 8, &opset);
    }
    let ops = super::graph_ops::op_counts_in(&bytes)?;
    Ok(Some(Rewritten { bytes, ops }))
}

/// An `OperatorSetIdProto`'s domain.
fn opset_domain(bytes: &[u8]) -> Result<&str, String> {
    for field in Fields::new(bytes) {
        let (number, value) = field?;
        if number == 1 {
            return value.text();
        }
    }
    Ok("")
}

/// A node as read: what the rewrite looks at, and its bytes to copy it unchanged.
struct Node<'a> {
    bytes: &'a [u8],
    name: &'a str,
    op: &'a str,
    domain: &'a str,
    inputs: Vec<&'a str>,
    outputs: Vec<&'a str>,
    attrs: Vec<Attr<'a>>,
}

struct Attr<'a> {
    name: &'a str,
    int: Option<i64>,
    float: Option<f32>,
}

impl<'a> Node<'a> {
    fn read(bytes: &'a [u8]) -> Result<Self, String> {
        let mut node = Node {
            bytes,
            name: "",
            op: "",
            domain: "",
            inputs: Vec::new(),
            outputs: Vec::new(),
            attrs: Vec::new(),
        };
        for field in Fields::new(bytes) {
            let (number, value) = field?;
            match number {
                1 => node.inputs.push(value.text()?),
                2 => node.outputs.push(value.text()?),
                3 => node.name = value.text()?,
                4 => node.op = value.text()?,
                7 => node.domain = value.text()?,
                5 => {
                    let mut attr = Attr {
                        name: "",
                        int: None,
                        float: None,
                    };
                    for f in Fields::new(value.bytes()?) {
                        match f? {
                            (1, v) => attr.name = v.text()?,
                            (2, Value::Fixed32(v)) => attr.float = Some(f32::from_bits(v)),
                            (3, Value::Varint(v)) => attr.int = Some(v as i64),
                            _ => {}
                        }
                    }
                    node.attrs.push(attr);
                }
                _ => {}
            }
        }
        Ok(node)
    }

    fn is(&self, domain: &str, op: &str) -> bool {
        let d = if self.domain == "ai.onnx" {
            ""
        } else {
            self.domain
        };
        d == domain && self.op == op
    }

    /// The attributes, refused (`None`) if the node has one not in `known`.
    fn only_attrs(&self, known: &[&str]) -> Option<&[Attr<'a>]> {
        self.attrs
            .iter()
            .all(|a| known.contains(&a.name))
            .then_some(&self.attrs[..])
    }

    fn attr(&self, name: &str) -> Option<&Attr<'a>> {
        self.attrs.iter().find(|a| a.name == name)
    }
}

/// Whether a node is part of a quantized graph (which this leaves alone).
fn quantized(node: &Node) -> bool {
    let op = node.op;
    node.domain == DOMAIN
        || op.contains("Quant")
        || op.contains("Integer")
        || (op.starts_with('Q') && op[1..].starts_with(|c: char| c.is_ascii_uppercase()))
}

enum AttrValue {
    Int(i64),
    Float(f32),
}

/// Appends a `NodeProto` as graph field 1.
fn put_node(
    out: &mut Vec<u8>,
    name: &str,
    (domain, op): (&str, &str),
    inputs: &[&str],
    outputs: &[&str],
    attrs: &[(&str, AttrValue)],
) {
    let mut node = Vec::new();
    for i in inputs {
        put_bytes(&mut node, 1, i.as_bytes());
    }
    for o in outputs {
        put_bytes(&mut node, 2, o.as_bytes());
    }
    put_bytes(&mut node, 3, name.as_bytes());
    put_bytes(&mut node, 4, op.as_bytes());
    for (name, value) in attrs {
        let mut a = Vec::new();
        put_bytes(&mut a, 1, name.as_bytes());
        let kind = match value {
            AttrValue::Float(f) => {
                Value::Fixed32(f.to_bits()).write(2, &mut a);
                1
            }
            AttrValue::Int(i) => {
                Value::Varint(*i as u64).write(3, &mut a);
                2
            }
        };
        Value::Varint(kind).write(20, &mut a);
        put_bytes(&mut node, 5, &a);
    }
    if !domain.is_empty() {
        put_bytes(&mut node, 7, domain.as_bytes());
    }
    put_bytes(out, 1, &node);
}

/// What becomes of one node of the graph.
enum Plan {
    Keep,
    /// Folded into the fused node written at a later node.
    Folded,
    /// `Attention` → its QKV product (on frostline's fp32 kernel where `own_product`) and
    /// `AttentionCore`.
    Attention {
        heads: i64,
        own_product: bool,
    },
    /// fp32: `MatMul` by a weight matrix → `MatMulF32` (frostline's fp32 kernel).
    F32Product,
    BiasGelu,
    /// int8: `MultiHeadAttention` on the three outputs of `ScaleSplit` (node `split`) →
    /// `AttentionCore` with the product's row scales.
    ScaledAttention {
        heads: i64,
        split: usize,
    },
    /// int8: the `LayerNormalization` after `ScaleBiasResidual` (node `sbr`), and the
    /// `QuantizeRows` of its output (node `quantize`) where there is one.
    ScaledNorm {
        sbr: usize,
        quantize: Option<usize>,
        epsilon: f32,
    },
    /// int8: the `QuantizeRows` after `Mul(product, row scale)` (node `mul`, the scale its input
    /// `scale_input`) and `BiasGelu` (node `gelu`) → `BiasGeluQuantize`.
    GeluQuantize {
        mul: usize,
        scale_input: usize,
        gelu: usize,
    },
    /// int8: `MatMulIntegerToFloat` → `MatMulInt8` (frostline's int8 kernel; the same inputs).
    Int8Product,
    /// The `LayerNormalization` closing a fused group: where its product, bias and residual
    /// come from (node, input).
    Norm {
        product: (usize, usize),
        bias: (usize, usize),
        residual: (usize, usize),
        epsilon: f32,
    },
}

/// ONNX's element type codes for f32 and int8.
const FLOAT: u64 = 1;
const INT8: u64 = 3;

/// The graph's bytes on frostline's operators, or `None` when it is quantized by another
/// recipe or nothing matched. `kernels`: the products may run on these.
fn rewrite_graph(graph: &[u8], kernels: ProductKernels) -> Result<Option<Vec<u8>>, String> {
    let mut nodes = Vec::new();
    let mut initializers = HashSet::new();
    // 1-D initializers of two or more values: a bias, gain or shift that ONNX's broadcasting
    // makes one per feature (a one-value "bias" broadcasts, which the fused kernels do not do).
    let mut vectors = HashSet::new();
    let mut graph_outputs = HashSet::new();
    let mut graph_inputs = HashSet::new();
    // 2-D int8 and f32 initializers (weights of products) and their shape.
    let mut int8_matrices = HashMap::new();
    let mut f32_matrices = HashMap::new();
    for field in Fields::new(graph) {
        let (number, value) = field?;
        match number {
            1 => nodes.push(Node::read(value.bytes()?)?),
            5 => {
                let (mut name, mut dims, mut data_type) = ("", Vec::new(), 0u64);
                for f in Fields::new(value.bytes()?) {
                    match f? {
                        (8, v) => name = v.text()?,
                        // dims: one varint each, or packed
                        (1, Value::Varint(n)) => dims.push(n),
                        (1, v) => {
                            let mut packed = Fields::packed_varints(v.bytes()?);
                            while let Some(n) = packed.next().transpose()? {
                                dims.push(n);
                            }
                        }
                        (2, Value::Varint(t)) => data_type = t,
                        _ => {}
                    }
                }
                initializers.insert(name);
                if let [n] = dims[..] {
                    if n >= 2 {
                        vectors.insert(name);
                    }
                }
                if let [k, n] = dims[..] {
                    match data_type {
                        INT8 => int8_matrices.insert(name, (k as usize, n as usize)),
                        FLOAT => f32_matrices.insert(name, (k as usize, n as usize)),
                        _ => None,
                    };
                }
            }
            11 | 12 => {
                let names = if number == 11 {
                    &mut graph_inputs
                } else {
                    &mut graph_outputs
                };
                for f in Fields::new(value.bytes()?) {
                    if let (1, v) = f? {
                        names.insert(v.text()?);
                    }
                }
            }
            _ => {}
        }
    }
    // An initializer that is also a graph input is a default the caller may override (older
    // ONNX files list every initializer so): not a constant the fused kernels may pack.
    for name in &graph_inputs {
        initializers.remove(name);
        vectors.remove(name);
        int8_matrices.remove(name);
        f32_matrices.remove(name);
    }
    let int8 = nodes.iter().any(quantized);
    if int8 && !nodes.iter().any(|n| n.is(DOMAIN, "QuantizeRows")) {
        // Quantized by another recipe (static, dynamic, or per-token on ONNX's operators alone).
        return Ok(None);
    }
    let mut producer = HashMap::new();
    // The nodes reading each value, once per input that reads it.
    let mut readers: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, n) in nodes.iter().enumerate() {
        for &o in &n.outputs {
            producer.insert(o, i);
        }
        for &x in &n.inputs {
            readers.entry(x).or_default().push(i);
        }
    }
    // A value that only feeds the next node of a fused group.
    let internal =
        |v: &str| readers.get(v).is_some_and(|r| r.len() == 1) && !graph_outputs.contains(v);
    let mut plans: Vec<Plan> = nodes.iter().map(|_| Plan::Keep).collect();
    if int8 {
        plan_int8(&nodes, &producer, &readers, &vectors, internal, &mut plans);
        if let Some(kernel) = kernels.int8 {
            plan_int8_products(kernel, &nodes, &initializers, &int8_matrices, &mut plans);
        }
    } else {
        // A product frostline's fp32 kernel takes: by an f32 weight matrix that fits its panels.
        let own_product = |w: &str| {
            kernels.fp32
                && f32_matrices
                    .get(w)
                    .is_some_and(|&(k, n)| F32Weights::fits(k, n))
        };
        plan_fp32(
            &nodes,
            &producer,
            &initializers,
            &vectors,
            internal,
            own_product,
            &mut plans,
        );
    }
    if plans.iter().all(|p| matches!(p, Plan::Keep)) {
        return Ok(None);
    }

    let mut out = Vec::with_capacity(graph.len() + 4096);
    let mut next = 0;
    for field in Fields::new(graph) {
        let (number, value) = field?;
        if number != 1 {
            value.write(number, &mut out);
            continue;
        }
        let (n, plan) = (&nodes[next], &plans[next]);
        next += 1;
        // Node names from their first output, which the graph's SSA form makes unique.
        let name = |part: &str| {
            format!(
                "{}/frostline.{part}",
                n.outputs.first().copied().unwrap_or(n.name)
            )
        };
        match *plan {
            Plan::Keep => put_bytes(&mut out, 1, n.bytes),
            Plan::Folded => {}
            Plan::Attention { heads, own_product } => {
                let qkv = format!("{}/frostline.qkv_product", n.outputs[0]);
                put_node(
                    &mut out,
                    &name("qkv_product"),
                    if own_product {
                        (DOMAIN, "MatMulF32")
                    } else {
                        ("", "MatMul")
                    },
                    &n.inputs[..2],
                    &[&qkv],
                    &[],
                );
                put_node(
                    &mut out,
                    &name("attention_core"),
                    (DOMAIN, "AttentionCore"),
                    &[&qkv, n.inputs[2], n.inputs[3]],
                    &n.outputs,
                    &[("num_heads", AttrValue::Int(heads))],
                );
            }
            Plan::ScaledAttention { heads, split } => {
                let sp = &nodes[split];
                put_node(
                    &mut out,
                    &name("attention_core"),
                    (DOMAIN, "AttentionCore"),
                    &[sp.inputs[0], n.inputs[3], n.inputs[4], sp.inputs[1]],
                    &n.outputs,
                    &[("num_heads", AttrValue::Int(heads))],
                );
            }
            Plan::ScaledNorm {
                sbr,
                quantize,
                epsilon,
            } => {
                let r = &nodes[sbr];
                let mut outputs = n.outputs.clone();
                if let Some(q) = quantize {
                    outputs.extend(&nodes[q].outputs);
                }
                put_node(
                    &mut out,
                    &name("bias_residual_layernorm"),
                    (DOMAIN, "BiasResidualLayerNorm"),
                    &[
                        r.inputs[0],
                        r.inputs[2],
                        r.inputs[3],
                        n.inputs[1],
                        n.inputs[2],
                        r.inputs[1],
                    ],
                    &outputs,
                    &[("epsilon", AttrValue::Float(epsilon))],
                );
            }
            Plan::GeluQuantize {
                mul,
                scale_input,
                gelu,
            } => {
                let m = &nodes[mul];
                put_node(
                    &mut out,
                    &name("bias_gelu_quantize"),
                    (DOMAIN, "BiasGeluQuantize"),
                    &[
                        m.inputs[1 - scale_input],
                        nodes[gelu].inputs[1],
                        m.inputs[scale_input],
                    ],
                    &n.outputs,
                    &[],
                );
            }
            Plan::Int8Product => put_node(
                &mut out,
                &name("int8_product"),
                (DOMAIN, "MatMulInt8"),
                &n.inputs,
                &n.outputs,
                &[],
            ),
            Plan::F32Product => put_node(
                &mut out,
                &name("fp32_product"),
                (DOMAIN, "MatMulF32"),
                &n.inputs,
                &n.outputs,
                &[],
            ),
            Plan::BiasGelu => put_node(
                &mut out,
                &name("bias_gelu"),
                (DOMAIN, "BiasGelu"),
                &n.inputs,
                &n.outputs,
                &[],
            ),
            Plan::Norm {
                product,
                bias,
                residual,
                epsilon,
            } => {
                let pick = |(node, input): (usize, usize)| nodes[node].inputs[input];
                put_node(
                    &mut out,
                    &name("bias_residual_layernorm"),
                    (DOMAIN, "BiasResidualLayerNorm"),
                    &[
                        pick(product),
                        pick(bias),
                        pick(residual),
                        n.inputs[1],
                        n.inputs[2],
                    ],
                    &n.outputs,
                    &[("epsilon", AttrValue::Float(epsilon))],
                );
            }
        }
    }
    Ok(Some(out))
}

/// The fp32 graph's fusions: `Attention`, `BiasGelu`, and `Add`, `Add`, `LayerNormalization`;
/// and the products by the weights `own_product` says frostline's kernel takes.
fn plan_fp32<'a>(
    nodes: &[Node<'a>],
    producer: &HashMap<&'a str, usize>,
    initializers: &HashSet<&str>,
    vectors: &HashSet<&str>,
    internal: impl Fn(&str) -> bool + Copy,
    own_product: impl Fn(&str) -> bool,
    plans: &mut [Plan],
) {
    for (i, n) in nodes.iter().enumerate() {
        if n.is(MS, "Attention")
            && n.inputs.len() == 4
            && n.outputs.len() == 1
            && n.inputs.iter().all(|x| !x.is_empty())
            && initializers.contains(n.inputs[1])
            && vectors.contains(n.inputs[2])
        {
            if let Some(heads) = num_heads(n) {
                plans[i] = Plan::Attention {
                    heads,
                    own_product: own_product(n.inputs[1]),
                };
            }
        } else if n.is(MS, "BiasGelu")
            && n.inputs.len() == 2
            && vectors.contains(n.inputs[1])
            && n.outputs.len() == 1
            && n.attrs.is_empty()
        {
            plans[i] = Plan::BiasGelu;
        } else if let Some(epsilon) = last_axis_norm(n) {
            if let Some(g) = norm_group(nodes, producer, initializers, vectors, internal, i) {
                for add in g.adds {
                    plans[add] = Plan::Folded;
                }
                plans[i] = Plan::Norm {
                    product: g.product,
                    bias: g.bias,
                    residual: g.residual,
                    epsilon,
                };
            }
        }
    }
    for (i, n) in nodes.iter().enumerate() {
        let by_weights = n.is("", "MatMul")
            && n.inputs.len() == 2
            && n.outputs.len() == 1
            && n.attrs.is_empty()
            && own_product(n.inputs[1]);
        if by_weights && matches!(plans[i], Plan::Keep) {
            plans[i] = Plan::F32Product;
        }
    }
}

/// An attention node's `num_heads`, when that is its only attribute.
fn num_heads(n: &Node) -> Option<i64> {
    match n.only_attrs(&["num_heads"])? {
        [Attr {
            name: "num_heads",
            int: Some(heads),
            ..
        }] => Some(*heads),
        _ => None,
    }
}

/// The epsilon of a `LayerNormalization(x, gain, shift)` over the last axis (ONNX's default
/// 1e-5 where unset); `None` for any other node or attribute.
fn last_axis_norm(n: &Node) -> Option<f32> {
    let fits = n.is("", "LayerNormalization")
        && n.inputs.len() == 3
        && n.outputs.len() == 1
        && n.only_attrs(&["axis", "epsilon"]).is_some()
        && n.attr("axis").is_none_or(|a| a.int == Some(-1));
    fits.then(|| n.attr("epsilon").map_or(Some(1e-5), |a| a.float))
        .flatten()
}

/// The per-token int8 graph's fusions (the graph the quantizer writes on frostline's
/// operators): `ScaleSplit` + `MultiHeadAttention` → `AttentionCore` with row scales;
/// `ScaleBiasResidual` + `LayerNormalization` (+ the `QuantizeRows` of its output) → one
/// `BiasResidualLayerNorm`; `Mul` (row scale) + `BiasGelu` + `QuantizeRows` → `BiasGeluQuantize`.
fn plan_int8<'a>(
    nodes: &[Node<'a>],
    producer: &HashMap<&'a str, usize>,
    readers: &HashMap<&str, Vec<usize>>,
    vectors: &HashSet<&str>,
    internal: impl Fn(&str) -> bool,
    plans: &mut [Plan],
) {
    // The node making `v` when it is `domain.op`, `v` feeds nothing else and is not yet claimed.
    let made_by = |v: &str, domain: &str, op: &str, plans: &[Plan]| {
        producer
            .get(v)
            .copied()
            .filter(|&p| internal(v) && nodes[p].is(domain, op) && matches!(plans[p], Plan::Keep))
    };
    // Whether `v` is a row scale: output 1 of a `QuantizeRows`.
    let row_scale = |v: &str| {
        producer.get(v).is_some_and(|&p| {
            nodes[p].is(DOMAIN, "QuantizeRows") && nodes[p].outputs.get(1) == Some(&v)
        })
    };
    for (i, n) in nodes.iter().enumerate() {
        if n.is(MS, "MultiHeadAttention")
            && n.inputs.len() == 5
            && n.outputs.len() == 1
            && n.inputs.iter().all(|x| !x.is_empty())
            && vectors.contains(n.inputs[3])
        {
            let Some(heads) = num_heads(n) else {
                continue;
            };
            let Some(split) = made_by(n.inputs[0], DOMAIN, "ScaleSplit", plans) else {
                continue;
            };
            let sp = &nodes[split];
            if sp.inputs.len() == 2
                && sp.outputs.len() == 3
                && sp.outputs[..] == n.inputs[..3]
                && n.inputs[..3].iter().all(|&v| internal(v))
            {
                plans[split] = Plan::Folded;
                plans[i] = Plan::ScaledAttention { heads, split };
            }
        } else if let Some(epsilon) = last_axis_norm(n) {
            if !n.inputs[1..].iter().all(|p| vectors.contains(p)) {
                continue;
            }
            let Some(sbr) = made_by(n.inputs[0], DOMAIN, "ScaleBiasResidual", plans) else {
                continue;
            };
            if nodes[sbr].inputs.len() != 4 || !vectors.contains(nodes[sbr].inputs[2]) {
                continue;
            }
            let quantize = readers.get(n.outputs[0]).and_then(|r| {
                r.iter().copied().find(|&q| {
                    nodes[q].is(DOMAIN, "QuantizeRows")
                        && nodes[q].inputs.len() == 1
                        && nodes[q].outputs.len() == 2
                        && matches!(plans[q], Plan::Keep)
                })
            });
            plans[sbr] = Plan::Folded;
            if let Some(q) = quantize {
                plans[q] = Plan::Folded;
            }
            plans[i] = Plan::ScaledNorm {
                sbr,
                quantize,
                epsilon,
            };
        } else if n.is(DOMAIN, "QuantizeRows")
            && n.inputs.len() == 1
            && n.outputs.len() == 2
            && matches!(plans[i], Plan::Keep)
        {
            let Some(gelu) = made_by(n.inputs[0], MS, "BiasGelu", plans) else {
                continue;
            };
            let g = &nodes[gelu];
            if g.inputs.len() != 2 || !g.attrs.is_empty() || !vectors.contains(g.inputs[1]) {
                continue;
            }
            let Some(mul) = made_by(g.inputs[0], "", "Mul", plans) else {
                continue;
            };
            let m = &nodes[mul];
            if m.inputs.len() != 2 || !m.attrs.is_empty() {
                continue;
            }
            let Some(scale_input) =
                (0..2).find(|&k| row_scale(m.inputs[k]) && !row_scale(m.inputs[1 - k]))
            else {
                continue;
            };
            plans[mul] = Plan::Folded;
            plans[gelu] = Plan::Folded;
            plans[i] = Plan::GeluQuantize {
                mul,
                scale_input,
                gelu,
            };
        }
    }
}

/// The int8 products `kernel` takes: `MatMulIntegerToFloat(a, b, a_scale, b_scale,
/// a_zero_point)` with every input but `a` an initializer and `b` an int8 matrix whose shape
/// fits its blocks whole (n a multiple of 32, k of the kernel's step); no weight zero point,
/// no bias.
fn plan_int8_products(
    kernel: Int8Kernel,
    nodes: &[Node],
    initializers: &HashSet<&str>,
    int8_matrices: &HashMap<&str, (usize, usize)>,
    plans: &mut [Plan],
) {
    for (i, n) in nodes.iter().enumerate() {
        let fits = n.is(MS, "MatMulIntegerToFloat")
            && n.inputs.len() == 5
            && n.outputs.len() == 1
            && n.attrs.is_empty()
            && n.inputs[1..].iter().all(|x| initializers.contains(x))
            && int8_matrices
                .get(n.inputs[1])
                .is_some_and(|&(k, cols)| Int8Weights::fits(kernel, k, cols));
        if fits && matches!(plans[i], Plan::Keep) {
            plans[i] = Plan::Int8Product;
        }
    }
}

/// The two `Add`s before a `LayerNormalization`, and where its inputs come from (node, input).
struct NormGroup {
    adds: [usize; 2],
    product: (usize, usize),
    bias: (usize, usize),
    residual: (usize, usize),
}

/// For the `LayerNormalization` at `norm`: `Add(product, bias)` then `Add(·, residual)` feeding
/// it, each output used once. Returns the two Adds and where the product, bias and residual
/// come from (node, input).
fn norm_group<'a>(
    nodes: &[Node<'a>],
    producer: &HashMap<&'a str, usize>,
    initializers: &HashSet<&str>,
    vectors: &HashSet<&str>,
    internal: impl Fn(&str) -> bool,
    norm: usize,
) -> Option<NormGroup> {
    let add = |v: &str| {
        producer.get(v).copied().filter(|&p| {
            internal(v)
                && nodes[p].is("", "Add")
                && nodes[p].inputs.len() == 2
                && nodes[p].attrs.is_empty()
        })
    };
    let second = add(nodes[norm].inputs[0])?;
    for (side, &t) in nodes[second].inputs.iter().enumerate() {
        let Some(first) = add(t) else { continue };
        let ins = &nodes[first].inputs;
        let Some(b) =
            (0..2).find(|&k| vectors.contains(ins[k]) && !initializers.contains(ins[1 - k]))
        else {
            continue;
        };
        let residual = nodes[second].inputs[1 - side];
        let norm_params = &nodes[norm].inputs[1..3];
        if initializers.contains(residual) || !norm_params.iter().all(|p| vectors.contains(p)) {
            continue;
        }
        return Some(NormGroup {
            adds: [first, second],
            product: (first, 1 - b),
            bias: (first, b),
            residual: (second, 1 - side),
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rewrite as on a CPU with AMX-INT8 and AVX-512F (what the int8 kernel is does not
    /// change the plan beyond which products fit it).
    const AMX: ProductKernels = ProductKernels {
        int8: Some(Int8Kernel::AmxInt8),
        fp32: true,
    };

    fn int8_only(int8: Option<Int8Kernel>) -> ProductKernels {
        ProductKernels { int8, fp32: false }
    }

    /// An initializer: a `TensorProto` with its dims, element type (f32 where not set
    /// otherwise) and name (the rewrite reads nothing else); dims packed or one field each, as
    /// writers do both.
    fn initializer(out: &mut Vec<u8>, name: &str, dims: &[u64]) {
        let mut t = Vec::new();
        Value::Varint(FLOAT).write(2, &mut t);
        if name.ends_with(".w") {
            let mut packed = Vec::new();
            for &d in dims {
                put_varint(&mut packed, d);
            }
            put_bytes(&mut t, 1, &packed);
        } else {
            for &d in dims {
                Value::Varint(d).write(1, &mut t);
            }
        }
        put_bytes(&mut t, 8, name.as_bytes());
        put_bytes(out, 5, &t);
    }

    fn model(graph: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        Value::Varint(8).write(1, &mut m); // ir_version
        put_bytes(&mut m, 7, graph);
        m
    }

    /// One encoder layer as the exporter writes it (attention, residual norm, FFN with BiasGelu
    /// and its residual norm), `extra` attributes on the Attention node.
    fn layer(extra: &[(&str, AttrValue)]) -> Vec<u8> {
        layer_with(extra, &[8])
    }

    /// [`layer`] with the attention output's bias of shape `o_bias`.
    fn layer_with(extra: &[(&str, AttrValue)], o_bias: &[u64]) -> Vec<u8> {
        let mut g = Vec::new();
        let mut attrs = vec![("num_heads", AttrValue::Int(12))];
        attrs.extend(extra.iter().map(|(n, v)| {
            (
                *n,
                match v {
                    AttrValue::Int(i) => AttrValue::Int(*i),
                    AttrValue::Float(f) => AttrValue::Float(*f),
                },
            )
        }));
        put_node(
            &mut g,
            "att",
            (MS, "Attention"),
            &["x", "qkv.w", "qkv.b", "mask"],
            &["ctx"],
            &attrs,
        );
        put_node(&mut g, "mm", ("", "MatMul"), &["ctx", "o.w"], &["o"], &[]);
        put_node(&mut g, "a1", ("", "Add"), &["o", "o.b"], &["ob"], &[]);
        put_node(&mut g, "a2", ("", "Add"), &["ob", "x"], &["or"], &[]);
        put_node(
            &mut g,
            "ln",
            ("", "LayerNormalization"),
            &["or", "g", "b"],
            &["h"],
            &[
                ("axis", AttrValue::Int(-1)),
                ("epsilon", AttrValue::Float(1e-12)),
            ],
        );
        put_node(&mut g, "mm2", ("", "MatMul"), &["h", "i.w"], &["i"], &[]);
        put_node(
            &mut g,
            "gelu",
            (MS, "BiasGelu"),
            &["i", "i.b"],
            &["ig"],
            &[],
        );
        put_node(&mut g, "mm3", ("", "MatMul"), &["ig", "f.w"], &["f"], &[]);
        // The residual first this time: either order of the second Add is a residual norm.
        put_node(&mut g, "a3", ("", "Add"), &["f", "f.b"], &["fb"], &[]);
        put_node(&mut g, "a4", ("", "Add"), &["h", "fb"], &["fr"], &[]);
        put_node(
            &mut g,
            "ln2",
            ("", "LayerNormalization"),
            &["fr", "g2", "b2"],
            &["y"],
            &[("epsilon", AttrValue::Float(1e-12))],
        );
        // n a multiple of the fp32 kernel's 32-column panels, but the output product's.
        for i in ["qkv.w", "i.w", "f.w"] {
            initializer(&mut g, i, &[8, 32]);
        }
        initializer(&mut g, "o.w", &[8, 8]);
        for i in ["qkv.b", "g", "b", "i.b", "f.b", "g2", "b2"] {
            initializer(&mut g, i, &[8]);
        }
        initializer(&mut g, "o.b", o_bias);
        let mut out = Vec::new();
        put_bytes(&mut out, 1, b"y");
        put_bytes(&mut g, 12, &out);
        g
    }

    /// The nodes of a model as (domain.op, inputs, outputs).
    fn nodes(model: &[u8]) -> Vec<(String, Vec<String>, Vec<String>)> {
        let graph = Fields::new(model).find_map(|f| match f.unwrap() {
            (7, v) => Some(v.bytes().unwrap()),
            _ => None,
        });
        Fields::new(graph.unwrap())
            .filter_map(|f| match f.unwrap() {
                (1, v) => {
                    let n = Node::read(v.bytes().unwrap()).unwrap();
                    let name = if n.domain.is_empty() {
                        n.op.to_string()
                    } else {
                        format!("{}.{}", n.domain, n.op)
                    };
                    Some((
                        name,
                        n.inputs.iter().map(|s| s.to_string()).collect(),
                        n.outputs.iter().map(|s| s.to_string()).collect(),
                    ))
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn an_exported_layer_is_rewritten_onto_frostline_s_operators() {
        let r = on_own_ops(&model(&layer(&[])), AMX)
            .unwrap()
            .expect("rewritten");
        let n = nodes(&r.bytes);
        let ops: Vec<&str> = n.iter().map(|(op, _, _)| op.as_str()).collect();
        // The products by weights that fit the fp32 panels go to frostline's kernel; the output
        // product's 8 columns do not fit, so ORT's MatMul stays for that one.
        assert_eq!(
            ops,
            [
                "ai.frostline.MatMulF32",
                "ai.frostline.AttentionCore",
                "MatMul",
                "ai.frostline.BiasResidualLayerNorm",
                "ai.frostline.MatMulF32",
                "ai.frostline.BiasGelu",
                "ai.frostline.MatMulF32",
                "ai.frostline.BiasResidualLayerNorm",
            ]
        );
        // Without the fp32 kernel (no AVX-512F), every product stays on ORT's.
        let plain = on_own_ops(&model(&layer(&[])), int8_only(None))
            .unwrap()
            .expect("rewritten");
        assert_eq!(plain.ops.get("MatMul"), Some(&4));
        assert_eq!(plain.ops.get("ai.frostline.MatMulF32"), None);
        let io = |i: usize| (n[i].1.join(","), n[i].2.join(","));
        assert_eq!(
            io(0),
            ("x,qkv.w".into(), "ctx/frostline.qkv_product".into())
        );
        assert_eq!(
            io(1),
            ("ctx/frostline.qkv_product,qkv.b,mask".into(), "ctx".into())
        );
        assert_eq!(io(3), ("o,o.b,x,g,b".into(), "h".into()));
        assert_eq!(io(7), ("f,f.b,h,g2,b2".into(), "y".into()));
        // The domain is declared, and the counts doctor shows are of the rewritten graph.
        let declared = Fields::new(&r.bytes).any(
            |f| matches!(f.unwrap(), (8, v) if opset_domain(v.bytes().unwrap()).unwrap() == DOMAIN),
        );
        assert!(declared);
        assert_eq!(r.ops.get("ai.frostline.BiasResidualLayerNorm"), Some(&2));
        assert_eq!(r.ops.get("com.microsoft.Attention"), None);
    }

    /// An FFN block of the per-token int8 graph as the quantizer writes it (own operators), its
    /// int8 weights `[k, n]` of the shapes given.
    fn int8_ffn(w_in: [u64; 2], w_out: [u64; 2]) -> Vec<u8> {
        let mut g = Vec::new();
        let p = |g: &mut Vec<u8>, n: &str, op: (&str, &str), i: &[&str], o: &[&str]| {
            put_node(g, n, op, i, o, &[])
        };
        p(
            &mut g,
            "q1",
            (DOMAIN, "QuantizeRows"),
            &["h"],
            &["hq", "hs"],
        );
        let mm = (MS, "MatMulIntegerToFloat");
        p(
            &mut g,
            "mm1",
            mm,
            &["hq", "i.w", "one", "i.s", "zp"],
            &["i"],
        );
        p(&mut g, "mul", ("", "Mul"), &["i", "hs"], &["is"]);
        p(&mut g, "gelu", (MS, "BiasGelu"), &["is", "i.b"], &["ig"]);
        p(
            &mut g,
            "q2",
            (DOMAIN, "QuantizeRows"),
            &["ig"],
            &["gq", "gs"],
        );
        p(
            &mut g,
            "mm2",
            mm,
            &["gq", "f.w", "one", "f.s", "zp"],
            &["f"],
        );
        let sbr = (DOMAIN, "ScaleBiasResidual");
        p(&mut g, "sbr", sbr, &["f", "gs", "f.b", "h"], &["fr"]);
        put_node(
            &mut g,
            "ln",
            ("", "LayerNormalization"),
            &["fr", "g", "b"],
            &["y"],
            &[("epsilon", AttrValue::Float(1e-12))],
        );
        p(
            &mut g,
            "q3",
            (DOMAIN, "QuantizeRows"),
            &["y"],
            &["yq", "ys"],
        );
        for (name, dims) in [("i.w", w_in), ("f.w", w_out)] {
            let mut t = Vec::new();
            for d in dims {
                Value::Varint(d).write(1, &mut t);
            }
            Value::Varint(INT8).write(2, &mut t);
            put_bytes(&mut t, 8, name.as_bytes());
            put_bytes(&mut g, 5, &t);
        }
        for i in ["i.s", "i.b", "f.s", "f.b", "g", "b"] {
            initializer(&mut g, i, &[64]);
        }
        for i in ["one", "zp"] {
            initializer(&mut g, i, &[]);
        }
        for o in ["y", "yq", "ys"] {
            let mut out = Vec::new();
            put_bytes(&mut out, 1, o.as_bytes());
            put_bytes(&mut g, 12, &out);
        }
        g
    }

    #[test]
    fn an_int8_block_is_fused_and_its_products_go_to_frostlines_kernel_where_they_fit() {
        let ops = |g: &[u8], k: Option<Int8Kernel>| -> Vec<(String, Vec<String>, Vec<String>)> {
            nodes(
                &on_own_ops(&model(g), int8_only(k))
                    .unwrap()
                    .expect("rewritten")
                    .bytes,
            )
        };
        let names = |n: &[(String, Vec<String>, Vec<String>)]| -> Vec<String> {
            n.iter().map(|(op, _, _)| op.clone()).collect()
        };
        let fits = int8_ffn([64, 64], [64, 64]);
        for kernel in [Int8Kernel::AmxInt8, Int8Kernel::Avx512Vnni] {
            assert_eq!(
                names(&ops(&fits, Some(kernel))),
                names(&ops(&fits, AMX.int8))
            );
            // k = 42 is a multiple of neither kernel's step: ORT's product stays for that one.
            let odd = names(&ops(&int8_ffn([42, 64], [64, 64]), Some(kernel)));
            assert_eq!(odd[1], "com.microsoft.MatMulIntegerToFloat");
            assert_eq!(odd[3], "ai.frostline.MatMulInt8");
        }
        // The AMX tiles take 64 k values a step, VNNI 4.
        let k40 = int8_ffn([40, 64], [64, 64]);
        assert_eq!(
            names(&ops(&k40, AMX.int8))[1],
            "com.microsoft.MatMulIntegerToFloat"
        );
        let vnni = names(&ops(&k40, Some(Int8Kernel::Avx512Vnni)));
        assert_eq!(vnni[1], "ai.frostline.MatMulInt8");
        let n = ops(&fits, AMX.int8);
        assert_eq!(
            names(&n),
            [
                "ai.frostline.QuantizeRows",
                "ai.frostline.MatMulInt8",
                "ai.frostline.BiasGeluQuantize",
                "ai.frostline.MatMulInt8",
                "ai.frostline.BiasResidualLayerNorm",
            ]
        );
        // The GELU takes the product, its bias and the row scale; the norm writes the next
        // product's codes beside its own output.
        assert_eq!(n[2].1, ["i", "i.b", "hs"]);
        assert_eq!(n[2].2, ["gq", "gs"]);
        assert_eq!(n[4].1, ["f", "f.b", "h", "g", "b", "gs"]);
        assert_eq!(n[4].2, ["y", "yq", "ys"]);
        // Without an int8 kernel of frostline's, ORT's products stay.
        let plain = names(&ops(&fits, None));
        assert_eq!(plain[1], "com.microsoft.MatMulIntegerToFloat");
        assert_eq!(plain[3], "com.microsoft.MatMulIntegerToFloat");
    }

    #[test]
    fn what_it_does_not_know_runs_as_written() {
        // An Attention attribute the core does not implement: that node stays, the rest moves.
        let r = on_own_ops(
            &model(&layer(&[("unidirectional", AttrValue::Int(1))])),
            AMX,
        )
        .unwrap()
        .unwrap();
        assert_eq!(r.ops.get("com.microsoft.Attention"), Some(&1));
        assert_eq!(r.ops.get("ai.frostline.AttentionCore"), None);
        assert_eq!(r.ops.get("ai.frostline.BiasGelu"), Some(&1));

        // A quantized graph is left exactly as written (its own ops are bit-exact; these are not).
        let mut g = layer(&[]);
        put_node(
            &mut g,
            "q",
            ("", "MatMulInteger"),
            &["y", "w8"],
            &["z"],
            &[],
        );
        assert!(on_own_ops(&model(&g), AMX).unwrap().is_none());

        // A residual sum that something else also reads is not folded into the norm.
        let mut g = layer(&[]);
        put_node(&mut g, "peek", ("", "Identity"), &["or"], &["seen"], &[]);
        let r = on_own_ops(&model(&g), AMX).unwrap().unwrap();
        assert_eq!(r.ops.get("ai.frostline.BiasResidualLayerNorm"), Some(&1));
        assert_eq!(r.ops.get("LayerNormalization"), Some(&1));

        // A one-value bias broadcasts in ONNX; the fused kernels take one per feature, so that
        // Add and its norm stay as written.
        let g = layer_with(&[], &[1]);
        let r = on_own_ops(&model(&g), AMX).unwrap().unwrap();
        assert_eq!(r.ops.get("ai.frostline.BiasResidualLayerNorm"), Some(&1));

        // Weights the caller may override (initializers also listed as graph inputs) are not
        // packed: their products and the attention that reads its weights run as written.
        let mut g = layer(&[]);
        for name in ["qkv.w", "i.w"] {
            let mut input = Vec::new();
            put_bytes(&mut input, 1, name.as_bytes());
            put_bytes(&mut g, 11, &input);
        }
        let r = on_own_ops(&model(&g), AMX).unwrap().unwrap();
        assert_eq!(r.ops.get("com.microsoft.Attention"), Some(&1));
        assert_eq!(r.ops.get("MatMul"), Some(&2), "{:?}", r.ops);
        assert_eq!(r.ops.get("ai.frostline.MatMulF32"), Some(&1));

        // Damage is named, not skipped.
        let mut bad = model(&layer(&[]));
        bad.truncate(bad.len() - 5);
        assert!(on_own_ops(&bad, AMX).unwrap_err().contains("bytes where"));
    }
}
