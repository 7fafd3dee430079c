#!/usr/bin/env python3
"""Run a served frostline model (`frostline export --with-heads`) with ONNX Runtime alone — no
frostline — and write what `frostline predict --all-probs` writes for the same texts.

    predict_onnx.py --model SERVED_DIR --input texts.csv [--text-column text] --output out.csv
    predict_onnx.py ... --compare frostline_predictions.csv [--tolerance 1e-5]

Everything it does besides running the graph is read from SERVED_DIR/heads.json (also in the
graph's metadata_props): tokenizer settings, each task's activation and decision rule (argmax,
thresholds, BIO Viterbi), and for token tasks how a text becomes words, windows and word spans.
It is the reference for a caller in another language.

Output columns per task, as frostline's: classification `<t>_label`, `<t>_prob`; multi-label
`<t>_label` (labels joined by the separator), `<t>_set_prob`, `<t>_labels`; both `<t>_probs`
(every class's probability, JSON); token tasks `<t>_entities` (JSON list of start, end, type,
text, score; offsets in characters). With --compare it checks its own rows against frostline's:
labels, label sets and entity spans exactly, probabilities and scores within --tolerance; prints
one JSON line of the largest differences and exits 1 on any mismatch.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import string
import sys
from pathlib import Path

import numpy as np

# Unicode White_Space, as Rust's char::is_whitespace (frostline splits words on it).
WHITESPACE = set("\t\n\x0b\x0c\r \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000") | {chr(c) for c in range(0x2000, 0x200B)}
EDGE = set(string.punctuation) - {"@", "#"}


def split_words(text: str) -> list[tuple[int, int]]:
    """Each word's (start, end) in characters: whitespace-separated pieces, ASCII punctuation at
    a piece's edges split off one character at a time (@ and # stay on the word)."""
    out, start = [], 0
    for i in range(len(text) + 1):
        if i < len(text) and text[i] not in WHITESPACE:
            continue
        piece = text[start:i]
        lead, b = [], 0
        while b < len(piece) and piece[b] in EDGE:
            lead.append((start + b, start + b + 1))
            b += 1
        trail, e = [], len(piece)
        while e > b and piece[e - 1] in EDGE:
            trail.append((start + e - 1, start + e))
            e -= 1
        out += lead
        if e > b:
            out.append((start + b, start + e))
        out += reversed(trail)
        start = i + 1
    return out


def split_windows(counts: list[int], budget: int) -> list[tuple[range, range]]:
    """(fed words, owned words) of each window over one sentence's words: at most `budget`
    tokens fed (a longer single word alone), consecutive windows overlapping by about half a
    window, the overlap's words owned by the window whose middle is nearer."""
    n, fed, a = len(counts), [], 0
    while True:
        b, t = a, 0
        while b < n and (b == a or t + counts[b] <= budget):
            t += counts[b]
            b += 1
        fed.append(range(a, b))
        if b >= n:
            break
        nxt, overlap = b, 0
        while nxt > a + 1 and overlap + counts[nxt - 1] <= budget // 2:
            overlap += counts[nxt - 1]
            nxt -= 1
        a = nxt
    bounds = [0]
    for k in range(1, len(fed)):
        mid = (fed[k].start + fed[k - 1].stop) // 2
        bounds.append(min(max(mid, bounds[k - 1] + 1), fed[k - 1].stop))
    bounds.append(n)
    return [(f, range(bounds[k], bounds[k + 1])) for k, f in enumerate(fed)]


def word_token_ranges(words, tokens, first_only: bool) -> list[tuple[int, int]]:
    """Each word's token range: the tokens whose span starts inside the word (the first only, or
    all); a word that made no token takes the token before it."""
    ranges, t, last = [], 0, 0
    for ws, we in words:
        while t < len(tokens) and (tokens[t] is None or tokens[t][0] < ws):
            if tokens[t] is not None or t == 0:
                last = t
            t += 1
        first = t
        while t < len(tokens) and tokens[t] is not None and tokens[t][0] < we:
            t += 1
        if t == first:
            ranges.append((last, last + 1))
        else:
            ranges.append((first, first + 1) if first_only else (first, t))
            last = t - 1
    return ranges


def viterbi_bio(probs: np.ndarray, classes: list[str]) -> list[int]:
    """The most probable tag sequence (sum of ln max(p, 1e-12), float32 as frostline) in which
    every I-X follows B-X or I-X."""
    def bio(c):
        if c == "O":
            return ("O", None)
        kind, _, ty = c.partition("-")
        return (kind, ty) if kind in ("B", "I") and ty else None

    tags = [bio(c) for c in classes]

    def allowed(prev, cur):
        if tags[cur] is None or tags[cur][0] != "I":
            return True
        return prev is not None and tags[prev] is not None and tags[prev][0] in ("B", "I") and tags[prev][1] == tags[cur][1]

    n, k = probs.shape
    if n == 0:
        return []
    # step[p, c]: 0 where tag c may follow tag p, -inf where not (row k: the sentence start).
    step = np.array([[0.0 if allowed(p, c) else -np.inf for c in range(k)] for p in [*range(k), None]], np.float32)
    lp = np.log(np.maximum(probs, np.float32(1e-12))).astype(np.float32)
    score = (lp[0] + step[k]).astype(np.float32)
    back = np.zeros((n, k), np.int64)
    for i in range(1, n):
        # The first best predecessor wins a tie, as frostline's strict comparison does.
        cand = score[:, None] + step[:k]
        back[i] = np.argmax(cand, axis=0)
        score = (cand[back[i], np.arange(k)] + lp[i]).astype(np.float32)
    c = int(np.argmax(score))
    path = [c] * n
    for i in range(n - 1, 0, -1):
        c = int(back[i][c])
        path[i - 1] = c
    return path


def spans(tags: list[str]) -> list[tuple[str, int, int]]:
    """Entities of decided tags: B-X I-X… runs; an I-X after anything but X starts one."""
    out, open_ = [], None
    for i, tag in enumerate(tags):
        kind, _, ty = tag.partition("-")
        is_tag = kind in ("B", "I") and ty
        starts = not is_tag or kind == "B" or open_ is None or open_[0] != ty
        if starts:
            if open_ is not None:
                out.append((open_[0], open_[1], i))
            open_ = (ty, i) if is_tag else None
    if open_ is not None:
        out.append((open_[0], open_[1], len(tags)))
    return out


class Served:
    def __init__(self, folder: Path, threads: int):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.spec = json.loads((folder / "heads.json").read_text())
        if self.spec.get("format") != "frostline-heads-v1":
            sys.exit(f"predict_onnx: {folder / 'heads.json'}: format {self.spec.get('format')!r} is not frostline-heads-v1")
        tok = self.spec["tokenizer"]
        self.max_length, self.prefix = tok["max_length"], tok["prefix"] or ""
        self.tokenizer = Tokenizer.from_file(str(folder / tok["file"]))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(self.max_length)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(folder / "model.onnx"), opts, providers=["CPUExecutionProvider"])
        self.inputs = {i.name for i in self.session.get_inputs()}

    def run(self, encodings, spans=None, outputs=None):
        """The graph over one batch of encodings (padded here), `spans` per row for token tasks."""
        width = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(encodings), width), np.int64)
        mask = np.zeros_like(ids)
        for r, e in enumerate(encodings):
            ids[r, : len(e.ids)] = e.ids
            mask[r, : len(e.ids)] = 1
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        if "word_spans" in self.inputs:
            words = max([len(s) for s in spans] if spans else [0])
            ws = np.zeros((len(encodings), words, 2), np.int64)
            for r, s in enumerate(spans or []):
                if s:
                    ws[r, : len(s)] = s
            feed["word_spans"] = ws
        return self.session.run(outputs, feed)

    def sentence_probs(self, texts: list[str], tasks: list[dict], batch: int) -> list[np.ndarray]:
        """Each sentence task's probabilities for every text, all tasks in one pass of the graph."""
        encs = self.tokenizer.encode_batch([self.prefix + t for t in texts])
        order = sorted(range(len(texts)), key=lambda i: len(encs[i].ids))
        out = [np.zeros((len(texts), len(t["classes"])), np.float32) for t in tasks]
        for s in range(0, len(order), batch):
            rows = order[s : s + batch]
            for o, probs in zip(out, self.run([encs[i] for i in rows], None, [t["output"] for t in tasks])):
                o[rows] = probs
        return out

    def word_probs(self, sentences: list[list[str]], task: dict, batch: int) -> list[np.ndarray]:
        """Per sentence, its words' tag probabilities, planned into windows as frostline does."""
        first_only = task["word_feature"] == "first"
        count = lambda ws: [len(e.ids) for e in self.tokenizer.encode_batch(ws, add_special_tokens=False)] if ws else []
        prefix_tokens = count([self.prefix])[0] if self.prefix else 0
        budget = max(self.max_length - (2 + prefix_tokens), 1)
        windows = []  # (sentence, fed words, owned words)
        for s, words in enumerate(sentences):
            for fed, own in split_windows(count(words), budget) if words else []:
                windows.append((s, fed, own))
        texts = [self.prefix + " ".join(sentences[s][i] for i in fed) for s, fed, _ in windows]
        encs = self.tokenizer.encode_batch(texts) if texts else []
        spans_of = []
        for (s, fed, own), enc in zip(windows, encs):
            tokens = [None if special else off for off, special in zip(enc.offsets, enc.special_tokens_mask)]
            at, word_spans = len(self.prefix), []
            for i in fed:
                w = sentences[s][i]
                word_spans.append((at, at + len(w)))
                at += len(w) + 1
            ranges = word_token_ranges(word_spans, tokens, first_only)
            spans_of.append(ranges[own.start - fed.start : own.stop - fed.start])
        out = [np.zeros((len(w), len(task["classes"])), np.float32) for w in sentences]
        filled = [0] * len(sentences)
        results = [None] * len(windows)
        order = sorted(range(len(windows)), key=lambda i: len(encs[i].ids))
        for b in range(0, len(order), batch):
            rows = order[b : b + batch]
            (probs,) = self.run([encs[i] for i in rows], [spans_of[i] for i in rows], [task["output"]])
            for r, w in enumerate(rows):
                results[w] = probs[r, : len(spans_of[w])]
        for (s, _, own), p in zip(windows, results):
            out[s][filled[s] : filled[s] + len(own)] = p
            filled[s] += len(own)
        return out


def decide_sentences(task: dict, probs: np.ndarray) -> dict[str, list]:
    classes, d = task["classes"], task["decision"]
    cols = {}
    if d["rule"].startswith("threshold"):
        t = np.array(d["thresholds"], np.float32)
        picks = [[c for c in range(len(classes)) if row[c] >= t[c]] for row in probs]
        cols[f"{task['name']}_label"] = [d["label_separator"].join(classes[c] for c in p) for p in picks]
        set_prob = [float(np.prod([row[c] if c in p else np.float32(1) - row[c] for c in range(len(classes))], dtype=np.float32))
                    for row, p in zip(probs, picks)]
        cols[f"{task['name']}_set_prob"] = set_prob
        cols[f"{task['name']}_labels"] = [
            json.dumps([{"label": classes[c], "prob": float(row[c])} for c in sorted(p, key=lambda c: -row[c])])
            for row, p in zip(probs, picks)]
    else:
        picks = [int(np.argmax(row)) for row in probs]
        cols[f"{task['name']}_label"] = [classes[c] for c in picks]
        cols[f"{task['name']}_prob"] = [float(row[c]) for row, c in zip(probs, picks)]
    cols[f"{task['name']}_probs"] = [json.dumps(dict(zip(classes, map(float, row)))) for row in probs]
    return cols


def decide_words(task: dict, texts: list[str], places, probs: list[np.ndarray]) -> dict[str, list]:
    classes, viterbi = task["classes"], task["decision"]["rule"].startswith("bio-viterbi")
    cells = []
    for text, ps, p in zip(texts, places, probs):
        path = viterbi_bio(p, classes) if viterbi else [int(np.argmax(r)) for r in p]
        tags = [classes[c] for c in path]
        found = []
        for ty, s, e in spans(tags):
            score = float(np.float32(sum(p[i, path[i]] for i in range(s, e)) / np.float32(e - s)))
            a, b = ps[s][0], ps[e - 1][1]
            found.append({"start": a, "end": b, "type": ty, "text": text[a:b], "score": score})
        cells.append(json.dumps(found))
    return {f"{task['name']}_entities": cells}


def read_texts(path: Path, column: str) -> list[str]:
    if path.suffix == ".txt":
        return [line.rstrip("\n") for line in path.open(encoding="utf-8")]
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if rows and column not in rows[0]:
        sys.exit(f"predict_onnx: {path} has no column {column!r} (columns: {', '.join(rows[0])})")
    return [r[column] for r in rows]


def int8_products(graph: Path) -> int | None:
    """How many of the graph's products run int8 (None without the onnx package)."""
    try:
        import onnx
    except ImportError:
        return None
    return sum(n.op_type == "MatMulIntegerToFloat" for n in onnx.load(str(graph)).graph.node)


def compare(mine: dict[str, list], theirs_path: Path, tolerance: float, graph: Path) -> bool:
    with theirs_path.open(newline="", encoding="utf-8") as f:
        theirs = list(csv.DictReader(f))
    report = {"rows": len(theirs), "max_prob_diff": 0.0, "max_score_diff": 0.0, "mismatches": [],
              "int8_products": int8_products(graph)}
    def miss(what):
        if len(report["mismatches"]) < 10:
            report["mismatches"].append(what)
    n = len(next(iter(mine.values())))
    if n != len(theirs):
        miss(f"{n} rows here, {len(theirs)} in {theirs_path}")
    for col, values in mine.items():
        if theirs and col not in theirs[0]:
            miss(f"column {col} missing from {theirs_path}")
            continue
        for r, (a, row) in enumerate(zip(values, theirs)):
            b = row[col]
            if col.endswith("_probs") or col.endswith("_labels"):
                ja, jb = json.loads(a), json.loads(b)
                pa = ja if isinstance(ja, dict) else {e["label"]: e["prob"] for e in ja}
                pb = jb if isinstance(jb, dict) else {e["label"]: e["prob"] for e in jb}
                # The same labels; `_labels` lists them most probable first, an order that near
                # ties (within the tolerance) may swap, so the set is what must match.
                if sorted(pa) != sorted(pb):
                    miss(f"row {r} {col}: labels {sorted(pa)} vs {sorted(pb)}")
                    continue
                for k in pa:
                    report["max_prob_diff"] = max(report["max_prob_diff"], abs(pa[k] - pb[k]))
            elif col.endswith("_entities"):
                ea, eb = json.loads(a), json.loads(b)
                key = lambda e: (e["start"], e["end"], e["type"], e["text"])
                if [key(e) for e in ea] != [key(e) for e in eb]:
                    miss(f"row {r} {col}: {[key(e) for e in ea]} vs {[key(e) for e in eb]}")
                    continue
                for x, y in zip(ea, eb):
                    report["max_score_diff"] = max(report["max_score_diff"], abs(x["score"] - y["score"]))
            elif col.endswith("_prob") or col.endswith("_set_prob"):
                report["max_prob_diff"] = max(report["max_prob_diff"], abs(float(a) - float(b)))
            elif a != b:
                miss(f"row {r} {col}: {a!r} vs {b!r}")
    ok = not report["mismatches"] and report["max_prob_diff"] <= tolerance and report["max_score_diff"] <= tolerance
    report["tolerance"] = tolerance
    report["ok"] = ok
    print(json.dumps(report))
    return ok


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, type=Path, help="a folder written by frostline export --with-heads")
    ap.add_argument("--input", required=True, type=Path, help=".csv with a text column, or .txt one text per line")
    ap.add_argument("--text-column", default="text")
    ap.add_argument("--output", required=True, type=Path, help=".csv")
    ap.add_argument("--tasks", default=None, help="comma-separated tasks (default: every task)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--compare", type=Path, default=None, help="frostline predict --all-probs output to check against")
    ap.add_argument("--tolerance", type=float, default=1e-5)
    args = ap.parse_args()

    served = Served(args.model, args.threads)
    texts = read_texts(args.input, args.text_column)
    wanted = args.tasks.split(",") if args.tasks else [t["name"] for t in served.spec["tasks"]]
    by_name = {t["name"]: t for t in served.spec["tasks"]}
    unknown = [n for n in wanted if n not in by_name]
    if unknown:
        sys.exit(f"predict_onnx: no task {unknown[0]!r} in {args.model / 'heads.json'} (tasks: {', '.join(by_name)})")
    sentence_tasks = [by_name[n] for n in wanted if by_name[n]["input"] == "sentence"]
    found = dict(zip((t["name"] for t in sentence_tasks),
                     served.sentence_probs(texts, sentence_tasks, args.batch) if sentence_tasks else []))
    cols: dict[str, list] = {}
    for name in wanted:
        task = by_name[name]
        if task["input"] == "words":
            places = [split_words(t) for t in texts]
            sentences = [[t[a:b] for a, b in ps] for t, ps in zip(texts, places)]
            cols.update(decide_words(task, texts, places, served.word_probs(sentences, task, args.batch)))
        else:
            cols.update(decide_sentences(task, found[name]))
    with args.output.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(list(cols))
        w.writerows(zip(*cols.values()))
    if args.compare is not None and not compare(cols, args.compare, args.tolerance, args.model / "model.onnx"):
        sys.exit(1)


if __name__ == "__main__":
    main()
