"""The bundle: fitted feature pipeline + model + mapping, one object per target.

What MLflow stores and the API loads is this object, so a prediction from raw events
runs through exactly the code that built the training matrix. ``TargetBundle.score``
is the one way to score: the API, batch scoring, the forecast, the pages and the MLflow
pyfunc all call it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from features.errors import EventLogError
from features.log import ValidationReport, canonicalize
from features.mapping import Mapping
from features.pipeline import FRAME_KEYS, EncodedPrefixes, PrefixPipeline
from features.prefixes import Columns
from models.estimators import IntervalRegressor, WinProbabilityModel
from models.explain import explain_rows
from models.inputs import input_notes, number_checks
from models.matrix import Matrix
from models.registry import ModelUnusableError
from models.targets import TARGETS, Target

logger = logging.getLogger(__name__)
T = TypeVar("T")
#: runs ``work(matrix)`` elsewhere (a thread of its own) and hands back its future
Beside = Callable[[Callable[[np.ndarray], np.ndarray], np.ndarray], Future]


class NoUsableEventsError(EventLogError):
    """Every event given to a model was quarantined: there is nothing to predict."""


def no_usable_events_message(report: ValidationReport, mapping: Mapping,
                             examples: int = 3) -> str:
    """Why no row could be used, by quarantine reason with a few rows quoted."""
    reasons = "; ".join(
        f"{reason} ({count} row(s)): " + " | ".join(report.examples.get(reason, [])[:examples])
        for reason, count in report.quarantined.most_common())
    return (f"{report.source}: none of the {report.rows_in} event(s) is usable, so nothing "
            f"was predicted. Quarantined: {reasons or 'no rows given'}. The model reads "
            f"events through its mapping {mapping.name!r} (timestamps as "
            f"{mapping.format.timestamp_format}, zone {mapping.format.timezone})")


@dataclass
class CasesRead:
    """The latest prefix of each case as a pipeline reads it: the features (readable),
    the model's matrix, and what the checks of ``models.inputs`` found.

    Bundles trained in one run share their pipeline: one reading serves all of them.
    """

    features: EncodedPrefixes
    matrix: np.ndarray
    notes: dict[str, list[str]]  # case -> what its answers rest on
    refused: set[str]  # cases whose input is not a finite number: not predicted

    @property
    def case_ids(self) -> np.ndarray:
        return self.features.keys["case_id"]


@dataclass
class Scores:
    """A bundle's predictions for the cases read, and their SHAP values when asked."""

    bundle: TargetBundle
    read: CasesRead
    predictions: dict[str, np.ndarray]
    shap: Future[np.ndarray] | np.ndarray | None = None

    def explanations(self, top_k: int) -> list[dict[str, Any]]:
        """Per case, the ``top_k`` largest contributions in words (waits for SHAP values
        computed elsewhere; computes them here when none were asked for)."""
        values = self.shap.result() if isinstance(self.shap, Future) else self.shap
        return explain_rows(self.bundle, self.read.features, top_k, self.read.matrix, values)

    def frame(self) -> pd.DataFrame:
        """Keys (case, prefix length, prefix end, case start) and the prediction columns."""
        keys = self.read.features.keys
        out = pd.DataFrame({key: keys[key] for key in FRAME_KEYS})
        for name, values in self.predictions.items():
            out[name] = values
        return out

    def cancel(self) -> None:
        """Drop SHAP values not yet started (scoring failed, or they are not wanted): the
        explanation thread would compute them before the next request's. One already
        running finishes; its error, if any, is logged, not lost."""
        if isinstance(self.shap, Future) and not self.shap.cancel() and not self.shap.done():
            self.shap.add_done_callback(_log_unread_error)


def _log_unread_error(future: Future[np.ndarray]) -> None:
    if not future.cancelled() and future.exception() is not None:
        logger.warning("SHAP values of a failed scoring failed too: %r", future.exception())


@dataclass
class TargetBundle:
    target_name: str
    mapping: Mapping
    pipeline: PrefixPipeline
    model: WinProbabilityModel | IntervalRegressor
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def target(self) -> Target:
        return TARGETS[self.target_name]

    def read(self, events: pd.DataFrame | Columns, each_case_alone: bool = False
             ) -> CasesRead:
        """Each case's latest prefix through the pipeline, checked (``models.inputs``).

        ``events``: canonical events, as a frame or as a log's columns
        (``EventLog.table()``). ``each_case_alone``: a case's cross-case features count
        none of the other cases given, so its answer is the one it gets alone.
        """
        return self.checked(self.pipeline.encode(events, last_only=True,
                                                 each_case_alone=each_case_alone))

    def checked(self, features: EncodedPrefixes) -> CasesRead:
        """Prefixes this bundle's pipeline encoded (elsewhere: a Dask partition), as the
        model reads them, with the checks of ``models.inputs``."""
        matrix = features.matrix()
        refused, notes = number_checks(self, features, matrix)
        for case, messages in input_notes(self, features).items():
            notes.setdefault(case, [])[:0] = messages  # the input's notes come first
        return CasesRead(features, matrix, notes, refused)

    def score(self, events: pd.DataFrame | Columns | CasesRead, explain: bool = False, *,
              each_case_alone: bool = False, beside: Beside | None = None) -> Scores:
        """Predictions for the latest prefix of each case: the one way to score.

        ``events``: canonical events, or a ``CasesRead`` from ``read`` of a bundle of the
        same training run (the pipeline is then not run again). ``explain``: SHAP values
        too, computed by ``beside`` (e.g. in a thread of its own, while the caller goes
        on) or here; ``Scores.explanations`` words them.
        """
        read = events if isinstance(events, CasesRead) else self.read(
            events, each_case_alone=each_case_alone)
        shap: Future[np.ndarray] | np.ndarray | None = None
        if explain:
            shap = (beside(self.contributions, read.matrix) if beside is not None
                    else self.contributions(read.matrix))
        try:
            predictions = self.predict_arrays(read.matrix)
        except BaseException:
            Scores(self, read, {}, shap).cancel()
            raise
        return Scores(self, read, predictions, shap)

    def derived(self, name: str, build: Callable[[], T]) -> T:
        """``build()``, computed once per loaded bundle (never pickled with it)."""
        cache = self.__dict__.setdefault("_derived", {})
        if name not in cache:
            cache[name] = build()
        return cache[name]

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_derived", None)
        return state

    def predict_features(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Keys plus this target's prediction columns for a frame from ``features``."""
        return self.predict_matrix(self.pipeline.feature_matrix(frame), frame)

    def predict_matrix(self, X: Matrix, frame: pd.DataFrame) -> pd.DataFrame:
        """As ``predict_features`` for the feature matrix ``X`` already taken (and checked)
        from ``frame``, or its ``as_matrix``."""
        out = frame[list(FRAME_KEYS)].copy()
        for name, values in self.predict_arrays(X).items():
            out[name] = values
        return out

    def predict_arrays(self, X: Matrix) -> dict[str, np.ndarray]:
        """This target's prediction columns (``p_win``, or ``prediction_days`` with
        ``lower_days`` and ``upper_days``) for the rows of ``X``."""
        if isinstance(self.model, WinProbabilityModel):
            return {"p_win": self.model.predict_proba(X) if len(X) else np.zeros(0)}
        if len(X):
            point, lower, upper = self.model.predict_interval(X)
        else:
            point = lower = upper = np.zeros(0)
        return {"prediction_days": point, "lower_days": lower, "upper_days": upper}

    def score_export(self, raw: pd.DataFrame) -> Scores:
        """``score`` for events in the export's own format, read through the mapping."""
        log = canonicalize(raw, self.mapping, source="request")
        if len(log) == 0:
            raise NoUsableEventsError(no_usable_events_message(log.report, self.mapping))
        if log.report.rows_quarantined:  # the answer has no row for a case left without
            # events; the caller (MLflow's scoring server) at least logs why
            logger.warning("%d of %d event(s) quarantined, not predicted: %s",
                           log.report.rows_quarantined, log.report.rows_in,
                           dict(log.report.quarantined))
        return self.score(log.table())

    def contributions(self, X: Matrix) -> np.ndarray:
        """SHAP values per feature plus the base value in the last column; they add up.

        TreeSHAP comes from LightGBM itself (``pred_contrib``). Where the trees boost from
        a baseline, its part is added: for the win model the logistic regression's
        per-feature log-odds terms (column by column); for a regression its prediction
        goes into the base value (the usual delay of this account or of its terms).
        Rows sum to the model's raw output: uncalibrated log-odds for the win model,
        days for the regressions.
        """
        if isinstance(self.model, WinProbabilityModel):
            M = self.model.matrix(X)
            return self.model.tree_contributions(M) + self.model.base_contributions(M)
        trees = self.model.tree_contributions(X)
        trees[:, -1] += self.model.base_prediction(X)
        return trees

    def raw_output(self, X: Matrix) -> np.ndarray:
        """What ``contributions`` adds up to."""
        if isinstance(self.model, WinProbabilityModel):
            return self.model.raw_margin(X)
        return self.model.predict(X)


def smoke_test(bundle: TargetBundle, label: str) -> None:
    """Score and explain the bundle's own example before relying on it: a model pickled
    by older code (or a damaged one) can load yet fail on first use, and must then
    neither replace a working champion nor be promoted. Explaining it also makes
    TreeSHAP's copy of the trees now, not on a first request.

    ``label`` names the model in messages ("l2c-outcome version 3").
    """
    example = getattr(bundle, "info", {}).get("example_events")
    if example is None:
        raise ModelUnusableError(f"{label} carries no example to check; retrain it")
    try:
        scores = bundle.score(example, explain=True)
        scores.explanations(top_k=3)
        scored = scores.frame()
    except Exception as exc:
        raise ModelUnusableError(
            f"{label} loads but cannot predict or explain ({type(exc).__name__}: {exc}); it "
            "was probably trained by an older version or is damaged: retrain it") from exc
    values = scored.drop(columns=list(FRAME_KEYS)).to_numpy(dtype="float64")
    if len(scored) == 0 or not np.isfinite(values).all():
        raise ModelUnusableError(
            f"{label} loads but gives no finite prediction for its own example "
            f"({len(scored)} row(s)); it is damaged: retrain it")
