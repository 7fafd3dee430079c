//! frostline's own ONNX Runtime operators (domain `ai.frostline`), registered in every session
//! frostline opens.
//!
//! The per-token int8 graph spends most of its time in the element-wise nodes around each int8
//! product, one pass over memory each; the quantizer writes it with these (`--own-ops`):
//!
//! - `QuantizeRows(x) → (q: uint8, scale)`: one node for the seven of the portable recipe
//!   (`Abs`, `ReduceMax`, `Max`, `Div`, `Shape`, `Expand`, blocked `QuantizeLinear`);
//! - `ScaleBiasResidual(f, scale, bias, residual) → y`: an int8 product's row scale, its bias
//!   and the residual, for the portable `Mul`, `Add`, `Add`;
//! - `ScaleSplit(f, scale) → (q, k, v)`: the QKV product's row scale and its split into the three
//!   inputs of `MultiHeadAttention`, for the portable `Mul`, `Split`.
//!
//! They run the portable graph's IEEE operations in its order ([`crate::nn::vecmath`]), so that
//! graph run as written gives bit for bit the vectors of the portable graph `export --with-heads`
//! writes (tests/quantize.rs checks that).
//!
//! A CPU session runs graphs rewritten by [`super::own_graph`] onto these, which agree with ORT's
//! kernels to float rounding, not bit for bit:
//! - `AttentionCore` (ORT's `Attention` after its QKV product; with row scales, the int8 graph's
//!   `ScaleSplit` + `MultiHeadAttention`), `BiasGelu`, `BiasResidualLayerNorm` (`Add`, `Add`,
//!   `LayerNormalization`; in int8 also the row scale before and the `QuantizeRows` after);
//! - `BiasGeluQuantize` (int8: row scale, bias, GELU and the next product's quantization);
//! - `MatMulInt8`: `MatMulIntegerToFloat` on frostline's AMX or AVX512-VNNI kernel
//!   ([`crate::nn::gemm::int8`]) — this one bit for bit, the integer sums being exact;
//! - `MatMulF32`: `MatMul` by a weight matrix on frostline's AVX-512 fp32 kernel
//!   ([`crate::nn::gemm::f32_packed`]).

use ort::operator::{
    BoxedKernel, ComputeContext, Kernel, KernelContext, Operator, OperatorDomain, OperatorInput,
    OperatorOutput,
};
use ort::value::TensorElementType;

use crate::nn::attention_core::{self, Qkv};
use crate::nn::gemm::f32_packed::{self, F32Weights};
use crate::nn::gemm::int8::{self, Int8Kernel, Int8Weights};
use crate::nn::vecmath;

/// The ONNX domain of frostline's operators.
pub(crate) const DOMAIN: &str = "ai.frostline";

/// Rows per unit of work handed to ONNX Runtime's thread pool.
const ROWS_PER_TASK: usize = 16;
/// Tasks an attention call is cut into at least (when it has that many heads): a task is one
/// sequence's group of heads, whose Q, K and V runs of a row are read once for the group.
const MIN_TASKS: usize = 16;

/// The domain with every frostline operator, for `SessionBuilder::with_operators`.
pub(crate) fn domain() -> ort::Result<OperatorDomain> {
    OperatorDomain::new(DOMAIN)?
        .add(QuantizeRows)?
        .add(ScaleBiasResidual)?
        .add(ScaleSplit)?
        .add(AttentionCore)?
        .add(BiasGelu)?
        .add(BiasGeluQuantize)?
        .add(MatMulInt8)?
        .add(MatMulF32)?
        .add(BiasResidualLayerNorm)
}

/// A raw pointer handed to the pool's workers; each writes rows no other touches.
#[derive(Clone, Copy)]
struct Shared<T>(*mut T);
// SAFETY: workers write disjoint row ranges of one output buffer that outlives `par_for`.
unsafe impl<T> Send for Shared<T> {}
unsafe impl<T> Sync for Shared<T> {}

impl<T> Shared<T> {
    /// The pointer (a method, so a closure captures the `Shared`, not its raw field).
    fn get(self) -> *mut T {
        self.0
    }
}

/// Runs `f(first_row, rows)` over `rows` rows in tasks of [`ROWS_PER_TASK`] on ONNX Runtime's
/// intra-op threads.
fn for_row_tasks(
    ctx: &ComputeContext,
    rows: usize,
    f: impl Fn(usize, usize) + Sync + Send,
) -> ort::Result<()> {
    let tasks = rows.div_ceil(ROWS_PER_TASK);
    ctx.par_for(tasks, 0, |t| {
        let first = t * ROWS_PER_TASK;
        f(first, ROWS_PER_TASK.min(rows - first));
    })
}

fn missing(what: &str) -> ort::Error {
    ort::Error::new(format!("frostline op: input {what} is missing"))
}

/// The last dimension of a tensor and how many rows of it there are.
fn rows_of(shape: &[i64], what: &str) -> ort::Result<(usize, usize)> {
    let cols = *shape
        .last()
        .ok_or_else(|| ort::Error::new(format!("frostline op: {what} is a scalar")))?
        as usize;
    let total: i64 = shape.iter().product();
    Ok((total as usize / cols.max(1), cols))
}

/// A unit struct `$op` as an ONNX Runtime operator of that name, with the element types of its
/// inputs and outputs (those after a `;` optional: a node may leave them out); `$make` builds
/// its kernel from the node's attributes.
macro_rules! operator {
    ($op:ident, inputs: [$($i:ident),* $(; $($oi:ident),*)?], outputs: [$($o:ident),* $(; $($oo:ident),*)?], kernel: |$attrs:pat_param| $make:expr) => {
        struct $op;

        impl Operator for $op {
            type Kernel<'attr> = BoxedKernel<'attr>;

            fn name(&self) -> &str {
                stringify!($op)
            }

            fn inputs(&self) -> impl IntoIterator<Item = OperatorInput> {
                [$(OperatorInput::required(TensorElementType::$i),)* $($(OperatorInput::optional(TensorElementType::$oi),)*)?]
            }

            fn outputs(&self) -> impl IntoIterator<Item = OperatorOutput> {
                [$(OperatorOutput::required(TensorElementType::$o),)* $($(OperatorOutput::optional(TensorElementType::$oo),)*)?]
            }

            fn create_kernel<'attr>(&self, $attrs: &KernelContext<'attr>) -> ort::Result<Self::Kernel<'attr>> {
                Ok(Box::new($make))
            }
        }
    };
}

operator!(QuantizeRows, inputs: [Float32], outputs: [Uint8, Float32], kernel: |_| QuantizeRowsKernel);
operator!(ScaleBiasResidual, inputs: [Float32, Float32, Float32, Float32], outputs: [Float32], kernel: |_| ScaleBiasResidualKernel);
operator!(ScaleSplit, inputs: [Float32, Float32], outputs: [Float32, Float32, Float32], kernel: |_| ScaleSplitKernel);
operator!(AttentionCore, inputs: [Float32, Float32, Int32; Float32], outputs: [Float32], kernel: |attrs| AttentionCoreKernel {
    heads: positive_attribute(attrs, "num_heads")?,
});
operator!(BiasGelu, inputs: [Float32, Float32], outputs: [Float32], kernel: |_| BiasGeluKernel);
operator!(BiasGeluQuantize, inputs: [Float32, Float32; Float32], outputs: [Uint8, Float32], kernel: |_| BiasGeluQuantizeKernel);
operator!(MatMulInt8, inputs: [Uint8, Int8, Float32, Float32, Uint8], outputs: [Float32], kernel: |attrs| MatMulInt8Kernel::new(attrs)?);
operator!(MatMulF32, inputs: [Float32, Float32], outputs: [Float32], kernel: |attrs| MatMulF32Kernel::new(attrs)?);
operator!(BiasResidualLayerNorm, inputs: [Float32, Float32, Float32, Float32, Float32; Float32], outputs: [Float32; Uint8, Float32], kernel: |attrs| BiasResidualLayerNormKernel {
    epsilon: attrs.get::<f32>("epsilon").ok_or_else(|| ort::Error::new("BiasResidualLayerNorm: attribute epsilon is missing"))?,
});

/// Input `i` of a node, `None` where the node leaves that optional input out.
fn optional_input<'c>(
    ctx: &'c ComputeContext,
    i: usize,
) -> ort::Result<Option<ort::value::ValueRef<'c>>> {
    if ctx.num_inputs()? > i {
        ctx.input(i)
    } else {
        Ok(None)
    }
}

/// An int8 product's row scales from an optional input (`optional_input`): one per row of
/// `rows`, or refused.
fn row_scales<'v>(
    input: &'v Option<ort::value::ValueRef<'_>>,
    rows: usize,
    op: &str,
) -> ort::Result<Option<&'v [f32]>> {
    let Some(v) = input else { return Ok(None) };
    let (_, s) = v.try_extract_tensor::<f32>()?;
    if s.len() != rows {
        return Err(ort::Error::new(format!(
            "{op}: {} row scales for {rows} rows",
            s.len()
        )));
    }
    Ok(Some(s))
}

/// A node's integer attribute `name`, refused unless it is there and positive.
fn positive_attribute(attrs: &KernelContext, name: &str) -> ort::Result<usize> {
    match attrs.get::<i64>(name) {
        Some(v) if v > 0 => Ok(v as usize),
        other => Err(ort::Error::new(format!(
            "frostline op: attribute {name} is {other:?}, not a positive integer"
        ))),
    }
}

/// Outputs `at` and `at + 1` of a quantizing op for an input of `shape`: the uint8 codes (the
/// same shape) and one scale per row (last axis 1), as raw pointers the row tasks write
/// through; `None` where the node leaves them out.
fn quantized_outputs(
    ctx: &ComputeContext,
    at: usize,
    shape: &[i64],
) -> ort::Result<Option<(Shared<u8>, Shared<f32>)>> {
    if ctx.num_outputs()? < at + 2 {
        return Ok(None);
    }
    let mut scale_shape = shape.to_vec();
    if let Some(last) = scale_shape.last_mut() {
        *last = 1;
    }
    let (Some(mut q), Some(mut s)) = (
        ctx.output(at, shape.to_vec())?,
        ctx.output(at + 1, scale_shape)?,
    ) else {
        return Ok(None);
    };
    Ok(Some((
        Shared(q.try_extract_tensor_mut::<u8>()?.1.as_mut_ptr()),
        Shared(s.try_extract_tensor_mut::<f32>()?.1.as_mut_ptr()),
    )))
}

/// Rows `first..first + n` of `x` (`cols` wide, this task's alone) quantized into the outputs
/// of [`quantized_outputs`].
fn quantize_task(
    x: &[f32],
    cols: usize,
    (q, s): (Shared<u8>, Shared<f32>),
    first: usize,
    n: usize,
) {
    // SAFETY: rows first..first+n of both outputs belong to this task alone.
    let (q, s) = unsafe {
        (
            std::slice::from_raw_parts_mut(q.get().add(first * cols), n * cols),
            std::slice::from_raw_parts_mut(s.get().add(first), n),
        )
    };
    vecmath::quantize_rows(x, cols, q, s);
}

struct QuantizeRowsKernel;

impl Kernel for QuantizeRowsKernel {
    fn compute(&mut self, ctx: &ComputeContext) -> ort::Result<()> {
        let x = ctx.input(0)?.ok_or_else(|| missing("x"))?;
        let (shape, x) = x.try_extract_tensor::<f32>()?;
        let (rows, cols) = rows_of(shape, "x")?;
        let out = quantized_outputs(ctx, 0, shape)?.ok_or_else(|| missing("q or scale"))?;
        for_row_tasks(ctx, rows, |first, n| {
            quantize_task(&x[first * cols..(first + n) * cols], cols, out, first, n);
        })
    }
}

struct ScaleBiasResidualKernel;

impl Kernel for ScaleBiasResidualKernel {
    fn compute(&mut self, ctx: &ComputeContext) -> ort::Result<()> {
        let input = |i: usize, what: &str| ctx.input(i)?.ok_or_else(|| missing(what));
        let (f, scale, bias, residual) = (
            input(0, "f")?,
            input(1, "scale")?,
            input(2, "bias")?,
            input(3, "residual")?,
        );
        let (shape, f) = f.try_extract_tensor::<f32>()?;
        let (rows, cols) = rows_of(shape, "f")?;
        let (_, scale) = scale.try_extract_tensor::<f32>()?;
        let (_, bias) = bias.try_extract_tensor::<f32>()?;
        let (r_shape, residual) = residual.try_extract_tensor::<f32>()?;
        if scale.len() != rows || bias.len() != cols || **r_shape != **shape {
            return Err(ort::Error::new(format!(
                "ScaleBiasResidual: product {shape:?}, {} row scales, {} biases, residual {r_shape:?} do not fit",
                scale.len(),
                bias.len()
            )));
        }
        let mut y = ctx.output(0, shape.to_vec())?.ok_or_else(|| missing("y"))?;
        let y = Shared(y.try_extract_tensor_mut::<f32>()?.1.as_mut_ptr());
        for_row_tasks(ctx, rows, |first, n| {
            let span = first * cols..(first + n) * cols;
            // SAFETY: rows first..first+n of the output belong to this task alone.
            let y = unsafe { std::slice::from_raw_parts_mut(y.get().add(span.start), span.len()) };
            vecmath::scale_bias_residual(
                &f[span.clone()],
                &scale[first..first + n],
                bias,
                &residual[span],
                y,
            );
        })
    }
}

struct ScaleSplitKernel;

impl Kernel for ScaleSplitKernel {
    fn compute(&mut self, ctx: &ComputeContext) -> ort::Result<()> {
        let f = ctx.input(0)?.ok_or_else(|| missing("f"))?;
        let scale = ctx.input(1)?.ok_or_else(|| missing("scale"))?;
        let (shape, f) = f.try_extract_tensor::<f32>()?;
        let (rows, cols) = rows_of(shape, "f")?;
        let (_, scale) = scale.try_extract_tensor::<f32>()?;
        if scale.len() != rows || cols % 3 != 0 {
            return Err(ort::Error::new(format!(
                "ScaleSplit: product {shape:?} with {} row scales does not split in three",
                scale.len()
            )));
        }
        let width = cols / 3;
        let mut part_shape = shape.to_vec();
        *part_shape.last_mut().expect("rows_of checked the rank") = width as i64;
        let mut outs = Vec::with_capacity(3);
        for i in 0..3 {
            let mut v = ctx
                .output(i, part_shape.clone())?
                .ok_or_else(|| missing("q, k or v"))?;
            outs.push(Shared(v.try_extract_tensor_mut::<f32>()?.1.as_mut_ptr()));
        }
        let outs = [outs[0], outs[1], outs[2]];
        for_row_tasks(ctx, rows, |first, n| {
            // SAFETY: rows first..first+n of each output belong to this task alone.
            let mut parts = outs.map(|p| unsafe {
                std::slice::from_raw_parts_mut(p.get().add(first * width), n * width)
            });
            let mut parts: [&mut [f32]; 3] = parts.each_mut().map(|p| &mut **p);
            vecmath::scale_split(
                &f[first * cols..(first + n) * cols],
                &scale[first..first + n],
                &mut parts,
            );
        })
    }
}

/// `AttentionCore(qkv, bias, mask, [row_scale]) → context` (attribute `num_heads`): ONNX
/// Runtime's `Attention` after its QKV product (`qkv` `[batch, seq, 3·hidden]` without bias, the
/// raw `[batch, seq]` 0/1 mask), one (sequence, group of heads) per task
/// ([`attention_core::attend`]). With `row_scale` (an int8 product's scale per token) it is the
/// quantized graph's `ScaleSplit` + `MultiHeadAttention`.
struct AttentionCoreKernel {
    heads: usize,
}

thread_local! {
    static ATTENTION_SCRATCH: std::cell::RefCell<attention_core::Scratch> = Default::default();
}

impl Kernel for AttentionCoreKernel {
    fn compute(&mut self, ctx: &ComputeContext) -> ort::Result<()> {
        let input = |i: usize, what: &str| ctx.input(i)?.ok_or_else(|| missing(what));
        let (qkv, bias, mask) = (input(0, "qkv")?, input(1, "bias")?, input(2, "mask")?);
        let (shape, qkv) = qkv.try_extract_tensor::<f32>()?;
        let (_, bias) = bias.try_extract_tensor::<f32>()?;
        let (m_shape, mask) = mask.try_extract_tensor::<i32>()?;
        let heads = self.heads;
        let width = bias.len();
        let fits = shape.len() == 3
            && shape[2] as usize == width
            && width % (3 * heads) == 0
            && **m_shape == shape[..2];
        if !fits {
            return Err(ort::Error::new(format!(
                "AttentionCore: QKV product {shape:?}, {width} biases, mask {m_shape:?} and {heads} heads do not fit"
            )));
        }
        let (batch, seq, hidden) = (shape[0] as usize, shape[1] as usize, width / 3);
        let scales_in = optional_input(ctx, 3)?;
        let scales = row_scales(&scales_in, batch * seq, "AttentionCore")?;
        let d = hidden / heads;
        let mut out = ctx
            .output(0, vec![shape[0], shape[1], hidden as i64])?
            .ok_or_else(|| missing("context"))?;
        let out = Shared(out.try_extract_tensor_mut::<f32>()?.1.as_mut_ptr());
        // A sequence's heads in as few groups as keep MIN_TASKS tasks for the pool: 50 short
        // texts are 50 tasks of 12 heads, 4 long documents 16 tasks of 3.
        let per_task = heads.div_ceil(MIN_TASKS.div_ceil(batch.max(1)).min(heads));
        let groups = heads.div_ceil(per_task);
        ctx.par_for(batch * groups, 0, |task| {
            let (b, g) = (task / groups, task % groups);
            let group = g * per_task..((g + 1) * per_task).min(heads);
            let (first, run) = (group.start * d, group.len() * d);
            let keys: Vec<usize> = (0..seq).filter(|&j| mask[b * seq + j] != 0).collect();
            ATTENTION_SCRATCH.with_borrow_mut(|s| {
                let sequence = Qkv {
                    product: &qkv[b * seq * width..(b + 1) * seq * width],
                    row_scales: scales.map(|s| &s[b * seq..(b + 1) * seq]),
                    bias,
                };
                attention_core::attend(sequence, &keys, heads, group, s);
                for (i, row) in s.ctx.chunks_exact(run).enumerate() {
                    // SAFETY: the group's columns of sequence b's rows belong to this task alone.
                    unsafe {
                        let at = out.get().add((b * seq + i) * hidden + first);
                        std::ptr::copy_nonoverlapping(row.as_ptr(), at, run);
                    }
                }
            });
        })
    }
}

/// `BiasGelu(x, bias)`: GELU(x + bias) in the exact erf form, as ONNX Runtime's contrib op.
struct BiasGeluKernel;

impl Kernel for BiasGeluKernel {
    fn compute(&mut self, ctx: &ComputeContext) -> ort::Result<()> {
        let x = ctx.input(0)?.ok_or_else(|| missing("x"))?;
        let bias = ctx.input(1)?.ok_or_else(|| missing("bias"))?;
        let (shape, x) = x.try_extract_tensor::<f32>()?;
        let (rows, cols) = rows_of(shape, "x")?;
        let (_, bias) = bias.try_extract_tensor::<f32>()?;
        if bias.len() != cols {
            return Err(ort::Error::new(format!(
                "BiasGelu: input {shape:?} with {} biases",
                bias.len()
            )));
        }
        let mut y = ctx.output(0, shape.to_vec())?.ok_or_else(|| missing("y"))?;
        let y = Shared(y.try_extract_tensor_mut::<f32>()?.1.as_mut_ptr());
        for_row_tasks(ctx, rows, |first, n| {
            let span = first * cols..(first + n) * cols;
            // SAFETY: rows first..first+n of the output belong to this task alone.
            let y = unsafe { std::slice::from_raw_parts_mut(y.get().add(span.start), span.len()) };
            vecmath::bias_gelu(&x[span], None, bias, y);
        })
    }
}

/// `BiasGeluQuantize(f, bias, [row_scale]) → (q, scale)`: GELU(f · row_scale + bias) quantized
/// per row, for the int8 graph's `Mul`, `BiasGelu`, `QuantizeRows` between its two FFN products
/// (the GELU's output is read by nothing else, so it never goes to memory).
struct BiasGeluQuantizeKernel;

thread_local! {
    /// A task's GELU rows before they are quantized.
    static GELU_ROWS: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl Kernel for BiasGeluQuantizeKernel {
    fn compute(&mut self, ctx: &ComputeContext) -> ort::Result<()> {
        let f = ctx.input(0)?.ok_or_else(|| missing("f"))?;
        let bias = ctx.input(1)?.ok_or_else(|| missing("bias"))?;
        let (shape, f) = f.try_extract_tensor::<f32>()?;
        let (rows, cols) = rows_of(shape, "f")?;
        let (_, bias) = bias.try_extract_tensor::<f32>()?;
        let scales_in = optional_input(ctx, 2)?;
        let scales = row_scales(&scales_in, rows, "BiasGeluQuantize")?;
        if bias.len() != cols {
            return Err(ort::Error::new(format!(
                "BiasGeluQuantize: input {shape:?} with {} biases",
                bias.len()
            )));
        }
        let out = quantized_outputs(ctx, 0, shape)?.ok_or_else(|| missing("q or scale"))?;
        for_row_tasks(ctx, rows, |first, n| {
            GELU_ROWS.with_borrow_mut(|g| {
                g.resize(n * cols, 0.0);
                vecmath::bias_gelu(
                    &f[first * cols..(first + n) * cols],
                    scales.map(|s| &s[first..first + n]),
                    bias,
                    g,
                );
                quantize_task(g, cols, out, first, n);
            })
        })
    }
}

/// `BiasResidualLayerNorm(f, bias, residual, gamma, beta, [row_scale]) → (y, [q, scale])`
/// (attribute `epsilon`): LayerNorm((f · row_scale + bias) + residual) over the last axis, for
/// ONNX's `Add`, `Add`, `LayerNormalization` after a product. In the int8 graph `row_scale` is
/// the product's scale per token (its `ScaleBiasResidual`), and `q`, `scale` are the norm's
/// output quantized for the next product (its `QuantizeRows`), from rows still in cache.
struct BiasResidualLayerNormKernel {
    epsilon: f32,
}

impl Kernel for BiasResidualLayerNormKernel {
    fn compute(&mut self, ctx: &ComputeContext) -> ort::Result<()> {
        let input = |i: usize, what: &str| ctx.input(i)?.ok_or_else(|| missing(what));
        let (f, bias, residual, gamma, beta) = (
            input(0, "f")?,
            input(1, "bias")?,
            input(2, "residual")?,
            input(3, "gamma")?,
            input(4, "beta")?,
        );
        let (shape, f) = f.try_extract_tensor::<f32>()?;
        let (rows, cols) = rows_of(shape, "f")?;
        let (_, bias) = bias.try_extract_tensor::<f32>()?;
        let (r_shape, residual) = residual.try_extract_tensor::<f32>()?;
        let (_, gamma) = gamma.try_extract_tensor::<f32>()?;
        let (_, beta) = beta.try_extract_tensor::<f32>()?;
        if bias.len() != cols || gamma.len() != cols || beta.len() != cols || **r_shape != **shape {
            return Err(ort::Error::new(format!(
                "BiasResidualLayerNorm: product {shape:?}, residual {r_shape:?}, {} biases, {} gains, {} shifts do not fit",
                bias.len(),
                gamma.len(),
                beta.len()
            )));
        }
        let scales_in = optional_input(ctx, 5)?;
        let scales = row_scales(&scales_in, rows, "BiasResidualLayerNorm")?;
        let mut y = ctx.output(0, shape.to_vec())?.ok_or_else(|| missing("y"))?;
        let y = Shared(y.try_extract_tensor_mut::<f32>()?.1.as_mut_ptr());
        let quantized = quantized_outputs(ctx, 1, shape)?;
        let eps = self.epsilon;
        for_row_tasks(ctx, rows, |first, n| {
            let span = first * cols..(first + n) * cols;
            // SAFETY: rows first..first+n of the output belong to this task alone.
            let y = unsafe { std::slice::from_raw_parts_mut(y.get().add(span.start), span.len()) };
            vecmath::bias_residual_layernorm(
                &f[span.clone()],
                scales.map(|s| &s[first..first + n]),
                bias,
                &residual[span],
                gamma,
                beta,
                eps,
                y,
            );
            if let Some(out) = quantized {
                quantize_task(y, cols, out, first, n);
            }
        })
    }
}

/// `MatMulInt8(a, b, a_scale, b_scale, a_zero_point) → f32(Σ (a − zp)·b) · a_scale · b_scale`:
/// ONNX Runtime's `MatMulIntegerToFloat` with these five inputs, bit for bit, on frostline's
/// int8 kernel ([`int8`]); `b`, the scales and the zero point are the graph's constants, packed once
/// when the session is made.
struct MatMulInt8Kernel {
    w: Int8Weights,
}

impl MatMulInt8Kernel {
    fn new(attrs: &KernelContext) -> ort::Result<Self> {
        let kernel =
            Int8Kernel::get().map_err(|why| ort::Error::new(format!("MatMulInt8: {why}")))?;
        let constant = |i: usize| {
            attrs
                .constant_input::<ort::value::DynTensorValueType>(i)
                .map_err(|e| {
                    ort::Error::new(format!("MatMulInt8: input {i} is not a constant ({e})"))
                })
        };
        let b = constant(1)?;
        let (shape, w) = b.try_extract_tensor::<i8>()?;
        let a_scale = constant(2)?;
        let (_, a_scale) = a_scale.try_extract_tensor::<f32>()?;
        let b_scale = constant(3)?;
        let (_, b_scale) = b_scale.try_extract_tensor::<f32>()?;
        let zp = constant(4)?;
        let (_, zp) = zp.try_extract_tensor::<u8>()?;
        let (k, n) = match **shape {
            [k, n] => (k as usize, n as usize),
            _ => (0, 0),
        };
        if !Int8Weights::fits(kernel, k, n)
            || a_scale.len() != 1
            || zp.len() != 1
            || !(b_scale.len() == n || b_scale.len() == 1)
        {
            return Err(ort::Error::new(format!(
                "MatMulInt8: weights {shape:?}, {} activation scales, {} weight scales, {} zero points do not fit",
                a_scale.len(),
                b_scale.len(),
                zp.len()
            )));
        }
        // ORT's multiplier per column: the activation scale times the weight's.
        let scales: Vec<f32> = b_scale.iter().map(|&s| a_scale[0] * s).collect();
        Ok(Self {
            w: Int8Weights::pack(kernel, w, k, n, &scales, zp[0]),
        })
    }
}

impl Kernel for MatMulInt8Kernel {
    fn compute(&mut self, ctx: &ComputeContext) -> ort::Result<()> {
        let a = ctx.input(0)?.ok_or_else(|| missing("a"))?;
        let (shape, a) = a.try_extract_tensor::<u8>()?;
        let w = &self.w;
        let (rows, k) = product_shape("MatMulInt8", shape, w.k())?;
        let y = product_output(ctx, shape, w.n())?;
        for_panel_tasks(
            ctx,
            rows,
            int8::ROWS,
            w.n() / int8::PANEL,
            8,
            |r0, live, cols| {
                // SAFETY: this task writes rows r0..r0+live, columns of its panels, alone.
                unsafe {
                    w.product(
                        &a[r0 * k..(r0 + live) * k],
                        live,
                        cols,
                        y.get().add(r0 * w.n()),
                    )
                }
            },
        )
    }
}

/// `MatMulF32(a, b) → a·b`: ONNX's `MatMul` by a constant `[k, n]` matrix `b`, packed once when
/// the session is made, on frostline's fp32 kernel ([`f32_packed`]).
struct MatMulF32Kernel {
    w: F32Weights,
}

impl MatMulF32Kernel {
    fn new(attrs: &KernelContext) -> ort::Result<Self> {
        F32Weights::available().map_err(|why| ort::Error::new(format!("MatMulF32: {why}")))?;
        let b = attrs
            .constant_input::<ort::value::DynTensorValueType>(1)
            .map_err(|e| {
                ort::Error::new(format!("MatMulF32: the weights are not a constant ({e})"))
            })?;
        let (shape, w) = b.try_extract_tensor::<f32>()?;
        match **shape {
            [k, n] if F32Weights::fits(k as usize, n as usize) => Ok(Self {
                w: F32Weights::pack(w, k as usize, n as usize),
            }),
            _ => Err(ort::Error::new(format!(
                "MatMulF32: weights {shape:?} do not fit the kernel's panels"
            ))),
        }
    }
}

impl Kernel for MatMulF32Kernel {
    fn compute(&mut self, ctx: &ComputeContext) -> ort::Result<()> {
        let a = ctx.input(0)?.ok_or_else(|| missing("a"))?;
        let (shape, a) = a.try_extract_tensor::<f32>()?;
        let w = &self.w;
        let (rows, k) = product_shape("MatMulF32", shape, w.k())?;
        let y = product_output(ctx, shape, w.n())?;
        // 48 tasks at least: blocks of 96 rows are few, and the threads should end together (with
        // 16, the fp32 run of the short corpus took 2 % longer on Zen 5, 5 alternating runs).
        let panels = w.n() / f32_packed::PANEL;
        for_panel_tasks(ctx, rows, f32_packed::ROWS, panels, 48, |r0, live, cols| {
            // SAFETY: this task writes rows r0..r0+live, columns of its panels, alone.
            unsafe {
                w.product(
                    &a[r0 * k..(r0 + live) * k],
                    live,
                    cols,
                    y.get().add(r0 * w.n()),
                )
            }
        })
    }
}

/// The rows and width of a weight product's input `shape`, which must be `k` wide.
fn product_shape(op: &str, shape: &[i64], k: usize) -> ort::Result<(usize, usize)> {
    let (rows, width) = rows_of(shape, "a")?;
    if width != k {
        return Err(ort::Error::new(format!(
            "{op}: input {shape:?} times weights of {k} rows"
        )));
    }
    Ok((rows, width))
}

/// A weight product's output: the input's shape with `n` columns.
fn product_output(ctx: &ComputeContext, shape: &[i64], n: usize) -> ort::Result<Shared<f32>> {
    let mut out_shape = shape.to_vec();
    *out_shape.last_mut().expect("rows_of checked the rank") = n as i64;
    let mut y = ctx.output(0, out_shape)?.ok_or_else(|| missing("y"))?;
    Ok(Shared(y.try_extract_tensor_mut::<f32>()?.1.as_mut_ptr()))
}

/// Runs a weight product as tasks on ONNX Runtime's pool, `f(first_row, rows, panels)`: blocks
/// of `block` rows times shares of the `panels` column panels, as few shares as make `tasks`
/// tasks, so a short input still splits.
fn for_panel_tasks(
    ctx: &ComputeContext,
    rows: usize,
    block: usize,
    panels: usize,
    tasks: usize,
    f: impl Fn(usize, usize, std::ops::Range<usize>) + Sync + Send,
) -> ort::Result<()> {
    let blocks = rows.div_ceil(block);
    let shares = tasks.div_ceil(blocks.max(1)).clamp(1, panels);
    ctx.par_for(blocks * shares, 0, |t| {
        let (b, share) = (t / shares, t % shares);
        let r0 = b * block;
        f(
            r0,
            block.min(rows - r0),
            share * panels / shares..(share + 1) * panels / shares,
        );
    })
}
