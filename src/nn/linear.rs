//! `y = x Wᵀ + b` with W stored `[out, in]` (the PyTorch / safetensors convention).

use ndarray::{Array2, ArrayView2, Axis, Ix1, Ix2};

use super::params::{zeros, ParamId, ParamStore};
use super::rng::Rng;

#[derive(Debug, Clone)]
pub struct Linear {
    pub weight: ParamId,
    pub bias: ParamId,
    pub in_dim: usize,
    pub out_dim: usize,
}

impl Linear {
    /// PyTorch's default init: U(−1/√in, 1/√in) for weight and bias.
    pub fn new(
        store: &mut ParamStore,
        prefix: &str,
        in_dim: usize,
        out_dim: usize,
        rng: &mut Rng,
    ) -> Self {
        let bound = 1.0 / (in_dim as f64).sqrt();
        let mut w = zeros(&[out_dim, in_dim]);
        w.mapv_inplace(|_| ((rng.uniform() * 2.0 - 1.0) * bound) as f32);
        let mut b = zeros(&[out_dim]);
        b.mapv_inplace(|_| ((rng.uniform() * 2.0 - 1.0) * bound) as f32);
        Self {
            weight: store.add(format!("{prefix}.weight"), w),
            bias: store.add(format!("{prefix}.bias"), b),
            in_dim,
            out_dim,
        }
    }

    /// Refers to existing parameters (e.g. loaded from safetensors).
    pub fn from_params(store: &ParamStore, weight: ParamId, bias: ParamId) -> Self {
        let shape = store.get(weight).value.shape().to_vec();
        Self {
            weight,
            bias,
            in_dim: shape[1],
            out_dim: shape[0],
        }
    }

    fn w<'a>(&self, store: &'a ParamStore) -> ArrayView2<'a, f32> {
        store
            .get(self.weight)
            .value
            .view()
            .into_dimensionality::<Ix2>()
            .expect("2-D weight")
    }

    pub fn forward(&self, store: &ParamStore, x: ArrayView2<f32>) -> Array2<f32> {
        let b = store
            .get(self.bias)
            .value
            .view()
            .into_dimensionality::<Ix1>()
            .expect("1-D bias");
        // The bias is C's starting value, so the product adds onto it in the same pass.
        let mut y = b
            .broadcast((x.nrows(), self.out_dim))
            .expect("bias")
            .to_owned();
        store
            .kernel()
            .gemm(1.0, &x, &self.w(store).t(), 1.0, &mut y.view_mut());
        y
    }

    /// Accumulates dW and db from the input `x` and upstream `dy`; returns dx if `input_grad`
    /// (not needed when `x` is a frozen, cached input).
    pub fn backward(
        &self,
        store: &mut ParamStore,
        x: ArrayView2<f32>,
        dy: ArrayView2<f32>,
        input_grad: bool,
    ) -> Option<Array2<f32>> {
        let kernel = store.kernel();
        let dx = input_grad.then(|| kernel.dot(&dy, &self.w(store)));
        {
            let gw = &mut store.get_mut(self.weight).grad;
            let mut gw = gw.view_mut().into_dimensionality::<Ix2>().expect("2-D");
            kernel.gemm(1.0, &dy.t(), &x, 1.0, &mut gw);
        }
        let gb = &mut store.get_mut(self.bias).grad;
        *gb += &dy.sum_axis(Axis(0)).into_dyn();
        dx
    }
}
