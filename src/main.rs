use std::process::ExitCode;

use clap::Parser;
use frostline::cli::{Cli, Command};

fn main() -> ExitCode {
    // The native layers' matrix products use every core unless the user says otherwise (ORT,
    // which runs in other phases, has its own --threads).
    if std::env::var_os("MATMUL_NUM_THREADS").is_none() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        std::env::set_var("MATMUL_NUM_THREADS", cores.to_string());
    }
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
            let run = frostline::runfile::RunFile::load(&args.run.run, &args.all_overrides())?;
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
        Command::Eval(args) => {
            let settings = args.backbone.resolve(cli.ort_lib)?;
            let job = frostline::evaluate::EvalJob {
                checkpoint: args.checkpoint,
                split: args.split,
                out: args.out,
                top_errors: args.top_errors,
            };
            let outcome = frostline::evaluate::run(settings, args.backbone.model.is_some(), &job)?;
            for n in &outcome.notes {
                eprintln!("warning: {n}");
            }
            let df = frostline::report::overall(&outcome.evals)?;
            println!(
                "{}",
                frostline::report::markdown_table(&df, &["accuracy", "macro_f1", "weighted_f1"])
            );
            println!("report: {}", outcome.out_dir.join("report.md").display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Compare(args) => {
            let run = frostline::runfile::RunFile::load(&args.run.run, &args.run.overrides)?;
            let settings = args.backbone.resolve(cli.ort_lib)?;
            let progress = settings.progress;
            let outcome =
                frostline::compare::run(&run, settings, &args.frost_lines, &args.out, progress)?;
            println!("{}", outcome.markdown);
            println!("report: {}", outcome.out_dir.join("compare.md").display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Export(args) => {
            let ck = frostline::checkpoint::load(&args.checkpoint)?;
            frostline::checkpoint::export_model(&ck, &args.out)?;
            println!(
                "exported {} with the tuned layers of {}",
                args.out.display(),
                args.checkpoint.display()
            );
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
            if let Some(out) = &args.out {
                frostline::report::write_mteb(out, &report)?;
                println!("report: {}", out.display());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
