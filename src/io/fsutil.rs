//! File-system helpers: atomic writes (temp file + rename) and advisory locks.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

const TEMP_MARK: &str = ".tmp-";

/// A hidden temp name beside `path`, unique per process.
pub(crate) fn temp_path(path: &Path) -> PathBuf {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("out");
    path.with_file_name(format!(".{name}{TEMP_MARK}{}", std::process::id()))
}

pub(crate) fn is_temp_name(name: &str) -> bool {
    name.starts_with('.') && name.contains(TEMP_MARK)
}

/// Writes `path` through a temp file in the same folder, synced and renamed into place, so the
/// file is either the old one, absent, or complete. The temp file is removed on failure.
pub(crate) fn write_atomic<F>(path: &Path, fill: F) -> Result<()>
where
    F: FnOnce(&mut BufWriter<File>) -> std::io::Result<()>,
{
    let tmp = temp_path(path);
    let result = (|| {
        let file = File::create(&tmp)?;
        let mut w = BufWriter::with_capacity(1 << 20, file);
        fill(&mut w)?;
        let file = w.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::output(path, format!("cannot write: {e}"))
    })
}

/// A file written in steps through a temp file beside `path`: [`AtomicFile::commit`] syncs it
/// and renames it into place; dropped uncommitted (an error midway), the temp file is removed.
pub(crate) struct AtomicFile {
    path: PathBuf,
    tmp: PathBuf,
    file: File,
    committed: bool,
}

impl AtomicFile {
    pub(crate) fn create(path: &Path) -> Result<Self> {
        let tmp = temp_path(path);
        let file =
            File::create(&tmp).map_err(|e| Error::output(path, format!("cannot write: {e}")))?;
        Ok(Self {
            path: path.to_path_buf(),
            tmp,
            file,
            committed: false,
        })
    }

    /// Another handle on the temp file (for writers that take ownership of theirs).
    pub(crate) fn handle(&self) -> Result<File> {
        self.file
            .try_clone()
            .map_err(|e| Error::output(&self.path, format!("cannot write: {e}")))
    }

    pub(crate) fn commit(mut self) -> Result<()> {
        self.file
            .sync_all()
            .and_then(|()| std::fs::rename(&self.tmp, &self.path))
            .map_err(|e| Error::output(&self.path, format!("cannot write: {e}")))?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Fails early, before any expensive work, when `path`'s folder cannot take a new file.
pub(crate) fn check_writable(path: &Path) -> Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !parent.is_dir() {
        return Err(Error::output(
            path,
            format!("folder {} does not exist", parent.display()),
        ));
    }
    if path.is_dir() {
        return Err(Error::output(path, "is a folder, expected a file path"));
    }
    for note in crate::io::stale::sweep_stale(path) {
        eprintln!("note: {note}");
    }
    let probe = temp_path(path);
    match File::create(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => Err(Error::output(
            path,
            format!("cannot write in {}: {e}", parent.display()),
        )),
    }
}

/// Like [`check_writable`] for an output *folder* (a checkpoint): its parent must take a new
/// entry, and an existing path must be a folder (it is replaced only once the new one is whole).
pub(crate) fn check_folder_writable(path: &Path) -> Result<()> {
    if path.exists() && !path.is_dir() {
        return Err(Error::output(path, "exists and is not a folder"));
    }
    let probe = temp_path(path);
    let parent = probe
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !parent.is_dir() {
        return Err(Error::output(
            path,
            format!("folder {} does not exist", parent.display()),
        ));
    }
    std::fs::create_dir(&probe)
        .and_then(|_| std::fs::remove_dir(&probe))
        .map_err(|e| Error::output(path, format!("cannot write in {}: {e}", parent.display())))
}

/// Takes an exclusive advisory lock on `path` (created if absent), waiting for other holders;
/// the raw I/O error is returned (a read-only place is not a failure for a reader).
pub(crate) fn try_lock_file(path: &Path) -> std::io::Result<File> {
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a valid, owned descriptor; released when the file is closed.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(file)
}

/// Writes all of `bytes` atomically.
pub(crate) fn write_bytes_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic(path, |w| w.write_all(bytes))
}

/// `t` as `YYYY-MM-DD HH:MM UTC` (the proleptic Gregorian calendar; Howard Hinnant's
/// days-to-civil).
pub(crate) fn utc_time(t: std::time::SystemTime) -> String {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        rest / 3600,
        rest % 3600 / 60
    )
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn utc_times_are_calendar_dates() {
        let at = |s: u64| super::utc_time(UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(at(0), "1970-01-01 00:00 UTC");
        assert_eq!(at(1_000_000_000), "2001-09-09 01:46 UTC");
        assert_eq!(at(1_709_164_800), "2024-02-29 00:00 UTC");
        assert_eq!(at(1_709_251_199), "2024-02-29 23:59 UTC");
    }
}
