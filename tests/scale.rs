//! Past one machine: streaming `embed` (windows of rows, output = input order), many files in,
//! a Parquet dataset of parts out, shards that split the rows exactly, a dataset as an input,
//! and every way to ask for it wrongly refused before anything is written.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use polars::prelude::*;

/// Three CSV files (id, text, label) of 40 rows each from the shipped SST-2 subset, with ids
/// unique across files.
fn inputs(dir: &Path) -> Vec<PathBuf> {
    let table = frostline::data::read_table(&repo().join("data/sst2/train.csv")).unwrap();
    let texts = table.texts("text").unwrap();
    let labels = table.required_strings("label").unwrap();
    let mut files = Vec::new();
    for f in 0..3 {
        let path = dir.join(format!("in-{f}.csv"));
        let mut w = csv::Writer::from_path(&path).unwrap();
        w.write_record(["id", "text", "label"]).unwrap();
        for r in 0..40 {
            let i = f * 40 + r;
            w.write_record([format!("row{i:03}"), texts[i].clone(), labels[i].clone()])
                .unwrap();
        }
        w.flush().unwrap();
        files.push(path);
    }
    files
}

/// `embed --json --no-progress` and `parts`, in `cwd` with the cache `cwd/cache`.
fn embed(cwd: &Path, parts: &[&dyn AsArgs]) -> (i32, String, String) {
    code(&mut embed_cmd_in(cwd, parts))
}

fn embed_cmd_in(cwd: &Path, parts: &[&dyn AsArgs]) -> std::process::Command {
    fl(
        cwd,
        &cwd.join("cache"),
        &[&"embed --json --no-progress", &parts],
    )
}

/// (ids, vectors) of a Parquet file or of a dataset folder's parts in order.
fn read_vectors(paths: &[PathBuf]) -> (Vec<String>, Vec<Vec<f32>>) {
    let mut ids = Vec::new();
    let mut vecs = Vec::new();
    for p in paths {
        let df = ParquetReader::new(std::fs::File::open(p).unwrap())
            .finish()
            .unwrap();
        let id = df.column("id").unwrap().str().unwrap().clone();
        ids.extend(id.iter().map(|s| s.unwrap().to_string()));
        let emb = df.column("embedding").unwrap().array().unwrap().clone();
        for r in 0..emb.len() {
            let v = emb.get_as_series(r).unwrap();
            vecs.push(v.f32().unwrap().into_no_null_iter().collect());
        }
    }
    (ids, vecs)
}

fn parts(dir: &Path, n: usize) -> Vec<PathBuf> {
    (0..n)
        .map(|i| dir.join(format!("part-{i:05}-of-{n:05}.parquet")))
        .collect()
}

#[test]
fn windows_do_not_change_a_single_value_or_the_order() {
    let Some(model) = model_dir() else { return };
    let d = tempfile::tempdir().unwrap();
    let files = inputs(d.path());
    let m = args(&[&"--model", &model]);
    let (rc, _, err) = embed(
        d.path(),
        &[&m, &"--input", &files[0], &"--output whole.npy"],
    );
    assert_eq!(rc, 0, "{err}");
    let (rc, out, err) = embed(
        d.path(),
        &[
            &m,
            &"--input",
            &files[0],
            &"--output windows.npy --window-rows 7",
        ],
    );
    assert_eq!(rc, 0, "{err}");
    assert_eq!(json_of(&out)["rows"], 40);
    let whole = std::fs::read(d.path().join("whole.npy")).unwrap();
    assert_eq!(whole, std::fs::read(d.path().join("windows.npy")).unwrap());
    let (rows, dim, _) = read_npy(&d.path().join("windows.npy"));
    assert_eq!((rows, dim), (40, 384));
    // Parquet, streamed in windows of 7 and in one, across three files in a quoted glob.
    for (out, window) in [("a.parquet", "7"), ("b.parquet", "1000")] {
        let (rc, _, err) = embed(
            d.path(),
            &[
                &m,
                &"--input in-*.csv --output",
                &out,
                &"--window-rows",
                &window,
            ],
        );
        assert_eq!(rc, 0, "{err}");
    }
    let (ids, a) = read_vectors(&[d.path().join("a.parquet")]);
    let (_, b) = read_vectors(&[d.path().join("b.parquet")]);
    let want: Vec<String> = (0..120).map(|i| format!("row{i:03}")).collect();
    assert_eq!(ids, want);
    assert_eq!(a, b);
}

#[test]
fn shards_split_the_rows_exactly_and_the_dataset_matches_one_run() {
    let Some(model) = model_dir() else { return };
    let d = tempfile::tempdir().unwrap();
    inputs(d.path());
    let m = args(&[&"--model", &model]);
    let (rc, _, err) = embed(d.path(), &[&m, &"--input in-*.csv --output one.parquet"]);
    assert_eq!(rc, 0, "{err}");
    let (want_ids, want) = read_vectors(&[d.path().join("one.parquet")]);

    // Four shards over three files: contiguous row ranges (fewer files than shards).
    let ds = d.path().join("ds");
    for i in [2, 0, 3] {
        let shard = format!("{i}/4");
        let (rc, out, err) = embed(
            d.path(),
            &[
                &m,
                &"--input in-*.csv --output ds/ --shard",
                &shard,
                &"--carry label",
            ],
        );
        assert_eq!(rc, 0, "{err}");
        assert_eq!(json_of(&out)["dataset_complete"], false);
    }
    assert!(!ds.join("_SUCCESS").exists());
    // Read before every part is there: the missing one is named.
    let (rc, _, err) = embed(d.path(), &[&m, &"--input ds --output x.npy"]);
    assert_eq!(rc, 3, "{err}");
    assert!(err.contains("parts 1 of 4 missing"), "{err}");
    // The last one, from the scheduler's variables (a Slurm array task).
    let (rc, out, err) = code(
        embed_cmd_in(
            d.path(),
            &[&m, &"--input in-*.csv --output ds/ --carry label"],
        )
        .env("SLURM_ARRAY_TASK_ID", "1")
        .env("SLURM_ARRAY_TASK_COUNT", "4"),
    );
    assert_eq!(rc, 0, "{err}");
    assert_eq!(json_of(&out)["dataset_complete"], true);
    let success = read_json(&ds.join("_SUCCESS"));
    assert_eq!(success["rows"], 120);
    assert_eq!(success["parts"].as_array().unwrap().len(), 4);

    let (ids, got) = read_vectors(&parts(&ds, 4));
    assert_eq!(ids, want_ids, "every row exactly once, in input order");
    assert_eq!(got, want, "vectors identical to the unsharded run");

    // A retried shard rewrites only its own part, to the same bytes.
    let before: Vec<Vec<u8>> = parts(&ds, 4)
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    let (rc, _, err) = embed(
        d.path(),
        &[
            &m,
            &"--input in-*.csv --output ds/ --shard 1/4 --carry label",
        ],
    );
    assert_eq!(rc, 0, "{err}");
    let after: Vec<Vec<u8>> = parts(&ds, 4)
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    assert_eq!(before, after);

    // The dataset is an input: embed reads it as one table, and train takes it as a task's data.
    // With an empty cache, its vectors are taken as they are (checked by checksum), not
    // embedded again.
    let (rc, out, err) = embed(
        d.path(),
        &[&m, &"--input ds --output again.npy --cache-dir fresh"],
    );
    assert_eq!(rc, 0, "{err}");
    let summary = json_of(&out);
    assert_eq!(summary["imported_from_dataset"], 120, "{summary}");
    assert_eq!(summary["embedded"], 0, "{summary}");
    let (_, _, flat) = read_npy(&d.path().join("again.npy"));
    assert_eq!(flat, want.concat());
    // A part changed after the fact is refused by name.
    let part1 = ds.join("part-00001-of-00004.parquet");
    let good = std::fs::read(&part1).unwrap();
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 1;
    std::fs::write(&part1, &bad).unwrap();
    let (rc, _, err) = embed(
        d.path(),
        &[&m, &"--input ds --output bad.npy --cache-dir fresh2"],
    );
    assert_eq!(rc, 3, "{err}");
    assert!(
        err.contains("part-00001-of-00004.parquet") && err.contains("checksum"),
        "{err}"
    );
    std::fs::write(&part1, &good).unwrap();
    std::fs::write(
        d.path().join("run.toml"),
        format!(
            "model = \"{}\"\n[train]\nepochs = 2\n[[tasks]]\nname = \"s\"\ntrain = \"ds\"\ntest = \"in-2.csv\"\n",
            model.display()
        ),
    )
    .unwrap();
    let (rc, out, err) = code(&mut fl(
        d.path(),
        &d.path().join("cache"),
        &[&"train --json --no-progress --run run.toml"],
    ));
    assert_eq!(rc, 0, "{err}");
    assert_eq!(
        json_of(&out)["tasks"][0]["train_rows"].as_u64().unwrap()
            + json_of(&out)["tasks"][0]["dev_rows"].as_u64().unwrap(),
        120
    );
}

#[test]
fn many_files_give_whole_files_to_each_shard() {
    let Some(model) = model_dir() else { return };
    let d = tempfile::tempdir().unwrap();
    inputs(d.path());
    for i in 0..2 {
        let (rc, out, err) = embed(
            d.path(),
            &[
                &"--model",
                &model,
                &"--input",
                &d.path(),
                &"--output ds/ --shard",
                &format!("{i}/2"),
            ],
        );
        assert_eq!(rc, 0, "{err}");
        // Three files, two shards: one file, then two.
        assert_eq!(json_of(&out)["rows"], if i == 0 { 40 } else { 80 });
    }
    let (ids, _) = read_vectors(&parts(&d.path().join("ds"), 2));
    assert_eq!(ids.len(), 120);
    assert_eq!(ids[0], "row000");
    assert_eq!(ids[119], "row119");
}

#[test]
fn bad_shard_requests_are_refused_and_write_nothing() {
    let Some(model) = model_dir() else { return };
    let d = tempfile::tempdir().unwrap();
    inputs(d.path());
    let m = args(&[&"--model", &model]);
    let base = args(&[&m, &"--input in-*.csv --output ds/"]);
    let refused = |extra: &[&str], rc: i32, says: &str| {
        let (c, _, err) = code(embed_cmd_in(d.path(), &[&base]).args(extra));
        assert_eq!(c, rc, "{extra:?}: {err}");
        assert!(err.contains(says), "{extra:?}: {err}");
    };
    refused(&["--shard", "4/4"], 2, "outside 0..4");
    refused(&["--shard", "0/0"], 2, "at least 1");
    refused(&["--shard", "2"], 2, "count N is missing");
    refused(&["--shards", "4"], 2, "without a shard index");
    assert!(
        !d.path().join("ds").exists(),
        "nothing written for a refused request"
    );
    // --shard with a single-file output.
    let (c, _, err) = embed(
        d.path(),
        &[&m, &"--input in-*.csv --output v.npy --shard 0/2"],
    );
    assert_eq!(c, 2, "{err}");
    assert!(err.contains("--output v.npy/"), "{err}");
    // A glob matching nothing.
    let (c, _, err) = embed(d.path(), &[&m, &"--input nope-*.csv --output v.npy"]);
    assert_eq!(c, 3, "{err}");
    assert!(err.contains("matches no file"), "{err}");

    // A folder with parts of another shard count, or of another model (another max length is
    // another cache key), is refused before embedding; its parts are left as they were.
    let (c, _, err) = embed(d.path(), &[&base, &"--shard 0/2"]);
    assert_eq!(c, 0, "{err}");
    let part = d.path().join("ds/part-00000-of-00002.parquet");
    let bytes = std::fs::read(&part).unwrap();
    refused(&["--shard", "1/3"], 2, "a part of a 2-shard run");
    refused(
        &["--shard", "1/2", "--max-length", "16"],
        2,
        "another model or settings",
    );
    assert_eq!(std::fs::read(&part).unwrap(), bytes);
    assert!(!d.path().join("ds/part-00001-of-00002.parquet").exists());
    // A folder frostline did not write is never used as a dataset.
    std::fs::create_dir(d.path().join("mine")).unwrap();
    std::fs::write(d.path().join("mine/notes.txt"), "mine").unwrap();
    let (c, _, err) = embed(d.path(), &[&m, &"--input in-0.csv --output mine/"]);
    assert_eq!(c, 2, "{err}");
    assert!(err.contains("was not written by frostline"), "{err}");
    let names: Vec<_> = std::fs::read_dir(d.path().join("mine"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["notes.txt"]);
}
