//! Fuzzing every reader of files frostline does not trust: CSV, JSONL, Parquet, plain text, cache
//! chunks, checkpoint manifests (sealed and resealed), safetensors and dataset imports (`_SUCCESS`
//! and parts; the exporter's torch-free `.bin` reader is fuzzed by scripts/fuzz_torch_bin.py). Each target mutates valid seed files with a
//! fixed-seed generator (bit flips, random bytes, truncation, insertion, duplicated runs, huge
//! integers) and feeds them to the reader. Every case must end in a value or a clear error that
//! names the file — never a panic.
//!
//! CI runs a bounded number of cases per target (`FROSTLINE_FUZZ_CASES`, default 300). The longer
//! local run: `FROSTLINE_FUZZ_SECONDS=600 cargo test --release --test fuzz -- --nocapture
//! --test-threads 1` (each target for that many seconds; the counts are printed).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::time::{Duration, Instant};

/// xorshift64*: a small, fixed-seed generator (the same cases on every run).
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One to four mutations of `seed`.
fn mutate(seed: &[u8], g: &mut Gen) -> Vec<u8> {
    let mut b = seed.to_vec();
    for _ in 0..1 + g.below(4) {
        let n = b.len().max(1);
        match g.below(7) {
            0 if !b.is_empty() => {
                let i = g.below(n);
                b[i] ^= 1 << g.below(8);
            }
            1 if !b.is_empty() => {
                let i = g.below(n);
                b[i] = g.next() as u8;
            }
            2 => b.truncate(g.below(n)),
            3 => {
                let i = g.below(n);
                let len = 1 + g.below(16);
                let bytes: Vec<u8> = (0..len).map(|_| g.next() as u8).collect();
                b.splice(i.min(b.len())..i.min(b.len()), bytes);
            }
            4 if b.len() > 2 => {
                let i = g.below(b.len() - 1);
                let len = 1 + g.below((b.len() - i).min(64));
                let run: Vec<u8> = b[i..i + len].to_vec();
                let at = g.below(b.len());
                b.splice(at..at, run);
            }
            5 if b.len() >= 8 => {
                // A huge little-endian integer where a length or count may live.
                let i = g.below(b.len() - 7);
                let v = [u64::MAX, 1 << 60, (1 << 60) + 20, u32::MAX as u64][g.below(4)];
                b[i..i + 8].copy_from_slice(&v.to_le_bytes());
            }
            _ if !b.is_empty() => {
                // A structural byte of text formats.
                let i = g.below(n);
                b[i] = b",\"\n{}[]:\r\\\x00\xef"[g.below(12)];
            }
            _ => {}
        }
    }
    b
}

#[derive(Default, Debug)]
struct Counts {
    cases: usize,
    ok: usize,
    errors: usize,
    panics: usize,
}

/// Runs `target` on mutations of `seeds` for the configured budget; returns the counts. An error
/// must name `names_file` when given.
fn fuzz(
    name: &str,
    seeds: &[Vec<u8>],
    seed: u64,
    mut target: impl FnMut(&[u8]) -> Result<(), String>,
) -> Counts {
    let cases: usize = std::env::var("FROSTLINE_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    let budget = std::env::var("FROSTLINE_FUZZ_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map(Duration::from_secs);
    let started = Instant::now();
    let mut g = Gen(seed);
    let mut c = Counts::default();
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    loop {
        let done = match budget {
            Some(b) => started.elapsed() >= b,
            None => c.cases >= cases,
        };
        if done {
            break;
        }
        let bytes = mutate(&seeds[g.below(seeds.len())], &mut g);
        c.cases += 1;
        // An abort (not a panic) cannot be caught: the input that caused it is kept here.
        let _ = std::fs::write(
            std::env::temp_dir().join(format!("frostline-fuzz-last-{name}.bin")),
            &bytes,
        );
        match catch_unwind(AssertUnwindSafe(|| target(&bytes))) {
            Ok(Ok(())) => c.ok += 1,
            Ok(Err(_)) => c.errors += 1,
            Err(_) => {
                c.panics += 1;
                let keep =
                    std::env::temp_dir().join(format!("frostline-fuzz-{name}-{}.bin", c.cases));
                let _ = std::fs::write(&keep, &bytes);
            }
        }
    }
    std::panic::set_hook(hook);
    println!(
        "fuzz {name}: {} cases in {:.1} s: {} read, {} clear errors, {} panics",
        c.cases,
        started.elapsed().as_secs_f64(),
        c.ok,
        c.errors,
        c.panics
    );
    c
}

/// A reader target over a file at `path`: errors must name the file.
fn table_target(path: &Path) -> impl FnMut(&[u8]) -> Result<(), String> + '_ {
    move |bytes| {
        std::fs::write(path, bytes).unwrap();
        match frostline::data::read_table(path) {
            Ok(t) => {
                // Reading a column as texts must not panic either.
                if let Some(name) = t.names.first() {
                    let _ = t.texts(name);
                }
                Ok(())
            }
            Err(e) => {
                let msg = e.to_string();
                assert!(
                    msg.contains(&path.display().to_string()),
                    "error without the file: {msg}"
                );
                Err(msg)
            }
        }
    }
}

fn check(c: Counts) {
    assert_eq!(
        c.panics, 0,
        "{c:?} (the inputs that panicked are in the temp folder)"
    );
    assert!(c.errors > 0, "the mutations never produced an error: {c:?}");
}

fn seed_rows() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/data/sst2/test.csv"))
        .unwrap();
    let mut r = csv::Reader::from_reader(text.as_bytes());
    r.records()
        .take(40)
        .map(|rec| {
            let rec = rec.unwrap();
            (rec[0].to_string(), rec[1].to_string())
        })
        .collect()
}

#[test]
fn fuzz_csv() {
    let dir = tempfile::tempdir().unwrap();
    let seed = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/data/sst2/test.csv")).unwrap();
    let seeds = vec![
        seed[..4000.min(seed.len())].to_vec(),
        b"id,text,label\n1,\"a, b\",x\n2,c,y\n".to_vec(),
    ];
    check(fuzz(
        "csv",
        &seeds,
        11,
        table_target(&dir.path().join("f.csv")),
    ));
}

#[test]
fn fuzz_jsonl() {
    let dir = tempfile::tempdir().unwrap();
    let mut seed = String::new();
    for (t, l) in seed_rows() {
        seed.push_str(&serde_json::json!({"text": t, "label": l, "n": 3}).to_string());
        seed.push('\n');
    }
    check(fuzz(
        "jsonl",
        &[seed.into_bytes()],
        12,
        table_target(&dir.path().join("f.jsonl")),
    ));
}

#[test]
fn fuzz_text() {
    let dir = tempfile::tempdir().unwrap();
    let seed: String = seed_rows().into_iter().map(|(t, _)| t + "\n").collect();
    check(fuzz(
        "text",
        &[seed.into_bytes()],
        13,
        table_target(&dir.path().join("f.txt")),
    ));
}

#[test]
fn fuzz_parquet() {
    use polars::prelude::*;
    let dir = tempfile::tempdir().unwrap();
    let rows = seed_rows();
    let mut df = DataFrame::new_infer_height(vec![
        Column::new(
            "text".into(),
            rows.iter().map(|r| r.0.clone()).collect::<Vec<_>>(),
        ),
        Column::new(
            "label".into(),
            rows.iter().map(|r| r.1.clone()).collect::<Vec<_>>(),
        ),
        Column::new("n".into(), (0..rows.len() as i64).collect::<Vec<_>>()),
    ])
    .unwrap();
    let mut seed = Vec::new();
    ParquetWriter::new(&mut seed).finish(&mut df).unwrap();
    check(fuzz(
        "parquet",
        &[seed],
        14,
        table_target(&dir.path().join("f.parquet")),
    ));
}

#[test]
fn fuzz_cache_chunk() {
    use frostline::embedder::{text_key, Chunk, ChunkWriter};
    let dir = tempfile::tempdir().unwrap();
    let entry = [7u8; 10];
    let mut seeds = Vec::new();
    for sequences in [false, true] {
        let sub = dir.path().join(format!("w{sequences}"));
        std::fs::create_dir(&sub).unwrap();
        let mut w = ChunkWriter::new(sub.clone(), entry, 4, sequences, 100);
        for i in 0..6 {
            let len = if sequences { 4 * (1 + i % 3) } else { 4 };
            let values: Vec<f32> = (0..len).map(|v| v as f32 * 0.5).collect();
            w.push(text_key(&format!("t{i}")), &values).unwrap();
        }
        let path = w.flush().unwrap().unwrap();
        seeds.push((sequences, std::fs::read(path).unwrap()));
    }
    for (sequences, seed) in seeds {
        let path = dir.path().join(format!("f{sequences}.flc"));
        let c = fuzz("chunk", &[seed], 15 + sequences as u64, |bytes| {
            std::fs::write(&path, bytes).unwrap();
            match Chunk::open(&path, &entry, 4, sequences) {
                Ok(chunk) => {
                    // Every row of a chunk that passed its checks is readable.
                    for r in 0..chunk.keys().len() {
                        let _ = chunk.row(r);
                    }
                    Ok(())
                }
                Err(e) => Err(e),
            }
        });
        check(c);
    }
}

/// A real checkpoint manifest and heads file, made with the library (no model needed).
fn checkpoint_seed(dir: &Path) -> (Vec<u8>, Vec<u8>) {
    use frostline::nn::{ParamStore, Rng};
    use frostline::train::{Head, HeadSpec};
    let mut store = ParamStore::default();
    let head = Head::new(&mut store, "t", HeadSpec::LINEAR, 8, 3, &mut Rng::new(1));
    let heads = frostline::nn::tensors::to_safetensors(&store, &head.param_ids()).unwrap();
    let manifest = serde_json::json!({
        "format_version": 3,
        "frostline_version": "0.1.0",
        "backbone": {"version": 1, "model_dir": "/m", "content_hash": "xxh3-128:00", "pooling": "mean+l2",
                     "num_layers": 6, "hidden_size": 8, "max_length": 32},
        "frost_line": null,
        "regime": "frozen-backbone",
        "seed": 1,
        "train": {},
        "trainable_params": 27,
        "training_seconds": 0.1,
        "tasks": [{"config": {"name": "t", "train": dir.join("t.csv")}, "classes": ["a", "b", "c"],
                   "head": {"type": "linear"}, "input_dim": 8, "trained": true, "dev": null, "test": null}],
        "files": {"heads.safetensors": format!("xxh3-64:{:016x}", xxhash_rust::xxh3::xxh3_64(&heads)),
                  "training_log.csv": format!("xxh3-64:{:016x}", xxhash_rust::xxh3::xxh3_64(b""))},
    });
    (serde_json::to_vec_pretty(&manifest).unwrap(), heads)
}

#[test]
fn fuzz_checkpoint_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("ck");
    std::fs::create_dir(&ck).unwrap();
    let (manifest, heads) = checkpoint_seed(dir.path());
    frostline::checkpoint::Manifest::read(&ck).unwrap_err();
    use frostline::checkpoint::seal::seal;
    std::fs::write(ck.join("manifest.json"), seal(&manifest)).unwrap();
    std::fs::write(ck.join("heads.safetensors"), &heads).unwrap();
    frostline::checkpoint::load(&ck).expect("the seed checkpoint is valid");
    // Half the cases are sealed after mutation (what a forger would do), so the parser and the
    // checks of meaning behind the seal are fuzzed too, not only the seal.
    let mut resealed = 0usize;
    let c = fuzz("manifest", &[manifest], 17, |bytes| {
        resealed += 1;
        let written = if resealed.is_multiple_of(2) && bytes.starts_with(b"{\n") {
            seal(bytes)
        } else {
            bytes.to_vec()
        };
        std::fs::write(ck.join("manifest.json"), written).unwrap();
        match frostline::checkpoint::load(&ck) {
            Ok(_) => Ok(()),
            Err(e) => {
                let msg = e.to_string();
                assert!(
                    msg.contains(&ck.display().to_string()),
                    "error without the file: {msg}"
                );
                Err(msg)
            }
        }
    });
    check(c);
}

#[test]
fn fuzz_safetensors() {
    let dir = tempfile::tempdir().unwrap();
    let (_, heads) = checkpoint_seed(dir.path());
    let path = dir.path().join("model.safetensors");
    let c = fuzz("safetensors", &[heads], 18, |bytes| {
        // Both readers: the checkpoint's (F32 only) and the model folder's (other dtypes skipped).
        let strict = frostline::nn::tensors::from_safetensors(bytes, false).map(|_| ());
        std::fs::write(&path, bytes).unwrap();
        let lenient = frostline::nn::bert::read_safetensors(&path).map(|_| ());
        match (strict, lenient) {
            (Ok(()), Ok(())) => Ok(()),
            (Err(e), _) => Err(e),
            (_, Err(e)) => Err(e.to_string()),
        }
    });
    check(c);
}

/// A dataset folder frostline would import: `_SUCCESS` and each part's sidecar (JSON), and the
/// part itself (Parquet with texts and vectors), each mutated in turn. Every case ends in the
/// vectors (checked: finite, non-zero, unit length) or a clear error naming the file.
#[test]
fn fuzz_dataset_import() {
    use polars::prelude::*;
    let dir = tempfile::tempdir().unwrap();
    let ds = dir.path().join("ds");
    std::fs::create_dir(&ds).unwrap();
    let rows = seed_rows();
    let dim = 4;
    let values: Vec<f32> = (0..rows.len() * dim)
        .map(|i| if i % dim == 0 { 1.0 } else { 0.0 })
        .collect();
    let emb = Series::new("embedding".into(), values)
        .reshape_array(&[
            ReshapeDimension::new(rows.len() as i64),
            ReshapeDimension::new(dim as i64),
        ])
        .unwrap();
    let mut df = DataFrame::new_infer_height(vec![
        Column::new(
            "text".into(),
            rows.iter().map(|r| r.0.clone()).collect::<Vec<_>>(),
        ),
        emb.into(),
    ])
    .unwrap();
    let mut part = Vec::new();
    ParquetWriter::new(&mut part).finish(&mut df).unwrap();
    let part_name = "part-00000-of-00001.parquet";
    std::fs::write(ds.join(part_name), &part).unwrap();
    let sum = frostline::data::checksum(&ds.join(part_name)).unwrap();
    let success = serde_json::to_vec_pretty(&serde_json::json!({
        "parts": [{"file": part_name, "rows": rows.len(), "text_column": "text", "checksum": sum}],
        "rows": rows.len(),
        "cache_key_id": "k",
        "cache_key": {"format_version": 4, "onnx_sha256": "00", "tokenizer_sha256": "00",
                      "max_length": 32, "pooling": "mean", "normalize": true, "split_layer": null,
                      "content": "sentence", "dtype": "f32", "numeric": "fp32", "dim": dim},
        "frostline_version": "0.1.0",
    }))
    .unwrap();
    // What an import reads of a part: its checksum, texts and vectors, and their checks.
    let read_part = |path: &Path| -> Result<(), String> {
        frostline::data::checksum(path).map_err(|e| e.to_string())?;
        let (texts, values) =
            frostline::data::read_part_vectors(path, "text", dim).map_err(|e| e.to_string())?;
        frostline::data::check_vectors(path, &texts, &values, dim, true).map_err(|e| e.to_string())
    };
    read_part(&ds.join(part_name)).expect("the seed part is valid");
    std::fs::write(ds.join("_SUCCESS"), &success).unwrap();
    frostline::data::success_record(&ds)
        .unwrap()
        .expect("the seed _SUCCESS is valid");
    let names_file = |path: &Path, r: Result<(), String>| -> Result<(), String> {
        r.map_err(|msg| {
            assert!(
                msg.contains(&path.display().to_string()),
                "error without the file: {msg}"
            );
            msg
        })
    };
    let c = fuzz("dataset-part", &[part], 19, |bytes| {
        let path = ds.join(part_name);
        std::fs::write(&path, bytes).unwrap();
        names_file(&path, read_part(&path))
    });
    check(c);
    let c = fuzz("dataset-success", &[success], 20, |bytes| {
        let path = ds.join("_SUCCESS");
        std::fs::write(&path, bytes).unwrap();
        let r = frostline::data::success_record(&ds)
            .map(|_| ())
            .map_err(|e| e.to_string());
        names_file(&path, r)
    });
    check(c);
}

/// Inputs the fuzzer found that made the Parquet decoder abort the process (not a panic): a
/// footer list length of ~2.9e12 (an 82 GB allocation). Each must now be a clear error.
#[test]
fn parquet_inputs_that_once_aborted_are_clear_errors() {
    let path = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/damaged-footer.parquet"
    ));
    let err = frostline::data::read_table(path).unwrap_err().to_string();
    assert!(
        err.contains("damaged-footer.parquet") && err.contains("damaged footer"),
        "{err}"
    );
}
