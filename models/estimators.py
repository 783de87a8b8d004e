"""LightGBM models per target, with calibration and honest prediction intervals.

Three time-ordered folds feed each model: it is fitted on the earliest cases, stops
early on the next block, and is calibrated (intervals: conformalised) on the latest
block, which it has not seen. Judging on later data is what makes a probability or an
interval trustworthy for the next quarter, not the last one. The win model is then
refitted on all three blocks with the number of trees found by early stopping, keeping
its calibration decision (see :class:`WinProbabilityModel`).

Both models can *boost from a baseline*: a simple model fitted on the training rows
(a logistic regression for the win probability; the account's past delay, else the
mean of its terms and region, for payment delay) gives LightGBM its starting score
(``init_score``), and the trees learn what the baseline misses. Trees approximate
``y ~ x`` or an additive log-odds only by many small steps, and prefixes of one case
share a label, so the effective sample is small; starting from the baseline leaves the
trees the interactions and thresholds they are good at. The baseline is part of the
fitted model and reads only the feature matrix, so a bundle still predicts from features
alone; each class says how its explanations add up.
"""

from __future__ import annotations

import copy
import os
import threading
import weakref
from typing import Any, Protocol

import lightgbm as lgb
import numpy as np
import pandas as pd
from scipy.special import expit
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss

from models.baselines import LogisticBaseline, RateBaseline
from models.matrix import Matrix, as_matrix
from models.selection import Choice, choose

#: Prefixes of one case share its label, so the effective sample is cases, not rows:
#: large leaves and smoothed categories keep trees from memorising a few long cases.
DEFAULT_PARAMS: dict[str, Any] = {
    "n_estimators": 2000,
    "learning_rate": 0.05,
    "num_leaves": 15,
    "min_child_samples": 200,
    "subsample": 0.8,
    "subsample_freq": 1,
    "colsample_bytree": 0.5,
    "reg_lambda": 1.0,
    "cat_smooth": 50.0,
    "cat_l2": 10.0,
    "min_data_per_group": 200,
    "max_cat_to_onehot": 8,
    "verbose": -1,
    "n_jobs": 1,  # OpenMP threads spin badly when the cores are shared (docs/performance.md)
}
#: The win model learns the residual of a logistic regression: small, shallow steps.
CLASSIFIER_PARAMS: dict[str, Any] = {"learning_rate": 0.03, "num_leaves": 7,
                                     "min_child_samples": 400, "cat_smooth": 100.0,
                                     "min_data_per_group": 400}
#: L1 and quantile objectives need many small steps; fewer, larger ones keep training fast
#: and explaining cheap: TreeSHAP's cost grows with the trees, and the remaining-time
#: model's is most of what explaining a batch costs. On the 20k-case quality benchmark,
#: 0.1 -> 0.2 took its trees from 201 to 123 and TreeSHAP of 10k rows from 6.2 to 3.8 s,
#: for an MAE of 38.93 instead of 38.69 days (0.3: 53 trees, 1.5 s, 39.23 days).
REGRESSION_PARAMS: dict[str, Any] = {"learning_rate": 0.2, "n_estimators": 600}
EARLY_STOPPING_ROUNDS = 50
#: from this many rows on, predictions use every core (see ``_predict``)
PARALLEL_PREDICT_ROWS = 2000
#: a calibrator is kept only if it lowers the log loss of held-out calibration rows by this
MIN_CALIBRATION_GAIN = 0.001


class Baseline(Protocol):
    """What a regression can boost from: fitted on features, predicts from features."""

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> Baseline: ...

    def predict(self, X: Matrix) -> np.ndarray: ...


def _predict(booster: lgb.Booster, M: np.ndarray, **kwargs: Any) -> np.ndarray:
    """``booster.predict`` with as many OpenMP threads as the work is worth.

    Without ``num_threads`` LightGBM starts OpenMP's default team even for one row; on a
    busy machine that costs far more than the prediction (docs/performance.md), and the
    API makes ten such calls per request. Large matrices (a batch's TreeSHAP) do use
    every core, where the team pays for itself.
    """
    threads = 1 if len(M) < PARALLEL_PREDICT_ROWS else (os.cpu_count() or 1)
    return np.asarray(booster.predict(M, num_threads=threads, **kwargs), dtype=float)


_TREESHAP_COPIES: weakref.WeakKeyDictionary[lgb.Booster, lgb.Booster] = \
    weakref.WeakKeyDictionary()
_COPYING = threading.Lock()


def treeshap_booster(booster: lgb.Booster) -> lgb.Booster:
    """A copy of ``booster`` (through its model text: the same trees, bit for bit) that
    only TreeSHAP reads, made once per booster and dropped with it.

    TreeSHAP costs far more than a prediction and runs in C without the GIL, so the API
    computes it in a thread of its own while the predictions and answers of the same
    rows go on. Two threads never share a Booster: ``pred_contrib`` from two threads
    corrupted memory (LightGBM issue #5482) and building a predictor races on a shared
    Booster (#6142, open). The copy is not pickled with the model; the API makes it when
    it checks a model at load (``models.bundle.smoke_test``), before any thread shares it.
    """
    with _COPYING:
        copy_ = _TREESHAP_COPIES.get(booster)
        if copy_ is None:
            copy_ = lgb.Booster(model_str=booster.model_to_string())
            _TREESHAP_COPIES[booster] = copy_
    return copy_


def _fit_lgbm(model: lgb.LGBMModel, X: pd.DataFrame, y: np.ndarray, X_valid: pd.DataFrame,
              y_valid: np.ndarray, init: np.ndarray | None = None,
              init_valid: np.ndarray | None = None) -> lgb.LGBMModel:
    extra = {} if init is None else {"init_score": init, "eval_init_score": [init_valid]}
    model.fit(X, y, eval_X=X_valid, eval_y=y_valid,
              callbacks=[lgb.early_stopping(EARLY_STOPPING_ROUNDS, verbose=False)], **extra)
    return model


class _Boosted:
    """What both models share: the fitted LightGBM model ``model_`` (for the regressor,
    its point model) read from one float matrix (see models.matrix)."""

    model_: lgb.LGBMModel

    @property
    def booster(self) -> lgb.Booster:
        return self.model_.booster_

    def matrix(self, X: Matrix) -> np.ndarray:
        """``X`` as the float matrix every part of this model reads."""
        return as_matrix(X, self.booster.pandas_categorical)

    @property
    def uses_trees(self) -> bool:
        """False when a simpler model was shipped (``kind_``, models.selection): the
        trees then add nothing, and explanations give them no share."""
        return getattr(self, "kind_", "lightgbm") == "lightgbm"

    def tree_contributions(self, X: Matrix) -> np.ndarray:
        """TreeSHAP of the trees (LightGBM's ``pred_contrib``), expected value last;
        zeros when the trees are not used.

        It reads a copy of the trees of its own (:func:`treeshap_booster`), so it may run
        in another thread than the predictions of the same rows."""
        if not self.uses_trees:
            return np.zeros((len(X), X.shape[1] + 1))
        return _predict(treeshap_booster(self.booster), self.matrix(X), pred_contrib=True)


class WinProbabilityModel(_Boosted):
    """LightGBM classifier boosted from a logistic regression, checked on later cases.

    Fitting, with three time-ordered blocks (fit, valid, cal):

    1. the base, :class:`~models.baselines.LogisticBaseline`, is fitted on the fit block;
       its log-odds are LightGBM's ``init_score``, and the trees, early-stopped on the
       valid block, learn what it misses (``base=None``: plain LightGBM);
    2. calibration is decided on the cal block, which this model has not seen (below);
    3. with ``refit=True`` (default) base and trees are refitted on all three blocks with
       the number of trees found in 1., so the final model knows the latest cases (rep
       and account histories grow over time, and a model of older cases alone falls
       behind a logistic regression of all of them); the calibration of 2. is kept, as
       scikit-learn's ``CalibratedClassifierCV(ensemble=False)`` keeps its calibrator.

    ``calibration``: 'isotonic' (flexible, needs a few thousand rows), 'sigmoid' (Platt
    scaling on the log-odds) or 'none'. A calibrator is kept only if it lowers the log
    loss (by ``MIN_CALIBRATION_GAIN``) of the cal block's second half when fitted on its
    first, and of the cal block when fitted on the valid block (a map that carries over
    in time); it is then refitted on the whole cal block. Boosting with a log
    loss objective gives fairly calibrated probabilities, so this rarely triggers. With
    ``refit=False`` the model never sees the cal block and is first recalibrated there by
    a constant log-odds shift (``shift_``; a later base rate), then as above.
    ``calibration_used_`` says what was applied.

    A drifting win rate: the refit on all blocks predicts their average level, while new
    cases follow the latest one. Whether the level moves on is checked on cases the model
    has not seen: the model of 1. moved to the valid block's level (a log-odds shift) must
    predict the cal block better, by ``MIN_CALIBRATION_GAIN`` of log loss, than moved to
    its own fit block's level. Then the final model's
    probabilities are moved to the cal block's level (``drift_``, a log-odds shift applied
    last) and ``calibration_used_`` ends in "+drift". Part of calibration: never with
    ``calibration='none'``.

    Explanations: ``booster.predict(X, pred_contrib=True)`` explains the trees only, i.e.
    the correction to the logistic regression. Per row, the uncalibrated log-odds are::

        logit(raw_proba(X)) = raw_margin(X)
                            = base_margin(X) + booster.predict(X, pred_contrib=True).sum(1)

    (the contributions' last column is the trees' expected value). For complete
    explanations add :meth:`base_contributions` (the logistic regression's per-feature
    terms in log-odds, centred on its training rows, with its mean log-odds in the last
    column) to the trees' contributions, column by column: the sum is ``raw_margin(X)``.
    """

    #: models pickled before the drift correction have none
    drift_: float = 0.0

    def __init__(self, params: dict[str, Any] | None = None, calibration: str = "isotonic",
                 seed: int = 0, base: str | None = "logistic", refit: bool = True,
                 select: bool = True) -> None:
        self.params = {**DEFAULT_PARAMS, **CLASSIFIER_PARAMS, **(params or {})}
        self.calibration = calibration
        self.seed = seed
        self.base = base
        self.refit = refit
        self.select = select

    def fit(self, X: pd.DataFrame, y: np.ndarray, X_valid: pd.DataFrame, y_valid: np.ndarray,
            X_cal: pd.DataFrame, y_cal: np.ndarray) -> WinProbabilityModel:
        if self.base not in (None, "logistic"):
            raise ValueError(f"unknown base {self.base!r}; use 'logistic' or None")
        if self.calibration not in ("isotonic", "sigmoid", "none"):
            raise ValueError(f"unknown calibration {self.calibration!r}")
        y, y_valid, y_cal = (np.asarray(v, dtype=int) for v in (y, y_valid, y_cal))
        self._fit_base(X, y)
        init = ((self.base_margin(X), self.base_margin(X_valid))
                if self.base_ is not None else (None, None))
        self.model_ = _fit_lgbm(lgb.LGBMClassifier(**self.params, random_state=self.seed),
                                X, y, X_valid, y_valid, *init)
        self.n_trees_ = int(self.model_.best_iteration_ or self.params["n_estimators"])
        self.shift_ = self.drift_ = 0.0
        self.kind_ = "lightgbm"
        margin_valid, margin_cal = self.raw_margin(X_valid), self.raw_margin(X_cal)
        drifting = (self.refit and self.calibration != "none"
                    and self._level_moves_on(X, y, margin_valid, y_valid, margin_cal, y_cal))
        self.calibrator_, self.calibration_used_ = self._fit_calibrator(
            margin_cal, y_cal, shift=not self.refit, earlier=(margin_valid, y_valid))
        if self.select:
            self.choice_ = self._choose(X, y, X_valid, y_valid, X_cal, y_cal, margin_cal)
            if self.choice_.kind != "lightgbm":
                self._ship_simpler(self.choice_.kind, X, y, X_valid, y_valid, X_cal, y_cal)
        if self.refit and self.kind_ == "lightgbm":
            X_all = pd.concat([X, X_valid, X_cal])
            y_all = np.concatenate([y, y_valid, y_cal])
            self._fit_base(X_all, y_all)
            params = {**self.params, "n_estimators": self.n_trees_}
            extra = {} if self.base_ is None else {"init_score": self.base_margin(X_all)}
            self.model_ = lgb.LGBMClassifier(**params, random_state=self.seed)
            self.model_.fit(X_all, y_all, **extra)
        if drifting:
            self.drift_ = _fit_shift(_logit(self.calibrate(self.raw_proba(X_cal))), y_cal)
            self.calibration_used_ += "+drift"
        return self

    def _level_moves_on(self, X: pd.DataFrame, y: np.ndarray, margin_valid: np.ndarray,
                        y_valid: np.ndarray, margin_cal: np.ndarray, y_cal: np.ndarray
                        ) -> bool:
        """Whether the win rate's level drifts on: the model fitted on the fit block,
        moved to the valid block's level, predicts the later cal block better than moved
        to the fit block's own level (so a model that is merely off everywhere, which the
        calibrator is for, is not taken for a drift)."""
        if len(set(y_valid)) < 2 or len(set(y)) < 2 or len(y_cal) == 0:
            return False
        own = _fit_shift(self.raw_margin(X), y)
        moved = _fit_shift(margin_valid, y_valid)
        before = _log_loss(y_cal, _sigmoid(margin_cal + own))
        after = _log_loss(y_cal, _sigmoid(margin_cal + moved))
        return after < before - MIN_CALIBRATION_GAIN

    def _choose(self, X: pd.DataFrame, y: np.ndarray, X_valid: pd.DataFrame,
                y_valid: np.ndarray, X_cal: pd.DataFrame, y_cal: np.ndarray,
                margin_cal: np.ndarray) -> Choice:
        """LightGBM against the logistic regression, the stage's win rate and the base
        rate, on the cal block (``models.selection``). The simpler candidates are fitted
        on the fit and valid blocks; each probability model's calibration is applied
        cross-fitted (fitted on one half of the block, scored on the other), so no
        candidate is judged on rows it was calibrated on."""
        X_seen = pd.concat([X, X_valid])
        y_seen = np.concatenate([y, y_valid])
        logistic = LogisticBaseline(seed=self.seed).fit(X_seen, y_seen)
        candidates = {
            "lightgbm": self._crossfit(margin_cal + self.shift_, y_cal,
                                       self.calibration_used_ != "none"),
            "logistic": _sigmoid(logistic.decision_function(X_cal)),
            "stage_rate": RateBaseline().fit(X_seen, y_seen).predict_proba(X_cal),
            "base_rate": RateBaseline(preferred=()).fit(X_seen, y_seen).predict_proba(X_cal),
        }
        return choose(y_cal, candidates, classification=True)

    def _crossfit(self, margin: np.ndarray, y: np.ndarray, calibrate: bool) -> np.ndarray:
        """Probabilities of ``margin``; when the model keeps a calibrator, calibrated on
        the other half of the block (so no row is scored by a calibrator fitted on it)."""
        raw = _sigmoid(margin)
        half = len(y) // 2
        if not calibrate or min(half, len(y) - half) < 50:
            return raw
        out = raw.copy()
        for fit_on, apply_to in ((slice(None, half), slice(half, None)),
                                 (slice(half, None), slice(None, half))):
            if len(set(y[fit_on])) == 2:  # Platt scaling: isotonic on half a block puts
                # 0s and 1s at its ends, and one such row decides a log loss comparison
                out[apply_to] = _apply(_calibrator("sigmoid", raw[fit_on], y[fit_on]),
                                       raw[apply_to])
        return out

    def _ship_simpler(self, kind: str, X: pd.DataFrame, y: np.ndarray, X_valid: pd.DataFrame,
                      y_valid: np.ndarray, X_cal: pd.DataFrame, y_cal: np.ndarray) -> None:
        """Make the chosen simpler candidate the whole model, fitted on every block.

        The trees stay fitted (``booster`` still answers for the feature ranges) but add
        nothing: ``raw_margin`` is the base's and ``tree_contributions`` are zeros. A
        logistic regression keeps a calibrator only where it helped on the cal block; a
        rate is calibrated by construction."""
        X_all = pd.concat([X, X_valid, X_cal])
        y_all = np.concatenate([y, y_valid, y_cal])
        self.kind_ = kind
        self.shift_ = 0.0
        self.calibrator_, self.calibration_used_ = None, "none"
        if kind == "logistic":
            seen = LogisticBaseline(seed=self.seed).fit(pd.concat([X, X_valid]),
                                                         np.concatenate([y, y_valid]))
            older = LogisticBaseline(seed=self.seed).fit(X, y)  # has not seen the valid block
            self.calibrator_, self.calibration_used_ = self._fit_calibrator(
                seen.decision_function(X_cal), y_cal, shift=False,
                earlier=(older.decision_function(X_valid), y_valid),
                later=older.decision_function(X_cal))
            self.base_ = LogisticBaseline(seed=self.seed).fit(X_all, y_all)
        else:
            self.base_ = RateBaseline(preferred=() if kind == "base_rate" else
                                      ("stage", "last_activity")).fit(X_all, y_all)
        self.base_term_means_ = self.base_.terms(X_all).mean(axis=0)

    def _fit_base(self, X: pd.DataFrame, y: np.ndarray) -> None:
        self.base_ = LogisticBaseline(seed=self.seed).fit(X, y) if self.base else None
        if self.base_ is not None:
            self.base_term_means_ = self.base_.terms(X).mean(axis=0)

    def _fit_calibrator(self, margin: np.ndarray, y: np.ndarray, shift: bool,
                        earlier: tuple[np.ndarray, np.ndarray],
                        later: np.ndarray | None = None) -> tuple[Any, str]:
        """Optionally a log-odds shift on the whole block, then the method if it helps.

        The method is kept only if it helps twice on rows it was not fitted on: fitted on
        the block's first half, it must improve the second half; fitted on the earlier
        block (``earlier``: the model's log-odds there and its labels), it must improve
        this one (``later``: the same model's log-odds here, default ``margin``). Both
        halves of a block lie in the same few weeks, so the first check alone keeps a
        map that describes those weeks only (BPIC 2012: over-confident on the weeks
        before the split, not on the months after, ``docs/performance.md``); a map that
        also carries over from one block to the next has held for longer.
        """
        if self.calibration == "none" or len(set(y)) < 2:
            return None, "none"
        if shift:
            self.shift_ = _fit_shift(margin, y)
        raw = _sigmoid(margin + self.shift_)
        applied = "shift" if shift else "none"
        half = len(y) // 2
        here = raw if later is None else self._shifted(later, y, shift)
        if (_helps(self.calibration, (raw[:half], y[:half]), (raw[half:], y[half:]))
                and _helps(self.calibration, (self._shifted(*earlier, shift), earlier[1]),
                           (here, y))):
            used = self.calibration if not shift else f"shift+{self.calibration}"
            return _calibrator(self.calibration, raw, y), used
        return None, applied

    @staticmethod
    def _shifted(margin: np.ndarray, y: np.ndarray, shift: bool) -> np.ndarray:
        """Probabilities of ``margin``, first moved to its own block's level (labels
        ``y``) when the calibration starts with a shift, as ``_fit_calibrator`` does."""
        return _sigmoid(margin + (_fit_shift(margin, y) if shift else 0.0))

    def base_margin(self, X: Matrix) -> np.ndarray:
        """The baseline's log-odds (LightGBM's starting score); zeros without a base."""
        if self.base_ is None:
            return np.zeros(len(X))
        return self.base_.decision_function(X)

    def base_contributions(self, X: Matrix) -> np.ndarray:
        """The base's log-odds split by feature, its mean on the fit block in the last column.

        Columns follow X's columns like ``pred_contrib``; each row sums to
        ``base_margin(X)`` (see :meth:`LogisticBaseline.terms`).
        """
        out = np.zeros((len(X), X.shape[1] + 1))
        if self.base_ is None:
            return out
        out[:, :-1] = self.base_.terms(X) - self.base_term_means_
        out[:, -1] = self.base_.intercept_ + self.base_term_means_.sum()
        return out

    def raw_margin(self, X: Matrix) -> np.ndarray:
        """Uncalibrated log-odds: the base's plus the trees' correction."""
        M = self.matrix(X)
        if not self.uses_trees:
            return self.base_margin(M)
        return self.base_margin(M) + _predict(self.booster, M, raw_score=True)

    def raw_proba(self, X: Matrix) -> np.ndarray:
        return _sigmoid(self.raw_margin(X))

    def predict_proba(self, X: Matrix) -> np.ndarray:
        """Calibrated P(win)."""
        return self.calibrate(self.raw_proba(X))

    def calibrate(self, raw: np.ndarray) -> np.ndarray:
        """Uncalibrated -> calibrated probabilities (shift, then the calibrator if any,
        then the latest level when the win rate drifts)."""
        shifted = _sigmoid(_logit(raw) + self.shift_) if self.shift_ else raw
        out = shifted if self.calibrator_ is None else _apply(self.calibrator_, shifted)
        return _sigmoid(_logit(out) + self.drift_) if self.drift_ else out


class IntervalRegressor(_Boosted):
    """Point prediction (median, L1) plus a 10–90% interval with conformal correction.

    Quantile models give an interval that adapts to each case; conformalized quantile
    regression (Romano et al., 2019) then widens or narrows it by one constant fitted on
    the later calibration block, so coverage holds on new cases, not just in-sample.

    ``base``: an unfitted baseline (``fit(X, y)``/``predict(X)`` on the feature matrix,
    e.g. :class:`~models.baselines.PaymentDelayBaseline`) fitted on the fit block; the
    point and quantile models then boost from its prediction (``init_score``) and it is
    added back at predict time. Explanations: ``booster.predict(X, pred_contrib=True)``
    explains the point model's correction only; per row, in days::

        predict(X) = base_prediction(X) + booster.predict(X, pred_contrib=True).sum(1)

    so a complete explanation shows ``base_prediction(X)`` ("the account's usual delay")
    as its own term next to the trees' contributions.
    """

    def __init__(self, params: dict[str, Any] | None = None, alpha: float = 0.2,
                 seed: int = 0, base: Baseline | None = None,
                 fallbacks: dict[str, Baseline] | None = None) -> None:
        self.params = {**DEFAULT_PARAMS, **REGRESSION_PARAMS, **(params or {})}
        self.alpha = alpha
        self.seed = seed
        self.base = base
        #: unfitted baselines (kind -> baseline) LightGBM must beat on the cal block to be
        #: shipped (``models.selection``); the best of them is shipped otherwise
        self.fallbacks = fallbacks or {}

    def fit(self, X: pd.DataFrame, y: np.ndarray, X_valid: pd.DataFrame, y_valid: np.ndarray,
            X_cal: pd.DataFrame, y_cal: np.ndarray) -> IntervalRegressor:
        def model(**extra: Any) -> lgb.LGBMRegressor:
            params = {**self.params, **extra}
            return lgb.LGBMRegressor(**params, random_state=self.seed)

        self.base_ = copy.deepcopy(self.base).fit(X, y) if self.base is not None else None
        init = ((self.base_prediction(X), self.base_prediction(X_valid))
                if self.base_ is not None else (None, None))
        self.model_ = _fit_lgbm(model(objective="l1"), X, y, X_valid, y_valid, *init)
        half = self.alpha / 2
        self.lower_ = _fit_lgbm(model(objective="quantile", alpha=half), X, y, X_valid,
                                y_valid, *init)
        self.upper_ = _fit_lgbm(model(objective="quantile", alpha=1 - half), X, y, X_valid,
                                y_valid, *init)
        lo, hi = self._quantiles(self.matrix(X_cal), self.base_prediction(X_cal))
        scores = np.maximum(lo - y_cal, y_cal - hi)
        n = len(scores)
        level = min(1.0, np.ceil((n + 1) * (1 - self.alpha)) / n) if n else 1.0
        self.correction_ = float(np.quantile(scores, level)) if n else 0.0
        self.kind_ = "lightgbm"
        if self.fallbacks:
            X_seen, y_seen = pd.concat([X, X_valid]), np.concatenate([y, y_valid])
            seen = {k: copy.deepcopy(b).fit(X_seen, y_seen) for k, b in self.fallbacks.items()}
            candidates = {"lightgbm": self.predict(X_cal),
                          **{k: b.predict(X_cal) for k, b in seen.items()}}
            self.choice_ = choose(y_cal, candidates, classification=False)
            if self.choice_.kind != "lightgbm":
                self._ship_baseline(self.choice_.kind, seen[self.choice_.kind], X_cal, y_cal,
                                    pd.concat([X_seen, X_cal]), np.concatenate([y_seen, y_cal]))
        return self

    def _ship_baseline(self, kind: str, seen: Baseline, X_cal: pd.DataFrame, y_cal: np.ndarray,
                       X_all: pd.DataFrame, y_all: np.ndarray) -> None:
        """Make a baseline the whole model: refitted on every block, with a 10-90% interval
        of the residual quantiles it left on the cal block (split conformal: it was fitted
        on the earlier blocks only). The trees stay fitted but add nothing."""
        residuals = y_cal - seen.predict(X_cal)
        half = self.alpha / 2
        self.offsets_ = (float(np.quantile(residuals, half)), float(np.quantile(residuals,
                                                                              1 - half)))
        self.kind_ = kind
        self.base_ = copy.deepcopy(self.fallbacks[kind]).fit(X_all, y_all)

    def base_prediction(self, X: Matrix) -> np.ndarray:
        """The baseline's prediction the trees start from; zeros without a base."""
        if self.base_ is None:
            return np.zeros(len(X))
        return np.asarray(self.base_.predict(X), dtype=float)

    def predict(self, X: Matrix) -> np.ndarray:
        if not self.uses_trees:
            return self.base_prediction(X)
        return self.base_prediction(X) + _predict(self.booster, self.matrix(X))

    def predict_interval(self, X: Matrix) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Point, lower and upper; the interval always contains the point.

        The frame becomes a matrix once for the three boosters (see models.matrix).
        """
        M, base = self.matrix(X), self.base_prediction(X)
        if not self.uses_trees:
            low, high = self.offsets_
            return base, base + min(low, 0.0), base + max(high, 0.0)
        point = base + _predict(self.booster, M)
        lo, hi = self._quantiles(M, base)
        lo, hi = lo - self.correction_, hi + self.correction_
        return point, np.minimum(lo, point), np.maximum(hi, point)

    def _quantiles(self, M: np.ndarray, base: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        lo = base + _predict(self.lower_.booster_, M)
        hi = base + _predict(self.upper_.booster_, M)
        return np.minimum(lo, hi), np.maximum(lo, hi)


def _fit_shift(margin: np.ndarray, y: np.ndarray, steps: int = 20) -> float:
    """The constant b minimising the log loss of sigmoid(margin + b) (Newton steps)."""
    b = 0.0
    for _ in range(steps):
        p = _sigmoid(margin + b)
        grad, hess = float(np.sum(p - y)), float(np.sum(p * (1 - p)))
        if hess <= 0:
            break
        step = grad / hess
        b -= step
        if abs(step) < 1e-8:
            break
    return float(np.clip(b, -5.0, 5.0))


def _helps(method: str, fit_on: tuple[np.ndarray, np.ndarray],
           judge_on: tuple[np.ndarray, np.ndarray]) -> bool:
    """Whether ``method`` fitted on one sample's (probabilities, labels) lowers the log
    loss of the other by ``MIN_CALIBRATION_GAIN``; never on fewer than 50 rows a side or
    one class to fit on."""
    (raw_fit, y_fit), (raw_judge, y_judge) = fit_on, judge_on
    if min(len(y_fit), len(y_judge)) < 50 or len(set(y_fit)) < 2:
        return False
    fitted = _calibrator(method, raw_fit, y_fit)
    return (_log_loss(y_judge, _apply(fitted, raw_judge))
            < _log_loss(y_judge, raw_judge) - MIN_CALIBRATION_GAIN)


def _calibrator(method: str, raw: np.ndarray, y: np.ndarray) -> Any:
    if method == "isotonic":
        return IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(raw, y)
    return LogisticRegression().fit(_logit(raw)[:, None], y)


def _apply(calibrator: Any, raw: np.ndarray) -> np.ndarray:
    if isinstance(calibrator, IsotonicRegression):
        return calibrator.predict(raw)
    return calibrator.predict_proba(_logit(raw)[:, None])[:, 1]


def _log_loss(y: np.ndarray, p: np.ndarray) -> float:
    """Log loss of probabilities kept off 0 and 1 (one certain miss would decide a
    comparison), with both classes named even if a block holds one."""
    return log_loss(y, np.clip(p, 1e-6, 1 - 1e-6), labels=[0, 1])


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return expit(z)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))
