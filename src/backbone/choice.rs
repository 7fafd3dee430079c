//! Which model folder a command uses, and where that choice came from: `--model`, then
//! `$FROSTLINE_MODEL`, then what the run file or checkpoint recorded, then the default folder.
//! The source is named in `doctor` and in every error about the folder.

use std::fmt;
use std::path::{Path, PathBuf};

use super::ModelFolder;
use crate::error::{Error, Result};

/// The model folder used when neither `--model`, `$FROSTLINE_MODEL`, the run file nor a
/// checkpoint names one (relative to the current directory).
pub(crate) const DEFAULT_MODEL: &str = "models/all-MiniLM-L6-v2";
/// The environment variable that names the model folder (after `--model`).
pub(crate) const MODEL_ENV: &str = "FROSTLINE_MODEL";

/// Where the model folder's path came from, named in `doctor` and in every error about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ModelSource {
    Flag,
    Env,
    RunFile(PathBuf),
    Checkpoint(PathBuf),
    Default,
}

impl fmt::Display for ModelSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelSource::Flag => f.write_str("--model"),
            ModelSource::Env => write!(f, "${MODEL_ENV}"),
            ModelSource::RunFile(p) => write!(f, "the run file {}", p.display()),
            ModelSource::Checkpoint(p) => write!(f, "the checkpoint {}", p.display()),
            ModelSource::Default => {
                write!(f, "the default {DEFAULT_MODEL} under the current directory")
            }
        }
    }
}

/// The model folder to use and where that choice came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ModelChoice {
    /// Absolute, so nothing downstream depends on the current directory.
    pub dir: PathBuf,
    pub source: ModelSource,
}

/// An environment variable's value; empty means unset.
fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// `--model`, then `$FROSTLINE_MODEL`, then what the run file or checkpoint recorded, then the
/// default folder under the current directory.
pub(crate) fn choose_model(
    flag: Option<&Path>,
    recorded: Option<(PathBuf, ModelSource)>,
) -> ModelChoice {
    choose(flag, env_path(MODEL_ENV), recorded)
}

fn choose(
    flag: Option<&Path>,
    env: Option<PathBuf>,
    recorded: Option<(PathBuf, ModelSource)>,
) -> ModelChoice {
    let (dir, source) = if let Some(f) = flag {
        (f.to_path_buf(), ModelSource::Flag)
    } else if let Some(e) = env {
        (e, ModelSource::Env)
    } else if let Some(r) = recorded {
        r
    } else {
        (PathBuf::from(DEFAULT_MODEL), ModelSource::Default)
    };
    ModelChoice {
        dir: std::path::absolute(&dir).unwrap_or(dir),
        source,
    }
}

/// Opens the chosen folder; an error says which source chose it and how to choose another.
pub(crate) fn open_model(choice: &ModelChoice) -> Result<ModelFolder> {
    ModelFolder::open(&choice.dir).map_err(|e| match e {
        Error::Model { path, reason } => Error::Model {
            path,
            reason: format!(
                "{reason} (the folder was named by {}; pass --model DIR or set {MODEL_ENV} for another{})",
                choice.source,
                if matches!(choice.source, ModelSource::Checkpoint(_)) {
                    ", checked against the checkpoint by content hash"
                } else {
                    ""
                }
            ),
        },
        other => other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_precedence_flag_env_recorded_default() {
        let rec = Some((PathBuf::from("/r"), ModelSource::RunFile("run.toml".into())));
        let env = Some(PathBuf::from("/e"));
        let c = choose(Some(Path::new("/f")), env.clone(), rec.clone());
        assert_eq!((c.dir, c.source), (PathBuf::from("/f"), ModelSource::Flag));
        let c = choose(None, env, rec.clone());
        assert_eq!((c.dir, c.source), (PathBuf::from("/e"), ModelSource::Env));
        let c = choose(None, None, rec);
        assert_eq!(c.dir, PathBuf::from("/r"));
        let c = choose(None, None, None);
        assert_eq!(c.source, ModelSource::Default);
        assert!(c.dir.is_absolute() && c.dir.ends_with(DEFAULT_MODEL));
    }

    #[test]
    fn a_missing_model_folder_names_its_source() {
        let choice = ModelChoice {
            dir: "/nonexistent/model".into(),
            source: ModelSource::Checkpoint("/ck/manifest.json".into()),
        };
        let err = open_model(&choice).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/model"), "{err}");
        assert!(
            err.contains("named by the checkpoint /ck/manifest.json"),
            "{err}"
        );
        assert!(err.contains("--model"), "{err}");
    }
}
