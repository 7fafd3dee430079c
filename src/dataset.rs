//! Embedding datasets: a folder of Parquet parts written by shards that never touch each other's
//! files, `part-00003-of-00016.parquet` each written whole (temp + rename) with a sidecar
//! `_part-00003-of-00016.json` saying what it holds (named so Arrow-family readers skip it), and — once every part is present — a
//! `_SUCCESS` manifest listing parts, row counts and the model's cache key. A dataset folder is
//! also an input: every command reads its parts, in order, as one table.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cache::CacheKey;
use crate::error::{Error, Result};
use crate::io::format::{Format, TABLE_INPUTS};
use crate::io::fsutil;
use crate::io::outfolder::MARKER;

pub(crate) const SUCCESS: &str = "_SUCCESS";
const MARKER_KIND: &str = "dataset";

/// What one part holds (the sidecar `part-…json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartRecord {
    pub part: usize,
    pub of: usize,
    pub rows: usize,
    pub cache_key_id: String,
    pub model_dir: PathBuf,
    pub numeric: String,
    /// The column of the part holding the texts the vectors were made from.
    pub text_column: String,
    /// XXH3-64 of the part file, checked before its vectors are used.
    pub checksum: String,
    /// The input files (and row ranges) this part was made from.
    pub inputs: Vec<String>,
}

/// `_SUCCESS`: the complete dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuccessRecord {
    pub parts: Vec<PartEntry>,
    pub rows: usize,
    pub cache_key_id: String,
    pub cache_key: CacheKey,
    pub frostline_version: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartEntry {
    pub file: String,
    pub rows: usize,
    pub text_column: String,
    pub checksum: String,
}

/// XXH3-64 of a file's bytes, as recorded for parts (streamed: a part can be gigabytes).
pub fn checksum(path: &Path) -> Result<String> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(format!("xxh3-64:{:016x}", hasher.digest()))
}

/// The checks every imported vector passes before it may enter the shared cache (the part's
/// checksum only proves it was not damaged): `dim` floats per text, each finite, the vector
/// non-zero, and of length 1 when the model normalises (`normalized`). The first failure is
/// named by part and row.
pub fn check_vectors(
    path: &Path,
    texts: &[String],
    values: &[f32],
    dim: usize,
    normalized: bool,
) -> Result<()> {
    let refuse = |row, what| forged(path, texts, row, what);
    if dim == 0 || values.len() != texts.len() * dim {
        return Err(refuse(
            0,
            format!(
                "{} floats for {} texts of {dim} each",
                values.len(),
                texts.len()
            ),
        ));
    }
    for (row, v) in values.chunks_exact(dim).enumerate() {
        if let Some(x) = v.iter().find(|x| !x.is_finite()) {
            return Err(refuse(row, format!("its vector holds {x}")));
        }
        let norm = v
            .iter()
            .map(|&x| f64::from(x) * f64::from(x))
            .sum::<f64>()
            .sqrt();
        if !norm.is_finite() || norm == 0.0 || (normalized && (norm - 1.0).abs() > 1e-3) {
            return Err(refuse(
                row,
                format!(
                    "its vector has length {norm:.4e}, and this model's vectors {}",
                    if normalized {
                        "have length 1"
                    } else {
                        "are finite and non-zero"
                    }
                ),
            ));
        }
    }
    Ok(())
}

/// The spot check of an import: the part's vectors of sample `rows` against `fresh`, the same
/// texts embedded here (row `i` of `fresh` is text `rows[i]`). Each pair must agree in direction
/// (cosine ≥ `min_cosine`) and length (within 1 %).
pub(crate) fn check_spot(
    path: &Path,
    texts: &[String],
    values: &[f32],
    rows: &[usize],
    fresh: ndarray::ArrayView2<f32>,
    min_cosine: f64,
) -> Result<()> {
    let dim = fresh.ncols();
    let norm = |v: &[f32]| v.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt();
    for (made, &row) in fresh.rows().into_iter().zip(rows) {
        let imported = &values[row * dim..(row + 1) * dim];
        let made = made.to_vec();
        let dot: f64 = imported
            .iter()
            .zip(&made)
            .map(|(&a, &b)| f64::from(a) * f64::from(b))
            .sum();
        let (na, nb) = (norm(imported), norm(&made));
        let cosine = dot / (na * nb).max(f64::MIN_POSITIVE);
        if cosine < min_cosine || (na / nb - 1.0).abs() > 0.01 {
            return Err(forged(
                path,
                texts,
                row,
                format!(
                    "its vector is not what this model makes of its text (spot check: cosine {cosine:.4}, length {na:.4} vs {nb:.4})"
                ),
            ));
        }
    }
    Ok(())
}

/// The refusal of an imported part whose row `row` fails a check.
fn forged(path: &Path, texts: &[String], row: usize, what: String) -> Error {
    Error::InputFile {
        path: path.to_path_buf(),
        reason: format!(
            "row {row} ({:?}): {what}; the part was changed after frostline wrote it — embed its texts again instead of importing it",
            texts.get(row).map_or(String::new(), |t| t.chars().take(60).collect())
        ),
    }
}

/// The `_SUCCESS` record of a complete dataset folder, if `dir` is one.
pub fn success_record(dir: &Path) -> Result<Option<SuccessRecord>> {
    let path = dir.join(SUCCESS);
    if !dir.is_dir() || !path.is_file() {
        return Ok(None);
    }
    read_json(&path).map(Some)
}

pub(crate) fn part_name(part: usize, of: usize) -> String {
    format!("part-{part:05}-of-{of:05}.parquet")
}

/// A part's sidecar, `_part-…json`: the leading `_` makes Arrow-family readers (pyarrow.dataset,
/// pandas, polars, Spark) skip it, so the folder reads as one table.
fn sidecar_name(part: usize, of: usize) -> String {
    format!("_part-{part:05}-of-{of:05}.json")
}

/// `(part, of, is a sidecar)` from a part's file name: its `.parquet`, or its sidecar (also as
/// earlier versions named it, `part-…json`, so their datasets still read).
fn parse_part(name: &str) -> Option<(usize, usize, bool)> {
    let rest = name
        .strip_prefix("_part-")
        .or_else(|| name.strip_prefix("part-"))?;
    if name.starts_with('_') && !name.ends_with(".json") {
        return None;
    }
    let (stem, sidecar) = match rest.strip_suffix(".parquet") {
        Some(s) => (s, false),
        None => (rest.strip_suffix(".json")?, true),
    };
    let (p, n) = stem.split_once("-of-")?;
    Some((p.parse().ok()?, n.parse().ok()?, sidecar))
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::InputFile {
        path: path.to_path_buf(),
        reason: format!("not a frostline dataset record ({e})"),
    })
}

/// A dataset folder claimed by one shard: checked to hold nothing but this dataset's own files.
pub struct DatasetDir {
    pub dir: PathBuf,
    pub of: usize,
    key: CacheKey,
}

impl DatasetDir {
    /// Creates `dir` if needed and checks it: a folder frostline did not write (files and no
    /// dataset marker) is refused, and so are parts of another shard count or another model —
    /// before anything is embedded.
    pub fn prepare(dir: &Path, of: usize, key: &CacheKey) -> Result<Self> {
        let refuse = |reason: String| Error::Usage(format!("{}: {reason}", dir.display()));
        std::fs::create_dir_all(dir).map_err(|e| Error::Output {
            path: dir.to_path_buf(),
            reason: format!("cannot create the dataset folder: {e}"),
        })?;
        let marker = dir.join(MARKER);
        let mut foreign = Vec::new();
        let key_id = key.id();
        for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
            let entry = entry.map_err(|e| Error::io(dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name == MARKER || name == SUCCESS || fsutil::is_temp_name(&name) {
                continue;
            }
            match parse_part(&name) {
                Some((_, n, _)) if n != of => {
                    return Err(refuse(format!(
                        "holds {name}, a part of a {n}-shard run, and this run writes {of} parts; use another folder, or the same shard count"
                    )))
                }
                Some((_, _, true)) => {
                    let rec: PartRecord = read_json(&entry.path())?;
                    if rec.cache_key_id != key_id {
                        return Err(refuse(format!(
                            "holds {name}, made with another model or settings ({}, {}; cache key {}), and this run's cache key is {key_id}; use another folder",
                            rec.model_dir.display(),
                            rec.numeric,
                            rec.cache_key_id
                        )));
                    }
                }
                Some(_) => {}
                None => foreign.push(name),
            }
        }
        if marker.is_file() {
            let kind: serde_json::Value = read_json(&marker)?;
            if kind["kind"] != MARKER_KIND {
                return Err(refuse(format!(
                    "was written by frostline as a {} folder, not a dataset; use another folder",
                    kind["kind"]
                )));
            }
        } else if !foreign.is_empty() {
            foreign.sort();
            return Err(refuse(format!(
                "was not written by frostline (it holds {}); embed into a new or empty folder",
                foreign.join(", ")
            )));
        }
        if !marker.is_file() {
            let json = serde_json::json!({
                "kind": MARKER_KIND,
                "frostline_version": env!("CARGO_PKG_VERSION"),
            });
            fsutil::write_bytes_atomic(&marker, json.to_string().as_bytes())?;
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            of,
            key: key.clone(),
        })
    }

    pub fn part_path(&self, part: usize) -> PathBuf {
        self.dir.join(part_name(part, self.of))
    }

    /// Part `part`'s sidecar: `_part-…json`, or the `part-…json` an older frostline wrote.
    fn sidecar_path(&self, part: usize) -> PathBuf {
        let new = self.dir.join(sidecar_name(part, self.of));
        let old = self.part_path(part).with_extension("json");
        if !new.exists() && old.is_file() {
            old
        } else {
            new
        }
    }

    /// Records part `rec.part` (its Parquet file is already in place), then writes `_SUCCESS`
    /// if every part is now present. Returns whether the dataset is complete.
    pub fn finish_part(&self, rec: &PartRecord) -> Result<bool> {
        let sidecar = self.sidecar_path(rec.part);
        let json = serde_json::to_string_pretty(rec).expect("record serialises");
        fsutil::write_bytes_atomic(&sidecar, json.as_bytes())?;
        let mut parts = Vec::new();
        for p in 0..self.of {
            let side = self.sidecar_path(p);
            if !side.is_file() || !self.part_path(p).is_file() {
                return Ok(false);
            }
            let r: PartRecord = read_json(&side)?;
            if r.cache_key_id != self.key.id() {
                return Ok(false);
            }
            parts.push(PartEntry {
                file: part_name(p, self.of),
                rows: r.rows,
                text_column: r.text_column,
                checksum: r.checksum,
            });
        }
        let success = SuccessRecord {
            rows: parts.iter().map(|p| p.rows).sum(),
            parts,
            cache_key_id: self.key.id(),
            cache_key: self.key.clone(),
            frostline_version: env!("CARGO_PKG_VERSION").into(),
        };
        let json = serde_json::to_string_pretty(&success).expect("record serialises");
        fsutil::write_bytes_atomic(&self.dir.join(SUCCESS), json.as_bytes())?;
        Ok(true)
    }
}

/// The files an `--input` names, sorted: a file; a frostline dataset folder (its parts, once
/// complete); a folder of table files; or a glob (`data/*.csv`, `shards/part-*.parquet`).
pub(crate) fn resolve_inputs(spec: &Path) -> Result<Vec<PathBuf>> {
    let text = spec.to_string_lossy();
    if !spec.exists() && text.contains(['*', '?', '[']) {
        let paths = glob::glob(&text).map_err(|e| Error::Usage(format!("--input {text}: {e}")))?;
        let mut files: Vec<PathBuf> = paths
            .filter_map(|p| p.ok())
            .filter(|p| p.is_file())
            .collect();
        if files.is_empty() {
            return Err(Error::InputFile {
                path: spec.to_path_buf(),
                reason: "the pattern matches no file; check the path (quote it so the shell does not expand it)".into(),
            });
        }
        files.sort();
        for f in &files {
            Format::input(f, TABLE_INPUTS)?;
        }
        return Ok(files);
    }
    if !spec.is_dir() {
        return Ok(vec![spec.to_path_buf()]);
    }
    if let Some(parts) = dataset_parts(spec)? {
        return Ok(parts);
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(spec).map_err(|e| Error::io(spec, e))? {
        let path = entry.map_err(|e| Error::io(spec, e))?.path();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if path.is_file() && !name.starts_with('.') && Format::input(&path, TABLE_INPUTS).is_ok() {
            files.push(path);
        }
    }
    if files.is_empty() {
        return Err(Error::InputFile {
            path: spec.to_path_buf(),
            reason: "is a folder with no .csv, .jsonl, .parquet or .txt files; give a file, a folder holding such files, a glob, or a frostline dataset folder".into(),
        });
    }
    files.sort();
    Ok(files)
}

/// The parts of a frostline dataset folder (`None` if `dir` is not one); an incomplete one is
/// an error saying which parts are missing.
fn dataset_parts(dir: &Path) -> Result<Option<Vec<PathBuf>>> {
    let success = dir.join(SUCCESS);
    if success.is_file() {
        let rec: SuccessRecord = read_json(&success)?;
        let mut parts = Vec::new();
        for p in &rec.parts {
            if p.file.contains('/') || parse_part(&p.file).is_none() {
                return Err(Error::InputFile {
                    path: success.clone(),
                    reason: format!("lists {:?}, which is not a part name", p.file),
                });
            }
            let path = dir.join(&p.file);
            if !path.is_file() {
                return Err(Error::InputFile {
                    path: success.clone(),
                    reason: format!("lists {} but the file is missing", p.file),
                });
            }
            parts.push(path);
        }
        return Ok(Some(parts));
    }
    let mut of = None;
    let mut present = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let name = entry.map_err(|e| Error::io(dir, e))?.file_name();
        if let Some((p, n, false)) = parse_part(&name.to_string_lossy()) {
            of = Some(n);
            present.push(p);
        }
    }
    let Some(of) = of else { return Ok(None) };
    let missing: Vec<String> = (0..of)
        .filter(|p| !present.contains(p))
        .map(|p| p.to_string())
        .collect();
    Err(Error::InputFile {
        path: dir.to_path_buf(),
        reason: format!(
            "an incomplete dataset (no {SUCCESS}): parts {} of {of} missing; wait for every shard to finish, or re-run the missing ones",
            if missing.is_empty() { "none, but records".into() } else { missing.join(", ") }
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_names_round_trip() {
        assert_eq!(part_name(3, 16), "part-00003-of-00016.parquet");
        assert_eq!(
            parse_part("part-00003-of-00016.parquet"),
            Some((3, 16, false))
        );
        assert_eq!(sidecar_name(3, 16), "_part-00003-of-00016.json");
        assert_eq!(parse_part("_part-00003-of-00016.json"), Some((3, 16, true)));
        // As earlier versions named the sidecar.
        assert_eq!(parse_part("part-00003-of-00016.json"), Some((3, 16, true)));
        assert_eq!(parse_part("_part-00003-of-00016.parquet"), None);
        assert_eq!(parse_part("part-3.parquet"), None);
    }

    #[test]
    fn globs_folders_and_incomplete_datasets() {
        let d = tempfile::tempdir().unwrap();
        for f in ["b.csv", "a.csv", "notes.md"] {
            std::fs::write(d.path().join(f), "text\nx\n").unwrap();
        }
        let files = resolve_inputs(d.path()).unwrap();
        let names: Vec<_> = files
            .iter()
            .map(|p| p.file_name().unwrap().to_owned())
            .collect();
        assert_eq!(names, ["a.csv", "b.csv"]);
        let glob = d.path().join("*.csv");
        assert_eq!(resolve_inputs(&glob).unwrap(), files);
        let err = resolve_inputs(&d.path().join("*.jsonl"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("matches no file"), "{err}");

        let ds = d.path().join("ds");
        std::fs::create_dir(&ds).unwrap();
        std::fs::write(ds.join(part_name(1, 3)), b"x").unwrap();
        let err = resolve_inputs(&ds).unwrap_err().to_string();
        assert!(err.contains("parts 0, 2 of 3 missing"), "{err}");
    }
}
