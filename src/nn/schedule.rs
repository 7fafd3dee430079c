//! Learning-rate schedules: linear warm-up, then cosine or linear decay to zero, or constant.

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum Decay {
    Cosine,
    Linear,
    Constant,
}

/// The multiplier on the base learning rate at `step` of `total` (0-based).
pub fn lr_scale(step: usize, total: usize, warmup: usize, decay: Decay) -> f32 {
    if warmup > 0 && step < warmup {
        return (step + 1) as f32 / warmup as f32;
    }
    let span = total.saturating_sub(warmup).max(1) as f32;
    let progress = ((step - warmup.min(step)) as f32 / span).min(1.0);
    match decay {
        Decay::Constant => 1.0,
        Decay::Linear => 1.0 - progress,
        Decay::Cosine => 0.5 * (1.0 + (std::f32::consts::PI * progress).cos()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_decay() {
        assert_eq!(lr_scale(0, 100, 10, Decay::Cosine), 0.1);
        assert_eq!(lr_scale(9, 100, 10, Decay::Cosine), 1.0);
        assert!((lr_scale(10, 100, 10, Decay::Cosine) - 1.0).abs() < 1e-6);
        assert!((lr_scale(55, 100, 10, Decay::Cosine) - 0.5).abs() < 1e-6);
        assert!((lr_scale(55, 100, 10, Decay::Linear) - 0.5).abs() < 1e-6);
        assert_eq!(lr_scale(99, 100, 10, Decay::Constant), 1.0);
    }
}
