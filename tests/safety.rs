//! What frostline promises about the user's data: it never replaces a folder it did not write,
//! never writes over its own input, never leaves zero checkpoints, never trusts a file it reads
//! (checksums, checked headers, contained decoder panics), and refuses settings and inputs that
//! cannot be right — each with a clear error and nothing lost. One test per line of the "never
//! lose data" issue (numbers in the comments).

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::*;

/// A fresh folder `d` with the cache `d/cache` and a trained frozen-backbone checkpoint of the
/// small two-task project in `d/ck`: (the folder, the model, the cache, the run file, the
/// checkpoint); `None` where the model tests are skipped.
fn trained() -> Option<(tempfile::TempDir, PathBuf, PathBuf, PathBuf, PathBuf)> {
    let model = model_dir()?;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cache = d.join("cache");
    let run_toml = project(&d.join("p"), &model);
    let ck = d.join("ck");
    let train = args(&[&"train --no-progress --run", &run_toml, &"--out ck"]);
    let (ok, _, err) = run(&mut fl(d, &cache, &[&train]));
    assert!(ok, "{err}");
    Some((dir, model, cache, run_toml, ck))
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// A PID no process can have (above the kernel's largest pid_max).
const DEAD: u32 = 4_194_304 + 99;

#[test]
fn outputs_replace_only_folders_frostline_wrote_and_never_an_input() {
    let Some((dir, model, cache, run_toml, ck)) = trained() else {
        return;
    };
    let d = dir.path();
    let train = |more: &str| fl(d, &cache, &[&"train --no-progress --run", &run_toml, &more]);

    // (1) A folder the user made is never replaced without --force.
    std::fs::create_dir(d.join("x")).unwrap();
    std::fs::write(d.join("x/keep.txt"), "keep").unwrap();
    let (c, _, err) = code(&mut train("--out x"));
    assert_eq!(c, 2, "{err}");
    assert!(
        err.contains("was not written by frostline (it holds keep.txt)") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(files_in(&d.join("x")), ["keep.txt"]);
    let (c, _, err) = code(&mut fl(
        d,
        &cache,
        &[&"eval --no-progress --checkpoint ck --out x"],
    ));
    assert_eq!(c, 2, "{err}");
    assert_eq!(files_in(&d.join("x")), ["keep.txt"]);
    // … nor the checkpoint being read, nor a folder holding it.
    let eval_over_ck = "eval --no-progress --checkpoint ck --out ck --force";
    let (c, _, err) = code(&mut fl(d, &cache, &[&eval_over_ck]));
    assert_eq!(c, 2, "{err}");
    assert!(err.contains("which this command reads"), "{err}");
    assert!(ck.join("heads.safetensors").is_file());
    // A checkpoint over a checkpoint is fine; --force replaces the user's folder when asked.
    let (ok, _, err) = run(&mut train("--out ck"));
    assert!(ok, "{err}");
    let (ok, _, err) = run(&mut train("--out x --force"));
    assert!(ok, "{err}");
    assert!(!d.join("x/keep.txt").exists() && d.join("x/manifest.json").is_file());

    // (2) An output that is the input — by name, through a link or `..` — is refused, untouched.
    let input = d.join("p/data/s-test.csv");
    let before = std::fs::read(&input).unwrap();
    std::os::unix::fs::symlink(&input, d.join("link.csv")).unwrap();
    for out in ["p/data/s-test.csv", "link.csv", "p/runs/../data/s-test.csv"] {
        let predict = "predict --no-progress --checkpoint ck --input p/data/s-test.csv --output";
        let (c, _, err) = code(&mut fl(d, &cache, &[&predict, &out]));
        assert_eq!(c, 2, "{out}: {err}");
        assert!(err.contains("is the input"), "{err}");
    }
    std::fs::copy(d.join("p/data/s-test.csv"), d.join("u.parquet.csv")).unwrap();
    let (ok, _, err) = run(&mut embed_cmd(&model, &input, &d.join("u.parquet"), &cache));
    assert!(ok, "{err}");
    let (c, _, err) = code(&mut embed_cmd(
        &model,
        &d.join("u.parquet"),
        &d.join("u.parquet"),
        &cache,
    ));
    assert_eq!(c, 2, "{err}");
    assert_eq!(std::fs::read(&input).unwrap(), before);
}

#[test]
fn a_kill_at_any_moment_leaves_a_whole_checkpoint_and_the_next_run_cleans_up() {
    let Some((dir, model, cache, run_toml, ck)) = trained() else {
        return;
    };
    let d = dir.path();
    let train = |more: &str| fl(d, &cache, &[&"train --no-progress --run", &run_toml, &more]);
    std::fs::write(d.join("new.txt"), "hello\n").unwrap();
    let usable = |ck: &Path| {
        let predict = args(&[&"predict --no-progress --checkpoint", &ck]);
        run(&mut fl(
            d,
            &cache,
            &[&predict, &"--input new.txt --output o.csv"],
        ))
    };

    // (3) SIGKILL at many moments of a run that replaces the checkpoint: every time, `ck` is a
    // whole, verified checkpoint (the old one or the new one), never missing.
    for ms in [50u64, 150, 300, 500, 800, 1200, 1800, 2600] {
        let mut child = train("--out ck --set train.epochs=4")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(ms));
        let _ = child.kill();
        let _ = child.wait();
        let (ok, _, err) = usable(&ck);
        assert!(ok, "killed after {ms} ms: {err}");
    }
    // (5) The next run removes what killed runs left (temp folders, lock files of dead runs).
    let (ok, _, err) = run(&mut train("--out ck"));
    assert!(ok, "{err}");
    let left: Vec<String> = files_in(d)
        .into_iter()
        .filter(|n| n.starts_with(".ck.tmp") || n.starts_with(".ck.old"))
        .collect();
    assert!(left.is_empty(), "{left:?}");

    // (3) The state a kill between two renames leaves (the old folder aside, the new one in a
    // temp): the next run that reads or writes the checkpoint puts the old one back.
    let aside = d.join(format!(".ck.old-{DEAD}"));
    std::fs::rename(&ck, &aside).unwrap();
    std::fs::create_dir(d.join(format!(".ck.tmp-{DEAD}"))).unwrap();
    let (ok, _, err) = usable(&ck);
    assert!(ok && err.contains("restored"), "{err}");
    assert!(!aside.exists() && !d.join(format!(".ck.tmp-{DEAD}")).exists());

    // (5) A partial output file of a killed embed is removed by the next write beside it.
    let stale = d.join(format!(".o.parquet.tmp-{DEAD}"));
    std::fs::write(&stale, vec![0u8; 1000]).unwrap();
    let (ok, _, err) = run(&mut embed_cmd(
        &model,
        &d.join("new.txt"),
        &d.join("o.parquet"),
        &cache,
    ));
    assert!(ok, "{err}");
    assert!(!stale.exists(), "{err}");
}

#[test]
fn a_second_writer_to_the_same_checkpoint_is_told_who_holds_it() {
    let Some((dir, _, cache, run_toml, _)) = trained() else {
        return;
    };
    let d = dir.path();
    let train = |more: &str| fl(d, &cache, &[&"train --no-progress --run", &run_toml, &more]);
    // (4) A long run holds the destination; a second one is refused at once, naming its PID.
    let mut first = train("--out ck --set train.epochs=400 --set train.patience=0")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lock = d.join(".ck.lock");
    for _ in 0..200 {
        if std::fs::read_to_string(&lock).is_ok_and(|s| !s.is_empty()) {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let (c, _, err) = code(&mut train("--out ck"));
    let _ = first.kill();
    let _ = first.wait();
    assert_eq!(c, 2, "{err}");
    assert!(
        err.contains(&format!(
            "being written by another frostline run (PID {})",
            first.id()
        )),
        "{err}"
    );
}

#[test]
fn damaged_checkpoints_and_cache_chunks_are_caught_never_trusted() {
    let Some((dir, model, cache, run_toml, ck)) = trained() else {
        return;
    };
    let d = dir.path();
    std::fs::write(d.join("new.txt"), "hello\n").unwrap();

    // (6) Four bytes written into the heads: predict, eval and train --from all refuse, naming it.
    let bad = d.join("bad");
    linked_copy(&ck, &bad, false);
    std::fs::remove_file(bad.join("heads.safetensors")).unwrap();
    let mut bytes = std::fs::read(ck.join("heads.safetensors")).unwrap();
    let n = bytes.len();
    bytes[n - 4..].copy_from_slice(&[1, 2, 3, 4]);
    std::fs::write(bad.join("heads.safetensors"), bytes).unwrap();
    for argv in [
        args(&[&"predict --checkpoint bad --input new.txt --output o.csv"]),
        args(&[&"eval --checkpoint bad --out e"]),
        args(&[&"train --run", &run_toml, &"--from bad --out ck2"]),
    ] {
        let (c, _, err) = code(&mut fl(d, &cache, &[&argv]));
        assert_eq!(c, 3, "{argv:?}: {err}");
        assert!(
            err.contains("heads.safetensors") && err.contains("checksum mismatch"),
            "{err}"
        );
    }
    // (17) A truncated encoder: export names it, and leaves no --out folder.
    let (ok, _, err) = run(&mut fl(
        d,
        &cache,
        &[
            &"train --no-progress --run",
            &run_toml,
            &"--regime frost-line=5 --max-length 32 --out frost",
        ],
    ));
    assert!(ok, "{err}");
    let enc = d.join("frost/encoder.safetensors");
    let bytes = std::fs::read(&enc).unwrap();
    std::fs::write(&enc, &bytes[..bytes.len() / 2]).unwrap();
    let (c, _, err) = code(&mut fl(
        d,
        &cache,
        &[&"export --checkpoint frost --out exported"],
    ));
    assert_eq!(c, 3, "{err}");
    assert!(
        err.contains("encoder.safetensors") && err.contains("checksum mismatch"),
        "{err}"
    );
    assert!(
        !err.contains("Traceback") && !d.join("exported").exists(),
        "{err}"
    );

    // (9) A manifest that lists no task.
    let empty = d.join("empty");
    linked_copy(&ck, &empty, false);
    std::fs::remove_file(empty.join("manifest.json")).unwrap();
    std::fs::copy(ck.join("manifest.json"), empty.join("manifest.json")).unwrap();
    edit_manifest(&empty.join("manifest.json"), |m| {
        m["tasks"] = serde_json::json!([])
    });
    let predict = "predict --checkpoint empty --input new.txt --output o.csv";
    let (c, _, err) = code(&mut fl(d, &cache, &[&predict]));
    assert_eq!(c, 3, "{err}");
    assert!(err.contains("lists no task"), "{err}");

    // (7) A chunk whose row count overflows every size: quarantined on the next run, no panic.
    let entry = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            std::fs::read_to_string(p.join("manifest.json"))
                .is_ok_and(|m| m.contains("\"sentence\""))
        })
        .unwrap();
    let chunk = std::fs::read_dir(entry.join("chunks"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut bytes = std::fs::read(&chunk).unwrap();
    bytes[16..24].copy_from_slice(&((1u64 << 60) + 20).to_le_bytes());
    std::fs::write(&chunk, bytes).unwrap();
    let (c, _, err) = code(&mut embed_cmd(
        &model,
        &d.join("p/data/s-test.csv"),
        &d.join("o.npy"),
        &cache,
    ));
    assert_eq!(c, 0, "{err}");
    assert!(
        err.contains("damaged cache chunk set aside")
            && err.contains("too short for its header's row count"),
        "{err}"
    );

    // (16) A garbage entry manifest is set aside like a damaged chunk, and the run goes on.
    std::fs::write(entry.join("manifest.json"), "{ not json").unwrap();
    let (c, _, err) = code(&mut embed_cmd(
        &model,
        &d.join("new.txt"),
        &d.join("o2.npy"),
        &cache,
    ));
    assert_eq!(c, 0, "{err}");
    assert!(entry.join("quarantine/manifest.json").is_file(), "{err}");
}

#[test]
fn inputs_that_cannot_be_right_are_clear_errors() {
    let Some(model) = model_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cache = d.join("cache");
    let embed = |input: &str| {
        code(&mut embed_cmd(
            &model,
            &d.join(input),
            &d.join("o.npy"),
            &cache,
        ))
    };

    // (14) Non-string texts name the row and the type; numbers are fine as labels elsewhere.
    std::fs::write(
        d.join("list.jsonl"),
        "{\"text\": \"fine\"}\n{\"text\": [\"a\", \"b\"]}\n",
    )
    .unwrap();
    let (c, _, err) = embed("list.jsonl");
    assert_eq!(c, 3, "{err}");
    assert!(
        err.contains("row 2") && err.contains("is a JSON array, not a string"),
        "{err}"
    );
    std::fs::write(d.join("num.jsonl"), "{\"text\": 5}\n").unwrap();
    let (c, _, err) = embed("num.jsonl");
    assert_eq!(c, 3, "{err}");
    assert!(err.contains("is a number, not a string"), "{err}");
    // A duplicate CSV header is refused; a byte-order mark is accepted in CSV and JSONL alike.
    std::fs::write(d.join("dup.csv"), "text,text\na,b\n").unwrap();
    let (c, _, err) = embed("dup.csv");
    assert_eq!(c, 3, "{err}");
    assert!(err.contains("duplicate column name \"text\""), "{err}");
    std::fs::write(d.join("bom.jsonl"), "\u{feff}{\"text\": \"hello\"}\n").unwrap();
    assert_eq!(embed("bom.jsonl").0, 0);
    std::fs::write(d.join("bom.csv"), "\u{feff}text\nhello\n").unwrap();
    assert_eq!(embed("bom.csv").0, 0);
    // A Parquet list<string> column named as the text: its type, not "no rows".
    let (ok, _, err) = run(&mut embed_cmd(
        &model,
        &d.join("bom.csv"),
        &d.join("v.parquet"),
        &cache,
    ));
    assert!(ok, "{err}");
    let (c, _, err) = code(
        embed_cmd(&model, &d.join("v.parquet"), &d.join("o.npy"), &cache)
            .args(["--text-column", "embedding"]),
    );
    assert_eq!(c, 3, "{err}");
    assert!(
        err.contains("column \"embedding\" is") && err.contains("not text"),
        "{err}"
    );
    // (8) A damaged Parquet file is an error naming the file, never a panic.
    let bytes = std::fs::read(d.join("v.parquet")).unwrap();
    let mut damaged = bytes.clone();
    let n = damaged.len();
    for b in &mut damaged[n / 3..n - 8] {
        *b ^= 0x5a;
    }
    std::fs::write(d.join("bad.parquet"), damaged).unwrap();
    let (c, _, err) = embed("bad.parquet");
    assert_eq!(c, 3, "{err}");
    assert!(
        err.contains("bad.parquet") && !err.contains("panicked"),
        "{err}"
    );

    // (16) A folder as input: one clear message, the OS error not repeated.
    std::fs::create_dir(d.join("folder.csv")).unwrap();
    let (c, _, err) = embed("folder.csv");
    assert_eq!(c, 3, "{err}");
    assert!(err.contains("is a folder with no .csv"), "{err}");
    // (16) An empty FROSTLINE_CACHE means unset: nothing is written into the current directory.
    let home = d.join("home");
    std::fs::create_dir(&home).unwrap();
    std::fs::create_dir(d.join("cwd")).unwrap();
    std::fs::write(d.join("cwd/in.txt"), "hello\n").unwrap();
    let mut cmd = frostline(&[
        &"embed --no-progress --model",
        &model,
        &"--input in.txt --output o.npy",
    ]);
    // The venv stays where it is (only the cache's default moves with HOME).
    let venv = std::env::var_os("FROSTLINE_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/frostline/venv")
        });
    cmd.current_dir(d.join("cwd"))
        .env("FROSTLINE_CACHE", "")
        .env("HOME", &home)
        .env("FROSTLINE_VENV", venv);
    let (ok, _, err) = run(&mut cmd);
    assert!(ok, "{err}");
    assert_eq!(files_in(&d.join("cwd")), ["in.txt", "o.npy"]);
    assert!(home.join(".cache/frostline/embeddings").is_dir());

    // (11) A folder with no pooling config: doctor warns and embed says what was assumed.
    let bare = d.join("bare-model");
    linked_copy(&model, &bare, false);
    std::fs::remove_file(bare.join("modules.json")).unwrap();
    let (_, out, _) = run(&mut frostline(&[&"doctor --model", &bare]));
    assert!(
        out.contains("pooling: mean (from assumed") && out.contains("WARNING: no pooling config"),
        "{out}"
    );
    let (ok, _, err) = run(&mut embed_cmd(
        &bare,
        &d.join("bom.csv"),
        &d.join("b.npy"),
        &cache,
    ));
    assert!(ok && err.contains("pooling mean was assumed"), "{err}");
}

#[test]
fn train_says_when_dev_or_test_labels_never_occur_in_train() {
    let Some(model) = model_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cache = d.join("cache");
    let run_toml = project(&d.join("p"), &model);
    let train = args(&[&"train --no-progress --run", &run_toml, &"--out ck"]);
    // (15) A test file whose labels are all unknown: refused before training (every row would
    // be an error), naming both label sets; nothing is written.
    std::fs::write(
        d.join("p/data/s-test.csv"),
        "text,label\na fine film,wonderful\nbad,dreadful\n",
    )
    .unwrap();
    let (c, _, err) = code(&mut fl(d, &cache, &[&train]));
    assert_eq!(c, 3, "{err}");
    assert!(
        err.contains("s-test.csv")
            && err.contains("none of the 2 test rows has labels that occur in train")
            && err
                .contains("\"dreadful\", \"wonderful\" here; train has \"negative\", \"positive\""),
        "{err}"
    );
    assert!(!d.join("ck").exists());
    // Some unknown: trained, and the unknown ones are counted and named.
    std::fs::write(
        d.join("p/data/s-test.csv"),
        "text,label\na fine film,positive\nbad,dreadful\n",
    )
    .unwrap();
    let (ok, _, err) = run(&mut fl(d, &cache, &[&train]));
    assert!(ok, "{err}");
    assert!(
        err.contains(
            "warning: task \"sentiment\": 1 of 2 test rows have labels that never occur in train (dreadful)"
        ),
        "{err}"
    );
}

/// Runs the binary as the unprivileged user `nobody` (root ignores file modes, so a read-only
/// cache or model folder can only be tried as another user).
fn as_nobody(parts: &[&dyn AsArgs], cwd: &Path, cache: &Path) -> (i32, String, String) {
    let mut cmd = std::process::Command::new("setpriv");
    cmd.args(args(&[&"--reuid 65534 --regid 65534 --clear-groups --"]))
        .arg(env!("CARGO_BIN_EXE_frostline"))
        .args(args(parts))
        .current_dir(cwd)
        .env("FROSTLINE_CACHE", cache)
        .env("HOME", cwd);
    code(&mut cmd)
}

fn open_to_all(p: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o777)).unwrap();
}

#[test]
fn a_read_only_cache_serves_what_it_holds_and_a_read_only_model_folder_is_named() {
    let Some(model) = model_dir() else { return };
    // Only root can switch to another user; anyone else gets no different rights by trying.
    assert!(
        unsafe { libc::geteuid() } == 0 || std::env::var_os("FROSTLINE_NOT_ROOT").is_some(),
        "this test runs as root (CI does); set FROSTLINE_NOT_ROOT=1 to run it as a normal user"
    );
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    open_to_all(d);
    let cache = d.join("cache");
    std::fs::write(d.join("in.txt"), "hello\nworld\n").unwrap();
    let (ok, _, err) = run(&mut embed_cmd(
        &model,
        &d.join("in.txt"),
        &d.join("first.npy"),
        &cache,
    ));
    assert!(ok, "{err}");
    // The cache (owned by root, 755) is read-only to nobody; the work folder is writable.
    let work = d.join("work");
    std::fs::create_dir(&work).unwrap();
    open_to_all(&work);
    std::fs::copy(d.join("in.txt"), work.join("in.txt")).unwrap();
    let embed = args(&[&"embed --no-progress --model", &model]);
    let (c, _, err) = as_nobody(&[&embed, &"--input in.txt --output o.npy"], &work, &cache);
    assert_eq!(c, 0, "(16) every vector is cached: {err}");
    assert_eq!(
        std::fs::read(work.join("o.npy")).unwrap(),
        std::fs::read(d.join("first.npy")).unwrap()
    );
    std::fs::write(work.join("more.txt"), "something new\n").unwrap();
    let (c, _, err) = as_nobody(&[&embed, &"--input more.txt --output o.npy"], &work, &cache);
    assert_eq!(c, 1, "{err}");
    assert!(
        err.contains("read-only, and 1 of these texts are not in it"),
        "{err}"
    );

    // (17) A model folder nobody may write, asked for a frost line whose graph is not there yet.
    let ro_model = d.join("ro-model");
    linked_copy(&model, &ro_model, false);
    let run_toml = project(&d.join("p"), &ro_model);
    for p in [d.join("p"), d.join("p/runs"), d.join("p/data")] {
        open_to_all(&p);
    }
    let (c, _, err) = as_nobody(
        &[
            &"train --no-progress --run",
            &run_toml,
            &"--regime frost-line=3 --max-length 32",
        ],
        &work,
        &work.join("cache2"),
    );
    assert_eq!(c, 4, "{err}");
    assert!(
        err.contains("cannot be written")
            && err.contains("model.cut-3.onnx")
            && !err.contains("Traceback"),
        "{err}"
    );
}
