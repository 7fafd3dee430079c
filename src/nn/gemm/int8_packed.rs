//! What every int8 kernel reads of a packed weight matrix ([`super::int8::Int8Weights`]): kept
//! apart so the kernels depend on it and not on the front that chooses between them.

/// Columns of the output per panel, the unit every int8 kernel packs and splits columns in.
pub const PANEL: usize = 32;

/// A weight matrix `[k, n]` as a kernel reads it.
pub(super) struct Packed<'w> {
    pub k: usize,
    pub n: usize,
    /// The weights in the kernel's layout (see its `pack`).
    pub b: &'w [i8],
    /// `zp · Σ_k w[k][c]` per column: what the activations' zero point adds to every sum.
    pub zp_offsets: &'w [i32],
    /// The scale of each output column (the activation scale times the weight's).
    pub scales: &'w [f32],
}
