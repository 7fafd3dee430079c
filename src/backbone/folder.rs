//! The model folder: an exported `model.onnx` beside the sentence-transformers files that say how
//! to tokenize, pool and normalise. Everything is checked up front, with the file named.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::Value;
use xxhash_rust::xxh3::Xxh3;

use super::quant_record::Quantization;
use crate::error::{Error, Result};
use crate::pool::{Pooling, PoolingMode};

#[derive(Debug, Clone)]
pub struct ModelFolder {
    pub dir: PathBuf,
    pub onnx: PathBuf,
    pub tokenizer: PathBuf,
    /// The folder's own `model.safetensors` (an int8 folder keeps none: see
    /// [`ModelFolder::native_weights`]); optional for embedding alone.
    pub weights: PathBuf,
    pub hidden_size: usize,
    pub num_layers: usize,
    pub num_attention_heads: usize,
    pub layer_norm_eps: f32,
    /// The position table's size: no max length may exceed it.
    pub max_position_embeddings: usize,
    pub model_type: String,
    pub pooling: Pooling,
    /// Which file decided the pooling (or that none did and mean pooling was assumed).
    pub pooling_source: String,
    /// Truncation length from `sentence_bert_config.json` (sentence-transformers' own choice).
    pub max_length: usize,
    /// How the graph was quantized (`quantization.json`); `None` for an fp32 folder.
    pub quantization: Option<Quantization>,
    /// Text put before every input (e5's `query: `), from `frostline.json` (`--prefix` of the
    /// exporter); empty for none. Texts are keyed in the cache with it.
    pub prefix: String,
    /// How the folder's graphs lay out a layer (`frostline.json`'s `graph`).
    pub graph: GraphLayout,
}

/// The layer layout of a folder's graphs, as the exporter recorded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GraphLayout {
    /// The exporter's graph builder on ONNX Runtime's fused contrib ops (`fused-v1`): one
    /// Attention node per layer (QKV product inside), bias + GELU in one BiasGelu.
    Fused,
    /// A graph frostline's builder did not make: `torch.onnx.export`'s (a model outside the
    /// BERT family), or a folder without `frostline.json`. It runs as given; ONNX Runtime's own
    /// optimizer fuses what it recognises.
    AsGiven,
}

impl GraphLayout {
    /// What `frostline.json` says of a graph-builder folder.
    pub const FUSED: &'static str = "fused-v1";

    pub fn describe(self) -> &'static str {
        match self {
            GraphLayout::Fused => {
                "fused-v1 (frostline's graph builder on ONNX Runtime's fused ops)"
            }
            GraphLayout::AsGiven => "as exported (not frostline's graph builder)",
        }
    }
}

/// What the exporter wrote into `frostline.json` that the folder's readers need.
#[derive(Default)]
struct ExportRecord {
    present: bool,
    /// The exporter wrote the pooling files from `--pooling`.
    pooling_by_flag: bool,
    prefix: String,
    route: Option<String>,
    graph: Option<String>,
    source: Option<String>,
}

impl ExportRecord {
    fn read(dir: &Path) -> Result<Self> {
        let path = dir.join("frostline.json");
        if !path.is_file() {
            return Ok(Self::default());
        }
        let json = read_json(&path)?;
        let text = |field: &str| -> Result<Option<String>> {
            match json.get(field) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(p)) => Ok(Some(p.clone())),
                Some(other) => Err(Error::model(
                    &path,
                    format!("field \"{field}\" must be a string, found {other}"),
                )),
            }
        };
        Ok(Self {
            present: true,
            pooling_by_flag: json.get("pooling").is_some(),
            prefix: text("prefix")?.unwrap_or_default(),
            route: text("route")?,
            graph: text("graph")?,
            source: text("source")?,
        })
    }

    /// The folder's layout; a graph-builder folder from before fused graphs is refused with
    /// the command that re-exports it (its graphs would run, slower, and a cut graph made now
    /// would not match its model.onnx's layout).
    fn layout(&self, dir: &Path) -> Result<GraphLayout> {
        match (self.graph.as_deref(), self.route.as_deref()) {
            (Some(GraphLayout::FUSED), _) => Ok(GraphLayout::Fused),
            (Some("with-heads"), _) => Err(Error::model(
                dir.join("frostline.json"),
                "this folder is a served model (frostline export --with-heads): its graph ends in the heads, so it is no backbone; run it with ONNX Runtime (scripts/predict_onnx.py), and give frostline the model folder or checkpoint it came from".to_string(),
            )),
            (Some("torch.onnx.export"), _) | (None, Some("torch.onnx.export")) => {
                Ok(GraphLayout::AsGiven)
            }
            _ if !self.present => Ok(GraphLayout::AsGiven),
            (None, _) => {
                let quantized = dir.join(super::quant_record::RECORD).is_file();
                let source = self
                    .source
                    .as_deref()
                    .filter(|s| !quantized && Path::new(s).join("config.json").is_file())
                    .map_or_else(|| dir.display().to_string(), str::to_string);
                Err(Error::model(
                    dir.join("frostline.json"),
                    if quantized {
                        "this int8 folder was quantized from a graph made before frostline's fused graphs (its frostline.json names no \"graph\"); re-export the fp32 folder it was made from (scripts/export_onnx.py --model SRC --output DIR), then quantize it again (frostline quantize --model DIR --out FOLDER --force)".to_string()
                    } else {
                        format!(
                            "this folder's graphs were made before frostline's fused graphs (frostline.json names no \"graph\"); re-export it: ~/.cache/frostline/venv/bin/python scripts/export_onnx.py --model {source} --output {} (scripts/setup.sh does this for the default model)",
                            dir.display()
                        )
                    },
                ))
            }
            (Some(other), _) => Err(Error::model(
                dir.join("frostline.json"),
                format!(
                    "\"graph\": \"{other}\" is a layout this frostline does not know (it reads \"{}\"); a newer frostline wrote it, or the file was edited",
                    GraphLayout::FUSED
                ),
            )),
        }
    }
}

fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::model(path, format!("invalid JSON: {e}")))
}

/// A `config.json` whose shape cannot make a working transformer is refused here, before any
/// graph or native layer is built from it: heads must split the hidden size evenly, and every
/// size must be positive.
fn check_architecture(
    path: &Path,
    hidden: usize,
    layers: usize,
    heads: usize,
    eps: f32,
    positions: usize,
) -> Result<()> {
    let bad = |what: String| Err(Error::model(path, what));
    if hidden == 0 || layers == 0 || heads == 0 {
        return bad(format!(
            "hidden_size {hidden}, num_hidden_layers {layers} and num_attention_heads {heads} must all be at least 1"
        ));
    }
    if !hidden.is_multiple_of(heads) {
        return bad(format!(
            "hidden_size {hidden} is not divisible by num_attention_heads {heads}: attention cannot split it into heads; fix config.json or re-export the model"
        ));
    }
    if !(eps.is_finite() && eps > 0.0 && eps < 1.0) {
        return bad(format!(
            "layer_norm_eps {eps} must be a small positive number (e.g. 1e-12)"
        ));
    }
    if positions < 2 {
        return bad(format!(
            "max_position_embeddings {positions} leaves no room for [CLS] and [SEP]"
        ));
    }
    Ok(())
}

fn required_usize(cfg: &Value, key: &str, path: &Path) -> Result<usize> {
    cfg.get(key)
        .and_then(Value::as_u64)
        .map(|v| v as usize)
        .ok_or_else(|| Error::model(path, format!("field {key:?} missing or not a number")))
}

impl ModelFolder {
    pub fn open(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            return Err(Error::model(
                dir,
                "not a folder; export one with scripts/setup.sh (default model) or scripts/export_onnx.py --model SRC --output DIR",
            ));
        }
        let need = |name: &str, what: &str| -> Result<PathBuf> {
            let p = dir.join(name);
            if p.is_file() {
                Ok(p)
            } else {
                Err(Error::model(
                    dir,
                    format!(
                        "{name} missing ({what}); re-export the folder with scripts/export_onnx.py"
                    ),
                ))
            }
        };
        let onnx = need("model.onnx", "the ONNX graph")?;
        let record = ExportRecord::read(dir)?;
        let (prefix, graph) = (record.prefix.clone(), record.layout(dir)?);
        let tokenizer = need("tokenizer.json", "the tokenizer")?;
        let config_path = need("config.json", "hidden size and layer count")?;
        let config = read_json(&config_path)?;
        let hidden_size = required_usize(&config, "hidden_size", &config_path)?;
        let num_layers = required_usize(&config, "num_hidden_layers", &config_path)?;
        let num_attention_heads = required_usize(&config, "num_attention_heads", &config_path)?;
        let layer_norm_eps = config
            .get("layer_norm_eps")
            .and_then(Value::as_f64)
            .unwrap_or(1e-12) as f32;
        let max_position_embeddings = config
            .get("max_position_embeddings")
            .and_then(Value::as_u64)
            .unwrap_or(512) as usize;
        let model_type = config
            .get("model_type")
            .and_then(Value::as_str)
            .unwrap_or("unknown")
            .to_string();
        check_architecture(
            &config_path,
            hidden_size,
            num_layers,
            num_attention_heads,
            layer_norm_eps,
            max_position_embeddings,
        )?;

        let (pooling, pooling_source) =
            Self::read_pooling(dir, hidden_size, record.pooling_by_flag)?;
        let sbert = dir.join("sentence_bert_config.json");
        let max_length = if sbert.is_file() {
            required_usize(&read_json(&sbert)?, "max_seq_length", &sbert)?
        } else {
            max_position_embeddings
        };
        Ok(Self {
            dir: dir.to_path_buf(),
            onnx,
            tokenizer,
            weights: dir.join("model.safetensors"),
            hidden_size,
            num_layers,
            num_attention_heads,
            layer_norm_eps,
            max_position_embeddings,
            model_type,
            pooling,
            pooling_source,
            max_length,
            quantization: Quantization::read(dir)?,
            prefix,
            graph,
        })
    }

    /// `text` as the model sees it: with the folder's prefix.
    pub fn model_text<'a>(&self, text: &'a str) -> std::borrow::Cow<'a, str> {
        if self.prefix.is_empty() {
            std::borrow::Cow::Borrowed(text)
        } else {
            std::borrow::Cow::Owned(format!("{}{text}", self.prefix))
        }
    }

    /// What the native layers above a frost line read of this folder: [`Self::native_weights`]
    /// and config.json's shape.
    pub fn native_source(&self) -> Result<crate::nn::bert::BertSource> {
        Ok(crate::nn::bert::BertSource {
            weights: self.native_weights()?,
            num_layers: self.num_layers,
            hidden: self.hidden_size,
            heads: self.num_attention_heads,
            layer_norm_eps: self.layer_norm_eps,
        })
    }

    /// Where the native layers above a frost line load their fp32 weights: the folder's own
    /// `model.safetensors`, or — for an int8 folder, which keeps no copy — the one of the fp32
    /// folder it was made from, checked unchanged by content hash before it is trusted.
    pub fn native_weights(&self) -> Result<PathBuf> {
        let Some(q) = self
            .quantization
            .as_ref()
            .filter(|_| !self.weights.is_file())
        else {
            return Ok(self.weights.clone());
        };
        let source = &q.source.dir;
        let refuse = |why: String| {
            Error::model(
                &self.dir,
                format!(
                    "this int8 folder keeps no fp32 weights: the layers above a frost line load them from {}, the folder it was quantized from, {why}; quantize it again (frostline quantize --model SOURCE --out {} --force), or train on the fp32 folder with --quantize-frozen",
                    source.display(),
                    self.dir.display()
                ),
            )
        };
        let now = ModelFolder::open(source)
            .and_then(|f| content_hash(&f))
            .map_err(|e| refuse(format!("which cannot be read ({e})")))?;
        if now != q.source.content_hash {
            return Err(refuse(format!(
                "which has changed since (content hash {now}, recorded {})",
                q.source.content_hash
            )));
        }
        Ok(source.join("model.safetensors"))
    }

    /// The graph's numeric format: `fp32`, or how it was quantized.
    pub fn numeric(&self) -> String {
        self.quantization
            .as_ref()
            .map_or_else(|| "fp32".to_string(), |q| q.recipe.describe())
    }

    /// The graph of the layers below the frost line `n` (made by [`super::export::ensure_cut`]).
    pub fn cut_graph(&self, n: usize) -> PathBuf {
        self.dir.join(format!("model.cut-{n}.onnx"))
    }

    /// The truncation length to use: `requested` (with the name of what set it, for the
    /// message: a flag, or a checkpoint's manifest), or the folder's own when `None`; refused
    /// when it leaves no room for a token or passes the position table.
    pub fn checked_max_length(&self, requested: Option<(usize, &str)>) -> Result<usize> {
        let (n, source) = match requested {
            Some((n, source)) => (n, source.to_string()),
            None => (
                self.max_length,
                format!("the model folder's max length ({})", self.dir.display()),
            ),
        };
        if n < 2 {
            return Err(Error::Usage(format!(
                "{source}: max length {n} leaves no room for a token ([CLS] and [SEP] take 2)"
            )));
        }
        if n > self.max_position_embeddings {
            return Err(Error::Usage(format!(
                "{source}: max length {n} is above the model's position limit {} (max_position_embeddings in {})",
                self.max_position_embeddings,
                self.dir.join("config.json").display()
            )));
        }
        Ok(n)
    }

    /// Pooling and normalisation as `modules.json` lists them, and which file said so; plain
    /// mean pooling without one (stated as assumed).
    /// `by_flag`: the exporter wrote modules.json from `--pooling` (frostline.json says so).
    fn read_pooling(dir: &Path, hidden_size: usize, by_flag: bool) -> Result<(Pooling, String)> {
        let modules_path = dir.join("modules.json");
        if !modules_path.is_file() {
            return Ok((
                Pooling {
                    mode: PoolingMode::Mean,
                    normalize: false,
                },
                "assumed: no modules.json in the folder".into(),
            ));
        }
        let modules = read_json(&modules_path)?;
        let list = modules
            .as_array()
            .ok_or_else(|| Error::model(&modules_path, "expected a JSON list of modules"))?;
        let mut mode = PoolingMode::Mean;
        let mut normalize = false;
        for m in list {
            let ty = m.get("type").and_then(Value::as_str).unwrap_or_default();
            let sub = m.get("path").and_then(Value::as_str).unwrap_or_default();
            if ty.ends_with(".Pooling") {
                let cfg_path = dir.join(sub).join("config.json");
                let cfg = read_json(&cfg_path)?;
                if let Some(dim) = cfg.get("word_embedding_dimension").and_then(Value::as_u64) {
                    if dim as usize != hidden_size {
                        return Err(Error::model(&cfg_path, format!("word_embedding_dimension {dim} but config.json says hidden_size {hidden_size}")));
                    }
                }
                let on = |k: &str| cfg.get(k).and_then(Value::as_bool).unwrap_or(false);
                let modes: Vec<PoolingMode> = [
                    ("pooling_mode_mean_tokens", PoolingMode::Mean),
                    ("pooling_mode_cls_token", PoolingMode::Cls),
                    ("pooling_mode_max_tokens", PoolingMode::Max),
                    (
                        "pooling_mode_mean_sqrt_len_tokens",
                        PoolingMode::MeanSqrtLen,
                    ),
                ]
                .into_iter()
                .filter(|(k, _)| on(k))
                .map(|(_, m)| m)
                .collect();
                mode = match modes.as_slice() {
                    [one] => *one,
                    [] => return Err(Error::model(&cfg_path, "no pooling mode is switched on")),
                    _ => {
                        return Err(Error::model(
                            &cfg_path,
                            "several pooling modes at once (concatenated pooling) is not supported",
                        ))
                    }
                };
            } else if ty.ends_with(".Normalize") {
                normalize = true;
            } else if ty.ends_with(".Dense") {
                return Err(Error::model(
                    &modules_path,
                    format!("module {sub:?} (Dense) is not supported yet"),
                ));
            }
        }
        let source = if by_flag {
            format!(
                "{}, written by the exporter from --pooling",
                modules_path.display()
            )
        } else {
            modules_path.display().to_string()
        };
        Ok((Pooling { mode, normalize }, source))
    }
}

/// XXH3-128 of a file's bytes (streamed: the graph is ~90 MB).
fn hash_file(hasher: &mut Xxh3, path: &Path) -> Result<()> {
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            return Ok(());
        }
        hasher.update(&buf[..n]);
    }
}

/// The content hash of the files that decide a folder's vectors.
pub(crate) fn content_hash(folder: &ModelFolder) -> Result<String> {
    let mut hasher = Xxh3::new();
    for (name, path) in [
        ("graph", Some(&folder.onnx)),
        ("weights", Some(&folder.weights).filter(|p| p.is_file())),
        ("tokenizer", Some(&folder.tokenizer)),
    ] {
        hasher.update(name.as_bytes());
        if let Some(path) = path {
            hash_file(&mut hasher, path)?;
        }
    }
    Ok(format!("xxh3-128:{:032x}", hasher.digest128()))
}
