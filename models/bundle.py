"""The bundle: fitted feature pipeline + model + mapping, one object per target.

What MLflow stores and the API loads is this object, so a prediction from raw events
runs through exactly the code that built the training matrix.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from features.errors import EventLogError
from features.log import ValidationReport, canonicalize
from features.mapping import Mapping
from features.pipeline import FRAME_KEYS, PrefixPipeline
from models.estimators import IntervalRegressor, WinProbabilityModel
from models.matrix import Matrix
from models.registry import ModelUnusableError
from models.targets import TARGETS, Target

logger = logging.getLogger(__name__)


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
class TargetBundle:
    target_name: str
    mapping: Mapping
    pipeline: PrefixPipeline
    model: WinProbabilityModel | IntervalRegressor
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def target(self) -> Target:
        return TARGETS[self.target_name]

    def features(self, events: pd.DataFrame, last_only: bool = True) -> pd.DataFrame:
        return self.pipeline.transform(events, last_only=last_only)

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

    def predict_events(self, events: pd.DataFrame, last_only: bool = True) -> pd.DataFrame:
        """Predictions for canonical events (each case's latest prefix by default)."""
        return self.predict_features(self.features(events, last_only=last_only))

    def predict_raw(self, raw: pd.DataFrame, last_only: bool = True) -> pd.DataFrame:
        """Predictions for events in the export's own format, read through the mapping."""
        log = canonicalize(raw, self.mapping, source="request")
        if len(log) == 0:
            raise NoUsableEventsError(no_usable_events_message(log.report, self.mapping))
        if log.report.rows_quarantined:  # the answer has no row for a case left without
            # events; the caller (MLflow's scoring server) at least logs why
            logger.warning("%d of %d event(s) quarantined, not predicted: %s",
                           log.report.rows_quarantined, log.report.rows_in,
                           dict(log.report.quarantined))
        return self.predict_events(log.events, last_only=last_only)

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
        scored = bundle.predict_events(example, last_only=True)
        bundle.contributions(bundle.pipeline.encode(example, last_only=True).matrix())
    except Exception as exc:
        raise ModelUnusableError(
            f"{label} loads but cannot predict or explain ({type(exc).__name__}: {exc}); it "
            "was probably trained by an older version or is damaged: retrain it") from exc
    values = scored.drop(columns=list(FRAME_KEYS)).to_numpy(dtype="float64")
    if len(scored) == 0 or not np.isfinite(values).all():
        raise ModelUnusableError(
            f"{label} loads but gives no finite prediction for its own example "
            f"({len(scored)} row(s)); it is damaged: retrain it")
