"""Scoring the cases of a request, an upload or a log with every served model.

Each served model scores through its bundle (``TargetBundle.score``), reading the
events through its own mapping; models of one training run share one reading. Single
case requests that arrive together are scored in one pass, each case alone (its answer
is the one it gets by itself), so the fixed cost of a pass is shared.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from features.errors import FeatureSchemaError
from features.log import EventLog
from features.mapping import Mapping
from features.outcomes import case_outcomes
from models.bundle import CasesRead, Scores
from serving.answers import assemble
from serving.errors import ModelMismatchError
from serving.events import cases_to_frame, read_request_events
from serving.schemas import CaseIn, PredictRequest
from serving.store import ServedModel, Snapshot
from serving.threads import beside_scoring

logger = logging.getLogger(__name__)


@dataclass
class ScoredCases:
    """Every served model's scores for the latest prefix of each case, with notes."""

    logs: dict[str, EventLog]  # target -> the events its model read (first: the status)
    status: pd.Series  # case -> open, won, lost or closed
    notes: dict[str, list[str]] = field(default_factory=dict)
    scores: dict[str, Scores] = field(default_factory=dict)
    # cases not predicted (an input that is not a finite number), each with a note saying so
    refused: set[str] = field(default_factory=set)

    @property
    def log(self) -> EventLog:
        """The events as read for the first model (the status and quarantine come from it)."""
        return next(iter(self.logs.values()))

    def due_dates_read(self) -> tuple[EventLog, Mapping]:
        """The log and mapping the payment-delay label's due dates are read from."""
        log = self.logs.get("payment_delay", self.log)
        return log, log.mapping

    def drop_explanations(self) -> None:
        """Cancel the SHAP values not yet started (see ``Scores.cancel``)."""
        for scores in self.scores.values():
            scores.cancel()


def served_mapping(snapshot: Snapshot) -> Mapping:
    """The mapping of the first served model: a log uploaded for the process insight is
    read through it (predictions read an upload through each model's own mapping)."""
    return _first_served(snapshot).bundle.mapping


def _first_served(snapshot: Snapshot) -> ServedModel:
    snapshot.require_working()  # a broken champion: 503 with the reason, never a null
    first = next(iter(snapshot.models.values()), None)
    if first is None:
        snapshot.get("outcome")  # raises ModelsNotLoadedError with the remedy
    return first


def models_by_mapping(snapshot: Snapshot) -> list[list[ServedModel]]:
    """The served models grouped by equal mapping, in serving order: each group's events
    are read once, through that mapping."""
    _first_served(snapshot)
    groups: list[list[ServedModel]] = []
    for served in snapshot.models.values():
        group = next((g for g in groups if g[0].bundle.mapping == served.bundle.mapping), None)
        if group is None:
            groups.append([served])
        else:
            group.append(served)
    return groups


def score_cases(snapshot: Snapshot, cases: Sequence[CaseIn], explain: bool = False,
                each_case_alone: bool = False) -> ScoredCases:
    """Latest-prefix predictions of every served target for request cases."""
    logs: dict[str, EventLog] = {}
    notes: dict[str, list[str]] = {}
    for group in models_by_mapping(snapshot):
        bundle = group[0].bundle
        raw, read_notes = cases_to_frame(cases, bundle.mapping)
        log = read_request_events(raw, bundle, read_notes)
        if logs:
            _add_notes(notes, read_notes)
        else:
            notes = read_notes
        logs.update({served.target: log for served in group})
    return score_logs(snapshot, logs, notes, explain=explain,
                      each_case_alone=each_case_alone)


def score_log(snapshot: Snapshot, log: EventLog, notes: dict[str, list[str]] | None = None,
              explain: bool = False) -> ScoredCases:
    """Latest-prefix predictions for the cases of a canonical log, by every served model.

    ``explain``: SHAP values are started beside the scoring thread as soon as the
    matrix is known, and ``assemble`` takes them when it words them."""
    _first_served(snapshot)
    return score_logs(snapshot, {target: log for target in snapshot.models}, notes,
                      explain=explain)


def score_logs(snapshot: Snapshot, logs: dict[str, EventLog],
               notes: dict[str, list[str]] | None = None, explain: bool = False,
               each_case_alone: bool = False) -> ScoredCases:
    """As ``score_log``, each target's model reading the log given for it."""
    first = next(iter(logs.values()))
    events = first.table()  # a request's columns: no frame is built
    roles = first.mapping.roles
    outcome = case_outcomes(events, roles)  # won, lost or open
    paid = np.asarray(events["case_id"])[np.isin(np.asarray(events["activity"]), roles.payment)]
    # a hash lookup: numpy's isin sorts both arrays, slow for text ids
    status = pd.Series(np.where(outcome.index.isin(paid), "closed",
                                outcome.to_numpy(dtype=object)), index=outcome.index)
    scored = ScoredCases(logs=logs, status=status, notes=notes if notes is not None else {})
    try:
        _score_targets(snapshot, scored, explain, each_case_alone)
    except FeatureSchemaError as exc:  # the reader accepted the events: not the client's fault
        scored.drop_explanations()
        raise ModelMismatchError(
            f"the served models cannot encode these events ({exc}); they were trained by "
            "another version of this software: retrain and promote them") from exc
    except BaseException:
        scored.drop_explanations()
        raise
    return scored


def _score_targets(snapshot: Snapshot, scored: ScoredCases, explain: bool,
                   each_case_alone: bool) -> None:
    # targets of one training run share its pipeline: read the cases once per run
    read: dict[tuple[str, int], CasesRead] = {}
    for target, served in snapshot.models.items():
        log = scored.logs[target]
        key = served.run_id, id(log)
        if key not in read:
            read[key] = served.bundle.read(log.table(), each_case_alone=each_case_alone)
            scored.refused.update(read[key].refused)
            _add_notes(scored.notes, read[key].notes)
        scored.scores[target] = served.bundle.score(
            read[key], explain=explain, beside=beside_scoring)


def _add_notes(notes: dict[str, list[str]], more: dict[str, list[str]]) -> None:
    """``more`` after each case's notes, none twice."""
    for case, messages in more.items():
        listed = notes.setdefault(case, [])
        listed.extend(m for m in messages if m not in listed)


def predict_one(snapshot: Snapshot, request: PredictRequest) -> dict[str, Any]:
    """The answer to one ``/v1/predict`` request."""
    scored = score_cases(snapshot, [request], explain=request.explain, each_case_alone=True)
    return assemble(scored, snapshot, request.explain, request.top_k)[0]


def predict_together(snapshot: Snapshot, requests: Sequence[PredictRequest]
                     ) -> list[dict[str, Any] | Exception]:
    """The answers to single-case requests with distinct case ids and the same
    ``explain``/``top_k``, in one pass: each case is scored alone
    (``each_case_alone``), so every answer is the one it gets by itself (tested).

    The fixed cost of a pass is shared; a request whose case has no usable event, or
    any failure of the pass, is answered alone, so errors reach the request that caused
    them. Exceptions are returned, not raised.
    """
    if len(requests) > 1 and can_share_a_pass(requests):
        try:
            return _predict_in_one_pass(snapshot, requests)
        except Exception as exc:  # each request then meets its own error alone
            logger.warning("a pass of %d predictions failed (%s); answering each alone",
                           len(requests), exc)
    return [_answer_or_error(predict_one, snapshot, request) for request in requests]


def _predict_in_one_pass(snapshot: Snapshot, requests: Sequence[PredictRequest]
                         ) -> list[dict[str, Any] | Exception]:
    first = requests[0]
    scored = score_cases(snapshot, requests, explain=first.explain, each_case_alone=True)
    answers = {a["case_id"]: a for a in assemble(scored, snapshot, first.explain, first.top_k)}
    return [answers[r.case_id] if r.case_id in answers
            else _answer_or_error(predict_one, snapshot, r) for r in requests]


def _answer_or_error(answer: Callable[..., dict[str, Any]], *args: Any
                     ) -> dict[str, Any] | Exception:
    try:
        return answer(*args)
    except Exception as exc:  # handed to the request's own error handler
        return exc


def can_share_a_pass(requests: Sequence[PredictRequest]) -> bool:
    """Distinct case ids (a case is one request's) and one way of answering."""
    form = requests[0].answer_form()
    return (len({r.case_id for r in requests}) == len(requests)
            and all(r.answer_form() == form for r in requests))
