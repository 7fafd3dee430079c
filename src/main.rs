use std::process::ExitCode;

use clap::Parser;

/// Parse the command line and hand it to the library, which resolves it into one job, runs it
/// and prints the outcome; the exit code says what kind of error ended it (README.md).
fn main() -> ExitCode {
    // The native layers' matrix products use every core unless the user says otherwise (ORT,
    // which runs in other phases, has its own --threads).
    if std::env::var_os("MATMUL_NUM_THREADS").is_none() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        std::env::set_var("MATMUL_NUM_THREADS", cores.to_string());
    }
    keep_freed_memory();
    ExitCode::from(frostline::cli::run(frostline::cli::Cli::parse()))
}

/// The native layers allocate and free arrays of a few MB at every step. glibc serves those
/// with fresh mmaps (or trims them back to the OS) by default, so each step paid page faults and
/// page clearing for memory it had just freed; kept in the heap, it is reused.
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only tunes the allocator; called before any other thread exists.
    unsafe {
        // glibc caps the mmap threshold at 32 MB on 64-bit.
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
    }
}
