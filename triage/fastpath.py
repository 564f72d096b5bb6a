"""Prediction without scikit-learn's per-call overhead: the same numbers as the fitted objects give.

Pure core (numpy and scipy on fitted scikit-learn objects). Per call, scikit-learn's ``transform``
and ``predict_proba`` check their input (``check_array``, dataframe detection, parameter
validation): about 1 ms a call on this machine, more than the arithmetic for one complaint. Here
the fitted parameters are applied directly:

- ``FastTfidf``: a fitted ``TfidfVectorizer`` over ``triage.text.word_analyzer`` applied to words
  already analysed (``Analyses``), so the topic featurizer and the agency model tokenise a text
  once between them; counting, sublinear tf, idf and l2 normalisation as scikit-learn does them.
- ``linear_proba``: ``LogisticRegression.predict_proba`` as softmax (or the logistic for two
  classes) of ``X @ coef.T + intercept``.
- ``ColumnPicker``: a fixed subset of CSR columns without scipy's per-call index mapping.

Anything else (an unknown pipeline step) goes through scikit-learn itself, inside
``sklearn.config_context(assume_finite=True, skip_parameter_validation=True)``.
``tests/test_fastpath.py`` checks the outputs against scikit-learn's on real complaints.

This module does not import scikit-learn: it recognises fitted objects by class (``_is``) whether
they are scikit-learn's own or the stand-ins of ``triage.lightload`` (a model loaded for
prediction only), and imports scikit-learn only for what it hands over to it.
"""

from __future__ import annotations

import itertools
import re
import sys
import weakref
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import sparse

from triage.lightload import light_name
from triage.text import word_analyzer

if TYPE_CHECKING:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import Pipeline


def quiet_sklearn() -> Any:
    """The context for scikit-learn calls on the hot path: no finiteness or parameter checks."""
    import sklearn

    return sklearn.config_context(assume_finite=True, skip_parameter_validation=True)


_SKLEARN_HOME = {"TfidfVectorizer": "sklearn.feature_extraction.text", "LogisticRegression": "sklearn.linear_model",
                 "Pipeline": "sklearn.pipeline", "FeatureUnion": "sklearn.pipeline",
                 "FunctionTransformer": "sklearn.preprocessing"}


_IS: dict[tuple[type, str], bool] = {}
"""``_is``'s answers by (class of the object, name): a request asks it about twenty times of the same few classes.
An answer depends on the class only (a stand-in made real is of another class); a class that is not a
subclass of a scikit-learn class when asked never becomes one (its module imported scikit-learn's first)."""


def _is(obj: Any, name: str) -> bool:
    """``isinstance(obj, <scikit-learn's class name>)``, true also for ``triage.lightload``'s stand-in for it,
    without importing scikit-learn (an object of one of its classes exists only once it is imported)."""
    key = (type(obj), name)
    found = _IS.get(key)
    if found is None:
        found = _IS[key] = _is_of(obj, name)
    return found


def _is_of(obj: Any, name: str) -> bool:
    light = light_name(obj)
    if light is not None:
        return light == name
    cls = getattr(sys.modules.get(_SKLEARN_HOME[name]), name, None)
    return cls is not None and isinstance(obj, cls)


def has_fitted(obj: Any, name: str) -> bool:
    """``hasattr(obj, name)`` for a fitted attribute scikit-learn sets on the instance (``coef_``, ``y_``,
    ``vocabulary_``): looked up in the instance's state first, so a stand-in is not made real to say no."""
    return name in getattr(obj, "__dict__", ()) or (light_name(obj) is None and hasattr(obj, name))


def normalize_rows_l2(X: sparse.csr_matrix) -> sparse.csr_matrix:
    """scikit-learn's ``inplace_csr_row_normalize_l2`` bit for bit, in numpy: per row, the squares (in the
    data's type) summed in double in the row's order, each value divided by the square root in double
    and stored in the data's type; a row whose sum is 0 is left as it is.

    The order of additions is the C loop's: rows of similar length are laid side by side as columns of
    a (position, row) array padded with zeros after each row's end, and summed down the positions by
    a running sum (``cumsum``: each sum is the previous one plus the next square; adding 0.0 leaves a
    sum as it is)."""
    data = X.data
    if not len(data):
        return X
    if X.shape[0] == 1:  # one row (one request): its running sum, no blocks of rows
        total = np.cumsum((data * data).astype(np.float64))[-1]
        if total != 0.0:
            X.data = (data.astype(np.float64) / np.sqrt(total)).astype(data.dtype)
        return X
    indptr = np.asarray(X.indptr, dtype=np.int64)
    lengths = np.diff(indptr)
    sq = (data * data).astype(np.float64)
    order = np.argsort(lengths, kind="stable")
    by_length = lengths[order]
    sums = np.zeros(len(lengths))
    lo = int(np.searchsorted(by_length, 1))  # empty rows sum to 0
    while lo < len(order):
        hi = int(np.searchsorted(by_length, 2 * int(by_length[lo]), side="right"))  # up to twice as long
        rows = order[lo:hi]
        longest = int(by_length[hi - 1])
        at = np.arange(longest)[:, None]
        inside = at < lengths[rows][None, :]
        block = np.where(inside, sq[np.where(inside, indptr[rows][None, :] + at, 0)], 0.0)
        sums[rows] = np.cumsum(block, axis=0)[-1]  # running sums: one after the other (a reduce may pair them up)
        lo = hi
    norms = np.sqrt(sums)
    norms[norms == 0.0] = 1.0  # x / 1.0 is x: the row stays as it is
    X.data = (data.astype(np.float64) / np.repeat(norms, lengths)).astype(data.dtype)
    return X


def _attributes_of_csr() -> set[str]:
    empty = sparse.csr_matrix((np.zeros(0), np.zeros(0, np.int32), np.zeros(1, np.int32)), shape=(0, 0))
    return set(vars(empty))


_PLAIN_CSR = _attributes_of_csr() == {"_shape", "maxprint", "data", "indices", "indptr"}
"""Whether this scipy's csr_matrix is those five attributes (scipy 1.11-1.17), so ``csr`` may set them itself."""


def csr(data: np.ndarray, indices: np.ndarray, indptr: np.ndarray, shape: tuple[int, int]) -> sparse.csr_matrix:
    """``sparse.csr_matrix((data, indices, indptr), shape=shape)`` for arrays made right by the caller (int32
    ``indices`` and ``indptr`` of the right lengths, columns within ``shape``), without the constructor's
    checks: about 25 us a matrix, and a request makes a dozen. Sorted indices and the canonical flags are
    worked out by scipy when asked, as for any matrix. Another scipy's layout: the constructor."""
    if not _PLAIN_CSR:
        return sparse.csr_matrix((data, indices, indptr), shape=shape)
    X = sparse.csr_matrix.__new__(sparse.csr_matrix)
    X.data, X.indices, X.indptr = data, indices, indptr
    X._shape = (int(shape[0]), int(shape[1]))
    X.maxprint = 50
    return X


class Analyses:
    """Each text's word 1-2-grams (``word_analyzer``) with their counts, computed once per text and shared
    by every vectorizer (counted by ``collections.Counter``, in C)."""

    def __init__(self) -> None:
        self._seen: dict[str, Counter[str]] = {}
        self._applied: dict[tuple[Any, tuple[str, ...]], Any] = {}

    def __call__(self, text: str) -> Counter[str]:
        found = self._seen.get(text)
        if found is None:
            found = self._seen[text] = Counter(word_analyzer(text))
        return found

    def apply(self, func: Callable[..., Any], texts: list[str], kw_args: dict[str, Any] | None) -> Any:
        """``func(texts, **kw_args)`` of a text-to-text FunctionTransformer, once per batch: the agency
        model and its ranker both strip the intake boilerplate of the same texts."""
        if kw_args:
            return func(texts, **kw_args)
        key = (func, tuple(texts))
        found = self._applied.get(key)
        if found is None:
            found = self._applied[key] = func(texts)
        return found


_MISSING = itertools.repeat(-1)
"""The second argument of ``dict.get`` in ``FastTfidf.transform``'s ``map``: -1 for an unknown feature."""


class _Weighting:
    """What turns a fitted TfidfVectorizer's counts into its values (``_weigh``), read off the vectorizer."""

    idf: np.ndarray | None
    sublinear: bool
    norm: Any
    dtype: Any
    binary: bool

    def _take_weighting(self, vec: Any) -> None:
        self.idf = np.asarray(vec.idf_) if vec.use_idf else None
        self.sublinear = bool(vec.sublinear_tf)
        self.norm = vec.norm
        self.dtype = vec.dtype
        self.binary = bool(vec.binary)


def _weigh(X: sparse.csr_matrix, vec: _Weighting) -> sparse.csr_matrix:
    """Counts to TF-IDF in place, as scikit-learn's TfidfVectorizer does: binary, sublinear tf, idf, l2."""
    if vec.binary:
        X.data[:] = 1
    if vec.sublinear:
        np.log(X.data, X.data)
        X.data += 1.0
    if vec.idf is not None:
        X.data *= vec.idf[X.indices]
    if vec.norm == "l2":
        normalize_rows_l2(X)
    return X


class FastTfidf(_Weighting):
    """A fitted word ``TfidfVectorizer`` applied to analysed texts (same numbers as ``vec.transform``)."""

    def __init__(self, vec: TfidfVectorizer) -> None:
        self.vocabulary: dict[str, int] = vec.vocabulary_
        self.n_features = len(self.vocabulary)
        self._take_weighting(vec)

    @staticmethod
    def handles(vec: Any) -> bool:
        return (_is(vec, "TfidfVectorizer") and vec.analyzer is word_analyzer and vec.norm in ("l2", None)
                and has_fitted(vec, "vocabulary_"))

    def transform(self, texts: Iterable[str], analyses: Analyses) -> sparse.csr_matrix:
        if isinstance(texts, list) and len(texts) == 1:
            return self._transform_one(texts[0], analyses)
        get = self.vocabulary.get
        columns: list[int] = []
        counts: list[int] = []
        indptr = [0]
        for text in texts:
            found = analyses(text)
            # the column of every feature (-1: not in the vocabulary), looked up in C by map
            columns.extend(map(get, found.keys(), _MISSING))
            counts.extend(found.values())
            indptr.append(len(columns))
        cols = np.fromiter(columns, dtype=np.int64, count=len(columns))
        known = cols >= 0
        n = np.asarray(counts, dtype=self.dtype)
        ptr = np.asarray(indptr, dtype=np.int64)
        if not known.all():  # drop the unknown features: each row's end moves back by the unknown ones before it
            kept_before = np.concatenate([[0], np.cumsum(known)])
            ptr = kept_before[ptr]
            cols, n = cols[known], n[known]
        X = csr(n, cols.astype(np.int32), ptr.astype(np.int32), (len(indptr) - 1, self.n_features))
        X.sort_indices()
        return _weigh(X, self)

    def _transform_one(self, text: str, analyses: Analyses) -> sparse.csr_matrix:
        """``transform([text])``: the known features' columns sorted by numpy's ``argsort`` (a row's columns
        are distinct, so any sort gives scipy's ``sort_indices`` order), no per-batch arrays."""
        found = analyses(text)
        cols = np.array(list(map(self.vocabulary.get, found.keys(), _MISSING)), dtype=np.int64)
        counts = np.asarray(list(found.values()), dtype=self.dtype)  # as the batch path converts them
        known = cols >= 0
        cols, counts = cols[known], counts[known]
        order = cols.argsort()
        X = csr(counts[order], cols[order].astype(np.int32), np.array([0, len(cols)], dtype=np.int32), (1, self.n_features))
        return _weigh(X, self)


TABLE_LIMIT = 3_000_000
"""``FastCharTfidf`` looks n-grams up in a table of this many entries at most (12 MB; 2.5 million for the
3-grams of a 134-letter alphabet), longer ones by binary search in the sorted vocabulary."""


class FastCharTfidf(_Weighting):
    """A fitted ``char_wb`` ``TfidfVectorizer`` (the urgency head's character block): the same matrix as
    ``vec.transform``, bit for bit, with the n-grams counted in numpy for the whole batch at once.

    scikit-learn's ``char_wb`` n-grams of a text are every substring of length ``min_n`` to ``max_n``
    of each whitespace-separated word padded with one space on each side (after lowercasing and
    ``_white_spaces``, as its analyzer does; it never yields a gram longer than the padded word, as
    the shortest padded word has 3 characters). Here each character is numbered by its place in
    the vocabulary's alphabet (0 for any other character and for the separator put between padded
    words and between texts), each window of n characters is one integer in base alphabet + 1,
    and the vocabulary is a sorted array of those integers per n: a window with a 0 in it cannot
    be in the vocabulary, any other is found by ``searchsorted``. Counting (row, column) pairs and
    then sublinear tf, idf and l2 normalisation are scikit-learn's own operations in float32.
    For one text 0.13-0.34 ms against scikit-learn's 0.53-1.13 ms (its checks cost about 1 ms a call);
    for 3,063 texts at once 0.076 against 0.199 ms a text (ad-hoc timings at load 7).
    """

    def __init__(self, vec: TfidfVectorizer) -> None:
        vocab: dict[str, int] = vec.vocabulary_
        self.lowercase = bool(vec.lowercase)
        self.white: re.Pattern[str] = vec._white_spaces  # scikit-learn's own pattern for runs of white space
        self.min_n, self.max_n = vec.ngram_range
        self.n_features = len(vocab)
        alphabet = sorted(set("".join(vocab)))
        self.base = len(alphabet) + 1
        self.table = np.zeros(max(ord(c) for c in alphabet) + 1, dtype=np.int64)  # code point -> code
        self.table[[ord(c) for c in alphabet]] = np.arange(1, self.base)
        self.keys: dict[int, np.ndarray] = {}
        self.cols: dict[int, np.ndarray] = {}
        self.tables: dict[int, np.ndarray] = {}
        self.begins: dict[int, np.ndarray] = {}
        # every n-gram's number (``_key`` of its codes), for all n-grams at once: their codes side by side
        lengths = np.fromiter(map(len, vocab), dtype=np.int64, count=len(vocab))
        columns = np.fromiter(vocab.values(), dtype=np.int64, count=len(vocab))
        codes = self.table[np.frombuffer("".join(vocab).encode("utf-32-le"), dtype=np.uint32)]
        starts = np.zeros(len(vocab), dtype=np.int64)
        np.cumsum(lengths[:-1], out=starts[1:])
        for n in range(self.min_n, self.max_n + 1):
            of_n = np.flatnonzero(lengths == n)
            at = starts[of_n]
            keys = np.zeros(len(of_n), dtype=np.int64)
            for i in range(n):  # key * base + code, character by character, as ``_key``
                keys = keys * self.base + codes[at + i]
            order = np.argsort(keys, kind="stable")
            self.keys[n] = keys[order]
            self.cols[n] = columns[of_n][order]
            if self.base ** n <= TABLE_LIMIT:  # short n-grams: a table from every possible number to its column
                table = np.full(self.base ** n, -1, dtype=np.int32)
                table[self.keys[n]] = self.cols[n]
                self.tables[n] = table
            elif self.base ** (n - 1) <= TABLE_LIMIT:  # longer ones: which (n-1)-grams begin one of them
                begins = np.zeros(self.base ** (n - 1), dtype=bool)
                begins[self.keys[n] // self.base] = True
                self.begins[n] = begins
        self._take_weighting(vec)

    @classmethod
    def of(cls, vec: Any) -> FastCharTfidf | None:
        """The fast copy of a vectorizer it handles, else None (also when an n-gram's number would not
        fit in 62 bits: an alphabet of more than 2 ** (62 / max_n) - 1 characters)."""
        if not cls.handles(vec) or vec.ngram_range[1] * np.log2(len(set("".join(vec.vocabulary_))) + 1) >= 62:
            return None
        return cls(vec)

    def _key(self, codes: list[int]) -> int:
        key = 0
        for c in codes:
            key = key * self.base + c
        return key

    @staticmethod
    def handles(vec: Any) -> bool:
        return (_is(vec, "TfidfVectorizer") and vec.analyzer == "char_wb" and vec.preprocessor is None
                and vec.strip_accents is None and vec.input == "content" and vec.norm in ("l2", None)
                and has_fitted(vec, "vocabulary_") and vec.ngram_range[0] >= 2 and len(vec.vocabulary_) > 0)

    def _codes(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Every text's padded words, one separator between words and texts: (alphabet codes, row of each)."""
        white = self.white
        parts = []
        for text in texts:
            doc = text.lower() if self.lowercase else text
            words = white.sub(" ", doc).split()
            # "\x00".join(f" {w} " for w in words), in one join
            parts.append(" " + " \x00 ".join(words) + " " if words else "")
        lengths = np.fromiter((len(p) + 1 for p in parts), dtype=np.int64, count=len(parts))
        points = np.frombuffer("\x00".join(parts).encode("utf-32-le"), dtype=np.uint32)
        top = len(self.table) - 1
        codes = self.table[np.minimum(points, top)]
        if (points > top).any():  # characters above the alphabet's last one
            codes[points > top] = 0
        rows = np.repeat(np.arange(len(texts), dtype=np.int64), lengths)[: len(codes)]
        return codes, rows

    def transform(self, texts: Iterable[str]) -> sparse.csr_matrix:
        texts = list(texts)
        if len(texts) == 1:
            return self._transform_one(texts[0])
        codes, rows = self._codes(texts) if texts else (np.zeros(0, np.int64), np.zeros(0, np.int64))
        zeros = np.concatenate([[0], np.cumsum(codes == 0)])
        found: list[np.ndarray] = []
        key = np.zeros(0, dtype=np.int64)
        for n in range(1, self.max_n + 1):
            m = len(codes) - n + 1
            if m <= 0:
                break
            prefix = key  # each window's (n-1)-gram number
            key = key[:m] * self.base + codes[n - 1 :] if n > 1 else codes.copy()
            if n < self.min_n:
                continue
            where = np.flatnonzero(zeros[n : n + m] == zeros[:m])  # windows with no foreign character
            keys = self.keys[n]
            if not len(where) or not len(keys):
                continue
            table = self.tables.get(n)
            if table is not None:
                k = key[where]
                col = table[k]
                hit = col >= 0
                found.append(rows[where[hit]] * self.n_features + col[hit])
                continue
            begins = self.begins.get(n)
            if begins is not None:  # only windows whose first n-1 characters begin some n-gram can be one
                where = where[begins[prefix[where]]]
            k = key[where]
            at = np.minimum(np.searchsorted(keys, k), len(keys) - 1)
            hit = keys[at] == k
            found.append(rows[where[hit]] * self.n_features + self.cols[n][at[hit]])
        cells = np.concatenate(found) if found else np.zeros(0, np.int64)
        cells.sort()
        first = np.flatnonzero(np.concatenate([[True], cells[1:] != cells[:-1]])) if len(cells) else np.zeros(0, np.int64)
        counts = np.diff(np.append(first, len(cells)))  # how many times each (row, column) occurs
        cells = cells[first]
        cell_rows, cols = np.divmod(cells, self.n_features)
        indptr = np.concatenate([[0], np.cumsum(np.bincount(cell_rows, minlength=len(texts)))])
        X = csr(counts.astype(self.dtype), cols.astype(np.int32), indptr.astype(np.int32), (len(texts), self.n_features))
        return _weigh(X, self)

    def _transform_one(self, text: str) -> sparse.csr_matrix:
        """``transform([text])`` with no row numbers: the same windows, columns and counts, fewer numpy calls."""
        doc = text.lower() if self.lowercase else text
        points = np.frombuffer("\x00".join(f" {w} " for w in self.white.sub(" ", doc).split()).encode("utf-32-le"),
                               dtype=np.uint32)
        top = len(self.table) - 1
        codes = self.table[np.minimum(points, top)]
        if len(points) and points.max() > top:  # characters above the alphabet's last one
            codes[points > top] = 0
        zeros = np.zeros(len(codes) + 1, dtype=np.int64)
        np.cumsum(codes == 0, out=zeros[1:])
        found: list[np.ndarray] = []
        key = codes
        for n in range(2, self.max_n + 1):
            m = len(codes) - n + 1
            if m <= 0:
                break
            key = key[:m] * self.base + codes[n - 1 :]
            keys = self.keys.get(n)
            if n < self.min_n or keys is None or not len(keys):
                continue
            k = key[zeros[n : n + m] == zeros[:m]]  # windows with no foreign character
            table = self.tables.get(n)
            if table is not None:  # short n-grams: their columns by table, as the batch path
                col = table[k]
                found.append(col[col >= 0])
                continue
            at = np.searchsorted(keys, k)
            at[at == len(keys)] = len(keys) - 1
            hit = keys[at] == k
            found.append(self.cols[n][at[hit]])
        cols = np.concatenate(found) if found else np.zeros(0, np.int64)
        cols.sort()
        if len(cols):
            first = np.empty(len(cols), dtype=bool)
            first[0] = True
            np.not_equal(cols[1:], cols[:-1], out=first[1:])
            starts = np.flatnonzero(first)
            counts = np.empty(len(starts), dtype=np.int64)
            counts[:-1] = starts[1:] - starts[:-1]  # how many times each column occurs
            counts[-1] = len(cols) - starts[-1]
            cols = cols[starts]
        else:
            counts = cols
        X = csr(counts.astype(self.dtype), cols.astype(np.int32), np.array([0, len(cols)], dtype=np.int32),
                (1, self.n_features))
        return _weigh(X, self)


def _fast_chars(vec: Any) -> FastCharTfidf | None:
    if not FastCharTfidf.handles(vec):
        return None
    return cached(vec, vec.vocabulary_, lambda: FastCharTfidf.of(vec), "chars")


def tfidf_transform(vec: Any, texts: list[str]) -> Any:
    """``vec.transform(texts)`` of a fitted TfidfVectorizer on raw (here: normalised) texts, by
    ``FastCharTfidf`` for a character vectorizer it handles, else scikit-learn without its checks."""
    fast = _fast_chars(vec)
    if fast is not None:
        return fast.transform(texts)
    with quiet_sklearn():
        return vec.transform(texts)


_CACHE: dict[tuple[int, str], tuple[Any, Any, Any]] = {}
"""Derived fast-path objects by ``id`` of the fitted object they come from (weakly held): never
pickled with a model, dropped with it, rebuilt when it is refitted (the fitted attribute is compared
by identity)."""


def cached(owner: Any, fitted: Any, build: Callable[[], Any], tag: str = "") -> Any:
    """``build()``, made once per (owner, tag) and remade when ``fitted`` is no longer the same object."""
    key = (id(owner), tag)
    found = _CACHE.get(key)
    if found is None or found[0]() is not owner or found[1] is not fitted:

        def drop(_ref: Any, key: tuple[int, str] = key) -> None:
            _CACHE.pop(key, None)

        ref = weakref.ref(owner, drop)
        found = (ref, fitted, build())
        _CACHE[key] = found
    return found[2]


def _fast(vec: Any) -> FastTfidf | None:
    if not FastTfidf.handles(vec):
        return None
    return cached(vec, vec.vocabulary_, lambda: FastTfidf(vec))


def stacked_linear(ovr: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(W, b, learned) of a fitted one-vs-rest classifier: every label's coef in one (features, labels) matrix.

    A label whose estimator has no coef (never or always positive in training) gets a zero
    column and the constant score ``b`` of -5 or +5; ``learned`` marks the others.
    """
    def build() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        ests = ovr.estimators_
        n_features = next((np.ravel(e.coef_).shape[0] for e in ests if has_fitted(e, "coef_")), 0)
        rows = np.zeros((len(ests), n_features), dtype=float)  # a label's coef per row, then one transposing copy
        b = np.empty(len(ests), dtype=float)
        learned = np.zeros(len(ests), dtype=bool)
        for k, est in enumerate(ests):
            if has_fitted(est, "coef_"):
                rows[k] = np.ravel(est.coef_)
                b[k] = float(np.ravel(est.intercept_)[0])
                learned[k] = True
            else:
                b[k] = -5.0 if not np.any(est.y_ if has_fitted(est, "y_") else 0) else 5.0
        W = np.ascontiguousarray(rows.T)  # (features, labels) in C order, as X @ W reads it; half the time of filling columns
        return W, b, learned

    return cached(ovr, ovr.estimators_, build)


def column_picker(owner: Any, cols: Any, n_features: int, tag: str = "") -> ColumnPicker:
    """``ColumnPicker(cols, n_features)``, made once per (owner, tag) while ``cols`` is the same object."""
    return cached(owner, cols, lambda: ColumnPicker(np.asarray(cols), n_features), tag)


def hstack_dense_csr(dense: np.ndarray, X: sparse.csr_matrix) -> sparse.csr_matrix:
    """``sparse.hstack([csr_matrix(dense), X]).tocsr()`` (same entries, same order) without scipy's block machinery."""
    n, d = dense.shape
    rows_d, cols_d = np.nonzero(dense)
    rows_x = np.repeat(np.arange(n), np.diff(X.indptr))
    rows = np.concatenate([rows_d, rows_x])
    order = np.argsort(rows, kind="stable")  # per row: the dense columns first, then X's, each in order
    indices = np.concatenate([cols_d, X.indices.astype(np.int64) + d])[order].astype(np.int32)
    dtype = np.result_type(dense.dtype, X.dtype)
    data = np.concatenate([dense[rows_d, cols_d].astype(dtype), X.data.astype(dtype)])[order]
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n))]).astype(np.int32)
    return csr(data, indices, indptr, (n, d + X.shape[1]))


def hstack_blocks(dense: np.ndarray, blocks: Sequence[tuple[sparse.csr_matrix, Any]]) -> sparse.csr_matrix:
    """``sparse.hstack([hstack_dense_csr(dense, A * a), B * b, ...], format="csr")`` for ``blocks`` [(A, a), (B, b),
    ...] (CSR matrices and their scalar factors): the same entries in the same order
    (per row: the dense block's nonzeros, then each block's entries, as scipy's hstack puts them), each
    scaled as scipy's ``X * a`` does (``X.data * a``), put in place in one pass, no sort."""
    n, d = dense.shape
    if n == 1:
        return _hstack_one(dense, blocks)
    rows_d, cols_d = np.nonzero(dense)
    counts = [np.bincount(rows_d, minlength=n)] + [np.diff(X.indptr) for X, _ in blocks]
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.sum(counts, axis=0), out=indptr[1:])
    total = int(indptr[-1])
    datas = [dense[rows_d, cols_d]] + [X.data * a for X, a in blocks]
    dtype = np.result_type(*datas) if datas else dense.dtype
    data = np.empty(total, dtype=dtype)
    indices = np.empty(total, dtype=np.int32)
    start = indptr[:-1].copy()  # where each row's next block begins
    firsts = [np.concatenate([[0], np.cumsum(counts[0])])[:-1]] + [X.indptr[:-1] for X, _ in blocks]
    offset = 0
    for b, (cols, rows) in enumerate([(cols_d, rows_d)] + [
            (X.indices, np.repeat(np.arange(n), counts[k + 1])) for k, (X, _) in enumerate(blocks)]):
        dest = start[rows] + (np.arange(len(rows)) - firsts[b][rows])
        indices[dest] = cols.astype(np.int64) + offset
        data[dest] = datas[b]
        start += counts[b]
        offset += d if b == 0 else blocks[b - 1][0].shape[1]
    return csr(data, indices, indptr.astype(np.int32), (n, offset))


def _hstack_one(dense: np.ndarray, blocks: Sequence[tuple[sparse.csr_matrix, Any]]) -> sparse.csr_matrix:
    """``hstack_blocks`` of one row: its parts one after the other (the dense block's nonzeros, then each block's)."""
    cols_d = np.flatnonzero(dense[0])
    datas = [dense[0, cols_d]] + [X.data * a for X, a in blocks]
    indices = [cols_d]
    offset = dense.shape[1]
    for X, _ in blocks:
        indices.append(X.indices.astype(np.int64) + offset)
        offset += X.shape[1]
    data = np.concatenate(datas).astype(np.result_type(*datas), copy=False)
    index = np.concatenate(indices).astype(np.int32)
    return csr(data, index, np.array([0, len(index)], dtype=np.int32), (1, offset))


def transform(step: Any, texts: list[str], analyses: Analyses) -> Any:
    """One fitted transformer (TF-IDF, FeatureUnion, Pipeline, FunctionTransformer) applied to texts."""
    fast = _fast(step)
    if fast is not None:
        return fast.transform(texts, analyses)
    chars = _fast_chars(step)  # a featurizer's character block (``features = "both"``)
    if chars is not None:
        return chars.transform(texts)
    if _is(step, "FeatureUnion"):
        blocks = [transform(t, texts, analyses) for _, t in step.transformer_list if t not in ("drop", None)]
        blocks = [b if sparse.issparse(b) else sparse.csr_matrix(b) for b in blocks]
        return blocks[0].tocsr() if len(blocks) == 1 else sparse.hstack(blocks).tocsr()
    if _is(step, "Pipeline"):
        for _, s in step.steps:
            if s not in ("passthrough", None):
                texts = transform(s, texts, analyses)
        return texts
    if _is(step, "FunctionTransformer") and step.func is not None and not step.validate:
        return analyses.apply(step.func, texts, step.kw_args)
    with quiet_sklearn():
        return step.transform(texts)


def linear_proba(clf: Any, X: Any) -> np.ndarray:
    """``clf.predict_proba(X)`` for a fitted LogisticRegression, from its coefficients (other models: asked)."""
    if not _is(clf, "LogisticRegression") or not has_fitted(clf, "coef_"):
        with quiet_sklearn():
            return np.asarray(clf.predict_proba(X))
    # in the fitted dtype (float32 after fitting on float32 TF-IDF), as scikit-learn computes it
    scores = np.asarray(X @ clf.coef_.T) + clf.intercept_
    if len(clf.classes_) <= 2:
        from scipy.special import expit  # only here: importing scipy.special costs about 0.2 s

        p = expit(scores.reshape(-1))
        return np.stack([1 - p, p], axis=1)
    scores -= scores.max(axis=1).reshape(-1, 1)
    np.exp(scores, out=scores)
    scores /= scores.sum(axis=1).reshape(-1, 1)
    return scores


def pipeline_proba(pipe: Pipeline, texts: list[str], analyses: Analyses) -> tuple[Any, np.ndarray]:
    """(features, probabilities) of a text pipeline whose last step is a classifier."""
    X: Any = texts
    for _, step in pipe.steps[:-1]:
        if step not in ("passthrough", None):
            X = transform(step, X, analyses)
    return X, linear_proba(pipe.steps[-1][1], X)


class ColumnPicker:
    """Keep a fixed, increasing set of columns of CSR matrices (``X[:, cols]``, without scipy's per-call mapping)."""

    def __init__(self, cols: np.ndarray, n_features: int) -> None:
        self.cols = np.asarray(cols)
        self.map = np.full(n_features, -1, dtype=np.int64)
        self.map[self.cols] = np.arange(len(self.cols))

    def __call__(self, X: sparse.csr_matrix) -> sparse.csr_matrix:
        if X.shape[0] == 1:
            end = int(X.indptr[1])
            new = self.map[X.indices[:end]]
            keep = new >= 0
            kept = new[keep].astype(np.int32)
            return csr(X.data[:end][keep], kept, np.array([0, len(kept)], dtype=np.int32), (1, len(self.cols)))
        new = self.map[X.indices]
        keep = new >= 0
        kept_before = np.concatenate([[0], np.cumsum(keep)])  # kept entries before each position
        indptr = kept_before[X.indptr].astype(np.int32)
        return csr(X.data[keep], new[keep].astype(np.int32), indptr, (X.shape[0], len(self.cols)))


class BatchKinds:
    """A learned agency model's answers for a batch, computed in one call each and handed to the router.

    The router asks ``kind_proba(norm)`` (and, for a model with a ranker, ``rank_proba(norm)``) per
    complaint and reads the model's settings (thresholds, calibration) as attributes: the answers
    come from the batch computation, the settings from the model itself.
    """

    def __init__(self, model: Any, norms: Sequence[str], analyses: Analyses) -> None:
        self._model = model
        norms = list(norms)
        self._proba = _rows(agency_proba(model, norms, analyses), list(model.kinds), norms)
        ranker: Any = getattr(model, "ranker_", None)
        self._rank: dict[str, dict[str, float]] | None = None
        if _is(ranker, "Pipeline") and norms:  # its classes_ are its last step's (Pipeline.classes_)
            classes = ranker.steps[-1][1].classes_
            names = cached(ranker, classes, lambda: [str(k) for k in classes], "names")
            self._rank = _rows(pipeline_proba(ranker, norms, analyses)[1], names, norms)

    def kind_proba(self, norm: str) -> dict[str, float]:
        found = self._proba.get(norm)
        return dict(found) if found is not None else self._model.kind_proba(norm)

    def rank_proba(self, norm: str) -> dict[str, float]:
        found = self._rank.get(norm) if self._rank is not None else None
        return dict(found) if found is not None else self._model.rank_proba(norm)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        value = getattr(self._model, name)
        self.__dict__[name] = value  # asked several times a complaint; a batch's answers come from one model
        return value


def _rows(P: np.ndarray, labels: list[str], norms: list[str]) -> dict[str, dict[str, float]]:
    """Each text's probabilities by label, as Python floats (``tolist``: the values ``float`` gives, made in C)."""
    return {norm: dict(zip(labels, row)) for norm, row in zip(norms, np.asarray(P, dtype=float).tolist())}


def agency_proba(model: Any, norms: list[str], analyses: Analyses) -> np.ndarray:
    """The agency model's kind probabilities for normalised texts, through its pipeline's fast path.

    A model that follows reviewers' corrections (``memory_``) adjusts them as its own
    ``kind_proba_many`` does, from the same features.
    """
    pipe = getattr(model, "pipeline", None)
    if not _is(pipe, "Pipeline"):
        with quiet_sklearn():
            return np.asarray(model.kind_proba_many(norms))
    X, P = pipeline_proba(pipe, norms, analyses)
    memory = getattr(model, "memory_", None)
    if memory is not None and len(memory):
        P = memory.adjust(X, P)
    return P
