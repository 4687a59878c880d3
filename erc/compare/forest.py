"""Emotion from V/A/D: a Random Forest whose hyperparameters are chosen on the training split only.

``GridSearchCV`` runs on the training rows with folds that keep whole dialogues
together (``StratifiedGroupKFold`` when dialogue ids are given), so no
utterance of a validation fold shares a dialogue with its training folds. The
refitted best forest is then evaluated once on the test split.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from erc.core.metrics import classification_metrics
from erc.core.runs import summarize_seeds

logger = logging.getLogger(__name__)


@dataclass
class ForestGrid:
    n_estimators: Sequence[int] = (100, 300)
    max_depth: Sequence[int] = (0, 6, 12)  # 0 = unlimited
    min_samples_leaf: Sequence[int] = (1, 5, 20)

    def param_grid(self) -> dict:
        return {"n_estimators": [int(v) for v in self.n_estimators],
                "max_depth": [None if int(v) <= 0 else int(v) for v in self.max_depth],
                "min_samples_leaf": [int(v) for v in self.min_samples_leaf]}


@dataclass
class ForestResult:
    metrics: dict                      # erc.core.metrics.classification_metrics on the test split
    best_params: dict
    cv_score: float                    # mean CV score of the best params (training split only)
    y_pred: np.ndarray = field(repr=False)


def fit_forest(x_train: np.ndarray, y_train: np.ndarray, groups: Sequence | None = None,
               grid: ForestGrid | None = None, cv_folds: int = 3, scoring: str = "f1_weighted",
               seed: int = 0, n_jobs: int = 1):
    """Grid-search a ``RandomForestClassifier`` on the training split; return the fitted search."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.model_selection import GridSearchCV, StratifiedGroupKFold, StratifiedKFold

    x_train, y_train = np.asarray(x_train, dtype=np.float64), np.asarray(y_train)
    if len(x_train) != len(y_train):
        raise ValueError(f"x_train has {len(x_train)} rows but y_train has {len(y_train)}")
    _, counts = np.unique(y_train, return_counts=True)
    folds = int(min(cv_folds, counts.min())) if len(counts) else cv_folds
    if folds < 2:
        raise ValueError(f"a class has fewer than 2 training examples (counts {counts.tolist()}); "
                         "cannot cross-validate the forest")
    if groups is not None and len(np.unique(groups)) >= folds:
        cv = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    else:
        cv, groups = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed), None
    search = GridSearchCV(RandomForestClassifier(random_state=seed, n_jobs=n_jobs),
                          (grid or ForestGrid()).param_grid(), scoring=scoring, cv=cv, refit=True,
                          n_jobs=1, error_score="raise")
    search.fit(x_train, y_train, groups=groups)
    return search


def forest_emotion_metrics(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
                           y_test: np.ndarray, label_names: Sequence[str],
                           groups: Sequence | None = None, grid: ForestGrid | None = None,
                           cv_folds: int = 3, scoring: str = "f1_weighted", seed: int = 0) -> ForestResult:
    """Fit on train (CV on train only), predict test, score with ``classification_metrics``."""
    search = fit_forest(x_train, y_train, groups=groups, grid=grid, cv_folds=cv_folds,
                        scoring=scoring, seed=seed)
    y_pred = search.predict(np.asarray(x_test, dtype=np.float64))
    metrics = classification_metrics(y_test, y_pred, label_names)
    best = {k: v for k, v in search.best_params_.items()}
    return ForestResult(metrics=metrics, best_params=best, cv_score=float(search.best_score_),
                        y_pred=np.asarray(y_pred))


def summarise_seeds(results: Sequence[dict]) -> dict:
    """Mean and sample std (ddof=1) over forest seeds of the scalar metrics (:func:`erc.core.runs.summarize_seeds`);
    per-class F1 averaged."""
    out = summarize_seeds(results, ("accuracy", "weighted_f1", "macro_f1"))
    names = list(results[0]["per_class_f1"]) if results else []
    out["per_class_f1"] = {n: float(np.mean([r["per_class_f1"][n] for r in results])) for n in names}
    return out
