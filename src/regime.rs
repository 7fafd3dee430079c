//! A training regime is nothing but the rule that picks which parameters the optimizer may
//! update (and, for the frost line, below which depth the backbone stays in ONNX). Nothing else
//! in the code asks which regime is running.

use std::fmt;
use std::str::FromStr;

use crate::error::Error;
use crate::heads::Head;
use crate::nn::ParamId;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Regime {
    /// Nothing is updated: heads come from a checkpoint or are training-free.
    FullyFrozen,
    /// Every task head trains on the cached sentence vectors.
    FrozenBackbone,
    /// One head keeps its checkpoint weights; the other head(s) train — on the cache, or with
    /// `frost_line = Some(N)` together with the backbone's layers ≥ N. The head is named by task
    /// name or by position (`a` = first task, `b` = second).
    FreezeHead {
        head: String,
        frost_line: Option<usize>,
    },
    /// Layers ≥ N of the backbone train natively with every head.
    FrostLine(usize),
}

fn parse_layer(s: &str, n: &str) -> Result<usize, Error> {
    n.parse()
        .map_err(|_| Error::Usage(format!("regime {s:?}: N must be a layer number")))
}

impl FromStr for Regime {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let unknown = || {
            Error::Usage(format!(
                "unknown regime {s:?}; use fully-frozen, frozen-backbone, freeze-head=a|b|TASK[,frost-line=N] or frost-line=N"
            ))
        };
        match s.split_once('=') {
            None if s == "fully-frozen" => Ok(Regime::FullyFrozen),
            None if s == "frozen-backbone" => Ok(Regime::FrozenBackbone),
            Some(("freeze-head", rest)) => {
                let (head, frost_line) = match rest.split_once(",frost-line=") {
                    Some((head, n)) => (head, Some(parse_layer(s, n)?)),
                    None => (rest, None),
                };
                if head.is_empty() || head.contains([',', '=']) {
                    return Err(unknown());
                }
                Ok(Regime::FreezeHead {
                    head: head.to_string(),
                    frost_line,
                })
            }
            Some(("frost-line", n)) => Ok(Regime::FrostLine(parse_layer(s, n)?)),
            _ => Err(unknown()),
        }
    }
}

impl fmt::Display for Regime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Regime::FullyFrozen => f.write_str("fully-frozen"),
            Regime::FrozenBackbone => f.write_str("frozen-backbone"),
            Regime::FreezeHead {
                head,
                frost_line: None,
            } => write!(f, "freeze-head={head}"),
            Regime::FreezeHead {
                head,
                frost_line: Some(n),
            } => write!(f, "freeze-head={head},frost-line={n}"),
            Regime::FrostLine(n) => write!(f, "frost-line={n}"),
        }
    }
}

impl Regime {
    /// The depth below which the backbone stays frozen in ONNX when layers above it train.
    pub fn frost_line(&self) -> Option<usize> {
        match self {
            Regime::FrostLine(n) => Some(*n),
            Regime::FreezeHead { frost_line, .. } => *frost_line,
            _ => None,
        }
    }

    /// Index of the frozen head for `FreezeHead`, resolving `a`/`b` or a task name.
    pub fn frozen_head(&self, task_names: &[String]) -> Result<Option<usize>, Error> {
        let Regime::FreezeHead { head: which, .. } = self else {
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

    /// The parameters the optimizer sees: from the task heads and from the native encoder layers
    /// (empty unless this regime has a frost line).
    pub fn trainable(&self, heads: &[Head], encoder: &[ParamId]) -> Result<Vec<ParamId>, Error> {
        let names: Vec<String> = heads.iter().map(|h| h.task.clone()).collect();
        let frozen = self.frozen_head(&names)?;
        let heads_but_frozen = || {
            heads
                .iter()
                .enumerate()
                .filter(|(i, _)| Some(*i) != frozen)
                .flat_map(|(_, h)| h.param_ids())
        };
        Ok(match self {
            Regime::FullyFrozen => Vec::new(),
            Regime::FrozenBackbone
            | Regime::FreezeHead {
                frost_line: None, ..
            } => heads_but_frozen().collect(),
            Regime::FrostLine(_)
            | Regime::FreezeHead {
                frost_line: Some(_),
                ..
            } => encoder.iter().copied().chain(heads_but_frozen()).collect(),
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
        let encoder = vec![store.add("encoder.layer.5.x", crate::nn::params::zeros(&[2]))];
        let heads_only: Vec<ParamId> = heads.iter().flat_map(Head::param_ids).collect();
        let r = |s: &str| s.parse::<Regime>().unwrap();
        assert_eq!(
            r("frozen-backbone").trainable(&heads, &encoder).unwrap(),
            heads_only
        );
        assert!(r("fully-frozen")
            .trainable(&heads, &encoder)
            .unwrap()
            .is_empty());
        assert_eq!(
            r("freeze-head=a").trainable(&heads, &encoder).unwrap(),
            heads[1].param_ids()
        );
        assert_eq!(
            r("freeze-head=sentiment")
                .trainable(&heads, &encoder)
                .unwrap(),
            heads[0].param_ids()
        );
        let mut with_encoder = encoder.clone();
        with_encoder.extend(heads[1].param_ids());
        assert_eq!(
            r("freeze-head=a,frost-line=4")
                .trainable(&heads, &encoder)
                .unwrap(),
            with_encoder
        );
        assert_eq!(r("freeze-head=a,frost-line=4").frost_line(), Some(4));
        assert_eq!(
            r("frost-line=4").trainable(&heads, &encoder).unwrap().len(),
            1 + heads_only.len()
        );
        assert_eq!(
            r("freeze-head=a,frost-line=4").to_string(),
            "freeze-head=a,frost-line=4"
        );
        assert!(r("freeze-head=c").trainable(&heads, &encoder).is_err());
        assert!("frost-line=x".parse::<Regime>().is_err());
        assert!("freeze-head=".parse::<Regime>().is_err());
        assert!("thawed".parse::<Regime>().is_err());
    }
}
