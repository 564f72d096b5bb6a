"""``AveragedLinear``, the topic head's "avg" learner, in a module of its own: it subclasses scikit-learn's
``BaseEstimator``, and ``triage.model`` is imported for prediction without scikit-learn
(``triage.lightload``). ``triage.model.AveragedLinear`` still names it (read on first use)."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.svm import LinearSVC


class AveragedLinear(ClassifierMixin, BaseEstimator):
    """A LinearSVC and an L2 logistic regression fitted on the same rows, kept as one linear model.

    ``coef_ = svm.coef_ + weight * logreg.coef_`` (and the intercepts alike): the average of two
    learners' decision scores is itself linear, so prediction (``fastpath.stacked_linear``) and the
    explanations read it like any other estimator's ``coef_``. Calibration maps the summed score.
    """

    def __init__(self, C: float = 0.5, logreg_C: float = 4.0, weight: float = 0.25,
                 class_weight: str | None = None, random_state: int | None = None) -> None:
        self.C, self.logreg_C, self.weight = C, logreg_C, weight
        self.class_weight, self.random_state = class_weight, random_state

    def fit(self, X: Any, y: np.ndarray, sample_weight: np.ndarray | None = None) -> AveragedLinear:
        svc = LinearSVC(C=self.C, class_weight=self.class_weight, random_state=self.random_state)
        svc.fit(X, y, sample_weight=sample_weight)
        lr = LogisticRegression(C=self.logreg_C, solver="liblinear", class_weight=self.class_weight,
                                random_state=self.random_state).fit(X, y, sample_weight=sample_weight)
        self.classes_ = svc.classes_
        self.coef_ = svc.coef_ + self.weight * lr.coef_
        self.intercept_ = svc.intercept_ + self.weight * lr.intercept_
        return self

    def decision_function(self, X: Any) -> np.ndarray:
        """``X @ coef_.T + intercept_`` as scikit-learn's linear classifiers compute it (one column)."""
        return np.asarray(X @ self.coef_.T + self.intercept_).ravel()

    def predict(self, X: Any) -> np.ndarray:
        return self.classes_[(self.decision_function(X) > 0).astype(int)]


