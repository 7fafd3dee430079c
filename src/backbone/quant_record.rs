//! `quantization.json`: how an int8 folder was made (written by `frostline quantize`, read back
//! without flags, checked rather than trusted). Kept apart from the quantizer so that opening a
//! model folder needs only the record, not the machinery that makes one.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The record's file name inside a quantized model folder.
pub(crate) const RECORD: &str = "quantization.json";
/// The calibration texts a static folder was made with, kept so its frost-line cuts are
/// quantized the same way.
pub(crate) const CALIBRATION: &str = "calibration.txt";
const RECORD_VERSION: u32 = 1;

/// How activations are brought to 8 bits (weights are always int8, symmetric).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum QuantMethod {
    /// One scale per token row, measured at run time: batch-independent, no calibration.
    PerToken,
    /// Ranges fixed from calibration texts (ONNX Runtime's `quantize_static`).
    Static,
    /// One range per batch at run time (`quantize_dynamic`): vectors depend on batch-mates.
    Dynamic,
}

impl QuantMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            QuantMethod::PerToken => "per-token",
            QuantMethod::Static => "static",
            QuantMethod::Dynamic => "dynamic",
        }
    }

    /// Whether a text's vector is the same whatever else is in its batch.
    pub fn batch_independent(self) -> bool {
        self != QuantMethod::Dynamic
    }
}

/// What a quantized graph is: method and weight granularity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipe {
    pub method: QuantMethod,
    pub per_channel: bool,
}

impl Recipe {
    /// What `--quantize-frozen` uses for the graph below a frost line: the most accurate
    /// batch-independent recipe, which needs no calibration texts.
    pub const FROZEN_PART: Recipe = Recipe {
        method: QuantMethod::PerToken,
        per_channel: true,
    };

    /// E.g. `int8 per-token, per-channel weights` — part of cache keys and checkpoint identities.
    pub fn describe(&self) -> String {
        format!(
            "int8 {}, per-{} weights",
            self.method.as_str(),
            if self.per_channel {
                "channel"
            } else {
                "tensor"
            }
        )
    }

    pub(super) fn file_tag(&self) -> String {
        format!(
            "int8-{}{}",
            self.method.as_str(),
            if self.per_channel { "" } else { "-per-tensor" }
        )
    }
}

/// The folder it was made from, so a checkpoint trained on that folder recognises its lineage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuantSource {
    pub dir: PathBuf,
    /// The source folder's content hash (see [`super::folder::content_hash`]).
    pub content_hash: String,
}

/// `quantization.json`: everything needed to know, and redo, how the folder was made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quantization {
    pub version: u32,
    pub recipe: Recipe,
    /// What the quantizer reported (activation scheme, MatMuls quantized, ORT version).
    pub quantizer: serde_json::Value,
    pub source: QuantSource,
    /// Static only: the number of calibration texts kept in `calibration.txt` and their
    /// XXH3-64 checksum.
    pub calibration: Option<CalibrationRecord>,
    pub max_length: usize,
    pub frostline_version: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalibrationRecord {
    pub texts: usize,
    pub checksum: String,
}

impl Quantization {
    /// The record of `dir`, if it has one; a damaged or foreign record is an error naming it.
    pub fn read(dir: &Path) -> Result<Option<Self>> {
        let path = dir.join(RECORD);
        if !path.is_file() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let record: Self = serde_json::from_str(&text).map_err(|e| {
            Error::model(
                &path,
                format!("not a frostline quantization record ({e}); re-make the folder with frostline quantize"),
            )
        })?;
        if record.version != RECORD_VERSION {
            return Err(Error::model(
                &path,
                format!(
                    "quantization record version {} (this frostline reads {RECORD_VERSION}); re-make the folder with frostline quantize",
                    record.version
                ),
            ));
        }
        if (record.recipe.method == QuantMethod::Static) != record.calibration.is_some() {
            return Err(Error::model(
                &path,
                "calibration must be recorded for a static folder and only for one",
            ));
        }
        Ok(Some(record))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> Quantization {
        Quantization {
            version: RECORD_VERSION,
            recipe: Recipe {
                method: QuantMethod::PerToken,
                per_channel: true,
            },
            quantizer: serde_json::json!({"method": "per-token"}),
            source: QuantSource {
                dir: "/m".into(),
                content_hash: "xxh3-128:00".into(),
            },
            calibration: None,
            max_length: 256,
            frostline_version: "0".into(),
        }
    }

    #[test]
    fn a_record_round_trips_and_a_damaged_one_is_named() {
        let d = tempfile::tempdir().unwrap();
        assert!(Quantization::read(d.path()).unwrap().is_none());
        std::fs::write(
            d.path().join(RECORD),
            serde_json::to_string(&record()).unwrap(),
        )
        .unwrap();
        assert_eq!(Quantization::read(d.path()).unwrap(), Some(record()));
        let mut static_without = record();
        static_without.recipe.method = QuantMethod::Static;
        std::fs::write(
            d.path().join(RECORD),
            serde_json::to_string(&static_without).unwrap(),
        )
        .unwrap();
        let err = Quantization::read(d.path()).unwrap_err().to_string();
        assert!(err.contains("calibration must be recorded"), "{err}");
        std::fs::write(d.path().join(RECORD), "{\"version\": 1}").unwrap();
        let err = Quantization::read(d.path()).unwrap_err().to_string();
        assert!(
            err.contains(RECORD) && err.contains("frostline quantize"),
            "{err}"
        );
    }

    #[test]
    fn recipes_describe_themselves() {
        assert_eq!(
            Recipe::FROZEN_PART.describe(),
            "int8 per-token, per-channel weights"
        );
        let r = Recipe {
            method: QuantMethod::Static,
            per_channel: false,
        };
        assert_eq!(r.file_tag(), "int8-static-per-tensor");
        assert!(!QuantMethod::Dynamic.batch_independent());
    }
}
