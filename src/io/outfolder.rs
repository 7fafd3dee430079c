//! Output folders (checkpoints, reports, model folders) written so that no user data is lost:
//!
//! - a folder is replaced only when frostline wrote it (a marker file names the kind) and it is of
//!   the same kind, or when it is empty; anything else is refused with what is in it, unless the
//!   user passes `--force`;
//! - an output may not be, or contain, a path the same command reads (the checkpoint it evaluates);
//! - one writer at a time: a lock beside the destination, and the second run is told who holds it;
//! - the new folder is built beside the old one and swapped in with one atomic
//!   `renameat2(RENAME_EXCHANGE)`, so at every instant the destination holds the old folder or the
//!   new one; where the file system cannot exchange, two renames, and the next run finishes or
//!   rolls back an interrupted pair;
//! - temp folders and files of killed runs are removed by the next run once their process is gone.

use std::ffi::CString;
use std::fs::File;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::fsutil;
use super::stale::{lock_now, lock_path_of, sibling, sweep_stale};
use crate::error::{Error, Result};

/// The marker file frostline leaves in every folder it writes.
pub(crate) const MARKER: &str = ".frostline-output";

/// What a folder holds, as its marker says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FolderKind {
    Checkpoint,
    EvalReport,
    CompareReport,
    CurveReport,
    FewshotReport,
    MtebReport,
    ModelFolder,
}

impl FolderKind {
    fn name(self) -> &'static str {
        match self {
            FolderKind::Checkpoint => "checkpoint",
            FolderKind::EvalReport => "eval-report",
            FolderKind::CompareReport => "compare-report",
            FolderKind::CurveReport => "curve-report",
            FolderKind::FewshotReport => "fewshot-report",
            FolderKind::MtebReport => "mteb-report",
            FolderKind::ModelFolder => "model-folder",
        }
    }
}

/// An output folder claimed for writing: checked and locked until dropped.
pub struct OutputFolder {
    dir: PathBuf,
    kind: FolderKind,
    lock_path: PathBuf,
    _lock: File,
}

/// The real location of `path` (through symlinks and `..`), also for a path that does not exist
/// yet (its parent is resolved).
pub(crate) fn resolved(path: &Path) -> PathBuf {
    if let Ok(p) = path.canonicalize() {
        return p;
    }
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    match (abs.parent(), abs.file_name()) {
        (Some(parent), Some(name)) => parent
            .canonicalize()
            .map(|p| p.join(name))
            .unwrap_or(abs.clone()),
        _ => abs,
    }
}

/// Refuses an output file that is one of the command's inputs (also through symlinks or `..`).
pub(crate) fn check_not_input(output: &Path, inputs: &[&Path]) -> Result<()> {
    let out = resolved(output);
    for input in inputs {
        if resolved(input) == out {
            return Err(Error::Usage(format!(
                "--output {} is the input {}: writing it would replace the data being read; choose another output file",
                output.display(),
                input.display()
            )));
        }
    }
    Ok(())
}

/// Refuses an output inside the embedding cache: the cache holds only what frostline's cache
/// writer puts there (a file of ours among its chunks would be read as one, or swept away).
pub(crate) fn check_not_in_cache(output: &Path, cache_root: &Path) -> Result<()> {
    let (out, root) = (resolved(output), resolved(cache_root));
    if out.starts_with(&root) {
        return Err(Error::Usage(format!(
            "--output {} is inside the embedding cache {}: the cache holds only its own entries; write the output elsewhere",
            output.display(),
            cache_root.display()
        )));
    }
    Ok(())
}

/// What `dir` holds, for a refusal message: up to five names and a count.
fn contents(dir: &Path) -> String {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|it| {
            it.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    let n = names.len();
    let shown: Vec<String> = names.into_iter().take(5).collect();
    if n > 5 {
        format!("{}, … ({n} entries)", shown.join(", "))
    } else {
        shown.join(", ")
    }
}

/// The kind a folder's marker names, if frostline wrote it.
fn marker_kind(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join(MARKER)).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v.get("kind")?.as_str().map(str::to_string)
}

impl OutputFolder {
    /// Claims `dir` for a new folder of `kind`: it must be absent, empty, or a folder frostline
    /// wrote of the same kind (or `force`); it may not be or contain any of `reads`; no other run
    /// may be writing it.
    pub fn claim(dir: &Path, kind: FolderKind, force: bool, reads: &[&Path]) -> Result<Self> {
        let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        if dir.file_name().is_none() {
            return Err(Error::Usage(format!(
                "{} cannot be an output folder; name a folder",
                dir.display()
            )));
        }
        let target = resolved(&dir);
        for r in reads {
            let read = resolved(r);
            if read.starts_with(&target) {
                return Err(Error::Usage(format!(
                    "output folder {} {} {}, which this command reads; choose another --out",
                    dir.display(),
                    if read == target { "is" } else { "contains" },
                    r.display()
                )));
            }
        }
        fsutil::check_folder_writable(&dir)?;
        let lock_path = lock_path_of(&dir);
        let lock = take_lock(&lock_path, &dir)?;
        let claimed = Self {
            dir,
            kind,
            lock_path,
            _lock: lock,
        };
        // From here a refusal drops `claimed`, which removes the lock file.
        claimed.check_replaceable(force)?;
        Ok(claimed)
    }

    /// Sweeps leftovers of killed runs, then checks the destination may be replaced.
    fn check_replaceable(&self, force: bool) -> Result<()> {
        let (dir, kind) = (&self.dir, self.kind);
        for note in sweep_stale(dir) {
            eprintln!("note: {note}");
        }
        if dir.exists() && !force {
            let empty = std::fs::read_dir(dir)
                .map(|mut it| it.next().is_none())
                .unwrap_or(false);
            match marker_kind(dir) {
                _ if empty => {}
                Some(k) if k == kind.name() => {}
                Some(k) => {
                    return Err(Error::Usage(format!(
                        "{} holds a frostline {k}, not a {}; choose another --out, or pass --force to replace it",
                        dir.display(),
                        kind.name()
                    )))
                }
                None => {
                    return Err(Error::Usage(format!(
                        "{} exists and was not written by frostline (it holds {}); choose another --out, or pass --force to replace it",
                        dir.display(),
                        contents(dir)
                    )))
                }
            }
        }
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Builds the folder with `fill` in a temp folder beside it, adds the marker, and swaps it into
    /// place atomically; on failure the temp folder is removed and the old folder is untouched.
    pub fn write<F>(&self, fill: F) -> Result<()>
    where
        F: FnOnce(&Path) -> Result<()>,
    {
        let dir = &self.dir;
        let tmp = sibling(dir, ".tmp-", std::process::id());
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir(&tmp).map_err(|e| Error::output(dir, format!("cannot write: {e}")))?;
        let built = fill(&tmp).and_then(|()| {
            let marker = serde_json::json!({
                "kind": self.kind.name(),
                "frostline_version": env!("CARGO_PKG_VERSION"),
            });
            fsutil::write_bytes_atomic(&tmp.join(MARKER), marker.to_string().as_bytes())
        });
        if let Err(e) = built {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
        let swapped = if dir.exists() {
            replace(&tmp, dir)
        } else {
            std::fs::rename(&tmp, dir)
        };
        swapped.map_err(|e| {
            let _ = std::fs::remove_dir_all(&tmp);
            Error::output(dir, format!("cannot move the new folder into place: {e}"))
        })
    }
}

impl Drop for OutputFolder {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.lock_path);
    }
}

/// Whether `file` is still the file at `path` (not removed or replaced since it was opened).
fn still_at(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Takes the destination's lock without waiting; a held lock names its holder.
fn take_lock(lock_path: &Path, dir: &Path) -> Result<File> {
    // A stale lock swept away between our open and our flock leaves us holding a removed file:
    // open again until the lock we hold is the one at the path.
    for _ in 0..8 {
        let file = take_lock_once(lock_path, dir)?;
        if still_at(&file, lock_path) {
            return Ok(file);
        }
    }
    Err(Error::output(
        dir,
        format!(
            "its lock {} keeps being replaced; is another program removing it?",
            lock_path.display()
        ),
    ))
}

fn take_lock_once(lock_path: &Path, dir: &Path) -> Result<File> {
    let mut file = File::options()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(lock_path)
        .map_err(|e| {
            Error::output(
                dir,
                format!("cannot create the lock {}: {e}", lock_path.display()),
            )
        })?;
    if !lock_now(&file) {
        let holder = std::fs::read_to_string(lock_path).unwrap_or_default();
        return Err(Error::Usage(format!(
            "{} is being written by another frostline run ({}); wait for it to finish or choose another --out",
            dir.display(),
            if holder.trim().is_empty() {
                "process unknown".to_string()
            } else {
                format!("PID {}", holder.trim())
            }
        )));
    }
    let _ = file.set_len(0);
    let _ = write!(file, "{}", std::process::id());
    Ok(file)
}

/// Puts `new` in `dir`'s place: one atomic exchange where the file system has it, else two renames
/// (a kill between them is repaired by [`sweep_stale`] at the next run). The old folder is removed.
fn replace(new: &Path, dir: &Path) -> std::io::Result<()> {
    let c = |p: &Path| CString::new(p.as_os_str().as_bytes()).expect("no NUL in paths");
    let (a, b) = (c(new), c(dir));
    // SAFETY: two valid NUL-terminated paths; renameat2 does not retain them.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if rc == 0 {
        // `new` now holds the old folder.
        return std::fs::remove_dir_all(new);
    }
    let err = std::io::Error::last_os_error();
    if !matches!(
        err.raw_os_error(),
        Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP)
    ) {
        return Err(err);
    }
    let old = sibling(dir, ".old-", std::process::id());
    std::fs::rename(dir, &old)?;
    std::fs::rename(new, dir)?;
    std::fs::remove_dir_all(&old)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, kind: FolderKind, force: bool, reads: &[&Path]) -> Result<()> {
        OutputFolder::claim(dir, kind, force, reads)?
            .write(|tmp| fsutil::write_bytes_atomic(&tmp.join("x"), b"new"))
    }

    #[test]
    fn replaces_only_its_own_folders_of_the_same_kind() {
        let d = tempfile::tempdir().unwrap();
        let user = d.path().join("user");
        std::fs::create_dir(&user).unwrap();
        std::fs::write(user.join("keep.txt"), "keep").unwrap();
        let err = write(&user, FolderKind::Checkpoint, false, &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("was not written by frostline (it holds keep.txt)")
                && err.contains("--force"),
            "{err}"
        );
        assert_eq!(
            std::fs::read_to_string(user.join("keep.txt")).unwrap(),
            "keep"
        );

        let ours = d.path().join("ck");
        write(&ours, FolderKind::Checkpoint, false, &[]).unwrap();
        write(&ours, FolderKind::Checkpoint, false, &[]).unwrap();
        assert!(ours.join(MARKER).is_file() && ours.join("x").is_file());
        let err = write(&ours, FolderKind::EvalReport, false, &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("holds a frostline checkpoint, not a eval-report"),
            "{err}"
        );

        // An empty folder loses nothing; --force replaces anything.
        let empty = d.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        write(&empty, FolderKind::EvalReport, false, &[]).unwrap();
        write(&user, FolderKind::Checkpoint, true, &[]).unwrap();
        assert!(!user.join("keep.txt").exists());
        // No lock file or temp folder is left behind.
        let left: Vec<String> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn an_output_that_is_or_holds_an_input_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let ck = d.path().join("ck");
        write(&ck, FolderKind::Checkpoint, false, &[]).unwrap();
        let err = write(&ck, FolderKind::EvalReport, true, &[&ck])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("is") && err.contains("which this command reads"),
            "{err}"
        );
        let err = write(d.path(), FolderKind::EvalReport, true, &[&ck])
            .unwrap_err()
            .to_string();
        assert!(err.contains("contains"), "{err}");
        // Inside the checkpoint is fine (the default eval folder).
        write(&ck.join("eval-test"), FolderKind::EvalReport, false, &[&ck]).unwrap();

        let input = d.path().join("in.csv");
        std::fs::write(&input, "text\n").unwrap();
        std::os::unix::fs::symlink(&input, d.path().join("link.csv")).unwrap();
        for same in ["in.csv", "link.csv", "sub/../in.csv"] {
            std::fs::create_dir_all(d.path().join("sub")).unwrap();
            let err = check_not_input(&d.path().join(same), &[&input])
                .unwrap_err()
                .to_string();
            assert!(err.contains("is the input"), "{same}: {err}");
        }
        check_not_input(&d.path().join("out.csv"), &[&input]).unwrap();
    }

    #[test]
    fn a_second_writer_is_told_who_holds_the_lock() {
        let d = tempfile::tempdir().unwrap();
        let ck = d.path().join("ck");
        let held = OutputFolder::claim(&ck, FolderKind::Checkpoint, false, &[]).unwrap();
        let err = OutputFolder::claim(&ck, FolderKind::Checkpoint, false, &[])
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains(&format!("PID {}", std::process::id())),
            "{err}"
        );
        drop(held);
        OutputFolder::claim(&ck, FolderKind::Checkpoint, false, &[]).unwrap();
    }

    #[test]
    fn leftovers_of_dead_runs_are_swept_and_an_interrupted_swap_rolled_back() {
        let d = tempfile::tempdir().unwrap();
        let ck = d.path().join("ck");
        // A PID that cannot be alive (above the kernel's pid_max).
        let dead = 4_194_304 + 17;
        let old = d.path().join(format!(".ck.old-{dead}"));
        let tmp = d.path().join(format!(".ck.tmp-{dead}"));
        std::fs::create_dir(&old).unwrap();
        std::fs::write(old.join("heads.safetensors"), "old").unwrap();
        std::fs::create_dir(&tmp).unwrap();
        std::fs::write(d.path().join(format!(".o.parquet.tmp-{dead}")), "partial").unwrap();
        let done = sweep_stale(&ck);
        assert!(done.iter().any(|n| n.starts_with("restored")), "{done:?}");
        assert_eq!(
            std::fs::read_to_string(ck.join("heads.safetensors")).unwrap(),
            "old"
        );
        assert!(!tmp.exists() && !old.exists());
        let done = sweep_stale(&d.path().join("o.parquet"));
        assert_eq!(done.len(), 1, "{done:?}");
        // A live process's temp is left alone.
        let live = d.path().join(".ck.tmp-1"); // PID 1 is always alive
        std::fs::create_dir(&live).unwrap();
        assert!(sweep_stale(&ck).is_empty());
    }
}
