//! Finite-difference checks of every backward pass the heads use (no model needed).

use frostline::nn::act::{gelu, gelu_backward};
use frostline::nn::gemm::Kernel;
use frostline::nn::loss::cross_entropy;
use frostline::nn::optim::clip_grad_norm;
use frostline::nn::{Linear, ParamStore, Rng};
use frostline::train::{Head, HeadKind, HeadSpec, MlpShape};
use ndarray::{Array2, ArrayView2};

fn random(rows: usize, cols: usize, rng: &mut Rng) -> Array2<f32> {
    Array2::from_shape_simple_fn((rows, cols), || (rng.uniform() * 2.0 - 1.0) as f32)
}

/// Scalar probe: L = Σ r ⊙ y, so dL/dy = r.
fn probe(y: ArrayView2<f32>, r: &Array2<f32>) -> f64 {
    y.iter()
        .zip(r.iter())
        .map(|(a, b)| *a as f64 * *b as f64)
        .sum()
}

fn assert_close(analytic: f64, numeric: f64, what: &str) {
    let tol = 2e-3 * (1.0 + analytic.abs().max(numeric.abs()));
    assert!(
        (analytic - numeric).abs() <= tol,
        "{what}: analytic {analytic} vs numeric {numeric}"
    );
}

const EPS: f32 = 1e-2;

/// Every fp32 kernel this CPU runs (the gradient checks cover each product path).
fn fp32_kernels() -> Vec<Kernel> {
    let mut k = vec![Kernel::Portable];
    if Kernel::best_fp32() != Kernel::Portable {
        k.push(Kernel::best_fp32());
    }
    k
}

#[test]
fn linear_backward_matches_finite_differences() {
    for kernel in fp32_kernels() {
        linear_backward_check(kernel);
    }
}

fn linear_backward_check(kernel: Kernel) {
    let mut rng = Rng::new(1);
    let mut store = ParamStore::with_kernel(kernel);
    let lin = Linear::new(&mut store, "l", 4, 5, &mut rng);
    let x = random(3, 4, &mut rng);
    let r = random(3, 5, &mut rng);
    store.zero_grads();
    let dx = lin.backward(&mut store, x.view(), r.view(), true).unwrap();
    for id in [lin.weight, lin.bias] {
        for i in 0..store.get(id).value.len() {
            let analytic = store.get(id).grad.as_slice().unwrap()[i] as f64;
            let f = |delta: f32| {
                let mut s = store.clone();
                s.get_mut(id).value.as_slice_mut().unwrap()[i] += delta;
                probe(lin.forward(&s, x.view()).view(), &r)
            };
            let numeric = (f(EPS) - f(-EPS)) / (2.0 * EPS as f64);
            assert_close(analytic, numeric, &format!("{} [{i}]", store.get(id).name));
        }
    }
    for i in 0..x.len() {
        let f = |delta: f32| {
            let mut xp = x.clone();
            xp.as_slice_mut().unwrap()[i] += delta;
            probe(lin.forward(&store, xp.view()).view(), &r)
        };
        assert_close(
            dx.as_slice().unwrap()[i] as f64,
            (f(EPS) - f(-EPS)) / (2.0 * EPS as f64),
            &format!("dx[{i}]"),
        );
    }
}

#[test]
fn gelu_backward_matches_finite_differences() {
    let mut rng = Rng::new(2);
    let x = random(4, 6, &mut rng).mapv(|v| v * 3.0);
    let r = random(4, 6, &mut rng);
    let dx = gelu_backward(x.view(), r.view());
    for i in 0..x.len() {
        let f = |delta: f32| {
            let mut xp = x.clone();
            xp.as_slice_mut().unwrap()[i] += delta;
            probe(gelu(xp.view()).view(), &r)
        };
        assert_close(
            dx.as_slice().unwrap()[i] as f64,
            (f(EPS) - f(-EPS)) / (2.0 * EPS as f64),
            &format!("gelu dx[{i}]"),
        );
    }
    // Spot values of the exact erf form: GELU(1) = 0.841345, GELU(-1) = -0.158655.
    let g = gelu(ndarray::array![[1.0f32, -1.0]].view());
    assert!((g[[0, 0]] - 0.841_345).abs() < 1e-5 && (g[[0, 1]] + 0.158_655).abs() < 1e-5);
}

#[test]
fn cross_entropy_gradient_with_weights_and_smoothing() {
    let mut rng = Rng::new(3);
    let logits = random(5, 4, &mut rng).mapv(|v| v * 4.0);
    let targets = [0, 3, 1, 1, 2];
    let weights = [0.5f32, 2.0, 1.0, 3.0];
    for (cw, smoothing) in [
        (None, 0.0),
        (Some(&weights[..]), 0.0),
        (None, 0.1),
        (Some(&weights[..]), 0.2),
    ] {
        let (_, grad) = cross_entropy(logits.view(), &targets, cw, smoothing);
        for i in 0..logits.len() {
            let f = |delta: f32| {
                let mut lp = logits.clone();
                lp.as_slice_mut().unwrap()[i] += delta;
                cross_entropy(lp.view(), &targets, cw, smoothing).0 as f64
            };
            let numeric = (f(1e-2) - f(-1e-2)) / 2e-2;
            assert_close(
                grad.as_slice().unwrap()[i] as f64,
                numeric,
                &format!("CE grad[{i}] weights={cw:?} smoothing={smoothing}"),
            );
        }
    }
    // Hand value: uniform logits over 4 classes, no smoothing → ln 4.
    let (loss, _) = cross_entropy(Array2::zeros((1, 4)).view(), &[2], None, 0.0);
    assert!((loss - 4f32.ln()).abs() < 1e-6);
}

#[test]
fn whole_mlp_head_backward_matches_finite_differences_with_dropout() {
    let mut rng = Rng::new(4);
    let mut store = ParamStore::default();
    let head = Head::new(
        &mut store,
        "t",
        HeadSpec::new(
            HeadKind::Mlp,
            MlpShape {
                hidden: 6,
                dropout: 0.3,
            },
        ),
        5,
        3,
        &mut rng,
    );
    let x = random(4, 5, &mut rng);
    let targets = [0, 2, 1, 2];
    // The same seed gives the same dropout mask in every evaluation.
    let loss_at = |s: &ParamStore, xx: &Array2<f32>| {
        let (logits, _) = head.forward_train(s, xx.clone(), &mut Rng::new(99));
        cross_entropy(logits.view(), &targets, None, 0.0).0 as f64
    };
    let (logits, trace) = head.forward_train(&store, x.clone(), &mut Rng::new(99));
    let (_, dlogits) = cross_entropy(logits.view(), &targets, None, 0.0);
    store.zero_grads();
    let dx = head
        .backward(&mut store, &trace, dlogits.view(), true)
        .unwrap();
    for id in head.param_ids() {
        for i in 0..store.get(id).value.len() {
            let analytic = store.get(id).grad.as_slice().unwrap()[i] as f64;
            let f = |delta: f32| {
                let mut s = store.clone();
                s.get_mut(id).value.as_slice_mut().unwrap()[i] += delta;
                loss_at(&s, &x)
            };
            assert_close(
                analytic,
                (f(EPS) - f(-EPS)) / (2.0 * EPS as f64),
                &format!("{}[{i}]", store.get(id).name),
            );
        }
    }
    for i in 0..x.len() {
        let f = |delta: f32| {
            let mut xp = x.clone();
            xp.as_slice_mut().unwrap()[i] += delta;
            loss_at(&store, &xp)
        };
        assert_close(
            dx.as_slice().unwrap()[i] as f64,
            (f(EPS) - f(-EPS)) / (2.0 * EPS as f64),
            &format!("head dx[{i}]"),
        );
    }
}

#[test]
fn clipping_bounds_the_global_norm() {
    let mut rng = Rng::new(5);
    let mut store = ParamStore::default();
    let lin = Linear::new(&mut store, "l", 3, 2, &mut rng);
    store.get_mut(lin.weight).grad.fill(3.0);
    store.get_mut(lin.bias).grad.fill(4.0);
    let before = clip_grad_norm(&mut store, &[lin.weight, lin.bias], 1.0);
    assert!((before - (6.0f32 * 9.0 + 2.0 * 16.0).sqrt()).abs() < 1e-4);
    let after = clip_grad_norm(&mut store, &[lin.weight, lin.bias], 0.0);
    assert!((after - 1.0).abs() < 1e-3, "{after}");
}

// ---- the native encoder (frost line) ----

use frostline::backbone::{Pooling, PoolingMode};
use frostline::nn::attention::Segments;
use frostline::nn::bert::{pool_backward, pool_forward, BertLayer};
use frostline::nn::layernorm::LayerNorm;

/// Checks every listed parameter entry and every input entry of `f` by central differences.
fn check_all(
    store: &ParamStore,
    ids: &[usize],
    x: &Array2<f32>,
    analytic_dx: &Array2<f32>,
    f: &dyn Fn(&ParamStore, &Array2<f32>) -> f64,
) {
    for &id in ids {
        let n = store.get(id).value.len();
        // Every entry of small tensors, a spread of entries of larger ones.
        let step = (n / 40).max(1);
        for i in (0..n).step_by(step) {
            let analytic = store.get(id).grad.as_slice().unwrap()[i] as f64;
            let at = |d: f32| {
                let mut s = store.clone();
                s.get_mut(id).value.as_slice_mut().unwrap()[i] += d;
                f(&s, x)
            };
            assert_close(
                analytic,
                (at(EPS) - at(-EPS)) / (2.0 * EPS as f64),
                &format!("{}[{i}]", store.get(id).name),
            );
        }
    }
    for i in 0..x.len() {
        let at = |d: f32| {
            let mut xp = x.clone();
            xp.as_slice_mut().unwrap()[i] += d;
            f(store, &xp)
        };
        assert_close(
            analytic_dx.as_slice().unwrap()[i] as f64,
            (at(EPS) - at(-EPS)) / (2.0 * EPS as f64),
            &format!("dx[{i}]"),
        );
    }
}

#[test]
fn layer_norm_backward_matches_finite_differences() {
    let mut rng = Rng::new(11);
    let mut store = ParamStore::default();
    let g = store.add(
        "ln.weight",
        random(1, 6, &mut rng)
            .into_shape_with_order(6)
            .unwrap()
            .mapv(|v| 1.0 + v * 0.3)
            .into_dyn(),
    );
    let b = store.add(
        "ln.bias",
        random(1, 6, &mut rng)
            .into_shape_with_order(6)
            .unwrap()
            .into_dyn(),
    );
    let ln = LayerNorm {
        weight: g,
        bias: b,
        eps: 1e-12,
    };
    let x = random(4, 6, &mut rng).mapv(|v| v * 2.0);
    let r = random(4, 6, &mut rng);
    let (_, trace) = ln.forward(&store, x.view());
    store.zero_grads();
    let dx = ln.backward(&mut store, &trace, r.view());
    check_all(&store, &[g, b], &x, &dx, &|s, xx| {
        probe(ln.forward(s, xx.view()).0.view(), &r)
    });
}

#[test]
fn whole_bert_layer_backward_matches_finite_differences_on_packed_sequences() {
    for kernel in fp32_kernels() {
        bert_layer_check(kernel);
    }
}

fn bert_layer_check(kernel: Kernel) {
    // Three sequences of 5, 3 and 1 tokens packed into 9 rows: each attends only over its own.
    let (hidden, heads) = (8, 2);
    let seg = Segments::from_lens(&[5, 3, 1]);
    let mut rng = Rng::new(12);
    let mut store = ParamStore::with_kernel(kernel);
    let layer = BertLayer::random(&mut store, 0, hidden, heads, 16, &mut rng);
    let x = random(seg.total(), hidden, &mut rng);
    let r = random(seg.count(), hidden, &mut rng);
    let pooling = Pooling {
        mode: PoolingMode::Mean,
        normalize: true,
    };
    let loss = |s: &ParamStore, xx: &Array2<f32>| {
        let (y, _) = layer.forward(s, xx.clone(), &seg);
        let (pooled, _) = pool_forward(pooling, y.view(), &seg).unwrap();
        probe(pooled.view(), &r)
    };
    let (y, trace) = layer.forward(&store, x.clone(), &seg);
    let (_, ptrace) = pool_forward(pooling, y.view(), &seg).unwrap();
    let dy = pool_backward(pooling, &ptrace, r.view());
    store.zero_grads();
    let dx = layer.backward(&mut store, &trace, dy.view());
    check_all(&store, &layer.param_ids(), &x, &dx, &loss);
    // Sequences do not see each other: the third one's output is its own, alone.
    let alone = layer
        .forward(
            &store,
            x.slice(ndarray::s![8..9, ..]).to_owned(),
            &Segments::from_lens(&[1]),
        )
        .0;
    let packed = layer.forward(&store, x.clone(), &seg).0;
    assert_eq!(alone.row(0), packed.row(8));
}

#[test]
fn every_pooling_s_backward_matches_finite_differences() {
    let seg = Segments::from_lens(&[3, 2]);
    let hidden = 4;
    let mut rng = Rng::new(13);
    let y = random(seg.total(), hidden, &mut rng);
    let r = random(seg.count(), hidden, &mut rng);
    for pooling in [
        Pooling {
            mode: PoolingMode::Cls,
            normalize: false,
        },
        Pooling {
            mode: PoolingMode::Mean,
            normalize: false,
        },
        Pooling {
            mode: PoolingMode::Max,
            normalize: true,
        },
        Pooling {
            mode: PoolingMode::MeanSqrtLen,
            normalize: false,
        },
    ] {
        let (_, t) = pool_forward(pooling, y.view(), &seg).unwrap();
        let dy = pool_backward(pooling, &t, r.view());
        let store = ParamStore::default();
        check_all(&store, &[], &y, &dy, &|_, yy| {
            probe(pool_forward(pooling, yy.view(), &seg).unwrap().0.view(), &r)
        });
    }
}

/// A BERT-sized layer (hidden 384, 12 heads, 1536 inner) forward and backward with bf16
/// products against fp32: outputs and every gradient within a few percent in relative
/// (Frobenius) terms — bf16 keeps 8 mantissa bits, accumulation stays fp32.
#[test]
fn bf16_layer_forward_and_backward_stay_close_to_fp32() {
    let kernels = Kernel::bf16_kernels();
    if kernels.is_empty() {
        eprintln!("this CPU has no AVX512-BF16: nothing to compare");
    }
    for bf16 in kernels {
        bf16_layer_matches_fp32(bf16);
    }
}

/// One bf16 kernel's half of [`bf16_layer_forward_and_backward_stay_close_to_fp32`].
fn bf16_layer_matches_fp32(bf16: Kernel) {
    let seg = Segments::from_lens(&[40, 17, 64, 3]);
    let mut rng = Rng::new(21);
    let mut fp32 = ParamStore::with_kernel(Kernel::best_fp32());
    let layer = BertLayer::random(&mut fp32, 0, 384, 12, 1536, &mut rng);
    let mut half = fp32.clone();
    half.set_kernel(bf16);
    let x = random(seg.total(), 384, &mut rng);
    let dy = random(seg.total(), 384, &mut rng);
    let rel = |a: ArrayView2<f32>, b: ArrayView2<f32>| {
        let num: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
        let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
        (num / den).sqrt()
    };
    let mut outs = Vec::new();
    for store in [&mut fp32, &mut half] {
        let (y, trace) = layer.forward(store, x.clone(), &seg);
        store.zero_grads();
        let dx = layer.backward(store, &trace, dy.view());
        outs.push((y, dx));
    }
    let y_err = rel(outs[1].0.view(), outs[0].0.view());
    let dx_err = rel(outs[1].1.view(), outs[0].1.view());
    assert!(
        y_err > 0.0 && y_err < 0.02,
        "{bf16:?}: forward relative error {y_err}"
    );
    assert!(dx_err < 0.05, "{bf16:?}: dx relative error {dx_err}");
    for id in layer.param_ids() {
        if fp32.get(id).name.ends_with("key.bias") {
            // Softmax ignores a shift shared by every key: this gradient is zero up to
            // rounding in both precisions, so a ratio of the two is noise.
            continue;
        }
        let (a, b) = (&half.get(id).grad, &fp32.get(id).grad);
        let num: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
        let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
        let err = (num / den.max(1e-30)).sqrt();
        assert!(
            err < 0.05,
            "{bf16:?} {}: gradient relative error {err}",
            fp32.get(id).name
        );
    }
}

#[test]
fn lora_factors_backward_matches_finite_differences_and_merging_keeps_the_function() {
    use frostline::nn::adapter::{LoraShape, LoraTarget, Tuning};
    let (hidden, heads) = (8, 2);
    let seg = Segments::from_lens(&[4, 2]);
    let mut rng = Rng::new(21);
    let mut store = ParamStore::default();
    let mut layer = BertLayer::random(&mut store, 0, hidden, heads, 16, &mut rng);
    let shape = LoraShape {
        rank: 3,
        alpha: 6.0,
        targets: vec![
            LoraTarget::Query,
            LoraTarget::Value,
            LoraTarget::AttentionOutput,
            LoraTarget::Intermediate,
            LoraTarget::Output,
        ],
    };
    layer.attach_lora(&mut store, &shape, &mut rng);
    let lora = layer.tuned_ids(Tuning::Lora);
    assert_eq!(lora.len(), 2 * shape.targets.len());
    // B starts at zero (the adapter starts as the identity); give it values so dA is checked.
    for &id in &lora {
        if store.get(id).name.ends_with("lora_b") {
            assert!(store.get(id).value.iter().all(|&v| v == 0.0));
            let v = store
                .get(id)
                .value
                .mapv(|_| (rng.uniform() as f32 - 0.5) * 0.5);
            store.set(id, v);
        }
    }
    let base = layer.param_ids();
    store.train_only(&lora);
    let x = random(seg.total(), hidden, &mut rng);
    let r = random(seg.total(), hidden, &mut rng);
    let loss =
        |s: &ParamStore, xx: &Array2<f32>| probe(layer.forward(s, xx.clone(), &seg).0.view(), &r);
    let (_, trace) = layer.forward(&store, x.clone(), &seg);
    store.zero_grads();
    let dx = layer.backward(&mut store, &trace, r.view());
    check_all(&store, &lora, &x, &dx, &loss);
    // Frozen dense layers take no gradient: the costly dW products are skipped.
    for &id in &base {
        let p = store.get(id);
        if !p.name.contains("LayerNorm") {
            assert!(
                p.grad.iter().all(|&g| g == 0.0),
                "{} took a gradient",
                p.name
            );
        }
    }
    // Folding the factors into the weights gives the same layer.
    let before = layer.forward(&store, x.clone(), &seg).0;
    layer.merge_lora(&mut store);
    assert!(layer.tuned_ids(Tuning::Lora).is_empty());
    let after = layer.forward(&store, x.clone(), &seg).0;
    let worst = before
        .iter()
        .zip(after.iter())
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(worst < 1e-5, "merged layer differs by {worst}");
}

#[test]
fn bitfit_tunes_the_bias_terms_alone() {
    use frostline::nn::adapter::Tuning;
    let mut rng = Rng::new(22);
    let mut store = ParamStore::default();
    let layer = BertLayer::random(&mut store, 3, 8, 2, 16, &mut rng);
    let names: Vec<String> = layer
        .tuned_ids(Tuning::BitFit)
        .iter()
        .map(|&id| store.get(id).name.clone())
        .collect();
    assert_eq!(
        names.len(),
        8,
        "six dense biases and two LayerNorm betas: {names:?}"
    );
    assert!(names.iter().all(|n| n.ends_with(".bias")), "{names:?}");
    assert_eq!(layer.tuned_ids(Tuning::Full), layer.param_ids());
}
