//! A training regime is nothing but the rule that picks which parameters the optimizer may
//! update (and, for the frost line, below which depth the backbone stays in ONNX). Nothing else
//! in the code asks which regime is running.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::heads::{Head, HeadSpec};
#[cfg(test)]
use crate::heads::{HeadKind, MlpShape};
use crate::nn::adapter::Tuning;
use crate::nn::ParamId;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Regime {
    /// Nothing is updated: heads come from a checkpoint or are training-free.
    FullyFrozen,
    /// Every task head trains on the cached sentence vectors.
    FrozenBackbone,
    /// One head keeps its checkpoint weights; the other head(s) train — on the cache, or with
    /// `frost_line = Some(N)` together with what `tuning` trains of the backbone's layers ≥ N.
    /// The head is named by task name or by position (`a` = first task, `b` = second).
    FreezeHead {
        head: String,
        frost_line: Option<usize>,
        tuning: Tuning,
    },
    /// Layers ≥ N of the backbone run natively; what `tuning` selects of them trains with every
    /// head (all of it, the biases, or LoRA factors).
    FrostLine { line: usize, tuning: Tuning },
    /// Layers ≥ N are tuned first on their own, by contrastive pairs of training texts (a
    /// cosine-similarity loss on the pooled vectors, SetFit's recipe: `train.contrastive`); then
    /// each head trains on the tuned layers' vectors, the layers frozen again.
    Contrastive { frost_line: usize },
}

fn parse_layer(s: &str, n: &str) -> Result<usize, Error> {
    n.parse()
        .map_err(|_| Error::Usage(format!("regime {s:?}: N must be a layer number")))
}

impl Regime {
    /// Full layers above frost line `n` (`frost-line=N`).
    pub fn frost_line_at(n: usize) -> Self {
        Regime::FrostLine {
            line: n,
            tuning: Tuning::Full,
        }
    }
}

impl FromStr for Regime {
    type Err = Error;

    /// `fully-frozen`, `frozen-backbone`, `contrastive,frost-line=N`, or
    /// `[freeze-head=TASK,][bitfit|lora,]frost-line=N` (`freeze-head=TASK` alone: on the cache).
    fn from_str(s: &str) -> Result<Self, Error> {
        let unknown = || {
            Error::Usage(format!(
                "unknown regime {s:?}; use fully-frozen, frozen-backbone, freeze-head=a|b|TASK[,bitfit|lora][,frost-line=N], frost-line=N, bitfit,frost-line=N, lora,frost-line=N or contrastive,frost-line=N"
            ))
        };
        let mut parts: &[&str] = &s.split(',').collect::<Vec<_>>();
        match parts {
            ["fully-frozen"] => return Ok(Regime::FullyFrozen),
            ["frozen-backbone"] => return Ok(Regime::FrozenBackbone),
            ["contrastive", line] => {
                if let Some(n) = line.strip_prefix("frost-line=") {
                    return Ok(Regime::Contrastive {
                        frost_line: parse_layer(s, n)?,
                    });
                }
            }
            ["contrastive", ..] => return Err(Error::Usage(
                "regime \"contrastive\" needs ,frost-line=N, the first layer that the pairs tune (0 = the whole body): contrastive,frost-line=N".into(),
            )),
            ["freeze-head", ..] => return Err(Error::Usage(
                "regime \"freeze-head\" needs =TASK, the task whose head stays frozen: freeze-head=TASK (or freeze-head=TASK,frost-line=N)".into(),
            )),
            _ => {}
        }
        let mut head = None;
        if let Some(name) = parts.first().and_then(|p| p.strip_prefix("freeze-head=")) {
            if name.is_empty() || name.contains('=') {
                return Err(unknown());
            }
            head = Some(name.to_string());
            parts = &parts[1..];
        }
        let mut tuning = Tuning::Full;
        if let Some(t) = parts.first().and_then(|p| Tuning::from_word(p)) {
            tuning = t;
            parts = &parts[1..];
        }
        let line = match parts {
            [] => None,
            ["frost-line"] => return Err(Error::Usage(
                "regime \"frost-line\" needs =N, the first layer that trains (0 = every layer, the model's layer count − 1 = its top layer alone): frost-line=N".into(),
            )),
            [line] => match line.strip_prefix("frost-line=") {
                Some(n) => Some(parse_layer(s, n)?),
                None => return Err(unknown()),
            },
            _ => return Err(unknown()),
        };
        match (head, line) {
            (_, None) if tuning != Tuning::Full => Err(Error::Usage(format!(
                "regime {s:?}: {} tunes layers above a frost line; add ,frost-line=N, the first layer it adapts (0 = every layer)",
                tuning.word().unwrap_or_default()
            ))),
            (Some(head), frost_line) => Ok(Regime::FreezeHead {
                head,
                frost_line,
                tuning,
            }),
            (None, Some(line)) => Ok(Regime::FrostLine { line, tuning }),
            (None, None) => Err(unknown()),
        }
    }
}

impl fmt::Display for Regime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tuned = |f: &mut fmt::Formatter<'_>, tuning: Tuning, n: usize| match tuning.word() {
            Some(word) => write!(f, "{word},frost-line={n}"),
            None => write!(f, "frost-line={n}"),
        };
        match self {
            Regime::FullyFrozen => f.write_str("fully-frozen"),
            Regime::FrozenBackbone => f.write_str("frozen-backbone"),
            Regime::FreezeHead {
                head,
                frost_line: None,
                ..
            } => write!(f, "freeze-head={head}"),
            Regime::FreezeHead {
                head,
                frost_line: Some(n),
                tuning,
            } => {
                write!(f, "freeze-head={head},")?;
                tuned(f, *tuning, *n)
            }
            Regime::FrostLine { line, tuning } => tuned(f, *tuning, *line),
            Regime::Contrastive { frost_line } => write!(f, "contrastive,frost-line={frost_line}"),
        }
    }
}

impl TryFrom<String> for Regime {
    type Error = Error;

    fn try_from(s: String) -> Result<Self, Error> {
        s.parse()
    }
}

impl From<Regime> for String {
    fn from(r: Regime) -> String {
        r.to_string()
    }
}

/// Where a task head's weights start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadStart {
    /// Copied from the `from` checkpoint: kept as it is when frozen, trained further otherwise.
    Checkpoint,
    /// Built afresh: random init, or set from data for a training-free head.
    Fresh,
}

/// What a regime means for one run: computed here and nowhere else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Layers at and above this depth run (and train) natively; `None` = the cached vectors.
    pub frost_line: Option<usize>,
    /// What trains of those layers (the features hold the layers and offer those parameters).
    pub tuning: Tuning,
    /// The head that keeps its checkpoint weights, by task position.
    pub frozen_head: Option<usize>,
    /// Whether any parameter trains (false for `fully-frozen`).
    pub trains: bool,
    /// Where each task's head starts, in task order.
    pub head_starts: Vec<HeadStart>,
    /// The layers above the frost line are tuned by contrastive pairs before the heads train
    /// (and only then): two stages, each with its own parameters ([`Plan::stages`]).
    pub contrastive: bool,
}

impl Regime {
    /// The depth below which the backbone stays frozen in ONNX when layers above it train.
    pub fn frost_line(&self) -> Option<usize> {
        match self {
            Regime::FrostLine { line: n, .. } | Regime::Contrastive { frost_line: n } => Some(*n),
            Regime::FreezeHead { frost_line, .. } => *frost_line,
            _ => None,
        }
    }

    /// What trains of the layers above the frost line (full layers where there is none).
    pub fn tuning(&self) -> Tuning {
        match self {
            Regime::FrostLine { tuning, .. } | Regime::FreezeHead { tuning, .. } => *tuning,
            _ => Tuning::Full,
        }
    }

    /// The plan for tasks `task_names` with heads `head`, starting from a checkpoint when
    /// `has_from`. Combinations that cannot work are usage errors that say what to give.
    pub fn plan(
        &self,
        task_names: &[String],
        head: &HeadSpec,
        has_from: bool,
    ) -> Result<Plan, Error> {
        let training_free = head.is_training_free();
        match self {
            Regime::FullyFrozen if !has_from && !training_free => {
                return Err(Error::Usage(
                    "regime fully-frozen trains nothing: give train.from = CHECKPOINT (--from), or head = \"centroid\" or \"zero-shot\"".into(),
                ))
            }
            Regime::FreezeHead { head: which, .. } if !has_from => {
                return Err(Error::Usage(format!(
                    "regime freeze-head={which} keeps a trained head fixed: give train.from = CHECKPOINT (--from) holding it"
                )))
            }
            Regime::FrozenBackbone
            | Regime::FreezeHead { .. }
            | Regime::FrostLine { .. }
            | Regime::Contrastive { .. }
                if training_free =>
            {
                return Err(Error::Usage(format!(
                    "head {} is training-free; use regime fully-frozen",
                    head.name()
                )))
            }
            _ => {}
        }
        let frozen_head = self.frozen_head(task_names)?;
        // With a checkpoint every head starts from it, except a training-free head that
        // fully-frozen was asked to build afresh.
        let from_checkpoint = |i: usize| {
            has_from
                && (frozen_head == Some(i)
                    || !(training_free && matches!(self, Regime::FullyFrozen)))
        };
        Ok(Plan {
            frost_line: self.frost_line(),
            tuning: self.tuning(),
            frozen_head,
            trains: !matches!(self, Regime::FullyFrozen),
            contrastive: matches!(self, Regime::Contrastive { .. }),
            head_starts: (0..task_names.len())
                .map(|i| {
                    if from_checkpoint(i) {
                        HeadStart::Checkpoint
                    } else {
                        HeadStart::Fresh
                    }
                })
                .collect(),
        })
    }

    /// Index of the frozen head for `FreezeHead`, resolving `a`/`b` or a task name.
    fn frozen_head(&self, task_names: &[String]) -> Result<Option<usize>, Error> {
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
}

impl Plan {
    /// The parameters the optimizer sees: every head but the frozen one, plus the native
    /// encoder layers when there is a frost line (`encoder` is empty otherwise).
    pub fn trainable(&self, heads: &[Head], encoder: &[ParamId]) -> Vec<ParamId> {
        if !self.trains {
            return Vec::new();
        }
        let heads = heads
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != self.frozen_head)
            .flat_map(|(_, h)| h.param_ids());
        encoder.iter().copied().chain(heads).collect()
    }

    /// What each stage's optimizer sees: the contrastive stage the encoder layers alone, the
    /// heads' stage the heads (and the layers too, unless they were tuned by pairs first).
    pub fn stages(&self, heads: &[Head], encoder: &[ParamId]) -> Stages {
        let all = self.trainable(heads, encoder);
        if !self.contrastive {
            return Stages {
                pairs: Vec::new(),
                heads: all,
            };
        }
        let (pairs, heads) = all.into_iter().partition(|p| encoder.contains(p));
        Stages { pairs, heads }
    }
}

/// The parameters each stage of a run trains (see [`Plan::stages`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stages {
    /// Tuned by contrastive pairs before the heads train; empty unless the regime is
    /// `contrastive`.
    pub pairs: Vec<ParamId>,
    /// Trained with the heads' losses.
    pub heads: Vec<ParamId>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::{ParamStore, Rng};

    fn names() -> Vec<String> {
        vec!["intent".into(), "sentiment".into()]
    }

    #[test]
    fn plans_pick_parameters() {
        let mut store = ParamStore::default();
        let mut rng = Rng::new(1);
        let heads = vec![
            Head::new(&mut store, "intent", HeadSpec::LINEAR, 4, 3, &mut rng),
            Head::new(
                &mut store,
                "sentiment",
                HeadSpec::new(
                    HeadKind::Mlp,
                    MlpShape {
                        hidden: 5,
                        dropout: 0.1,
                    },
                ),
                4,
                2,
                &mut rng,
            ),
        ];
        let encoder = vec![store.add("encoder.layer.5.x", crate::nn::params::zeros(&[2]))];
        let heads_only: Vec<ParamId> = heads.iter().flat_map(Head::param_ids).collect();
        let plan = |s: &str, from: bool| {
            s.parse::<Regime>()
                .unwrap()
                .plan(&names(), &HeadSpec::LINEAR, from)
                .unwrap()
        };
        // Without a frost line the features have no encoder parameters to offer.
        assert_eq!(
            plan("frozen-backbone", false).trainable(&heads, &[]),
            heads_only
        );
        assert!(plan("fully-frozen", true).trainable(&heads, &[]).is_empty());
        assert_eq!(
            plan("freeze-head=a", true).trainable(&heads, &[]),
            heads[1].param_ids()
        );
        assert_eq!(
            plan("freeze-head=sentiment", true).trainable(&heads, &[]),
            heads[0].param_ids()
        );
        let mut with_encoder = encoder.clone();
        with_encoder.extend(heads[1].param_ids());
        // Which encoder parameters a tuning offers is the features' business (they hold the
        // layers); the plan carries the tuning to them.
        assert_eq!(plan("lora,frost-line=4", false).tuning, Tuning::Lora);
        let p = plan("freeze-head=a,frost-line=4", true);
        assert_eq!(p.trainable(&heads, &encoder), with_encoder);
        assert_eq!(p.frost_line, Some(4));
        assert_eq!(p.frozen_head, Some(0));
        assert_eq!(
            plan("frost-line=4", false)
                .trainable(&heads, &encoder)
                .len(),
            1 + heads_only.len()
        );
        // Contrastive: the pairs tune the layers alone, then the heads train alone.
        let p = plan("contrastive,frost-line=4", false);
        assert_eq!(p.frost_line, Some(4));
        let stages = p.stages(&heads, &encoder);
        assert_eq!(stages.pairs, encoder);
        assert_eq!(stages.heads, heads_only);
        let stages = plan("frost-line=4", false).stages(&heads, &encoder);
        assert!(stages.pairs.is_empty());
        assert_eq!(stages.heads.len(), 1 + heads_only.len());
    }

    #[test]
    fn plans_say_where_heads_start_and_refuse_what_cannot_work() {
        use HeadStart::*;
        let r = |s: &str| s.parse::<Regime>().unwrap();
        let n = names();
        assert_eq!(
            r("frozen-backbone")
                .plan(&n, &HeadSpec::LINEAR, false)
                .unwrap()
                .head_starts,
            vec![Fresh, Fresh]
        );
        assert_eq!(
            r("frost-line=4")
                .plan(&n, &HeadSpec::LINEAR, true)
                .unwrap()
                .head_starts,
            vec![Checkpoint, Checkpoint]
        );
        // A training-free head under fully-frozen is built afresh even with a checkpoint.
        assert_eq!(
            r("fully-frozen")
                .plan(
                    &n,
                    &HeadSpec {
                        kind: HeadKind::Centroid,
                        mlp: None
                    },
                    true
                )
                .unwrap()
                .head_starts,
            vec![Fresh, Fresh]
        );
        let err = |s: &str, head: HeadSpec, from: bool| {
            r(s).plan(&n, &head, from).unwrap_err().to_string()
        };
        assert!(err("fully-frozen", HeadSpec::LINEAR, false).contains("--from"));
        assert!(err("freeze-head=a", HeadSpec::LINEAR, false).contains("--from"));
        assert!(err(
            "frozen-backbone",
            HeadSpec {
                kind: HeadKind::Centroid,
                mlp: None
            },
            false
        )
        .contains("training-free"));
        assert!(err("freeze-head=c", HeadSpec::LINEAR, true).contains("no such task"));
    }

    #[test]
    fn parses_prints_and_serialises() {
        for s in [
            "fully-frozen",
            "frozen-backbone",
            "freeze-head=a",
            "freeze-head=a,frost-line=4",
            "frost-line=3",
            "contrastive,frost-line=0",
            "bitfit,frost-line=4",
            "lora,frost-line=0",
            "freeze-head=a,lora,frost-line=4",
            "freeze-head=intent,bitfit,frost-line=2",
        ] {
            let r: Regime = s.parse().unwrap();
            assert_eq!(r.to_string(), s);
            let json = serde_json::to_string(&r).unwrap();
            assert_eq!(json, format!("{s:?}"));
            assert_eq!(serde_json::from_str::<Regime>(&json).unwrap(), r);
        }
        for bad in [
            "frost-line=x",
            "freeze-head=",
            "thawed",
            "contrastive",
            "contrastive=2",
            "lora",
            "bitfit,frost-line",
            "freeze-head=a,lora",
            "lora,bitfit,frost-line=2",
            "frost-line=2,lora",
            "contrastive,lora,frost-line=2",
        ] {
            assert!(bad.parse::<Regime>().is_err(), "{bad}");
        }
        let r: Regime = "freeze-head=b,lora,frost-line=3".parse().unwrap();
        assert_eq!((r.frost_line(), r.tuning()), (Some(3), Tuning::Lora));
        assert_eq!(
            "frost-line=3".parse::<Regime>().unwrap().tuning(),
            Tuning::Full
        );
        let err = "lora".parse::<Regime>().unwrap_err().to_string();
        assert!(err.contains(",frost-line=N"), "{err}");
    }
}
