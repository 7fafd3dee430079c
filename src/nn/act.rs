//! Activations and dropout with their backward passes.

use ndarray::{Array2, ArrayView2, Zip};

use super::rng::Rng;

const INV_SQRT2: f32 = std::f32::consts::FRAC_1_SQRT_2;
const INV_SQRT_2PI: f32 = 0.398_942_3;

/// GELU in the exact erf form BERT uses: x · Φ(x).
pub fn gelu(x: ArrayView2<f32>) -> Array2<f32> {
    x.mapv(|v| 0.5 * v * (1.0 + libm::erff(v * INV_SQRT2)))
}

/// dGELU/dx = Φ(x) + x · φ(x), times the upstream gradient.
pub fn gelu_backward(x: ArrayView2<f32>, dy: ArrayView2<f32>) -> Array2<f32> {
    let mut dx = Array2::zeros(x.raw_dim());
    Zip::from(&mut dx).and(&x).and(&dy).for_each(|d, &v, &g| {
        let cdf = 0.5 * (1.0 + libm::erff(v * INV_SQRT2));
        let pdf = INV_SQRT_2PI * (-0.5 * v * v).exp();
        *d = g * (cdf + v * pdf);
    });
    dx
}

/// Inverted dropout: returns the scaled keep-mask (0 or 1/(1−p)) to multiply by, forward and back.
pub fn dropout_mask(shape: (usize, usize), p: f32, rng: &mut Rng) -> Array2<f32> {
    let scale = 1.0 / (1.0 - p);
    Array2::from_shape_simple_fn(shape, || if rng.uniform() < p as f64 { 0.0 } else { scale })
}
