//! Which backbone a checkpoint's heads were trained on, recorded so that reading the checkpoint
//! back needs no flag repeated: where the model folder was (absolute), a content hash of what
//! makes its vectors (graph, weights, tokenizer), its shape, the max length used and whose
//! kernels ran its layers. Separate from the cache key: a different max length or kernel is a
//! setting, not another backbone.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::backbone::folder::content_hash;
use crate::backbone::{Kernels, ModelFolder};
use crate::error::{Error, Result};

/// Bumped when a field's meaning changes; a checkpoint of another version is refused by name.
pub const IDENTITY_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackboneIdentity {
    pub version: u32,
    /// Where the model folder was when the checkpoint was written (absolute).
    pub model_dir: PathBuf,
    /// XXH3-128 over `model.onnx`, `model.safetensors` (when present) and `tokenizer.json`; for
    /// a quantized folder, that of the fp32 folder it was made from (its lineage).
    pub content_hash: String,
    /// `fp32`, or the int8 recipe with the quantized folder's own content hash. Checkpoints
    /// written before int8 existed are fp32.
    #[serde(default = "fp32")]
    pub numeric: String,
    pub pooling: String,
    /// The text the folder puts before every input (`frostline.json`'s `prefix`); older
    /// checkpoints had none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub prefix: String,
    pub num_layers: usize,
    pub hidden_size: usize,
    /// The truncation length the heads were trained with.
    pub max_length: usize,
    /// Whose kernels ran the layers on CPU (`--kernels`): int8 vectors of the two differ at
    /// int8 rounding. Checkpoints written before the flag have none (frostline's is assumed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernels: Option<Kernels>,
}

fn fp32() -> String {
    "fp32".into()
}

impl BackboneIdentity {
    pub fn of(folder: &ModelFolder, max_length: usize, kernels: Kernels) -> Result<Self> {
        let own = content_hash(folder)?;
        let (content_hash, numeric) = match &folder.quantization {
            Some(q) => (
                q.source.content_hash.clone(),
                format!("{} (folder {own})", q.recipe.describe()),
            ),
            None => (own, fp32()),
        };
        Ok(Self {
            version: IDENTITY_VERSION,
            model_dir: std::path::absolute(&folder.dir).map_err(|e| Error::io(&folder.dir, e))?,
            content_hash,
            numeric,
            pooling: folder.pooling.describe(),
            prefix: folder.prefix.clone(),
            num_layers: folder.num_layers,
            hidden_size: folder.hidden_size,
            max_length,
            kernels: Some(kernels),
        })
    }

    /// Checks that `actual` (the folder about to run) is the backbone these heads were trained
    /// on. A moved folder is fine (location is not identity); a different max length or other
    /// kernels are allowed and returned as a warning; the same backbone in another numeric format (int8 vectors for
    /// heads trained on fp32 ones, or the reverse) is refused unless `allow_quantized`, then
    /// warned about; anything else is an error naming the field and both values.
    pub fn check(
        &self,
        actual: &BackboneIdentity,
        checkpoint: &Path,
        allow_quantized: bool,
    ) -> Result<Vec<String>> {
        let mut diffs = Vec::new();
        let mut differ = |field: &str, want: String, got: String| {
            if want != got {
                diffs.push(format!("{field}: checkpoint {want}, model folder {got}"));
            }
        };
        differ(
            "version",
            self.version.to_string(),
            actual.version.to_string(),
        );
        differ(
            "content hash (graph, weights, tokenizer)",
            self.content_hash.clone(),
            actual.content_hash.clone(),
        );
        differ("pooling", self.pooling.clone(), actual.pooling.clone());
        differ(
            "input prefix",
            format!("{:?}", self.prefix),
            format!("{:?}", actual.prefix),
        );
        differ(
            "layers",
            self.num_layers.to_string(),
            actual.num_layers.to_string(),
        );
        differ(
            "hidden size",
            self.hidden_size.to_string(),
            actual.hidden_size.to_string(),
        );
        if !diffs.is_empty() {
            return Err(Error::InputFile {
                path: checkpoint.to_path_buf(),
                reason: format!(
                    "these heads were trained on another backbone than {} ({}); use the model folder they were trained with ({}), or pass it with --model",
                    actual.model_dir.display(),
                    diffs.join("; "),
                    self.model_dir.display()
                ),
            });
        }
        let mut warnings = Vec::new();
        if self.numeric != actual.numeric {
            let what = format!(
                "the heads of {} were trained on {} vectors and {} makes {} vectors",
                checkpoint.display(),
                self.numeric,
                actual.model_dir.display(),
                actual.numeric
            );
            if !allow_quantized {
                return Err(Error::Usage(format!(
                    "{what}; use the folder they were trained with ({}), retrain on this one, or pass --allow-quantized to accept the difference (bench-results/int8.md measures it)",
                    self.model_dir.display()
                )));
            }
            warnings.push(format!(
                "{what} (--allow-quantized): predictions may differ from the checkpoint's own scores"
            ));
        }
        if self.max_length != actual.max_length {
            warnings.push(format!(
                "max length {} differs from the {} the heads of {} were trained with; vectors of texts longer than either may differ",
                actual.max_length,
                self.max_length,
                checkpoint.display()
            ));
        }
        let kernels = |k: Option<Kernels>| k.unwrap_or_default().as_str();
        if kernels(self.kernels) != kernels(actual.kernels) {
            warnings.push(format!(
                "the layers run on --kernels {} and the heads of {} were trained on --kernels {}: int8 vectors of the two differ at int8 rounding (fp32 ones agree to float rounding)",
                kernels(actual.kernels),
                checkpoint.display(),
                kernels(self.kernels)
            ));
        }
        Ok(warnings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> BackboneIdentity {
        BackboneIdentity {
            version: IDENTITY_VERSION,
            model_dir: "/models/a".into(),
            content_hash: "xxh3-128:00".into(),
            numeric: "fp32".into(),
            pooling: "mean+l2".into(),
            prefix: String::new(),
            num_layers: 6,
            hidden_size: 384,
            max_length: 256,
            kernels: Some(Kernels::Frostline),
        }
    }

    #[test]
    fn a_moved_folder_matches_and_another_max_length_is_a_warning() {
        let ck = identity();
        let moved = BackboneIdentity {
            model_dir: "/elsewhere/b".into(),
            ..identity()
        };
        assert!(ck.check(&moved, Path::new("ck"), false).unwrap().is_empty());
        let shorter = BackboneIdentity {
            max_length: 64,
            ..identity()
        };
        let warnings = ck.check(&shorter, Path::new("ck"), false).unwrap();
        assert_eq!(warnings.len(), 1);
        assert!(
            warnings[0].contains("max length 64") && warnings[0].contains("256"),
            "{warnings:?}"
        );
    }

    #[test]
    fn other_kernels_are_a_warning_and_an_older_manifest_means_frostlines() {
        let ck = identity();
        let served = BackboneIdentity {
            kernels: Some(Kernels::Onnxruntime),
            ..identity()
        };
        let warnings = ck.check(&served, Path::new("ck"), false).unwrap();
        assert_eq!(warnings.len(), 1);
        assert!(
            warnings[0].contains("--kernels onnxruntime")
                && warnings[0].contains("trained on --kernels frostline"),
            "{warnings:?}"
        );
        let mut json = serde_json::to_value(identity()).unwrap();
        assert_eq!(json["kernels"], "frostline");
        json.as_object_mut().unwrap().remove("kernels");
        let old: BackboneIdentity = serde_json::from_value(json).unwrap();
        assert_eq!(old.kernels, None);
        assert!(old
            .check(&identity(), Path::new("ck"), false)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn another_numeric_format_is_refused_unless_allowed() {
        let ck = identity();
        let int8 = BackboneIdentity {
            numeric: "int8 per-token, per-channel weights (folder xxh3-128:11)".into(),
            ..identity()
        };
        let err = ck.check(&int8, Path::new("ck"), false).unwrap_err();
        assert_eq!(err.kind(), crate::error::ErrorKind::Usage);
        let text = err.to_string();
        assert!(
            text.contains("trained on fp32 vectors") && text.contains("--allow-quantized"),
            "{text}"
        );
        let warnings = ck.check(&int8, Path::new("ck"), true).unwrap();
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("int8 per-token"), "{warnings:?}");
        // A manifest written before the field existed reads as fp32.
        let mut json = serde_json::to_value(identity()).unwrap();
        json.as_object_mut().unwrap().remove("numeric");
        let old: BackboneIdentity = serde_json::from_value(json).unwrap();
        assert_eq!(old.numeric, "fp32");
    }

    #[test]
    fn another_backbone_names_the_field_and_both_values() {
        let ck = identity();
        let other = BackboneIdentity {
            content_hash: "xxh3-128:ff".into(),
            hidden_size: 768,
            ..identity()
        };
        let err = ck
            .check(&other, Path::new("ck"), false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("content hash"), "{err}");
        assert!(
            err.contains("hidden size: checkpoint 384, model folder 768"),
            "{err}"
        );
        assert!(err.contains("/models/a"), "{err}");
    }
}
