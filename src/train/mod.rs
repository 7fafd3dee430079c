//! Training: the job (`spec`), the whole run read as its steps (`run`: tasks → features →
//! heads → fit → scores → checkpoint), how heads start (`heads_init`), the loop (`fit`), how
//! a head is scored on a split (`score`), and a frost-line run's time said before it starts
//! (`estimate`).

pub use crate::heads::{Head, HeadKind, HeadSpec, MlpShape};
pub use crate::kind::TaskKind;
pub use crate::regime::{Plan, Regime};
pub use crate::runfile::{RunFile, TaskConfig, TrainConfig};

pub(crate) mod contrastive;
pub(crate) mod estimate;
pub(crate) mod fit;
pub(crate) mod heads_init;
pub(crate) mod run;
pub(crate) mod score;
pub(crate) mod spec;

pub use fit::TrainReport;
pub use run::{run, Narration, TaskOutcome, TrainOutcome};
pub use spec::TrainSpec;
