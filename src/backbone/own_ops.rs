//! frostline's own ONNX Runtime operators (domain `ai.frostline`), registered in every session
//! frostline opens. The per-token int8 graph spends most of its time in the element-wise nodes
//! around each int8 product, one pass over memory each; these fold them:
//!
//! - `QuantizeRows(x) → (q: uint8, scale)`: one node for the seven of the portable recipe
//!   (`Abs`, `ReduceMax`, `Max`, `Div`, `Shape`, `Expand`, blocked `QuantizeLinear`);
//! - `ScaleBiasResidual(f, scale, bias, residual) → y`: an int8 product's row scale, its bias
//!   and the residual, for the portable `Mul`, `Add`, `Add`;
//! - `ScaleSplit(f, scale) → (q, k, v)`: the QKV product's row scale and its split into the three
//!   inputs of `MultiHeadAttention`, for the portable `Mul`, `Split`.
//!
//! Both run the portable graph's IEEE operations in its order ([`crate::nn::vecmath`]), so a
//! graph with them gives bit for bit the vectors of the portable graph `export --with-heads`
//! writes (tests/own_ops.rs checks that). The quantizer writes them (`--own-ops`).

use ort::operator::{
    BoxedKernel, ComputeContext, Kernel, KernelContext, Operator, OperatorDomain, OperatorInput,
    OperatorOutput,
};
use ort::value::TensorElementType;

use crate::nn::vecmath;

/// The ONNX domain of frostline's operators.
pub(crate) const DOMAIN: &str = "ai.frostline";

/// Rows per unit of work handed to ONNX Runtime's thread pool.
const ROWS_PER_TASK: usize = 16;

/// The domain with every frostline operator, for `SessionBuilder::with_operators`.
pub(crate) fn domain() -> ort::Result<OperatorDomain> {
    OperatorDomain::new(DOMAIN)?
        .add(QuantizeRows)?
        .add(ScaleBiasResidual)?
        .add(ScaleSplit)
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

/// A unit struct `$op` as an ONNX Runtime operator of that name, run by `$kernel`, with the
/// element types of its inputs and outputs.
macro_rules! operator {
    ($op:ident, $kernel:ident, inputs: [$($i:ident),*], outputs: [$($o:ident),*]) => {
        struct $op;

        impl Operator for $op {
            type Kernel<'attr> = BoxedKernel<'attr>;

            fn name(&self) -> &str {
                stringify!($op)
            }

            fn inputs(&self) -> impl IntoIterator<Item = OperatorInput> {
                [$(OperatorInput::required(TensorElementType::$i)),*]
            }

            fn outputs(&self) -> impl IntoIterator<Item = OperatorOutput> {
                [$(OperatorOutput::required(TensorElementType::$o)),*]
            }

            fn create_kernel<'attr>(&self, _: &KernelContext<'attr>) -> ort::Result<Self::Kernel<'attr>> {
                Ok(Box::new($kernel))
            }
        }
    };
}

operator!(QuantizeRows, QuantizeRowsKernel, inputs: [Float32], outputs: [Uint8, Float32]);
operator!(ScaleBiasResidual, ScaleBiasResidualKernel, inputs: [Float32, Float32, Float32, Float32], outputs: [Float32]);
operator!(ScaleSplit, ScaleSplitKernel, inputs: [Float32, Float32], outputs: [Float32, Float32, Float32]);

struct QuantizeRowsKernel;

impl Kernel for QuantizeRowsKernel {
    fn compute(&mut self, ctx: &ComputeContext) -> ort::Result<()> {
        let x = ctx.input(0)?.ok_or_else(|| missing("x"))?;
        let (shape, x) = x.try_extract_tensor::<f32>()?;
        let (rows, cols) = rows_of(shape, "x")?;
        let mut scale_shape = shape.to_vec();
        *scale_shape.last_mut().expect("rows_of checked the rank") = 1;
        let mut q = ctx.output(0, shape.to_vec())?.ok_or_else(|| missing("q"))?;
        let mut s = ctx
            .output(1, scale_shape)?
            .ok_or_else(|| missing("scale"))?;
        let q = Shared(q.try_extract_tensor_mut::<u8>()?.1.as_mut_ptr());
        let s = Shared(s.try_extract_tensor_mut::<f32>()?.1.as_mut_ptr());
        for_row_tasks(ctx, rows, |first, n| {
            // SAFETY: rows first..first+n of both outputs belong to this task alone.
            let (q, s) = unsafe {
                (
                    std::slice::from_raw_parts_mut(q.get().add(first * cols), n * cols),
                    std::slice::from_raw_parts_mut(s.get().add(first), n),
                )
            };
            vecmath::quantize_rows(&x[first * cols..(first + n) * cols], cols, q, s);
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
