//! scripts/export_onnx.py on hostile input: pytorch_model.bin files whose tensor views leave
//! their storage, whose members expand without bound or are devices, whose pickles are
//! malformed; links that lead out of the model folder; JSON and vocab files that are not what
//! they claim; --cut-at into a folder the exporter never wrote. Each is refused with one line
//! `export_onnx: error: …` naming the file, never a traceback, a crash or a file read past its
//! end. The crafted archives are written by scripts/fuzz_torch_bin.py's torch-free writer, whose
//! fuzz loop also runs here for a few hundred cases.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn py() -> PathBuf {
    venv_python("FROSTLINE_VENV", "venv", "scripts/setup.sh")
}

/// Runs `cmd` (output to files, so nothing blocks on a full pipe), killed after `limit`:
/// (exit code, -1 for a signal or a timeout; stdout; stderr).
fn run_for(cmd: &mut Command, limit: Duration) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let (o, e) = (dir.path().join("out"), dir.path().join("err"));
    let mut child = cmd
        .current_dir(repo())
        .env("PYTHONDONTWRITEBYTECODE", "1") // no __pycache__ left in scripts/
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&o).unwrap())
        .stderr(std::fs::File::create(&e).unwrap())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let read = |p: &Path| String::from_utf8_lossy(&std::fs::read(p).unwrap()).into_owned();
    let code = status.and_then(|s| s.code()).unwrap_or(-1);
    (code, read(&o), read(&e))
}

fn export_to(src: &Path, out: &Path, extra: &[&str]) -> (i32, String, String) {
    let mut cmd = Command::new(py());
    cmd.arg(repo().join("scripts/export_onnx.py"))
        .args(args(&[&"--model", &src, &"--output", &out]))
        .args(extra);
    run_for(&mut cmd, Duration::from_secs(120))
}

/// A refusal as it must look: exit 2, one line on stderr naming what is wrong, no traceback.
fn assert_refused(what: &str, (code, out, err): &(i32, String, String), needles: &[&str]) {
    let all = format!("{out}{err}");
    assert_eq!(*code, 2, "{what}: exit {code}: {all}");
    assert!(!all.contains("Traceback"), "{what}: {all}");
    let lines: Vec<&str> = err.trim().lines().collect();
    assert_eq!(lines.len(), 1, "{what}: not one line: {err}");
    assert!(
        lines[0].starts_with("export_onnx: error: "),
        "{what}: {err}"
    );
    for n in needles {
        assert!(err.contains(n), "{what}: {n:?} not in: {err}");
    }
}

/// Helpers for the crafting snippets: `tensor_bin` writes one view of one storage, `pickle_bin`
/// an archive around a raw data.pkl. The file to write is argv[1].
const PRELUDE: &str = r#"
import os, pickle, struct, sys, zipfile
sys.path.insert(0, "scripts")
from fuzz_torch_bin import Tensor, archive_members, torch_pickle, zip_bytes
out = sys.argv[1]
NAME = "embeddings.word_embeddings.weight"

def tensor_bin(size, stride, offset=0, numel=4, nbytes=None, key="0"):
    state = {NAME: Tensor(key, "FloatStorage", numel, offset, size, stride)}
    raw = bytes(range(nbytes if nbytes is not None else numel * 4))
    open(out, "wb").write(zip_bytes(archive_members(state, {"0": raw})))

def pickle_bin(pkl, storages={"0": bytes(16)}):
    members = {"archive/data.pkl": pkl, "archive/byteorder": b"little"}
    members.update({f"archive/data/{k}": v for k, v in storages.items()})
    open(out, "wb").write(zip_bytes(members))
"#;

fn craft(code: &str, out: &Path) {
    let mut cmd = Command::new(py());
    cmd.arg("-c").arg(format!("{PRELUDE}\n{code}")).arg(out);
    let (c, o, e) = run_for(&mut cmd, Duration::from_secs(120));
    assert_eq!(c, 0, "crafting failed: {code}\n{o}{e}");
}

/// A BERT folder of one tiny config.json and a crafted pytorch_model.bin.
fn bin_folder(root: &Path, name: &str, code: &str) -> PathBuf {
    let src = root.join(name);
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(
        src.join("config.json"),
        r#"{"model_type": "bert", "hidden_size": 4, "num_attention_heads": 1, "num_hidden_layers": 0}"#,
    )
    .unwrap();
    if !code.is_empty() {
        craft(code, &src.join("pytorch_model.bin"));
    }
    src
}

/// Exports each crafted folder and checks the refusal (and that nothing was written).
fn refuse_all(cases: &[(&str, &[&str])]) {
    let dir = tempfile::tempdir().unwrap();
    for (i, (code, needles)) in cases.iter().enumerate() {
        let src = bin_folder(dir.path(), &format!("m{i}"), code);
        let out = dir.path().join(format!("out{i}"));
        let got = export_to(&src, &out, &[]);
        let mut needles = needles.to_vec();
        let bin = src.join("pytorch_model.bin");
        let bin = bin.to_string_lossy();
        needles.push(&bin);
        assert_refused(code, &got, &needles);
        assert!(!out.exists(), "{code}: output written");
    }
}

#[test]
fn views_outside_their_storage_are_refused_before_a_byte_is_read() {
    refuse_all(&[
        // 64 floats from a 16-byte storage: heap bytes copied into the model before the fix.
        (
            "tensor_bin((64,), (1,))",
            &["reaches element 63, outside storage 0's 4 elements"],
        ),
        // Negative and huge strides: a segfault (exit 139) before the fix.
        (
            "tensor_bin((2,), (-1,), offset=1)",
            &["stride is -1; an integer in 0..2^48"],
        ),
        (
            "tensor_bin((2, 2), (1 << 40, 1))",
            &["outside storage 0's 4 elements"],
        ),
        ("tensor_bin((), (), offset=4)", &["reaches element 4"]),
        (
            "tensor_bin((4,), (1,), offset=-1)",
            &["storage offset is -1"],
        ),
        ("tensor_bin((True, 2), (2, 1))", &["size is True"]),
        ("tensor_bin((2.0,), (1,))", &["size is 2.0"]),
        (
            "tensor_bin((1 << 60,), (1,))",
            &["size is 1152921504606846976"],
        ),
        ("tensor_bin((1,) * 9, (1,) * 9)", &["at most 8 integers"]),
        ("tensor_bin((2, 2), (1,))", &["2 sizes but 1 strides"]),
        ("tensor_bin(5, (1,))", &["size is 5; a tuple"]),
        // A stride-0 view of one element as a 2^40-element tensor (a MemoryError before).
        (
            "tensor_bin((1 << 20, 1 << 20), (0, 0))",
            &["the tensors would take more than"],
        ),
    ]);
}

#[test]
fn an_empty_view_at_the_storage_end_still_reads() {
    // Size-0 views may start at the storage's end; they read nothing, so the export goes on to
    // the graph, which then misses its other weights.
    let dir = tempfile::tempdir().unwrap();
    let src = bin_folder(dir.path(), "m", "tensor_bin((0, 4), (4, 1), offset=4)");
    let got = export_to(&src, &dir.path().join("out"), &[]);
    assert_refused("empty", &got, &["embeddings.token_type_embeddings.weight"]);
}

#[test]
fn storage_bytes_and_keys_are_checked() {
    refuse_all(&[
        (
            "tensor_bin((2,), (1,), nbytes=10)",
            &["storage 0 holds 10 bytes, not a whole number of FloatStorage elements"],
        ),
        (
            "tensor_bin((2,), (1,), key='7')",
            &["storage 7 is 'archive/data/7', which is not in the archive"],
        ),
        (
            "tensor_bin((2,), (1,), key='../0')",
            &["a storage key is '../0'"],
        ),
    ]);
}

#[test]
fn malformed_pickles_are_one_clear_line() {
    refuse_all(&[
        (
            "pickle_bin(torch_pickle({NAME: Tensor('0', 'FloatStorage', 4, 0, (4,), (1,))})[:-5])",
            &["malformed pickle in data.pkl"],
        ),
        (
            "pickle_bin(b'')",
            &["malformed pickle in data.pkl (EOFError"],
        ),
        (
            "pickle_bin(pickle.dumps([1, 2], protocol=2))",
            &["holds a list, not a state dict"],
        ),
        (
            "pickle_bin(pickle.dumps({1: 2}, protocol=2))",
            &["a state dict key is 1, not a name"],
        ),
        (
            "pickle_bin(pickle.dumps({'a': 'b'}, protocol=2))",
            &["'a' is a str, not a tensor"],
        ),
        ("pickle_bin(b'\\x80\\x02\\xff.')", &["unknown opcode 0xff"]),
        // A 2-million-deep tuple as a dict key: hashing it overflowed the C stack (exit 139).
        (
            "pickle_bin(b'\\x80\\x02}N' + b'\\x85' * 2_000_000 + b'K\\x01s.')",
            &["uses a container as a dict key"],
        ),
        // LONG_BINPUT 2^32-1: the C unpickler sized its memo to 2^33 entries.
        (
            "pickle_bin(b'\\x80\\x02}r\\xff\\xff\\xff\\xff.')",
            &["no embeddings.* tensors"],
        ),
        // BYTEARRAY8 of 1 TiB: allocated before a byte is read.
        (
            "pickle_bin(b'\\x80\\x05\\x96' + struct.pack('<Q', 1 << 40) + b'.')",
            &["protocol 5 buffers"],
        ),
        (
            "pickle_bin(b'\\x80\\x02L' + b'9' * 5000 + b'L\\n.')",
            &["malformed pickle in data.pkl (ValueError"],
        ),
        (
            "pickle_bin(b'\\x80\\x02X\\x03\\x00\\x00\\x00abcQ.')",
            &["unexpected persistent id 'abc'"],
        ),
        (
            "pickle_bin(b'\\x80\\x02cbuiltins\\neval\\n.')",
            &["asks for builtins.eval", "nothing in the file is executed"],
        ),
        (
            "pickle_bin(b'\\x80\\x02ccollections\\nOrderedDict\\n]\\x85R.')",
            &["an OrderedDict is built from arguments"],
        ),
        (
            "pickle_bin(b'\\x80\\x02K\\x01K\\x02s.')",
            &["sets an item of something that is not a dict"],
        ),
        (
            "pickle_bin(b'not a zip', {}); open(out, 'wb').write(b'not a zip')",
            &["is not a zip archive"],
        ),
    ]);
}

#[test]
fn zip_bombs_devices_and_declared_sizes_are_refused() {
    refuse_all(&[
        // 512 MiB of zeros deflated into ~0.5 MiB: read whole before the fix.
        (
            r#"
state = {NAME: Tensor("0", "FloatStorage", 1, 0, (1,), (1,))}
with zipfile.ZipFile(out, "w") as z:
    z.writestr("archive/data.pkl", torch_pickle(state))
    info = zipfile.ZipInfo("archive/data/0")
    info.compress_type = zipfile.ZIP_DEFLATED
    with z.open(info, "w", force_zip64=True) as f:
        for _ in range(512):
            f.write(bytes(1 << 20))
"#,
            &["archive/data/0 declares 536870912 bytes", "zip bomb"],
        ),
        // A member that claims 3 GiB in the central directory.
        (
            r#"
tensor_bin((4,), (1,))
b = bytearray(open(out, "rb").read())
for i in range(len(b) - 4):
    if b[i:i + 4] == b"PK\x01\x02" and b"archive/data/0" in b[i + 46:i + 60]:
        b[i + 24:i + 28] = struct.pack("<I", 3 << 30)
open(out, "wb").write(b)
"#,
            &["archive/data/0 declares 3221225472 bytes"],
        ),
        // A FIFO blocked the reader for ever; a device never ends.
        ("os.mkfifo(out)", &["is not a regular file"]),
        (
            "os.symlink('/dev/zero', out)",
            &["links to /dev/zero, outside the model folder"],
        ),
    ]);
}

#[test]
fn links_that_leave_the_model_folder_are_refused() {
    let Some(model) = model_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("secret.txt"), "not for the output\n").unwrap();
    std::fs::create_dir_all(d.join("elsewhere")).unwrap();
    std::fs::write(d.join("elsewhere/config.json"), "{}").unwrap();
    for (i, (rel, target)) in [
        ("vocab.txt", d.join("secret.txt")),
        ("tokenizer.json", d.join("secret.txt")),
        ("config.json", d.join("elsewhere/config.json")),
        ("1_Pooling", d.join("elsewhere")),
    ]
    .iter()
    .enumerate()
    {
        let src = d.join(format!("src{i}"));
        linked_copy(&model, &src, false);
        let link = src.join(rel);
        if link.is_dir() {
            std::fs::remove_dir_all(&link).unwrap();
        } else {
            std::fs::remove_file(&link).unwrap();
        }
        std::os::unix::fs::symlink(target, &link).unwrap();
        let out = d.join(format!("out{i}"));
        let got = export_to(&src, &out, &[]);
        let target = target.canonicalize().unwrap();
        assert_refused(
            rel,
            &got,
            &[
                &link.to_string_lossy(),
                &format!("links to {}", target.display()),
            ],
        );
        assert!(!out.exists());
    }
}

#[test]
fn links_within_the_folder_of_another_model_or_into_the_hub_cache_are_followed() {
    let Some(model) = model_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A link within the folder, and the folder itself reached through a link.
    let src = d.join("src");
    linked_copy(&model, &src, false);
    std::fs::create_dir(src.join("extra")).unwrap();
    std::fs::rename(src.join("vocab.txt"), src.join("extra/vocab.txt")).unwrap();
    std::os::unix::fs::symlink("extra/vocab.txt", src.join("vocab.txt")).unwrap();
    std::os::unix::fs::symlink(&src, d.join("alias")).unwrap();
    let got = export_to(&d.join("alias"), &d.join("out1"), &[]);
    assert_eq!(got.0, 0, "{}{}", got.1, got.2);
    assert_eq!(
        std::fs::read(d.join("out1/vocab.txt")).unwrap(),
        std::fs::read(model.join("vocab.txt")).unwrap()
    );

    // A folder of links to another model's files (as tests and people make them).
    let links = d.join("links");
    link_model(&model, &links, &["model.onnx", "sentence_bert_config.json"]);
    let got = export_to(&links, &d.join("out2"), &[]);
    assert_eq!(got.0, 0, "{}{}", got.1, got.2);

    // A snapshot of the Hugging Face cache: every file a link into the repo's blobs/.
    let repo_dir = d.join("hub/models--x--y");
    let snap = repo_dir.join("snapshots/0123abc");
    std::fs::create_dir_all(snap.join("1_Pooling")).unwrap();
    std::fs::create_dir_all(repo_dir.join("blobs")).unwrap();
    for (i, f) in [
        "model.safetensors",
        "tokenizer.json",
        "config.json",
        "modules.json",
        "1_Pooling/config.json",
    ]
    .iter()
    .enumerate()
    {
        let blob = repo_dir.join(format!("blobs/{i:040}"));
        std::fs::hard_link(model.join(f), &blob).unwrap();
        let up = if f.contains('/') {
            "../../../"
        } else {
            "../../"
        };
        std::os::unix::fs::symlink(format!("{up}blobs/{i:040}"), snap.join(f)).unwrap();
    }
    let got = export_to(&snap, &d.join("out3"), &[]);
    assert_eq!(got.0, 0, "{}{}", got.1, got.2);
}

#[test]
fn json_and_vocab_files_are_checked_and_named() {
    let Some(model) = model_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cases: &[(&str, &[u8], &[&str])] = &[
        ("tokenizer.json", b"not json", &["tokenizer.json is not valid JSON"]),
        ("tokenizer.json", b"[1, 2]", &["tokenizer.json holds a JSON list, not an object"]),
        ("tokenizer.json", br#"{"version": "1.0"}"#, &["tokenizer.json is not a tokenizer"]),
        ("config.json", b"[]", &["config.json holds a JSON list"]),
        (
            "config.json",
            br#"{"model_type": "bert", "hidden_size": "384", "num_attention_heads": 12, "num_hidden_layers": 6}"#,
            &["config.json: hidden_size is '384'"],
        ),
        (
            "config.json",
            br#"{"model_type": "bert", "hidden_size": 384, "num_hidden_layers": 6}"#,
            &["config.json: num_attention_heads is None"],
        ),
        (
            "config.json",
            br#"{"model_type": "bert", "hidden_size": 384, "num_attention_heads": 5, "num_hidden_layers": 6}"#,
            &["not a multiple of num_attention_heads 5"],
        ),
        (
            "config.json",
            br#"{"model_type": ["bert"], "hidden_size": 384}"#,
            &["model_type is ['bert'], not a name"],
        ),
        ("vocab.txt", b"[PAD]\n\xff\xfe\n", &["vocab.txt is not UTF-8"]),
        ("modules.json", b"{", &["modules.json is not valid JSON"]),
        ("frostline.json", b"[[[[", &["frostline.json is not valid JSON"]),
    ];
    for (i, (file, content, needles)) in cases.iter().enumerate() {
        let src = d.join(format!("src{i}"));
        linked_copy(&model, &src, false);
        std::fs::remove_file(src.join(file)).unwrap();
        std::fs::write(src.join(file), content).unwrap();
        let out = d.join(format!("out{i}"));
        let got = export_to(&src, &out, &[]);
        assert_refused(file, &got, needles);
        assert!(!out.exists());
    }
    // --weights that is not a safetensors file; --model that is not a folder.
    let not_st = d.join("tuned.safetensors");
    std::fs::write(&not_st, "hello").unwrap();
    let got = export_to(
        &model,
        &d.join("o"),
        &["--weights", not_st.to_str().unwrap()],
    );
    assert_refused("--weights", &got, &["is not a readable safetensors file"]);
    let got = export_to(&not_st, &d.join("o"), &[]);
    assert_refused("--model", &got, &["is not a folder"]);
}

#[test]
fn cut_at_writes_only_into_folders_the_exporter_made() {
    let Some(model) = model_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let missing = d.join("missing");
    let got = export_to(&model, &missing, &["--cut-at", "2"]);
    assert_refused(
        "missing",
        &got,
        &["does not exist: export the model folder first with --output"],
    );
    assert!(!missing.exists());

    // The user's own file of that name in a folder the exporter never wrote stays.
    let mine = d.join("mine");
    std::fs::create_dir(&mine).unwrap();
    std::fs::write(mine.join("model.cut-2.onnx"), "my own graph").unwrap();
    let got = export_to(&model, &mine, &["--cut-at", "2"]);
    assert_refused("mine", &got, &["was not written by this exporter"]);
    assert_eq!(
        std::fs::read_to_string(mine.join("model.cut-2.onnx")).unwrap(),
        "my own graph"
    );
    let left: Vec<_> = std::fs::read_dir(&mine).unwrap().flatten().collect();
    assert_eq!(left.len(), 1, "temp files left: {left:?}");

    // An exported folder, and a model folder cutting into itself (how frostline makes the graph
    // on demand, also in a folder of links without frostline.json), are written.
    let ours = d.join("ours");
    linked_copy(&model, &ours, false);
    let got = export_to(&model, &ours, &["--cut-at", "1"]);
    assert_eq!(got.0, 0, "{}{}", got.1, got.2);
    assert!(ours.join("model.cut-1.onnx").is_file());
    let links = d.join("links");
    link_model(&model, &links, &["sentence_bert_config.json"]);
    let got = export_to(&links, &links, &["--cut-at", "0"]);
    assert_eq!(got.0, 0, "{}{}", got.1, got.2);
    assert!(links.join("model.cut-0.onnx").is_file());
}

#[test]
fn an_unexpected_exception_is_one_line_with_its_type() {
    let code = r#"
import importlib.util, sys
spec = importlib.util.spec_from_file_location("export_onnx", "scripts/export_onnx.py")
e = importlib.util.module_from_spec(spec)
spec.loader.exec_module(e)
def boom(*args):
    raise ValueError("boom")
e.check_source = boom
sys.exit(e.cli(["--model", "x", "--output", "y"]))
"#;
    let mut cmd = Command::new(py());
    cmd.arg("-c")
        .arg(code)
        .env_remove("FROSTLINE_EXPORT_TRACEBACK");
    let (c, _, err) = run_for(&mut cmd, Duration::from_secs(60));
    assert_eq!(c, 3, "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.starts_with("export_onnx: error: unexpected ValueError: boom"),
        "{err}"
    );
    let mut cmd = Command::new(py());
    cmd.arg("-c")
        .arg(code)
        .env("FROSTLINE_EXPORT_TRACEBACK", "1");
    let (c, _, err) = run_for(&mut cmd, Duration::from_secs(60));
    assert!(c == 3 && err.contains("Traceback"), "{err}");
}

#[test]
fn the_torch_bin_fuzzer_finds_no_crash() {
    let crashes = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(py());
    cmd.arg(repo().join("scripts/fuzz_torch_bin.py"))
        .env("FUZZ_CASES", "300")
        .env("FUZZ_SECONDS", "240")
        .env("FUZZ_CRASH_DIR", crashes.path());
    let (c, out, err) = run_for(&mut cmd, Duration::from_secs(300));
    assert_eq!(c, 0, "{out}{err}");
    assert!(
        out.contains("fuzz torch-bin: 300 cases") && out.contains(" clear errors, 0 crashes"),
        "{out}{err}"
    );
}
