//! Every kind of Parquet file frostline writes — `embed` (file and dataset part), `predict`
//! (with list and struct columns), `eval`, `compare` and `mteb` reports — read by the oldest
//! readers promised (pyarrow 14 and pandas 2.1, from scripts/setup_compat.sh) and by current
//! polars, with the same rows and columns.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use polars::prelude::*;

fn compat_python() -> PathBuf {
    venv_python(
        "FROSTLINE_COMPAT_VENV",
        "compat-venv",
        "scripts/setup_compat.sh (scripts/test.sh does)",
    )
}

/// Reads each file with pyarrow 14 and pandas 2.1; returns "rows cols" per file.
const READ: &str = r#"
import sys, pyarrow, pandas, pyarrow.parquet as pq
assert pyarrow.__version__.startswith("14."), pyarrow.__version__
assert pandas.__version__.startswith("2.1."), pandas.__version__
for path in sys.argv[1:]:
    t = pq.read_table(path)
    df = pandas.read_parquet(path)
    assert df.shape == (t.num_rows, t.num_columns), (path, df.shape)
    for f in t.schema:
        assert "view" not in str(f.type), (path, f)
    print(t.num_rows, t.num_columns)
"#;

/// Reads a dataset folder as one table with pyarrow.dataset 14 and pandas 2.1 (the folder
/// itself) and polars (its `*.parquet`: polars refuses any folder that holds a file other than
/// Parquet, even Spark's `_SUCCESS`); prints the three row counts.
const READ_FOLDER: &str = r#"
import sys, pandas, polars, pyarrow.dataset as ds
d = sys.argv[1]
print(ds.dataset(d, format="parquet").to_table().num_rows, len(pandas.read_parquet(d)),
      polars.read_parquet(d + "/*.parquet").height)
"#;

/// Runs the binary with the arguments `parts` make and the cache `cache`; it must succeed.
fn ok(parts: &[&dyn AsArgs], cache: &Path) {
    let (ok, out, err) = run(frostline(parts).env("FROSTLINE_CACHE", cache));
    assert!(ok, "{out}{err}");
}

#[test]
fn every_parquet_output_reads_in_pyarrow_14_pandas_2_1_and_current_polars() {
    let Some(model) = model_dir() else { return };
    let py = compat_python();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cache = d.join("cache");
    let m = model.to_str().unwrap();
    let goemotions = repo().join("data/goemotions");
    let input = head_rows("data/goemotions/test.csv", 40, &d.join("in.csv"));

    let embed = args(&[&"embed --no-progress --model", &model, &"--input", &input]);
    ok(&[&embed, &"--output", &d.join("e.parquet")], &cache);
    ok(
        &[&embed, &"--output", &format!("{}/ds/", d.display())],
        &cache,
    );

    let run_toml = d.join("run.toml");
    std::fs::write(
        &run_toml,
        format!(
            "model = \"{m}\"\n[train]\nepochs = 2\n[[tasks]]\nname = \"emotion\"\nkind = \"multi-label\"\nlabel_column = \"labels\"\ntrain = \"{g}/train.csv\"\ndev = \"{g}/dev.csv\"\ntest = \"{g}/test.csv\"\n[[tasks]]\nname = \"sentiment\"\ntrain = \"{r}/data/sst2/train.csv\"\ntest = \"{r}/data/sst2/test.csv\"\n",
            g = goemotions.display(),
            r = repo().display()
        ),
    )
    .unwrap();
    let ck = d.join("ck");
    ok(
        &[&"train --no-progress --run", &run_toml, &"--out", &ck],
        &cache,
    );
    ok(
        &[
            &"predict --no-progress --all-probs --top-k 2 --input",
            &input,
            &"--checkpoint",
            &ck,
            &"--output",
            &d.join("p.parquet"),
        ],
        &cache,
    );
    ok(&[&"eval --no-progress --checkpoint", &ck], &cache);
    let compare = "compare --no-progress --no-frost-line --run";
    ok(&[&compare, &run_toml, &"--out", &d.join("cmp")], &cache);
    let sst = repo().join("data/sst2");
    ok(
        &[
            &"mteb --no-progress --model",
            &model,
            &"--experiments 2 --train",
            &sst.join("train.csv"),
            &"--test",
            &sst.join("test.csv"),
            &"--out",
            &d.join("mteb"),
        ],
        &cache,
    );

    let mut files: Vec<PathBuf> = vec![
        d.join("e.parquet"),
        d.join("ds/part-00000-of-00001.parquet"),
        d.join("p.parquet"),
        d.join("cmp/compare.parquet"),
        d.join("mteb/mteb.parquet"),
    ];
    for t in ["overall", "per_class", "confusion", "errors"] {
        files.push(ck.join(format!("eval-test/{t}.parquet")));
    }
    let out = Command::new(&py)
        .arg("-c")
        .arg(READ)
        .args(&files)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (f, line) in files.iter().zip(stdout.lines()) {
        let df = read_parquet(f);
        assert_eq!(
            line,
            format!("{} {}", df.height(), df.width()),
            "{}",
            f.display()
        );
        assert!(df.height() > 0, "{}", f.display());
    }
    assert_eq!(stdout.lines().count(), files.len());
    // The dataset folder reads as one table: its sidecars and records are named to be skipped.
    let out = Command::new(&py)
        .arg("-c")
        .arg(READ_FOLDER)
        .arg(d.join("ds"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "40 40 40");
    // The list and struct columns come back as such in polars.
    let p = read_parquet(&d.join("p.parquet"));
    assert!(matches!(
        p.column("emotion_labels").unwrap().dtype(),
        DataType::List(_)
    ));
    assert!(matches!(
        p.column("sentiment_probs").unwrap().dtype(),
        DataType::Struct(_)
    ));
    let e = read_parquet(&d.join("e.parquet"));
    assert!(matches!(
        e.column("embedding").unwrap().dtype(),
        DataType::Array(_, 384)
    ));
}
