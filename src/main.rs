use std::process::ExitCode;

use clap::Parser;
use frostline::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("frostline: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Doctor { model } => {
            let report = frostline::doctor::run(cli.ort_lib.as_deref(), &model);
            print!("{}", report.text);
            Ok(if report.problems == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Embed(args) => {
            let (settings, job) = args.resolve(cli.ort_lib)?;
            let stats = frostline::embed::run_job(settings, &job)?;
            eprintln!("{}\noutput: {}", stats.summary(), job.output.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}
