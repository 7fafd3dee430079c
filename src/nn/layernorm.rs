//! Layer normalisation over the last axis, with its backward pass.

use ndarray::{Array1, Array2, ArrayD, ArrayView2, Ix1};

use super::params::{ParamId, ParamStore};
use super::vecmath;

#[derive(Debug, Clone)]
pub struct LayerNorm {
    pub weight: ParamId,
    pub bias: ParamId,
    pub eps: f32,
}

/// What the backward pass needs: the normalised input and each row's 1/σ.
pub struct LayerNormTrace {
    xhat: Array2<f32>,
    inv_std: Array1<f32>,
}

impl LayerNorm {
    fn gamma_beta<'a>(
        &self,
        store: &'a ParamStore,
    ) -> (ndarray::ArrayView1<'a, f32>, ndarray::ArrayView1<'a, f32>) {
        let g = store
            .get(self.weight)
            .value
            .view()
            .into_dimensionality::<Ix1>()
            .expect("1-D");
        let b = store
            .get(self.bias)
            .value
            .view()
            .into_dimensionality::<Ix1>()
            .expect("1-D");
        (g, b)
    }

    pub fn forward(&self, store: &ParamStore, x: ArrayView2<f32>) -> (Array2<f32>, LayerNormTrace) {
        let (gamma, beta) = self.gamma_beta(store);
        let x = x.as_standard_layout();
        let mut xhat = Array2::zeros(x.raw_dim());
        let mut y = Array2::zeros(x.raw_dim());
        let mut inv_std = Array1::zeros(x.nrows());
        vecmath::layernorm_rows(
            x.as_slice().expect("standard layout"),
            x.ncols(),
            gamma.as_slice().expect("contiguous"),
            beta.as_slice().expect("contiguous"),
            self.eps,
            xhat.as_slice_mut().expect("new array"),
            y.as_slice_mut().expect("new array"),
            inv_std.as_slice_mut().expect("new array"),
        );
        (y, LayerNormTrace { xhat, inv_std })
    }

    /// Accumulates dγ, dβ; returns dx.
    pub fn backward(
        &self,
        store: &mut ParamStore,
        trace: &LayerNormTrace,
        dy: ArrayView2<f32>,
    ) -> Array2<f32> {
        let gamma = self.gamma_beta(store).0.to_owned();
        let dy = dy.as_standard_layout();
        let cols = dy.ncols();
        let mut dgamma = vec![0f32; cols];
        let mut dbeta = vec![0f32; cols];
        let mut dx = Array2::zeros(dy.raw_dim());
        vecmath::layernorm_backward_rows(
            dy.as_slice().expect("standard layout"),
            trace.xhat.as_slice().expect("owned"),
            trace.inv_std.as_slice().expect("owned"),
            cols,
            gamma.as_slice().expect("owned"),
            &mut dgamma,
            &mut dbeta,
            dx.as_slice_mut().expect("new array"),
        );
        let add = |g: &mut ArrayD<f32>, d: Vec<f32>| {
            g.iter_mut().zip(d).for_each(|(g, d)| *g += d);
        };
        add(&mut store.get_mut(self.weight).grad, dgamma);
        add(&mut store.get_mut(self.bias).grad, dbeta);
        dx
    }
}
