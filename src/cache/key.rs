//! What makes two embeddings interchangeable: the same graph, tokenizer, truncation, pooling,
//! normalisation, split layer and dtype. The cache entry's folder name is a hash of all of it.
//! Whose fp32 kernels ran the graph is not part of it: ORT's CUDA kernels, its CPU kernels and
//! frostline's CPU rewrite (`backbone::own_graph`) agree to float rounding (~1e-7), as any two
//! runs of one graph on different hardware do. Whose int8 kernels ran it is: frostline's fused
//! ones and ONNX Runtime's agree only to int8 rounding (`backbone::quantize::numeric_key`).

use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::backbone::quantize::numeric_key;
use crate::backbone::{ModelFolder, Recipe, SessionOptions};
use crate::error::{Error, Result};

const FORMAT_VERSION: u32 = 4;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheKey {
    pub format_version: u32,
    pub onnx_sha256: String,
    pub tokenizer_sha256: String,
    pub max_length: usize,
    pub pooling: String,
    pub normalize: bool,
    /// Depth of the frost line the token states were taken at; `None` = the full model.
    pub split_layer: Option<usize>,
    /// `sentence` (one pooled vector per text) or `tokens` (every token's state at the split).
    pub content: String,
    pub dtype: String,
    /// The graph's numeric format (`fp32`, `int8 per-token, per-channel weights`…): int8 and
    /// fp32 vectors never share an entry, even if a graph's bytes were to collide.
    pub numeric: String,
    pub dim: usize,
}

pub(super) fn sha256_file(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).map_err(|e| Error::io(path, e))?;
    Ok(hex(&hasher.finalize()))
}

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl CacheKey {
    /// The key for sentence embeddings of the full model in `folder` at `max_length`, run as
    /// `session` says.
    pub fn sentence(
        folder: &ModelFolder,
        max_length: usize,
        session: &SessionOptions,
    ) -> Result<Self> {
        let recipe = folder.quantization.as_ref().map(|q| q.recipe);
        let numeric = numeric_key(recipe, session);
        Self::for_graph(folder, max_length, &folder.onnx, None, numeric)
    }

    /// The key for token states at frost line `layer`: the hash is of the cut graph that makes
    /// them, `split_layer` says where it was cut and `numeric` in which format (`recipe`, `None`
    /// for fp32) it runs as `session` says.
    pub fn tokens(
        folder: &ModelFolder,
        max_length: usize,
        layer: usize,
        cut_graph: &Path,
        recipe: Option<Recipe>,
        session: &SessionOptions,
    ) -> Result<Self> {
        let numeric = numeric_key(recipe, session);
        Self::for_graph(folder, max_length, cut_graph, Some(layer), numeric)
    }

    /// Hashes only the graph that makes the vectors (the 90 MB full graph is not read for a cut).
    fn for_graph(
        folder: &ModelFolder,
        max_length: usize,
        graph: &Path,
        split_layer: Option<usize>,
        numeric: String,
    ) -> Result<Self> {
        Ok(Self {
            format_version: FORMAT_VERSION,
            onnx_sha256: sha256_file(graph)?,
            tokenizer_sha256: sha256_file(&folder.tokenizer)?,
            max_length,
            pooling: folder.pooling.describe(),
            normalize: folder.pooling.normalize,
            split_layer,
            content: if split_layer.is_some() {
                "tokens"
            } else {
                "sentence"
            }
            .into(),
            dtype: "f32".into(),
            numeric,
            dim: folder.hidden_size,
        })
    }

    pub fn is_tokens(&self) -> bool {
        self.content == "tokens"
    }

    /// The entry's folder name: 20 hex digits of SHA-256 over the key's canonical JSON.
    pub fn id(&self) -> String {
        hex(&self.id_bytes())
    }

    /// The id's 10 bytes, also stamped into every chunk of the entry.
    pub fn id_bytes(&self) -> [u8; 10] {
        let json = serde_json::to_vec(self).expect("key serialises");
        Sha256::digest(json)[..10].try_into().expect("10 bytes")
    }

    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        serde_json::from_str(&text)
            .map_err(|e| Error::cache(path, format!("unreadable manifest: {e}")))
    }
}
