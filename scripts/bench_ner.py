"""NER benchmark on WNUT-17 (test, entity-level micro-F1 as seqeval's default mode computes it).

1. Layer sweep: frostline's frozen-backbone linear token head on the word features of every
   layer of all-MiniLM-L6-v2, next to scikit-learn LogisticRegression on the very same cached
   word features (`frostline embed` of the CoNLL files, one row per word).
2. The frost line: layers N..L-1 trained natively with the token head on layer L's word features
   (the top half of the model; and one layer under the default layer), next to a PyTorch
   fine-tune of the same layers (layers < N frozen, same head, epochs, batch, learning rates,
   schedule and clipping, best dev epoch kept), with the training time per epoch of each.
3. Joint training: Banking77 intents + WNUT-17 entities in one run file, and each head frozen.
Writes a Markdown report."""

import argparse
import csv
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402


def read_conll(path):
    sents, words, tags = [], [], []
    for line in open(path, encoding="utf-8"):
        line = line.rstrip("\n")
        if not line.strip():
            if words:
                sents.append((words, tags))
                words, tags = [], []
            continue
        w, t = line.split("\t")
        words.append(w)
        tags.append(t)
    if words:
        sents.append((words, tags))
    return sents


def seq_f1(truth, pred):
    from seqeval.metrics import f1_score

    return 100 * f1_score(truth, pred)


def regroup(flat, sents):
    out, at = [], 0
    for w, _ in sents:
        out.append(list(flat[at : at + len(w)]))
        at += len(w)
    return out


def viterbi(probs, classes):
    """Most probable valid-IOB2 sequence (no I-X after O or B-Y), as frostline decodes."""
    k = len(classes)

    def ok(prev, cur):
        c = classes[cur]
        if not c.startswith("I-"):
            return True
        if prev is None:
            return False
        p = classes[prev]
        return p[2:] == c[2:] and p[:2] in ("B-", "I-")

    lp = np.log(np.maximum(probs, 1e-12))
    score = np.array([lp[0, c] if ok(None, c) else -np.inf for c in range(k)])
    back = np.zeros((len(probs), k), dtype=int)
    for i in range(1, len(probs)):
        nxt = np.full(k, -np.inf)
        for c in range(k):
            for p in range(k):
                if score[p] > -np.inf and ok(p, c) and score[p] > nxt[c]:
                    nxt[c], back[i, c] = score[p], p
            nxt[c] += lp[i, c]
        score = nxt
    path = [int(np.argmax(score))]
    for i in range(len(probs) - 1, 0, -1):
        path.append(int(back[i, path[-1]]))
    return path[::-1]


def frostline_train(fl, run, out, cache, sets):
    args = ["--no-progress", "--run", run, "--out", out, "--force", "--cache-dir", cache]
    for s in sets:
        args += ["--set", s]
    j, wall = benchlib.run_frostline(fl, "train", *args)
    ner = next(t for t in j["tasks"] if t["name"] == "ner")
    log = list(csv.DictReader(open(Path(out) / "training_log.csv")))
    epoch_train = [float(r["train_seconds"]) for r in log if r["task"] == "ner"]
    return ner, j, wall, epoch_train


def torch_finetune(model_dir, data, n, top, epochs, batch, enc_lr, head_lr, wd, warmup, clip, seed, bf16=False):
    """Layers n..top-1 of the model (the model cut after `top` layers) and a linear head on each
    word's first sub-token there, trained with frostline's recipe (AdamW, linear warm-up then
    cosine, global clip). `bf16`: the training steps under torch.autocast("cpu", bfloat16)."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    torch.manual_seed(seed)
    torch.set_num_threads(2)
    tok = AutoTokenizer.from_pretrained(model_dir)
    # frostline's native layers have no dropout; the same here.
    model = AutoModel.from_pretrained(model_dir, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model.encoder.layer = model.encoder.layer[:top]
    model.train()
    for p in model.embeddings.parameters():
        p.requires_grad = False
    for i, layer in enumerate(model.encoder.layer):
        for p in layer.parameters():
            p.requires_grad = i >= n
    if hasattr(model, "pooler") and model.pooler is not None:
        for p in model.pooler.parameters():
            p.requires_grad = False
    train, dev, test = (read_conll(data / f"{s}.conll") for s in ("train", "dev", "test"))
    classes = sorted({t for _, ts in train for t in ts})
    idx = {c: i for i, c in enumerate(classes)}
    head = torch.nn.Linear(model.config.hidden_size, len(classes))

    def encode(sents):
        enc = tok([w for w, _ in sents], is_split_into_words=True, truncation=True, max_length=256,
                  padding=True, return_tensors="pt")
        firsts = []
        for b in range(len(sents)):
            seen, pos = set(), []
            for t, wid in enumerate(enc.word_ids(b)):
                if wid is not None and wid not in seen:
                    seen.add(wid)
                    pos.append(t)
            firsts.append(pos)
        return enc, firsts

    def word_logits(sents):
        enc, firsts = encode(sents)
        h = model(**enc).last_hidden_state
        rows = [h[b, pos] for b, pos in enumerate(firsts)]
        return head(torch.cat(rows)), [len(p) for p in firsts]

    enc_params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(
        [{"params": enc_params, "lr": enc_lr}, {"params": head.parameters(), "lr": head_lr}],
        weight_decay=wd,
    )
    steps_per_epoch = math.ceil(len(train) / batch)
    total = steps_per_epoch * epochs
    warm = round(warmup * total)

    def scale(step):
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, scale)
    rng = np.random.default_rng(seed)

    def evaluate(sents):
        model.eval()
        preds = []
        with torch.no_grad():
            for i in range(0, len(sents), 64):
                part = sents[i : i + 64]
                logits, lens = word_logits(part)
                probs = torch.softmax(logits, -1).numpy()
                at = 0
                for n_words, (w, _) in zip(lens, part):
                    p = probs[at : at + n_words]
                    at += n_words
                    tags = [classes[c] for c in viterbi(p, classes)]
                    preds.append(tags + ["O"] * (len(w) - len(tags)))
        model.train()
        return seq_f1([t for _, t in sents], preds)

    best, per_epoch = (-1.0, None, None), []
    for epoch in range(epochs):
        order = rng.permutation(len(train))
        t0 = time.perf_counter()
        for s in range(steps_per_epoch):
            part = [train[i] for i in order[s * batch : (s + 1) * batch]]
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                logits, lens = word_logits(part)
            y = torch.tensor([idx[t] for (_, ts), n_words in zip(part, lens) for t in ts[:n_words]])
            loss = torch.nn.functional.cross_entropy(logits.float(), y)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(enc_params + list(head.parameters()), clip)
            opt.step()
            sched.step()
        per_epoch.append(time.perf_counter() - t0)
        dev_f1 = evaluate(dev)
        if dev_f1 > best[0]:
            best = (dev_f1, epoch + 1, evaluate(test))
        print(f"torch epoch {epoch + 1}: {per_epoch[-1]:.1f} s, dev F1 {dev_f1:.2f}", file=sys.stderr)
    return best, per_epoch


def main():
    ap = argparse.ArgumentParser()
    benchlib.common_args(ap, "frostline", "model", "shared", "work", "out")
    ap.add_argument("--frost-line", type=int, default=3)
    ap.add_argument("--frost-epochs", type=int, default=4)
    ap.add_argument("--skip-torch", action="store_true")
    a = ap.parse_args()
    fl, work, data = a.frostline, Path(a.work), Path(a.shared) / "data" / "wnut17"
    work.mkdir(parents=True, exist_ok=True)
    cache = work / "cache"
    model = Path(a.model).resolve()
    run = work / "ner.toml"
    run.write_text(
        f'model = "{model}"\nseed = 13\n[train]\nregime = "frozen-backbone"\nhead = "linear"\nepochs = 20\n'
        f'[[tasks]]\nname = "ner"\nkind = "token-classification"\n'
        f'train = "{data / "train.conll"}"\ndev = "{data / "dev.conll"}"\ntest = "{data / "test.conll"}"\n'
    )
    splits = {s: read_conll(data / f"{s}.conll") for s in ("train", "dev", "test")}
    truth_test = [t for _, t in splits["test"]]
    layers = json.load(open(model / "config.json"))["num_hidden_layers"]

    # 1. Layer sweep: frostline vs scikit-learn on the same cached word features.
    from sklearn.linear_model import LogisticRegression

    sweep = []
    for layer in range(layers + 1):
        feats = {}
        for s in ("train", "test"):
            out = work / f"{s}-L{layer}.npy"
            benchlib.sh([fl, "embed", "--no-progress", "--model", model, "--input", data / f"{s}.conll",
                         "--output", out, "--token-layer", layer, "--cache-dir", cache])
            feats[s] = np.load(out)
        y = np.array([t for _, ts in splits["train"] for t in ts])
        t0 = time.perf_counter()
        lr = LogisticRegression(C=1.0, max_iter=1000)
        lr.fit(feats["train"], y)
        sk_seconds = time.perf_counter() - t0
        sk_pred = regroup(lr.predict(feats["test"]), splits["test"])
        probs = lr.predict_proba(feats["test"])
        classes = list(lr.classes_)
        sk_constrained, at = [], 0
        for w, _ in splits["test"]:
            sk_constrained.append([classes[c] for c in viterbi(probs[at : at + len(w)], classes)])
            at += len(w)
        row = {"layer": layer, "sk": seq_f1(truth_test, sk_pred),
               "sk_bio": seq_f1(truth_test, sk_constrained), "sk_seconds": sk_seconds}
        for decoding in ("constrained", "argmax"):
            ner, _, wall, _ = frostline_train(
                fl, run, work / f"ck-L{layer}-{decoding}", cache,
                [f"tasks.ner.token_layer={layer}", f"tasks.ner.decoding={decoding}"])
            row[f"fl_{decoding}"] = 100 * ner["test"]["entity_f1"]
            row[f"fl_{decoding}_dev"] = 100 * ner["dev"]["entity_f1"]
            row["fl_seconds"] = wall
        sweep.append(row)
        print(json.dumps(row), file=sys.stderr)

    # 2. The frost line vs PyTorch, same layers and budget: (frost line N, layer read) pairs —
    # the top half of the model read at the top, and one layer under the default layer.
    recipe = dict(epochs=a.frost_epochs, batch=16, enc_lr=1e-4, head_lr=1e-3, wd=0.01, warmup=0.05, clip=1.0)
    default_layer = max(sweep, key=lambda r: r["fl_constrained_dev"])["layer"]
    frost_rows = []
    for n, top in [(a.frost_line, layers), (default_layer - 1, default_layer)]:
        sets = [f"train.regime=frost-line={n}", f"tasks.ner.token_layer={top}",
                f"train.epochs={recipe['epochs']}", f"train.batch_size={recipe['batch']}",
                f"train.encoder_lr={recipe['enc_lr']}", f"train.lr={recipe['head_lr']}", "train.patience=0"]
        ner, j, wall, fl_epochs = frostline_train(fl, run, work / f"ck-frost-{n}-{top}", cache, sets)
        frost = {"n": n, "top": top, "f1": 100 * ner["test"]["entity_f1"], "dev": 100 * ner["dev"]["entity_f1"],
                 "epoch_s": float(np.median(fl_epochs)), "train_s": j["training_seconds"],
                 "best": j["best_epoch"], "params": j["trainable_params"], "embed_s": j["embed_seconds"]}
        torch_row = None
        if not a.skip_torch:
            (dev_f1, best_epoch, test_f1), per_epoch = torch_finetune(
                model, data, n, top, recipe["epochs"], recipe["batch"], recipe["enc_lr"],
                recipe["head_lr"], recipe["wd"], recipe["warmup"], recipe["clip"], 13)
            torch_row = {"f1": test_f1, "dev": dev_f1, "best": best_epoch,
                         "epoch_s": float(np.median(per_epoch)), "epochs_s": per_epoch}
        frost_rows.append((frost, torch_row))

    # 3. Joint training: Banking77 intents + WNUT-17 entities in one run file, then each head frozen.
    b77 = Path(a.shared) / "data" / "banking77"
    joint_run = work / "joint.toml"
    joint_run.write_text(
        f'model = "{model}"\nseed = 13\n[train]\nregime = "frozen-backbone"\nhead = "linear"\nepochs = 20\n'
        f'[[tasks]]\nname = "intent"\ntrain = "{b77 / "train.csv"}"\ntest = "{b77 / "test.csv"}"\n'
        f'[[tasks]]\nname = "ner"\nkind = "token-classification"\n'
        f'train = "{data / "train.conll"}"\ndev = "{data / "dev.conll"}"\ntest = "{data / "test.conll"}"\n'
    )
    joint = []
    base = work / "ck-joint"
    for name, sets in [("frozen-backbone (both heads train)", []),
                       ("freeze-head=intent (entities head continues)", ["train.regime=freeze-head=intent", f"train.from={base}"]),
                       ("freeze-head=ner (intent head continues)", ["train.regime=freeze-head=ner", f"train.from={base}"])]:
        out = work / ("ck-joint" if not sets else f"ck-joint-{sets[0].split('=')[-1]}")
        _, j, wall, _ = frostline_train(fl, joint_run, out, cache, sets)
        by = {t["name"]: t for t in j["tasks"]}
        joint.append({"run": name, "intent_acc": 100 * by["intent"]["test"]["accuracy"],
                      "intent_f1": 100 * by["intent"]["test"]["macro_f1"],
                      "ner_f1": 100 * by["ner"]["test"]["entity_f1"], "ner_acc": 100 * by["ner"]["test"]["accuracy"],
                      "train_s": j["training_seconds"], "params": j["trainable_params"]})

    # The layer is chosen on dev, as a user would; test only reports.
    best_layer = max(sweep, key=lambda r: r["fl_constrained_dev"])
    json.dump({"sweep": sweep, "frost": frost_rows, "joint": joint}, open(work / "results.json", "w"), indent=1)
    L = [f"# NER on WNUT-17 — frostline vs scikit-learn and PyTorch\n",
         f"Written by `scripts/bench_ner.sh`. Model all-MiniLM-L6-v2; WNUT-17 train {len(splits['train'])} / "
         f"dev {len(splits['dev'])} / test {len(splits['test'])} sentences; entity-level micro-F1 on test "
         "(exact span and type; seqeval's default mode — `seqeval.metrics.f1_score` for the Python rows, "
         "frostline's own metric for its rows). Word feature = the word's first sub-token.\n",
         "## 1. Frozen word features, layer by layer\n",
         "Same cached word features for both (`frostline embed --token-layer L` of the CoNLL files). "
         "frostline: frozen-backbone linear token head (20 epochs, best dev epoch, AdamW lr 2e-2). "
         "scikit-learn: `LogisticRegression(C=1, max_iter=1000)` on the same train words, "
         "each word's argmax tag, and the same probabilities decoded as valid BIO.\n",
         "Layer L = the states after L layers (0 = the embeddings, 6 = the last layer).\n",
         "| layer | frostline dev (BIO) | frostline test (BIO decoding) | frostline test (argmax) | scikit-learn LR test (argmax) | scikit-learn LR test (BIO decoding) | LR fit s | frostline run s |",
         "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in sweep:
        L.append(f"| {r['layer']} | {r['fl_constrained_dev']:.2f} | {r['fl_constrained']:.2f} | {r['fl_argmax']:.2f} | "
                 f"{r['sk']:.2f} | {r['sk_bio']:.2f} | {r['sk_seconds']:.1f} | {r['fl_seconds']:.1f} |")
    L.append(f"\nBest layer on dev: **{best_layer['layer']}** (dev {best_layer['fl_constrained_dev']:.2f}) — "
             f"frostline's default `token_layer`. There, on test: frostline {best_layer['fl_constrained']:.2f} "
             f"(argmax {best_layer['fl_argmax']:.2f}); scikit-learn on the same features "
             f"{best_layer['sk']:.2f} argmax / {best_layer['sk_bio']:.2f} BIO-decoded. frostline − scikit-learn "
             f"with the same decoding: {best_layer['fl_argmax'] - best_layer['sk']:+.2f} (argmax), "
             f"{best_layer['fl_constrained'] - best_layer['sk_bio']:+.2f} (BIO).\n")
    L.append("## 2. Frost line vs a PyTorch fine-tune of the same layers\n")
    L.append("Layers N..L−1 train with a linear token head on each word's first sub-token state after layer L; "
             "layers below N frozen. Same recipe for both: "
             f"{recipe['epochs']} epochs, batch {recipe['batch']} sentences, AdamW (encoder lr {recipe['enc_lr']}, "
             f"head lr {recipe['head_lr']}, weight decay {recipe['wd']}), 5 % linear warm-up then cosine, gradient clip "
             f"{recipe['clip']}, the best dev epoch kept, BIO-constrained decoding, no dropout. frostline reads the cached "
             "layer-N token states and runs only the trained layers natively; PyTorch (transformers, "
             "`torch.set_num_threads(2)`) runs the model cut after layer L, forward from the embeddings every step. "
             "Time per epoch = the training steps alone (median over epochs).\n")
    L.append("| run | test entity F1 | dev entity F1 | best epoch | s / epoch | trainable params |")
    L.append("|---|---:|---:|---:|---:|---:|")
    L.append(f"| frostline frozen backbone, layer {best_layer['layer']} | {best_layer['fl_constrained']:.2f} | "
             f"{best_layer['fl_constrained_dev']:.2f} | | | |")
    for frost, torch_row in frost_rows:
        n, top = frost["n"], frost["top"]
        L.append(f"| frostline frost line N={n}, layer {top} | {frost['f1']:.2f} | {frost['dev']:.2f} | {frost['best']} | "
                 f"{frost['epoch_s']:.1f} | {frost['params']} |")
        if torch_row:
            L.append(f"| PyTorch fine-tune, layers {n}..{top - 1}, layer {top} | {torch_row['f1']:.2f} | {torch_row['dev']:.2f} | "
                     f"{torch_row['best']} | {torch_row['epoch_s']:.1f} | |")
    L.append("")
    for frost, torch_row in frost_rows:
        line = (f"- N={frost['n']}, layer {frost['top']}: frost line − best frozen layer "
                f"{frost['f1'] - best_layer['fl_constrained']:+.2f} points")
        if torch_row:
            line += (f"; frostline − PyTorch {frost['f1'] - torch_row['f1']:+.2f} points (within 1: "
                     f"{'yes' if abs(frost['f1'] - torch_row['f1']) <= 1 else 'no'}); time per epoch "
                     f"{frost['epoch_s'] / torch_row['epoch_s']:.2f}× PyTorch's (target ≤ 0.5×: "
                     f"{'met' if frost['epoch_s'] <= 0.5 * torch_row['epoch_s'] else 'not met'})")
        L.append(line + ".")
    L.append("")
    L.append("## 3. Joint training: Banking77 intents + WNUT-17 entities in one run\n")
    L.append("One run file, the full Banking77 (10 % of train carved as dev) beside WNUT-17, frozen backbone, "
             f"linear heads, 20 epochs; then from that checkpoint each head frozen (`freeze-head=`) while the other "
             f"continues on the cache. Entities read layer {best_layer['layer']} (the default).\n")
    L.append("| run | intent test accuracy | intent macro-F1 | entities test entity F1 | entities token accuracy | training s | trainable params |")
    L.append("|---|---:|---:|---:|---:|---:|---:|")
    for r in joint:
        L.append(f"| {r['run']} | {r['intent_acc']:.2f} | {r['intent_f1']:.2f} | {r['ner_f1']:.2f} | {r['ner_acc']:.2f} | "
                 f"{r['train_s']:.1f} | {r['params']} |")
    same_intent = joint[1]["intent_acc"] == joint[0]["intent_acc"] and joint[1]["intent_f1"] == joint[0]["intent_f1"]
    same_ner = joint[2]["ner_f1"] == joint[0]["ner_f1"]
    L.append(f"\nThe frozen head's scores equal the checkpoint's it came from: intent {'yes' if same_intent else 'NO'}, "
             f"entities {'yes' if same_ner else 'NO'} (same cache, weights checked bit for bit by training).\n")
    benchlib.write_report(a.out, L)


if __name__ == "__main__":
    main()
