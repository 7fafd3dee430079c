//! Layer normalisation over the last axis, with its backward pass.

use ndarray::{Array1, Array2, ArrayView2, Axis, Ix1};

use super::params::{ParamId, ParamStore};

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
        let h = x.ncols() as f32;
        let mut xhat = x.to_owned();
        let mut inv_std = Array1::zeros(x.nrows());
        for (mut row, s) in xhat.rows_mut().into_iter().zip(inv_std.iter_mut()) {
            let mean = row.sum() / h;
            let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / h;
            *s = 1.0 / (var + self.eps).sqrt();
            let inv = *s;
            row.mapv_inplace(|v| (v - mean) * inv);
        }
        let mut y = &xhat * &gamma;
        y += &beta;
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
        let dgamma = (&dy * &trace.xhat).sum_axis(Axis(0));
        let dbeta = dy.sum_axis(Axis(0));
        store.get_mut(self.weight).grad += &dgamma.into_dyn();
        store.get_mut(self.bias).grad += &dbeta.into_dyn();
        let h = dy.ncols() as f32;
        let mut dx = &dy * &gamma; // dx̂
        for ((mut row, xh), &s) in dx
            .rows_mut()
            .into_iter()
            .zip(trace.xhat.rows())
            .zip(trace.inv_std.iter())
        {
            let mean_d = row.sum() / h;
            let mean_dx = row.iter().zip(xh.iter()).map(|(d, x)| d * x).sum::<f32>() / h;
            row.zip_mut_with(&xh, |d, &x| *d = s * (*d - mean_d - x * mean_dx));
        }
        dx
    }
}
