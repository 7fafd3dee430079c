//! What killed runs leave behind, and the next run's clean-up: temp files and folders beside an
//! output (`.NAME.tmp-PID`, `.NAME.work-PID`), the old copy of an interrupted replacement
//! (`.NAME.old-PID`) and a lock whose holder is gone. Used by every writer in `io`.

use std::fs::File;
use std::path::{Path, PathBuf};

/// Whether process `pid` is alive (signal 0 probes without sending anything).
pub(crate) fn pid_alive(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    // SAFETY: kill with signal 0 only checks that the process exists.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// `.NAME<mark>PID` beside `path` (a temp or an old copy of a run).
pub(super) fn sibling(path: &Path, mark: &str, pid: u32) -> PathBuf {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    path.with_file_name(format!(".{name}{mark}{pid}"))
}

/// The PID in a sibling's name, when `entry` is `.NAME<mark>PID` for `path`'s NAME.
fn sibling_pid(path: &Path, entry: &str, mark: &str) -> Option<u32> {
    let name = path.file_name()?.to_string_lossy();
    entry.strip_prefix(&format!(".{name}{mark}"))?.parse().ok()
}

/// Removes temp files and folders left beside `path` by runs whose process is gone; when `path`
/// itself is missing but a dead run left its old copy (killed between two renames), puts that
/// copy back first. Returns what it did, for the user.
pub(crate) fn sweep_stale(path: &Path) -> Vec<String> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let Ok(entries) = std::fs::read_dir(parent) else {
        return Vec::new();
    };
    let mut done = Vec::new();
    let mut stale: Vec<(PathBuf, bool)> = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        for (mark, is_old) in [(".tmp-", false), (".old-", true), (".work-", false)] {
            if let Some(pid) = sibling_pid(path, &name, mark) {
                if pid != std::process::id() && !pid_alive(pid) {
                    stale.push((e.path(), is_old));
                }
            }
        }
    }
    // Roll back an interrupted replacement: the old folder returns to its place.
    if !path.exists() {
        if let Some((old, _)) = stale.iter().find(|(_, is_old)| *is_old) {
            if std::fs::rename(old, path).is_ok() {
                done.push(format!(
                    "restored {} from {} (a run was killed while replacing it)",
                    path.display(),
                    old.display()
                ));
            }
        }
    }
    if let Some(note) = sweep_stale_lock(path) {
        done.push(note);
    }
    for (p, _) in stale {
        if !p.exists() {
            continue;
        }
        let removed = if p.is_dir() {
            std::fs::remove_dir_all(&p)
        } else {
            std::fs::remove_file(&p)
        };
        if removed.is_ok() {
            done.push(format!("removed {} (left by a killed run)", p.display()));
        }
    }
    done
}

/// The lock file `.NAME.lock` of a claimed output `path`.
pub(super) fn lock_path_of(path: &Path) -> PathBuf {
    path.with_file_name(format!(
        ".{}.lock",
        path.file_name().unwrap_or_default().to_string_lossy()
    ))
}

/// Removes `path`'s lock file when the run that wrote it is gone and nobody holds it. Taken
/// before removal, so a live holder is never robbed; a run that opened the file just before it
/// went away notices in [`take_lock`] (the path no longer names its file) and takes it again.
fn sweep_stale_lock(path: &Path) -> Option<String> {
    let lock_path = lock_path_of(path);
    let pid: u32 = std::fs::read_to_string(&lock_path)
        .ok()?
        .trim()
        .parse()
        .ok()?;
    if pid == std::process::id() || pid_alive(pid) {
        return None;
    }
    let file = File::options().read(true).open(&lock_path).ok()?;
    if !lock_now(&file) {
        return None;
    }
    std::fs::remove_file(&lock_path).ok()?;
    Some(format!(
        "removed {} (left by a killed run, PID {pid})",
        lock_path.display()
    ))
}

/// Takes an exclusive lock on `file` without waiting; false when another process holds one.
pub(super) fn lock_now(file: &File) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a valid, owned descriptor; released when the file is closed.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}
