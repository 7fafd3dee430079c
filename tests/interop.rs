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

fn cmd(args: &[&str], cache: &Path) -> Command {
    let mut c = frostline(args);
    c.env("FROSTLINE_CACHE", cache);
    c
}

fn ok(c: &mut Command) {
    let (ok, out, err) = run(c);
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
    head_rows("data/goemotions/test.csv", 40, &d.join("in.csv"));
    let input = d.join("in.csv");
    let input = input.to_str().unwrap();

    ok(cmd(
        &[
            "embed",
            "--no-progress",
            "--model",
            m,
            "--input",
            input,
            "--output",
        ],
        &cache,
    )
    .arg(d.join("e.parquet")));
    ok(cmd(
        &[
            "embed",
            "--no-progress",
            "--model",
            m,
            "--input",
            input,
            "--output",
        ],
        &cache,
    )
    .arg(format!("{}/ds/", d.display())));

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
    ok(cmd(&["train", "--no-progress", "--run"], &cache)
        .arg(&run_toml)
        .arg("--out")
        .arg(&ck));
    ok(cmd(
        &[
            "predict",
            "--no-progress",
            "--all-probs",
            "--top-k",
            "2",
            "--input",
            input,
        ],
        &cache,
    )
    .arg("--checkpoint")
    .arg(&ck)
    .arg("--output")
    .arg(d.join("p.parquet")));
    ok(cmd(&["eval", "--no-progress", "--checkpoint"], &cache).arg(&ck));
    ok(cmd(
        &["compare", "--no-progress", "--no-frost-line", "--run"],
        &cache,
    )
    .arg(&run_toml)
    .arg("--out")
    .arg(d.join("cmp")));
    let sst = repo().join("data/sst2");
    ok(cmd(
        &["mteb", "--no-progress", "--model", m, "--experiments", "2"],
        &cache,
    )
    .arg("--train")
    .arg(sst.join("train.csv"))
    .arg("--test")
    .arg(sst.join("test.csv"))
    .arg("--out")
    .arg(d.join("mteb")));

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
        let df = ParquetReader::new(std::fs::File::open(f).unwrap())
            .finish()
            .unwrap();
        assert_eq!(
            line,
            format!("{} {}", df.height(), df.width()),
            "{}",
            f.display()
        );
        assert!(df.height() > 0, "{}", f.display());
    }
    assert_eq!(stdout.lines().count(), files.len());
    // The list and struct columns come back as such in polars.
    let p = ParquetReader::new(std::fs::File::open(d.join("p.parquet")).unwrap())
        .finish()
        .unwrap();
    assert!(matches!(
        p.column("emotion_labels").unwrap().dtype(),
        DataType::List(_)
    ));
    assert!(matches!(
        p.column("sentiment_probs").unwrap().dtype(),
        DataType::Struct(_)
    ));
    let e = ParquetReader::new(std::fs::File::open(d.join("e.parquet")).unwrap())
        .finish()
        .unwrap();
    assert!(matches!(
        e.column("embedding").unwrap().dtype(),
        DataType::Array(_, 384)
    ));
}
