//! Activations and dropout with their backward passes.

use ndarray::{Array2, ArrayView2};

use super::rng::Rng;
use super::vecmath;

/// GELU in the exact erf form BERT uses: x · Φ(x).
pub fn gelu(x: ArrayView2<f32>) -> Array2<f32> {
    let x = x.as_standard_layout();
    let mut y = Array2::zeros(x.raw_dim());
    vecmath::gelu(contiguous(&x), y.as_slice_mut().expect("new array"));
    y
}

/// dGELU/dx = Φ(x) + x · φ(x), times the upstream gradient.
pub fn gelu_backward(x: ArrayView2<f32>, dy: ArrayView2<f32>) -> Array2<f32> {
    let (x, dy) = (x.as_standard_layout(), dy.as_standard_layout());
    let mut dx = Array2::zeros(x.raw_dim());
    vecmath::gelu_backward(
        contiguous(&x),
        contiguous(&dy),
        dx.as_slice_mut().expect("new array"),
    );
    dx
}

fn contiguous<'a>(a: &'a ndarray::CowArray<'_, f32, ndarray::Ix2>) -> &'a [f32] {
    a.as_slice().expect("standard layout")
}

/// Inverted dropout: returns the scaled keep-mask (0 or 1/(1−p)) to multiply by, forward and back.
pub fn dropout_mask(shape: (usize, usize), p: f32, rng: &mut Rng) -> Array2<f32> {
    let scale = 1.0 / (1.0 - p);
    Array2::from_shape_simple_fn(shape, || if rng.uniform() < p as f64 { 0.0 } else { scale })
}
