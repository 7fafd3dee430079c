//! Parameters to and from safetensors bytes (F32, names as in the store).

use ndarray::{ArrayD, IxDyn};

use super::params::{ParamId, ParamStore};

/// The parameters `ids` of `store` as a safetensors file.
pub fn to_safetensors(store: &ParamStore, ids: &[ParamId]) -> Result<Vec<u8>, String> {
    let tensors: Vec<(String, Vec<u8>, Vec<usize>)> = ids
        .iter()
        .map(|&id| {
            let p = store.get(id);
            (
                p.name.clone(),
                p.value.iter().flat_map(|v| v.to_le_bytes()).collect(),
                p.value.shape().to_vec(),
            )
        })
        .collect();
    let views = tensors
        .iter()
        .map(|(n, b, s)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                .map(|v| (n.clone(), v))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    safetensors::serialize(views, None).map_err(|e| e.to_string())
}

/// Every tensor of a safetensors file as f32 arrays; other dtypes are errors unless `skip_other`.
pub fn from_safetensors(
    bytes: &[u8],
    skip_other: bool,
) -> Result<Vec<(String, ArrayD<f32>)>, String> {
    let st = safetensors::SafeTensors::deserialize(bytes)
        .map_err(|e| format!("corrupt or truncated safetensors file: {e}"))?;
    let mut out = Vec::new();
    for (name, view) in st.tensors() {
        if view.dtype() != safetensors::Dtype::F32 {
            if skip_other {
                continue;
            }
            return Err(format!("tensor {name} is {:?}, expected F32", view.dtype()));
        }
        let values: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect();
        let arr = ArrayD::from_shape_vec(IxDyn(view.shape()), values)
            .map_err(|e| format!("tensor {name}: {e}"))?;
        out.push((name, arr));
    }
    Ok(out)
}
