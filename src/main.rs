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
        Command::Train(args) => {
            let run = frostline::runfile::RunFile::load(&args.run, &args.all_overrides())?;
            let settings = args.backbone.resolve(cli.ort_lib)?;
            let progress = settings.progress;
            let result =
                frostline::runner::run_training(&run, settings, args.out.as_deref(), progress)?;
            println!("{}", result.table());
            if let Some(out) = &args.out {
                println!("checkpoint: {}", out.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Predict(args) => {
            let settings = args.backbone.resolve(cli.ort_lib)?;
            let job = frostline::predict::PredictJob {
                checkpoint: args.checkpoint,
                input: args.input,
                text_column: args.text_column,
                output: args.output,
            };
            let stats = frostline::predict::run(settings, args.backbone.model.is_some(), &job)?;
            eprintln!("{}\noutput: {}", stats.summary(), job.output.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Mteb(args) => {
            let settings = args.backbone.resolve(cli.ort_lib)?;
            let job = frostline::runner::MtebJob {
                train: args.train.clone(),
                test: args.test.clone(),
                text_column: args.text_column.clone(),
                label_column: args.label_column.clone(),
                k: args.k,
                experiments: args.experiments,
                seed: args.seed,
            };
            let report = frostline::runner::run_mteb(settings, &job)?;
            println!("{}", report.markdown());
            if let Some(out) = &args.output {
                let json = serde_json::to_vec_pretty(&report.result)?;
                frostline::fsutil::write_bytes_atomic(out, &json)?;
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
