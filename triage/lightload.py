"""Unpickling a saved model for prediction without importing scikit-learn (the batch CLI's start-up).

Importing scikit-learn costs 1.3-2.5 s of CPU here (it imports scipy.stats, scipy.optimize,
joblib, narwhals ...), most of a 10,000-row ``python -m triage predict``'s start-up, and the
predict path does not run scikit-learn code: ``triage.fastpath`` computes the same numbers from
the fitted attributes (vocabularies, idf, coefficients). ``load`` therefore unpickles the model
with a stand-in for each scikit-learn class the saved models use: a plain object holding the
pickled state, as scikit-learn's own ``BaseEstimator.__setstate__`` sets it (``__dict__`` without
``_sklearn_version``; ``triage.registry`` has already checked the version).

A stand-in answers what the fast path reads (fitted attributes, parameters, ``idf_`` and the
tokenising pattern of ``TfidfVectorizer``). The first time anything asks it for something else
(``transform``, ``predict_proba``, a property), it imports the real class and becomes an
instance of it, with the same ``__dict__``: from then on it is the object a normal unpickling
gives. So the stand-ins change how fast, never what, a model answers. The file format is the
same ``model.pkl``; nothing is written.
"""

from __future__ import annotations

import importlib
import pickle
import re
import types
from typing import IO, Any

STANDS_IN_FOR: dict[tuple[str, str], str] = {
    ("sklearn.feature_extraction.text", "TfidfVectorizer"): "TfidfVectorizer",
    ("sklearn.feature_extraction.text", "TfidfTransformer"): "TfidfTransformer",
    ("sklearn.pipeline", "Pipeline"): "Pipeline",
    ("sklearn.pipeline", "FeatureUnion"): "FeatureUnion",
    ("sklearn.preprocessing._function_transformer", "FunctionTransformer"): "FunctionTransformer",
    ("sklearn.preprocessing._label", "LabelBinarizer"): "LabelBinarizer",
    ("sklearn.multiclass", "OneVsRestClassifier"): "OneVsRestClassifier",
    ("sklearn.multiclass", "_ConstantPredictor"): "_ConstantPredictor",
    ("sklearn.svm._classes", "LinearSVC"): "LinearSVC",
    ("sklearn.linear_model._logistic", "LogisticRegression"): "LogisticRegression",
    ("sklearn.utils._metadata_requests", "MetadataRequest"): "MetadataRequest",
    ("sklearn.utils._metadata_requests", "MethodMetadataRequest"): "MethodMetadataRequest",
}
"""The scikit-learn classes a saved triage model holds (pickled module, name) -> the name ``fastpath``
knows it by. Any other scikit-learn class in a file is unpickled for real."""


class StandIn:
    """A scikit-learn object's pickled state, without scikit-learn (see the module's text)."""

    light_of: tuple[str, str] = ("", "")
    """(module, name) of the class this stands in for."""

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        state.pop("_sklearn_version", None)  # as BaseEstimator.__setstate__ (the registry checked the version)
        self.__dict__.update(state)

    def become_real(self) -> Any:
        """Turn into an instance of the real class (same state): scikit-learn is imported now."""
        module, name = type(self).light_of
        real = getattr(importlib.import_module(module), name)
        object.__setattr__(self, "__class__", real)
        return self

    def __getattr__(self, name: str) -> Any:
        # only called for what the state lacks: a method, a property, an attribute never set, scikit-learn's
        # own protocols (__sklearn_tags__ ...); not Python's optional ones (__deepcopy__ ...), which are absent
        if name.startswith("__") and name.endswith("__") and not name.startswith("__sklearn"):
            raise AttributeError(name)
        return getattr(self.become_real(), name)

    # Python looks special methods up on the class, not through __getattr__: a Pipeline's pipe[:-1], len(pipe)
    def __getitem__(self, key: Any) -> Any:
        return self.become_real()[key]

    def __len__(self) -> int:
        return len(self.become_real())

    def __reduce_ex__(self, protocol: Any) -> Any:
        return self.become_real().__reduce_ex__(protocol)  # pickled (or copied) as the real object

    def __repr__(self) -> str:
        return f"<stand-in for {type(self).light_of[1]}>"


class TfidfVectorizerStandIn(StandIn):
    light_of = ("sklearn.feature_extraction.text", "TfidfVectorizer")
    _white_spaces = re.compile(r"\s\s+")
    """scikit-learn's ``_VectorizerMixin._white_spaces`` (``tests/test_lightload.py`` compares them)."""

    @property
    def idf_(self) -> Any:
        return self._tfidf.idf_  # as TfidfVectorizer.idf_


def _stand_in_class(module: str, name: str) -> type[StandIn]:
    if (module, name) == TfidfVectorizerStandIn.light_of:
        return TfidfVectorizerStandIn
    return type(f"{name}StandIn", (StandIn,), {"light_of": (module, name), "__module__": __name__})


_CLASSES: dict[tuple[str, str], type[StandIn]] = {key: _stand_in_class(*key) for key in STANDS_IN_FOR}


class Unpickler(pickle.Unpickler):
    """``pickle.Unpickler`` (in C) that gives stand-ins for the classes of ``STANDS_IN_FOR``."""

    def find_class(self, module: str, name: str) -> Any:
        found = _CLASSES.get((module, name))
        if found is not None:
            return found
        return super().find_class(module, name)


def load(fh: IO[bytes]) -> Any:
    """The pickled object of an open file, scikit-learn objects as stand-ins."""
    return Unpickler(fh).load()


def light_name(obj: Any) -> str | None:
    """The scikit-learn class name ``obj`` stands in for, or None when it is not a stand-in."""
    cls = type(obj)
    return STANDS_IN_FOR.get(cls.light_of) if issubclass(cls, StandIn) else None


class LazyModule(types.ModuleType):
    """A module imported when one of its attributes is first read (``pd = LazyModule("pandas")``): for a
    module that a saved model names and that imports a heavy library only some of its functions use."""

    def __getattr__(self, attr: str) -> Any:
        return getattr(importlib.import_module(self.__name__), attr)
