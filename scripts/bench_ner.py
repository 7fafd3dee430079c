"""NER benchmark on WNUT-17 (test, entity-level micro-F1 as seqeval's default mode computes it).

1. Layer sweep: frostline's frozen-backbone linear token head on the word features of every
   layer of all-MiniLM-L6-v2, next to scikit-learn LogisticRegression on the very same cached
   word features (`frostline embed` of the CoNLL files, one row per word).
2. The frost line: layers >= N trained natively with the token head (word features from the top
   layer), next to a PyTorch fine-tune of the same layers (layers < N frozen, same head, same
   epochs, batch, learning rates, schedule and clipping, best dev epoch kept), with the training
   time per epoch of each.
Writes a Markdown report."""

import argparse
import csv
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def sh(cmd):
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"failed: {' '.join(map(str, cmd))}\n{p.stdout}\n{p.stderr}")
    return p


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
    cmd = [fl, "train", "--json", "--no-progress", "--run", run, "--out", out, "--force", "--cache-dir", cache]
    for s in sets:
        cmd += ["--set", s]
    t0 = time.perf_counter()
    p = sh(cmd)
    wall = time.perf_counter() - t0
    j = json.loads(p.stdout)
    ner = next(t for t in j["tasks"] if t["name"] == "ner")
    log = list(csv.DictReader(open(Path(out) / "training_log.csv")))
    epoch_train = [float(r["train_seconds"]) for r in log if r["task"] == "ner"]
    return ner, j, wall, epoch_train


def torch_finetune(model_dir, data, n, epochs, batch, enc_lr, head_lr, wd, warmup, clip, seed):
    """Layers >= n of the model and a linear head on each word's first sub-token of the top
    layer, trained with frostline's recipe (AdamW, linear warm-up then cosine, global clip)."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    torch.manual_seed(seed)
    torch.set_num_threads(2)
    tok = AutoTokenizer.from_pretrained(model_dir)
    # frostline's native layers have no dropout; the same here.
    model = AutoModel.from_pretrained(model_dir, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
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
            logits, lens = word_logits(part)
            y = torch.tensor([idx[t] for (_, ts), n_words in zip(part, lens) for t in ts[:n_words]])
            loss = torch.nn.functional.cross_entropy(logits, y)
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
    ap.add_argument("--frostline", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--shared", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--out", required=True)
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
            sh([fl, "embed", "--no-progress", "--model", model, "--input", data / f"{s}.conll",
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
            row["fl_seconds"] = wall
        sweep.append(row)
        print(json.dumps(row), file=sys.stderr)

    # 2. The frost line vs PyTorch, same layers and budget.
    recipe = dict(epochs=a.frost_epochs, batch=16, enc_lr=1e-4, head_lr=1e-3, wd=0.01, warmup=0.05, clip=1.0)
    sets = [f"train.regime=frost-line={a.frost_line}", f"tasks.ner.token_layer={layers}",
            f"train.epochs={recipe['epochs']}", f"train.batch_size={recipe['batch']}",
            f"train.encoder_lr={recipe['enc_lr']}", f"train.lr={recipe['head_lr']}", "train.patience=0"]
    ner, j, wall, fl_epochs = frostline_train(fl, run, work / "ck-frost", cache, sets)
    frost = {"f1": 100 * ner["test"]["entity_f1"], "dev": 100 * ner["dev"]["entity_f1"],
             "epoch_s": float(np.median(fl_epochs)), "train_s": j["training_seconds"],
             "best": j["best_epoch"], "params": j["trainable_params"], "embed_s": j["embed_seconds"]}
    torch_row = None
    if not a.skip_torch:
        (dev_f1, best_epoch, test_f1), per_epoch = torch_finetune(
            model, data, a.frost_line, recipe["epochs"], recipe["batch"], recipe["enc_lr"],
            recipe["head_lr"], recipe["wd"], recipe["warmup"], recipe["clip"], 13)
        torch_row = {"f1": test_f1, "dev": dev_f1, "best": best_epoch, "epoch_s": float(np.median(per_epoch))}

    best_layer = max(sweep, key=lambda r: r["fl_constrained"])
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
         "| layer | frostline (BIO decoding) | frostline (argmax) | scikit-learn LR (argmax) | scikit-learn LR (BIO decoding) | LR fit s | frostline run s |",
         "|---:|---:|---:|---:|---:|---:|---:|"]
    for r in sweep:
        L.append(f"| {r['layer']} | {r['fl_constrained']:.2f} | {r['fl_argmax']:.2f} | {r['sk']:.2f} | "
                 f"{r['sk_bio']:.2f} | {r['sk_seconds']:.1f} | {r['fl_seconds']:.1f} |")
    L.append(f"\nBest frozen layer for frostline: **{best_layer['layer']}** "
             f"({best_layer['fl_constrained']:.2f}; scikit-learn on the same features "
             f"{best_layer['sk']:.2f} argmax / {best_layer['sk_bio']:.2f} BIO-decoded).\n")
    L.append("## 2. Frost line vs a PyTorch fine-tune of the same layers\n")
    L.append(f"Layers {a.frost_line}..{layers - 1} train with a linear token head on the top layer's first "
             f"sub-token state; layers below {a.frost_line} frozen. Same recipe for both: {recipe['epochs']} epochs, "
             f"batch {recipe['batch']} sentences, AdamW (encoder lr {recipe['enc_lr']}, head lr {recipe['head_lr']}, "
             f"weight decay {recipe['wd']}), 5 % linear warm-up then cosine, gradient clip {recipe['clip']}, "
             "the best dev epoch kept, BIO-constrained decoding. frostline reads the cached layer-"
             f"{a.frost_line} states and runs only the trained layers; PyTorch (torch.set_num_threads(2)) "
             "runs the whole model forward every step; no dropout in either. Time per epoch = the training steps alone (median).\n")
    L.append("| run | test entity F1 | dev entity F1 | best epoch | s / epoch | trainable params |")
    L.append("|---|---:|---:|---:|---:|---:|")
    L.append(f"| frostline frozen backbone, layer {best_layer['layer']} | {best_layer['fl_constrained']:.2f} | | | | |")
    L.append(f"| frostline frost line N={a.frost_line} | {frost['f1']:.2f} | {frost['dev']:.2f} | {frost['best']} | "
             f"{frost['epoch_s']:.1f} | {frost['params']} |")
    if torch_row:
        L.append(f"| PyTorch fine-tune, layers ≥ {a.frost_line} | {torch_row['f1']:.2f} | {torch_row['dev']:.2f} | "
                 f"{torch_row['best']} | {torch_row['epoch_s']:.1f} | |")
        ratio = frost["epoch_s"] / torch_row["epoch_s"]
        L.append(f"\nfrostline − PyTorch: {frost['f1'] - torch_row['f1']:+.2f} points; time per epoch "
                 f"{ratio:.2f}× PyTorch's. Frost line − best frozen layer: "
                 f"{frost['f1'] - best_layer['fl_constrained']:+.2f} points. Token states at layer {a.frost_line} "
                 f"were cached once ({frost['embed_s']:.1f} s, not part of the epochs).\n")
    Path(a.out).write_text("\n".join(L) + "\n")
    print("\n".join(L))


if __name__ == "__main__":
    main()
