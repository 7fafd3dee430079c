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
    ExitCode::from(frostline::cli::run(frostline::cli::Cli::parse()))
}
