use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use frostline::cli::{jobs, Cli};
use frostline::commands;

/// Parse → resolve (every setting decided once) → run → print; errors map to the exit codes in
/// README.md ("Exit codes").
fn main() -> ExitCode {
    // The native layers' matrix products use every core unless the user says otherwise (ORT,
    // which runs in other phases, has its own --threads).
    if std::env::var_os("MATMUL_NUM_THREADS").is_none() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        std::env::set_var("MATMUL_NUM_THREADS", cores.to_string());
    }
    let result = jobs::resolve(Cli::parse()).and_then(|r| Ok((r.json, commands::run(r.job)?)));
    match result {
        Ok((json, outcome)) => {
            for w in &outcome.warnings {
                eprintln!("warning: {w}");
            }
            if !outcome.log.is_empty() {
                eprintln!("{}", outcome.log);
            }
            let mut stdout = std::io::stdout().lock();
            let _ = if json {
                writeln!(stdout, "{}", outcome.json)
            } else {
                write!(stdout, "{}", outcome.text)
            };
            ExitCode::from(outcome.exit)
        }
        Err(e) => {
            eprintln!("frostline: error: {e}");
            ExitCode::from(e.kind().exit_code())
        }
    }
}
