//! Embedding: parity with sentence-transformers, output formats, the cache (hits, resume after
//! SIGKILL, damaged chunks).

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use frostline::embedder::{EmbedSettings, SentenceEmbedder};

struct Reference {
    text: String,
    input_ids: Vec<u32>,
    embedding: Vec<f32>,
}

fn reference() -> Vec<Reference> {
    std::fs::read_to_string(fixture("reference.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            Reference {
                text: v["text"].as_str().unwrap().to_string(),
                input_ids: v["input_ids"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_u64().unwrap() as u32)
                    .collect(),
                embedding: v["embedding"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_f64().unwrap() as f32)
                    .collect(),
            }
        })
        .collect()
}

fn settings(model: &Path, cache: &Path) -> EmbedSettings {
    let mut s = settings_for(model);
    s.cache_root = cache.to_path_buf();
    s
}

#[test]
fn parity_with_sentence_transformers_reference() {
    let Some(model) = model_dir() else { return };
    let refs = reference();
    assert_eq!(refs.len(), 66);
    let cache = tempfile::tempdir().unwrap();
    let mut embedder = SentenceEmbedder::open(settings(&model, cache.path())).unwrap();

    let texts: Vec<&str> = refs.iter().map(|r| r.text.as_str()).collect();
    let encoded = embedder.tokenizer().encode_all(&texts).unwrap();
    for (r, e) in refs.iter().zip(&encoded) {
        assert_eq!(
            e.ids,
            r.input_ids,
            "token ids differ for {:?}",
            &r.text[..r.text.len().min(60)]
        );
    }
    // The reference holds one text past the 256-token limit: it must be counted as truncated.
    assert_eq!(encoded.iter().filter(|e| e.truncated).count(), 1);

    let owned: Vec<String> = refs.iter().map(|r| r.text.clone()).collect();
    let (vectors, stats) = embedder.embed(&owned).unwrap();
    assert_eq!(stats.embedded, stats.unique_texts);
    let mut worst = 1.0f64;
    for (i, r) in refs.iter().enumerate() {
        let c = cosine(vectors.row(i).as_slice().unwrap(), &r.embedding);
        worst = worst.min(c);
        assert!(c >= 0.9999, "row {i}: cosine {c} < 0.9999 for {:?}", r.text);
    }
    eprintln!("parity: min cosine {worst:.8} over {} rows", refs.len());
}

#[test]
fn all_input_formats_give_the_same_vectors_and_parquet_keeps_order() {
    let Some(model) = model_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let csv_path = fixture("sentences.csv");
    let table = frostline::data::read_table(&csv_path).unwrap();
    let ids = table.required_strings("id").unwrap();
    let texts = table.required_strings("text").unwrap();

    // The same rows as JSONL and as plain text.
    let jsonl = dir.path().join("in.jsonl");
    let lines: Vec<String> = ids
        .iter()
        .zip(&texts)
        .map(|(i, t)| serde_json::json!({"id": i, "text": t}).to_string())
        .collect();
    std::fs::write(&jsonl, lines.join("\n") + "\n").unwrap();
    let txt = dir.path().join("in.txt");
    std::fs::write(&txt, texts.join("\n") + "\n").unwrap();

    let mut outputs = Vec::new();
    for (input, out) in [
        (&csv_path, "csv.npy"),
        (&jsonl, "jsonl.npy"),
        (&txt, "txt.npy"),
    ] {
        let out = dir.path().join(out);
        let (ok, _, err) = run(&mut embed_cmd(&model, input, &out, &cache));
        assert!(ok, "{err}");
        outputs.push(read_npy(&out));
    }
    assert_eq!(outputs[0].0, 120);
    assert_eq!(outputs[0].1, 384);
    assert_eq!(outputs[0], outputs[1]);
    assert_eq!(outputs[0], outputs[2]);

    // Parquet out, then Parquet in.
    let pq = dir.path().join("out.parquet");
    let (ok, _, err) = run(&mut embed_cmd(&model, &csv_path, &pq, &cache));
    assert!(ok, "{err}");
    let df = read_parquet(&pq);
    let names: Vec<String> = df
        .get_column_names()
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(names, ["id", "text", "embedding"]);
    assert_eq!(
        df.column("embedding").unwrap().dtype(),
        &polars::prelude::DataType::Array(Box::new(polars::prelude::DataType::Float32), 384)
    );
    let got_ids: Vec<String> = df
        .column("id")
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .map(|s| s.unwrap().to_string())
        .collect();
    assert_eq!(got_ids, ids);
    let emb = df
        .column("embedding")
        .unwrap()
        .array()
        .unwrap()
        .get_as_series(7)
        .unwrap();
    let row7: Vec<f32> = emb.f32().unwrap().into_no_null_iter().collect();
    assert_eq!(row7, outputs[0].2[7 * 384..8 * 384]);

    let again = dir.path().join("again.npy");
    let (ok, _, err) = run(&mut embed_cmd(&model, &pq, &again, &cache));
    assert!(ok, "{err}");
    assert_eq!(read_npy(&again), outputs[0]);
}

#[test]
fn second_run_is_a_cache_hit_without_ort() {
    let Some(model) = model_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let out = dir.path().join("a.npy");
    // The figures come from --json (the human summary is for people).
    let stats = |out: &Path| {
        let (ok, stdout, err) =
            run(embed_cmd(&model, &fixture("sentences.csv"), out, &cache).arg("--json"));
        assert!(ok, "{err}");
        json_of(&stdout)
    };
    let first = stats(&out);
    assert_eq!(
        (first["cache_hits"].as_u64(), first["embedded"].as_u64()),
        (Some(0), Some(120)),
        "{first}"
    );
    assert_eq!(first["provider"], "CPUExecutionProvider");
    let out2 = dir.path().join("b.npy");
    let second = stats(&out2);
    assert_eq!(
        (second["cache_hits"].as_u64(), second["embedded"].as_u64()),
        (Some(120), Some(0)),
        "{second}"
    );
    assert!(
        second["provider"].is_null(),
        "no ORT session for a cache hit: {second}"
    );
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&out2).unwrap());
}

fn cached_rows(cache: &Path) -> Vec<std::path::PathBuf> {
    let mut chunks = Vec::new();
    for entry in std::fs::read_dir(cache).unwrap() {
        let dir = entry.unwrap().path().join("chunks");
        // A run being watched (kill_and_resume) may have made the cache's folder and not yet
        // its chunks folder: nothing cached there yet.
        let Ok(listing) = std::fs::read_dir(dir) else {
            continue;
        };
        for c in listing {
            chunks.push(c.unwrap().path());
        }
    }
    chunks
}

/// Kills `embed` with SIGKILL after it has flushed `after_chunks` chunks, then runs it again:
/// every row must come out, equal to an uninterrupted run, and the cache must hold each text once.
fn kill_and_resume(after_chunks: usize) {
    let Some(model) = model_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    // 1,200 distinct texts so that the run lasts long enough to be killed mid-way.
    let base = frostline::data::read_table(&fixture("sentences.csv"))
        .unwrap()
        .required_strings("text")
        .unwrap();
    let texts: Vec<String> = (0..1200)
        .map(|i| format!("{} (variant {i})", base[i % base.len()]))
        .collect();
    let input = dir.path().join("many.txt");
    std::fs::write(&input, texts.join("\n") + "\n").unwrap();

    let cache = dir.path().join("cache");
    let out = dir.path().join("out.npy");
    let mut cmd = embed_cmd(&model, &input, &out, &cache);
    cmd.args(["--chunk-rows", "64", "--batch-tokens", "512"]);
    let mut child = cmd.stderr(std::process::Stdio::null()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let done = cache.exists()
            && cached_rows(&cache)
                .iter()
                .filter(|p| p.extension().is_some_and(|e| e == "flc"))
                .count()
                >= after_chunks;
        if done || Instant::now() > deadline {
            break;
        }
        if child.try_wait().unwrap().is_some() {
            panic!("embed finished before it could be killed; make the input larger");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(!out.exists(), "a killed run must not leave an output file");

    let (ok, _, summary) = run(&mut embed_cmd(&model, &input, &out, &cache));
    assert!(ok, "{summary}");
    let hits: usize = summary
        .split("cache hits ")
        .nth(1)
        .unwrap()
        .split(',')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        hits >= after_chunks * 64 && hits < 1200,
        "resume should reuse the flushed chunks: {summary}"
    );
    assert!(
        summary.contains(&format!("embedded {})", 1200 - hits)),
        "{summary}"
    );

    let fresh = dir.path().join("fresh.npy");
    let (ok, _, err) = run(&mut embed_cmd(
        &model,
        &input,
        &fresh,
        &dir.path().join("cache2"),
    ));
    assert!(ok, "{err}");
    let (a, b) = (read_npy(&out), read_npy(&fresh));
    assert_eq!((a.0, a.1), (1200, 384));
    for r in 0..1200 {
        let c = cosine(&a.2[r * 384..(r + 1) * 384], &b.2[r * 384..(r + 1) * 384]);
        assert!(c > 0.99999, "row {r}: cosine {c}");
    }
    // Each text is cached exactly once: chunk rows add up to 1,200, and no temp file survived.
    let mut total = 0u64;
    for p in cached_rows(&cache) {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.ends_with(".flc"), "leftover {name}");
        let bytes = std::fs::read(&p).unwrap();
        total += u64::from_le_bytes(bytes[16..24].try_into().unwrap());
    }
    assert_eq!(total, 1200);
}

#[test]
fn resume_after_sigkill_early() {
    kill_and_resume(1);
}

#[test]
fn resume_after_sigkill_midway() {
    kill_and_resume(6);
}

#[test]
fn damaged_chunk_is_set_aside_and_re_embedded() {
    let Some(model) = model_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let out = dir.path().join("a.npy");
    let mut cmd = embed_cmd(&model, &fixture("sentences.csv"), &out, &cache);
    cmd.args(["--chunk-rows", "50"]);
    let (ok, _, err) = run(&mut cmd);
    assert!(ok, "{err}");
    // Flip one byte in the middle of one chunk's vectors.
    let chunk = cached_rows(&cache)
        .into_iter()
        .find(|p| p.extension().is_some_and(|e| e == "flc"))
        .unwrap();
    let mut bytes = std::fs::read(&chunk).unwrap();
    let mid = bytes.len() - 100;
    bytes[mid] ^= 0xFF;
    std::fs::write(&chunk, bytes).unwrap();

    let out2 = dir.path().join("b.npy");
    let (ok, stdout, err) =
        run(embed_cmd(&model, &fixture("sentences.csv"), &out2, &cache).arg("--json"));
    assert!(ok, "{err}");
    let summary = json_of(&stdout);
    let notes = summary["notes"].to_string();
    assert!(
        notes.contains("damaged cache chunk set aside (checksum mismatch"),
        "{summary}"
    );
    assert!(
        summary["embedded"].as_u64() > Some(0),
        "rows of the damaged chunk must be re-embedded: {summary}"
    );
    let (a, b) = (read_npy(&out), read_npy(&out2));
    for r in 0..a.0 {
        assert!(cosine(&a.2[r * 384..(r + 1) * 384], &b.2[r * 384..(r + 1) * 384]) > 0.99999);
    }
}

/// A folder whose weights are kept as ONNX external data: frostline reads the graph into memory
/// to rewrite it onto its CPU kernels, and must still find the weights beside the file (not in
/// the working directory), giving the inline folder's vectors exactly.
#[test]
fn a_graph_with_external_weights_runs_rewritten_from_its_folder() {
    let Some(model) = model_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let ext = model_copy(dir.path(), &model);
    let py = venv_python("FROSTLINE_VENV", "venv", "scripts/setup.sh");
    // model_copy links the big files: replace the graph's link by a file of its own first.
    let graph = ext.join("model.onnx");
    std::fs::remove_file(&graph).unwrap();
    let script = "import onnx, sys; m = onnx.load(sys.argv[1]); \
                  onnx.save_model(m, sys.argv[2], save_as_external_data=True, location='weights.bin')";
    let (ok, _, err) = run(std::process::Command::new(py)
        .args(["-c", script])
        .arg(model.join("model.onnx"))
        .arg(&graph));
    assert!(ok, "{err}");
    assert!(ext.join("weights.bin").is_file());
    assert!(
        std::fs::metadata(&graph).unwrap().len() < 1 << 20,
        "the weights left the graph file"
    );
    // Run from another directory, so a path resolved against the working directory would miss.
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let embed = |m: &Path, name: &str| {
        let out = dir.path().join(name);
        let cache = dir.path().join(format!("cache-{name}"));
        let (ok, _, err) =
            run(embed_cmd(m, &fixture("sentences.csv"), &out, &cache).current_dir(&elsewhere));
        assert!(ok, "{err}");
        read_npy(&out)
    };
    assert_eq!(embed(&ext, "ext.npy"), embed(&model, "inline.npy"));
}
