"""The topic head's binary learners other than the default LinearSVC (``[model] learner`` in a config).

Kept out of ``triage.model`` so that importing the model for prediction does not import scikit-learn
(``triage.lightload``); training imports this module when it builds a learner.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.svm import LinearSVC

TOPIC_LEARNERS = ("svm", "logreg", "avg", "mhuber")


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


def topic_estimator(learner: str, C: float, class_weight: str | None, seed: int, logreg_C: float = 4.0,
                    weight: float = 0.25) -> Any:
    """One label's binary learner of the topic head: "svm" (LinearSVC, the default), "logreg" (L2
    logistic regression, C ``logreg_C``), "avg" (both, ``AveragedLinear``), "mhuber" (SGD with the
    modified Huber loss, alpha 1e-5 / C: LinearSVC's 1 / (C n) at n = 100,000 rows)."""
    if learner == "svm":
        return LinearSVC(C=C, class_weight=class_weight, random_state=seed)
    if learner == "logreg":
        return LogisticRegression(C=logreg_C, solver="liblinear", class_weight=class_weight, random_state=seed)
    if learner == "avg":
        return AveragedLinear(C, logreg_C, weight, class_weight, seed)
    if learner == "mhuber":
        from sklearn.linear_model import SGDClassifier

        return SGDClassifier(loss="modified_huber", alpha=1e-5 / C, class_weight=class_weight, random_state=seed,
                             max_iter=20, tol=None)
    raise ValueError(f"topic learner {learner!r} is not one of: {', '.join(TOPIC_LEARNERS)}")
