//! Training: the whole run (tasks → features → heads → fit → scores → checkpoint), the features a
//! step reads, how heads are set up, and the loop itself.

pub mod features;
pub mod fit;
pub mod heads_init;
pub mod run;

pub use fit::{centroids, score_vectors, EpochLog, TrainReport};
pub use run::{run, TaskOutcome, TrainOutcome, TrainSpec};
