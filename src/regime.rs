//! A training regime is nothing but the rule that picks which parameters the optimizer may
//! update. Nothing else in the code asks which regime is running.

use std::fmt;
use std::str::FromStr;

use crate::error::Error;
use crate::heads::Head;
use crate::nn::ParamId;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Regime {
    /// Nothing is updated: heads come from a checkpoint or are training-free.
    FullyFrozen,
    /// Both (all) task heads train on the cached sentence vectors.
    FrozenBackbone,
    /// One head keeps its checkpoint weights; the other head(s) train. Named by task name or by
    /// position (`a` = first task, `b` = second).
    FreezeHead(String),
    /// Layers ≥ N of the backbone train natively with the heads.
    FrostLine(usize),
}

impl FromStr for Regime {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        match s.split_once('=') {
            None if s == "fully-frozen" => Ok(Regime::FullyFrozen),
            None if s == "frozen-backbone" => Ok(Regime::FrozenBackbone),
            Some(("freeze-head", which)) if !which.is_empty() => Ok(Regime::FreezeHead(which.to_string())),
            Some(("frost-line", n)) => n
                .parse()
                .map(Regime::FrostLine)
                .map_err(|_| Error::Usage(format!("regime {s:?}: N must be a layer number"))),
            _ => Err(Error::Usage(format!(
                "unknown regime {s:?}; use fully-frozen, frozen-backbone, freeze-head=a|b|TASK or frost-line=N"
            ))),
        }
    }
}

impl fmt::Display for Regime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Regime::FullyFrozen => f.write_str("fully-frozen"),
            Regime::FrozenBackbone => f.write_str("frozen-backbone"),
            Regime::FreezeHead(w) => write!(f, "freeze-head={w}"),
            Regime::FrostLine(n) => write!(f, "frost-line={n}"),
        }
    }
}

impl Regime {
    /// Index of the frozen head for `FreezeHead`, resolving `a`/`b` or a task name.
    pub fn frozen_head(&self, task_names: &[String]) -> Result<Option<usize>, Error> {
        let Regime::FreezeHead(which) = self else {
            return Ok(None);
        };
        let idx = match which.as_str() {
            "a" => Some(0),
            "b" => Some(1),
            name => task_names.iter().position(|t| t == name),
        };
        match idx {
            Some(i) if i < task_names.len() => Ok(Some(i)),
            _ => Err(Error::Usage(format!(
                "freeze-head={which}: no such task (tasks: {})",
                task_names.join(", ")
            ))),
        }
    }

    /// The parameters the optimizer sees.
    pub fn trainable(&self, heads: &[Head]) -> Result<Vec<ParamId>, Error> {
        let names: Vec<String> = heads.iter().map(|h| h.task.clone()).collect();
        Ok(match self {
            Regime::FullyFrozen => Vec::new(),
            Regime::FrozenBackbone => heads.iter().flat_map(Head::param_ids).collect(),
            Regime::FreezeHead(_) => {
                let frozen = self.frozen_head(&names)?;
                heads.iter().enumerate().filter(|(i, _)| Some(*i) != frozen).flat_map(|(_, h)| h.param_ids()).collect()
            }
            Regime::FrostLine(_) => {
                return Err(Error::Usage(
                    "frost-line=N (training backbone layers natively) is not implemented yet; use frozen-backbone".into(),
                ))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::heads::HeadSpec;
    use crate::nn::{ParamStore, Rng};

    #[test]
    fn parses_and_picks_parameters() {
        let mut store = ParamStore::default();
        let mut rng = Rng::new(1);
        let heads = vec![
            Head::new(&mut store, "intent", HeadSpec::Linear, 4, 3, &mut rng),
            Head::new(
                &mut store,
                "sentiment",
                HeadSpec::Mlp {
                    hidden: 5,
                    dropout: 0.1,
                },
                4,
                2,
                &mut rng,
            ),
        ];
        let all: Vec<ParamId> = (0..store.len()).collect();
        assert_eq!(
            "frozen-backbone"
                .parse::<Regime>()
                .unwrap()
                .trainable(&heads)
                .unwrap(),
            all
        );
        assert!("fully-frozen"
            .parse::<Regime>()
            .unwrap()
            .trainable(&heads)
            .unwrap()
            .is_empty());
        assert_eq!(
            "freeze-head=a"
                .parse::<Regime>()
                .unwrap()
                .trainable(&heads)
                .unwrap(),
            heads[1].param_ids()
        );
        assert_eq!(
            "freeze-head=sentiment"
                .parse::<Regime>()
                .unwrap()
                .trainable(&heads)
                .unwrap(),
            heads[0].param_ids()
        );
        assert!("freeze-head=c"
            .parse::<Regime>()
            .unwrap()
            .trainable(&heads)
            .is_err());
        assert!("frost-line=x".parse::<Regime>().is_err());
        assert!("thawed".parse::<Regime>().is_err());
    }
}
