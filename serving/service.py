"""The prediction service: requests -> canonical events -> features -> predictions.

Endpoints stay thin; everything that decides a number is here, in plain functions
that take the served snapshot, so tests can call them without HTTP.
"""

from __future__ import annotations

import itertools
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.errors import EventLogError, FeatureSchemaError
from features.log import EventLog, canonicalize
from features.mapping import FileFormat, Mapping
from features.outcomes import case_outcomes, first_time_of, terms_at_invoice
from features.pipeline import EncodedPrefixes
from features.prefixes import is_missing
from features.schema import CANONICAL_KINDS, CORE_COLUMNS, ROW_COLUMN
from models.bundle import TargetBundle
from models.targets import TARGETS
from serving.errors import ModelMismatchError
from serving.schemas import CaseIn, PredictRequest
from serving.scoring import beside_scoring
from serving.store import ServedModel, Snapshot

_DIRECTION_WORDS = {
    "outcome": ("raises the win chance", "lowers the win chance"),
    "remaining_time": ("adds time until the case ends", "brings the end nearer"),
    "payment_delay": ("pushes payment later", "brings payment earlier"),
}
_SPACE = {
    "outcome": "log-odds of winning, before calibration (the probability shown is the "
               "calibrated one; higher log-odds always mean a higher probability)",
    "remaining_time": "days",
    "payment_delay": "days (the base value includes the usual delay of this account, or of "
                     "its terms and region when it has not paid before)",
}


logger = logging.getLogger(__name__)


class BadRequestError(EventLogError):
    """The request's events cannot be used; the message says which and why."""


@dataclass
class ScoredCases:
    log: EventLog
    status: pd.Series
    notes: dict[str, list[str]] = field(default_factory=dict)
    results: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # case_id, ...
    features: dict[str, EncodedPrefixes] = field(default_factory=dict)  # readable values
    values: dict[str, np.ndarray] = field(default_factory=dict)  # the model's matrix
    # SHAP values per target, computed beside the scoring thread when explanations are due
    contributions: dict[str, Future[np.ndarray]] = field(default_factory=dict)
    # cases not predicted (an input that is not a finite number), each with a note saying so
    refused: set[str] = field(default_factory=set)

    def drop_explanations(self) -> None:
        """Cancel the SHAP values not yet started (scoring failed, or they are not
        wanted): the explanation thread would compute them before the next request's.
        One already running finishes; its error, if any, is logged, not lost."""
        for future in self.contributions.values():
            if not future.cancel() and not future.done():
                future.add_done_callback(_log_unread_error)


def _log_unread_error(future: Future[np.ndarray]) -> None:
    if not future.cancelled() and future.exception() is not None:
        logger.warning("SHAP values of a failed scoring failed too: %r", future.exception())


_DERIVED: dict[tuple[str, int], tuple[Any, Any]] = {}


def derived_once(kind: str, source: Any, build: Callable[[Any], Any]) -> Any:
    """``build(source)``, computed once per served object (keyed by identity; the entry
    keeps the object alive, so the id cannot be reused while cached)."""
    cached = _DERIVED.get((kind, id(source)))
    if cached is not None and cached[0] is source:
        return cached[1]
    derived = build(source)
    if len(_DERIVED) > 64:
        _DERIVED.clear()
    _DERIVED[(kind, id(source))] = (source, derived)
    return derived


def training_log_of(served: ServedModel, source: str | None = None) -> EventLog:
    """The log a served model was trained on (logged with its run), read through the
    model's mapping as the API reads events (its roles and process policy included)."""
    import mlflow

    local = Path(mlflow.artifacts.download_artifacts(
        run_id=served.run_id, artifact_path="evaluation/events.parquet"))
    events = pd.read_parquet(local).drop(columns=["source_row"], errors="ignore")
    return canonicalize(events, api_mapping(served.bundle.mapping),
                        source=source or f"run {served.run_id}")


def api_mapping(mapping: Mapping) -> Mapping:
    """The model's mapping, accepting canonical names too, with JSON's ISO timestamps."""
    return derived_once("api_mapping", mapping, _derive_api_mapping)


def _derive_api_mapping(mapping: Mapping) -> Mapping:
    columns: dict[str, list[str]] = {}
    for role in CANONICAL_KINDS:
        names = [role]
        ref = mapping.columns.get(role)
        if ref is not None:
            names += [ref] if isinstance(ref, str) else list(ref)
        columns[role] = list(dict.fromkeys(names))
    extras = {name: extra.model_copy(update={"column": [name, *(
        [extra.column] if isinstance(extra.column, str) else extra.column)]})
        for name, extra in mapping.extra_columns.items()}
    optional = [r for r in CANONICAL_KINDS if r not in ("case_id", "activity", "timestamp")]
    return mapping.model_copy(update={
        "format": FileFormat(timestamp_format="ISO8601", timezone="UTC"),
        "columns": columns, "extra_columns": extras, "optional": [*optional, *extras],
        "activity_qualifier": None, "keep_rows": None})


def known_attribute_names(mapping: Mapping) -> frozenset[str]:
    """Every attribute name the model reads (once per served mapping)."""
    return derived_once("attribute names", mapping, _derive_known_names)


def _derive_known_names(mapping: Mapping) -> frozenset[str]:
    names = set(CANONICAL_KINDS) | set(mapping.extra_columns)
    for ref in [*mapping.columns.values(), *(e.column for e in mapping.extra_columns.values())]:
        names.update([ref] if isinstance(ref, str) else ref)
    return frozenset(names)


def cases_to_frame(cases: Sequence[CaseIn], mapping: Mapping
                   ) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    """Flatten request cases to one row per event (case attributes repeated).

    Events are numbered within their case (``source_row``), as the client sent them, so
    a note names "event 3" of that case whatever else was scored with it. Attributes
    the model does not know are left out and noted on the cases that sent them.
    Every cell but the time goes to the reader as text, which checks it as it checks a
    file's; the time goes as the exact UTC instant pydantic parsed (writing it out as
    text for the reader to parse back cost ~0.4 ms a request), and the reader still
    quarantines one outside the plausible years.
    """
    rows: list[dict[str, str | None]] = []
    numbers: list[int] = []
    micros: list[int] = []
    notes: dict[str, list[str]] = {}
    known = known_attribute_names(mapping)
    # in the canonical order (by case id): the reader then need not reorder the rows
    for case in sorted(cases, key=lambda c: c.case_id):
        times = [_micros_utc(e.timestamp) for e in case.events]
        if any(b < a for a, b in itertools.pairwise(times)):
            notes.setdefault(case.case_id, []).append(
                "events were not in time order; they were sorted by timestamp")
        unknown = {name for name in case.attributes if name not in known}
        case_cells = _text_cells(case.attributes, known)
        for event in case.events:
            unknown.update(name for name in event.attributes if name not in known)
            cells = {**case_cells, **_text_cells(event.attributes, known)
                     } if event.attributes else dict(case_cells)
            cells["case_id"], cells["activity"] = case.case_id, event.activity
            if event.resource is not None:
                cells["resource"] = str(event.resource)
            rows.append(cells)
        numbers.extend(range(1, len(case.events) + 1))
        micros.extend(times)
        if unknown:
            notes.setdefault(case.case_id, []).append(
                f"attribute(s) unknown to the model ignored: {', '.join(sorted(unknown))}")
    return _request_frame(rows, numbers, micros), notes


def _text_cells(attributes: dict[str, Any], known: frozenset[str]) -> dict[str, str | None]:
    """JSON numbers and text share columns: every cell goes to the reader as text."""
    return {k: None if v is None else str(v) for k, v in attributes.items()
            if k in known and k != "timestamp"}


def _request_frame(rows: list[dict[str, str | None]], numbers: list[int],
                   micros: list[int]) -> pd.DataFrame:
    """The request's events as the reader takes a file's: text cells in one object block
    (from a list of dicts, or with text labels, pandas infers and converts: ~1 ms a
    request), the event numbers and the UTC instants beside them."""
    labels = list(dict.fromkeys(k for row in rows for k in row))
    block = np.array([[row.get(k) for k in labels] for row in rows], dtype=object
                     ).reshape(len(rows), len(labels))
    frame = pd.DataFrame(block, columns=pd.Index(labels, dtype=object), dtype=object,
                         copy=False)
    return frame.assign(**{
        ROW_COLUMN: np.asarray(numbers, dtype=np.int64),
        "timestamp": pd.array(np.asarray(micros, dtype="datetime64[us]")).tz_localize("UTC")})


_EPOCH_NAIVE = datetime(1970, 1, 1)
_MICROSECOND = timedelta(microseconds=1)


def _micros_utc(stamp: datetime) -> int:
    """Microseconds since the epoch, exactly; a time without an offset is UTC."""
    if stamp.tzinfo is None:
        return (stamp - _EPOCH_NAIVE) // _MICROSECOND
    return (stamp - _EPOCH) // _MICROSECOND


def read_request_events(raw: pd.DataFrame, mapping: Mapping,
                        notes: dict[str, list[str]]) -> EventLog:
    """Canonicalise request events; quarantined rows and unknown activities become notes
    on their own case."""
    log = canonicalize(raw, api_mapping(mapping), source="request")
    quarantine_notes(log, notes, "event")
    if log.report.unknown_activities:
        activity = np.asarray(log.column("activity"))
        cases = np.asarray(log.column("case_id"))
        for name in log.report.unknown_activities:
            for case, count in Counter(cases[activity == name].tolist()).items():
                notes.setdefault(case, []).append(
                    f"activity {name!r} is unknown to the model ({count} event(s)); counted "
                    "as 'other activity'")
    if len(log) == 0:
        details = log.quarantine["quarantine_detail"].astype(str)
        reasons = "; ".join(details.drop_duplicates().head(5))  # one per distinct reason
        raise BadRequestError(f"no usable event in the request: {reasons}")
    return log


def quarantine_notes(log: EventLog, notes: dict[str, list[str]], unit: str) -> None:
    """A note on its case for each quarantined row: "<unit> N ignored: reason (detail)".
    The quarantine holds the rows as sent, so the case is read from whichever of the
    mapping's case-id columns it has; a row without one is only counted."""
    bad = log.quarantine
    if not len(bad):
        return
    ref = log.mapping.columns.get("case_id")
    names = [ref] if isinstance(ref, str) else list(ref or [])
    column = next((name for name in names if name in bad.columns), None)
    if column is None:
        return
    cases = bad[column].astype(object).where(bad[column].notna(), "?").astype(str).str.strip()
    messages = (unit + " " + bad["source_row"].astype("int64").astype(str) + " ignored: "
                + bad["quarantine_reason"].astype(str) + " ("
                + bad["quarantine_detail"].astype(str) + ")")
    for case, listed in messages.groupby(cases.to_numpy(), sort=False):
        notes.setdefault(case, []).extend(listed.tolist())


def _input_notes(bundle: TargetBundle, encoded: EncodedPrefixes) -> dict[str, list[str]]:
    """Attributes the model was trained with but the case lacks, and attribute values
    it never saw in training (both are predicted as unknown). Each case's last given
    value is read off the encoded events (no second pass over the request's frame)."""
    schema = bundle.pipeline.schema_
    wanted = [c for c in bundle.pipeline.extra_columns_ if c in schema and c not in CORE_COLUMNS]
    categorical = [n for n, spec in schema.items()
                   if spec["dtype"] == "category" and encoded.has_column(n)]
    cases = encoded.keys["case_id"].tolist()
    given = {c: encoded.last_given(c).tolist() for c in dict.fromkeys([*wanted, *categorical])}
    notes: dict[str, list[str]] = {}
    for i, case in enumerate(cases):
        missing = [c for c in wanted if is_missing(given[c][i])]
        if missing:
            notes.setdefault(case, []).append(
                f"attributes not given (predicted as unknown): {', '.join(missing)}")
    for name in categorical:
        known = set(schema[name]["categories"])
        for case, value in zip(cases, given[name], strict=True):
            if isinstance(value, str) and value not in known:
                notes.setdefault(case, []).append(
                    f"{name} {value!r} is unknown to the model; treated as missing")
    return notes


@dataclass(frozen=True)
class _NumericRanges:
    """The model's numeric features: positions, words, and the range seen in training."""

    columns: np.ndarray  # positions in the matrix
    readable: list[str]
    low: np.ndarray  # NaN where the model kept no range (a feature it never split on)
    high: np.ndarray


def _numeric_ranges(bundle: TargetBundle) -> _NumericRanges:
    """Ranges from LightGBM's own record of its training matrix (``feature_infos``, the
    min and max of each feature's bins), read once per served model."""
    pipeline = bundle.pipeline
    names = list(pipeline.feature_names_out_)
    columns = [j for j, n in enumerate(names) if pipeline.schema_[n]["dtype"] != "category"]
    low = np.full(len(columns), np.nan)
    high = np.full(len(columns), np.nan)
    booster = getattr(bundle.model, "booster", None)
    if booster is not None and booster.num_feature() == len(names):
        infos = booster.dump_model(num_iteration=1).get("feature_infos", {})
        for i, name in enumerate(np.asarray(booster.feature_name())[columns].tolist()):
            info = infos.get(name) or {}
            if "min_value" in info and "max_value" in info:
                low[i], high[i] = float(info["min_value"]), float(info["max_value"])
    readable = pipeline.readable_names()
    return _NumericRanges(np.asarray(columns, dtype=np.int64),
                          [readable.get(names[j], names[j].replace("_", " ")) for j in columns],
                          low, high)


def _number_checks(bundle: TargetBundle, encoded: EncodedPrefixes, M: np.ndarray
                   ) -> tuple[set[str], dict[str, list[str]]]:
    """Cases not to predict, and notes: a feature that is not a finite number (an amount
    of ``inf`` or ``1e999``) refuses its case, since every model would read it as the most
    extreme value it knows, with no warning; a finite one far outside the training range
    (beyond it by more than the range's own width) is predicted, and said to be so.

    The checks run on the model's matrix, so a number from JSON, a CSV cell or a huge
    integer are caught alike, and so are features that overflow while being derived."""
    ranges = derived_once("numeric ranges", bundle.model, lambda _: _numeric_ranges(bundle))
    if len(M) == 0 or len(ranges.columns) == 0:
        return set(), {}
    values = M[:, ranges.columns]
    infinite = np.isinf(values)
    span = ranges.high - ranges.low
    with np.errstate(invalid="ignore"):
        far = ~infinite & ((values > ranges.high + span) | (values < ranges.low - span))
    refused: set[str] = set()
    notes: dict[str, list[str]] = {}
    if not (infinite.any() or far.any()):
        return refused, notes
    cases = encoded.keys["case_id"]
    for row, col in zip(*np.nonzero(infinite | far), strict=True):
        case, value, words = str(cases[row]), float(values[row, col]), ranges.readable[col]
        if infinite[row, col]:
            refused.add(case)
            message = (f"not predicted: {words} is not a finite number ({value}); check "
                       "the numbers sent")
        else:
            message = (f"{words} = {value:.6g} is far outside what the model was trained on "
                       f"({ranges.low[col]:.6g} to {ranges.high[col]:.6g}): the prediction "
                       "treats it like the nearest value seen and may be unreliable")
        notes.setdefault(case, []).append(message)
    return refused, notes


def score_cases(snapshot: Snapshot, cases: Sequence[CaseIn], explain: bool = False
                ) -> ScoredCases:
    """Latest-prefix predictions of every served target for request cases."""
    mapping = served_mapping(snapshot)
    raw, notes = cases_to_frame(cases, mapping)
    log = read_request_events(raw, mapping, notes)
    return score_log(snapshot, log, notes, explain=explain)


def predict_one(snapshot: Snapshot, request: PredictRequest) -> dict[str, Any]:
    """The answer to one ``/v1/predict`` request."""
    scored = score_cases(snapshot, [request], explain=request.explain)
    return assemble(scored, snapshot, request.explain, request.top_k)[0]


def predict_together(snapshot: Snapshot, requests: Sequence[PredictRequest]
                     ) -> list[dict[str, Any] | Exception]:
    """The answers to single-case requests with distinct case ids and the same
    ``explain``/``top_k``, in one pass: each request's cases are scored apart from the
    others' (``encode(apart=...)``), so every answer is the one it gets alone (tested).

    The fixed cost of a pass (~17 ms of pandas and numpy calls) is shared; a request
    whose case has no usable event, or any failure of the pass, is answered alone, so
    errors reach the request that caused them. Exceptions are returned, not raised.
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
    mapping = served_mapping(snapshot)
    raw, notes = cases_to_frame(requests, mapping)
    events = read_request_events(raw, mapping, notes)
    usable = set(pd.unique(events.column("case_id")).tolist())
    apart = {request.case_id: i for i, request in enumerate(requests)}
    scored = score_log(snapshot, events, notes, apart={c: apart[c] for c in usable},
                       explain=first.explain)
    answers = {a["case_id"]: a for a in assemble(scored, snapshot, first.explain, first.top_k)}
    return [answers[r.case_id] if r.case_id in usable
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


def served_mapping(snapshot: Snapshot) -> Mapping:
    snapshot.require_working()  # a broken champion: 503 with the reason, never a null
    first = next(iter(snapshot.models.values()), None)
    if first is None:
        snapshot.get("outcome")  # raises ModelsNotLoadedError with the remedy
    return first.bundle.mapping


def score_log(snapshot: Snapshot, log: EventLog, notes: dict[str, list[str]] | None = None,
              apart: dict[str, int] | None = None, explain: bool = False) -> ScoredCases:
    """Latest-prefix predictions for the cases of a canonical log (``apart``: case ->
    request, when requests that must not see each other are scored in one pass).

    ``explain``: SHAP values are started beside the scoring thread as soon as the
    matrix is known, and ``assemble`` takes them when it words them."""
    notes = notes if notes is not None else {}
    mapping = served_mapping(snapshot)
    events = log.table()  # a request's columns: no frame is built
    outcome = case_outcomes(events, mapping.roles)  # won, lost or open
    paid = np.asarray(events["case_id"])[
        np.isin(np.asarray(events["activity"]), mapping.roles.payment)]
    status = pd.Series(np.where(np.isin(outcome.index.to_numpy(), paid), "closed",
                                outcome.to_numpy(dtype=object)), index=outcome.index)
    scored = ScoredCases(log=log, status=status, notes=notes)
    try:
        _score_targets(snapshot, log, scored, apart, explain)
    except FeatureSchemaError as exc:  # the reader accepted the events: not the client's fault
        scored.drop_explanations()
        raise ModelMismatchError(
            f"the served models cannot encode these events ({exc}); they were trained by "
            "another version of this software: retrain and promote them") from exc
    except BaseException:
        scored.drop_explanations()
        raise
    return scored


def _score_targets(snapshot: Snapshot, log: EventLog, scored: ScoredCases,
                   apart: dict[str, int] | None, explain: bool) -> None:
    notes = scored.notes
    # targets of one training run share its pipeline: featurise and convert once
    features_by_run: dict[str, tuple[EncodedPrefixes, np.ndarray]] = {}
    for target, served in snapshot.models.items():
        bundle = served.bundle
        if served.run_id not in features_by_run:
            encoded = bundle.pipeline.encode(log.table(), last_only=True, apart=apart)
            features_by_run[served.run_id] = encoded, encoded.matrix()
            refused, number_notes = _number_checks(bundle, encoded,
                                                   features_by_run[served.run_id][1])
            scored.refused.update(refused)
            for case, messages in [*_input_notes(bundle, encoded).items(),
                                   *number_notes.items()]:
                for message in messages:
                    if message not in notes.setdefault(case, []):
                        notes[case].append(message)
        encoded, M = features_by_run[served.run_id]
        if explain:
            scored.contributions[target] = beside_scoring(bundle.contributions, M)
        scored.results[target] = {"case_id": encoded.keys["case_id"],
                                  **bundle.predict_arrays(M)}
        scored.features[target], scored.values[target] = encoded, M


def explain_rows(bundle: TargetBundle, features: EncodedPrefixes, top_k: int,
                 M: np.ndarray | None = None, values: np.ndarray | None = None
                 ) -> list[dict[str, Any]]:
    """Top-k SHAP contributions per row, in words; they add up with the rest to the output.

    Features an encoder groups (a discount's min, max and mean; the two quarter
    positions) are explained as one item, their contributions summed: a linear base
    splits the effect of near-collinear features into large opposite terms that mean
    nothing alone. ``M``: ``features.matrix()`` when the caller has it (one conversion);
    ``values``: ``bundle.contributions`` of it when already computed.
    """
    target = bundle.target_name
    if values is None:
        values = bundle.contributions(features.matrix() if M is None else M)
    units = derived_once("units", bundle.pipeline, lambda pipe: _ExplainedUnits(
        list(pipe.feature_names_out_), pipe.feature_groups(), pipe.readable_names()))
    up_words, down_words = _DIRECTION_WORDS[target]
    contrib = units.sum(values[:, :-1])
    top = np.argsort(-np.abs(contrib), axis=1, kind="stable")[:, :top_k]
    picked = np.take_along_axis(contrib, top, axis=1)
    rest = contrib.sum(axis=1) - picked.sum(axis=1)
    totals = values.sum(axis=1)
    # cells are read column by column as Python lists; texts of a unit's repeated values
    # are formatted once (a batch lists 150k contributions)
    needed = {j for u in np.unique(top) for j in units.members[u]}
    cells = {j: features.readable(features.names[j]).tolist() for j in needed}
    texts: dict[tuple[int, Any], str] = {}
    worded = units.worded(up_words, down_words)
    space = _SPACE[target]
    info = getattr(bundle, "info", {})
    if info.get("kind_is_baseline"):  # an honest answer says it is the simple one
        space += (f"; the model shipped is the {info.get('kind_label', info.get('kind'))}, a "
                  f"baseline: no learnt model beat it ({info.get('kind_reason', '')})")
    explanations = []
    for i, (row_top, row_picked, base, other, total) in enumerate(zip(
            top.tolist(), picked.tolist(), values[:, -1].tolist(), rest.tolist(),
            totals.tolist(), strict=True)):
        listed = []
        for u, amount in zip(row_top, row_picked, strict=True):
            members = units.members[u]
            key = (u, cells[members[0]][i]) if len(members) == 1 else None
            value = texts.get(key) if key is not None else None
            if value is None:
                value = units.value_text(u, cells, i)
                if key is not None:
                    texts[key] = value
            before, up_text, down_text = worded[u]
            up = amount >= 0
            listed.append({
                "feature": units.names[u], "readable": units.readable[u], "value": value,
                "contribution": amount, "direction": "up" if up else "down",
                "text": before + value + (up_text if up else down_text),
            })
        explanations.append({"space": space, "base_value": base, "contributions": listed,
                             "other_features": other, "total": total})
    return explanations


class _ExplainedUnits:
    """What an explanation lists: single features, or an encoder's group of features."""

    def __init__(self, columns: list[str], groups: dict[str, tuple[str, str]],
                 names: dict[str, str]) -> None:
        self.names: list[str] = []
        self.readable: list[str] = []
        self.members: list[list[int]] = []
        self.column_names = columns
        self.column_readable = [names.get(c, c.replace("_", " ")) for c in columns]
        position: dict[str, int] = {}
        owner = np.empty(len(columns), dtype=int)
        for j, column in enumerate(columns):
            unit, words = groups.get(column, (column, self.column_readable[j]))
            if unit not in position:
                position[unit] = len(self.names)
                self.names.append(unit)
                self.readable.append(words)
                self.members.append([])
            owner[j] = position[unit]
            self.members[position[unit]].append(j)
        self.owner = owner
        self._worded: dict[tuple[str, str], list[tuple[str, str, str]]] = {}

    def worded(self, up: str, down: str) -> list[tuple[str, str, str]]:
        """Per unit, the text before its value and after it either way (once per target)."""
        if (up, down) not in self._worded:
            self._worded[(up, down)] = [(f"{r} ", f" — {up}", f" — {down}")
                                        for r in self.readable]
        return self._worded[(up, down)]

    def sum(self, contrib: np.ndarray) -> np.ndarray:
        """Per row, each unit's contribution: the sum of its features'."""
        out = np.zeros((contrib.shape[0], len(self.names)))
        np.add.at(out.T, self.owner, contrib.T)
        return out

    def value_text(self, unit: int, cells: dict[int, np.ndarray], row: int) -> str:
        members = self.members[unit]
        if len(members) == 1:
            return _readable_value(cells[members[0]][row])
        unit = self.names[unit]
        return ", ".join(f"{self._short(j, unit)} {_readable_value(cells[j][row])}"
                         for j in members)

    def _short(self, j: int, unit: str) -> str:
        """'min' for discount_pct_min within discount_pct; else the readable name."""
        name = self.column_names[j]
        if name == unit:
            return "now"
        if name.startswith(unit + "_"):
            return name[len(unit) + 1:].replace("_", " ")
        return self.column_readable[j]


def _readable_value(value: Any) -> str:
    if isinstance(value, float | np.floating):  # the common case first: ~150k calls a batch
        if value != value:
            return "(missing)"
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
    if value is None or value is pd.NA:
        return "(missing)"
    return str(value)


def _due_dates(log: EventLog, mapping: Mapping) -> pd.Series:
    """First invoice + terms as known at it: the due date of the payment-delay label."""
    invoiced = np.isin(np.asarray(log.column("activity")), mapping.roles.invoice)
    if not invoiced.any():  # nothing invoiced yet: no due date (and no groupby to pay for)
        return pd.Series(dtype=object)
    first = first_time_of(log.events, mapping.roles.invoice)
    terms = terms_at_invoice(log.events, mapping.roles).reindex(first.index)
    return first + pd.to_timedelta(terms.fillna(0.0), unit="D")


def assemble(scored: ScoredCases, snapshot: Snapshot, explain: bool,
             top_k: int) -> list[dict[str, Any]]:
    """One response dict per case, in the order of the scored cases."""
    try:
        return _assemble(scored, snapshot, explain, top_k)
    finally:  # on an error, or SHAP values started but not asked for
        scored.drop_explanations()


def _assemble(scored: ScoredCases, snapshot: Snapshot, explain: bool,
              top_k: int) -> list[dict[str, Any]]:
    mapping = served_mapping(snapshot)
    # each case's latest prefix ends at its last event and counts its events
    keys = next(iter(scored.features.values())).keys
    ids = keys["case_id"].tolist()
    as_of = keys["prefix_end"].as_unit("us").asi8  # microseconds since the epoch
    statuses = scored.status.to_dict()
    versions = {t: m.version for t, m in snapshot.models.items()}
    out: dict[str, dict[str, Any]] = {}
    for case, when, used in zip(ids, _datetimes(as_of), keys["prefix_len"].tolist(),
                                strict=True):
        status = str(statuses.get(case, "open"))
        notes = list(scored.notes.get(case, []))
        if status in _STATUS_NOTES:
            notes.append(_STATUS_NOTES[status])
        out[case] = {"case_id": case, "status": status, "as_of": when, "events_used": used,
                     "win_probability": None, "remaining_time": None, "payment_delay": None,
                     "explanations": {}, "notes": notes, "model_versions": dict(versions)}
    due = _due_dates(scored.log, mapping)
    position = {case: i for i, case in enumerate(ids)}
    for target in TARGETS:  # a null answer always says why
        if target in scored.results:
            continue
        for entry in out.values():
            if _applies(target, entry["status"]) and entry["case_id"] not in scored.refused:
                entry["notes"].append(f"no {target} model is served: {_ANSWER_KEY[target]} "
                                      "is null")
    for target, result in scored.results.items():
        order = result["case_id"].tolist()
        entries = [out[case] for case in order]
        times = as_of if order == ids else as_of[[position[c] for c in order]]
        answers = _target_answers(target, result, times, due, order)
        started = scored.contributions.get(target)
        explained = explain_rows(snapshot.get(target).bundle, scored.features[target], top_k,
                                 scored.values.get(target),
                                 None if started is None else started.result()
                                 ) if explain else None
        for i, (entry, answer) in enumerate(zip(entries, answers, strict=True)):
            if not _applies(target, entry["status"]) or entry["case_id"] in scored.refused:
                continue
            if not _finite_answer(answer):
                entry["notes"].append(f"no {target} prediction: the model's output is not "
                                      "a finite number for this case's input")
                continue
            entry[_ANSWER_KEY[target]] = answer
            if explained is not None:
                entry["explanations"][target] = explained[i]
    return list(out.values())


def _finite_answer(answer: Any) -> bool:
    if isinstance(answer, dict):
        return all(np.isfinite(answer[k]) for k in ("days", "p10_days", "p90_days"))
    return bool(np.isfinite(answer))


_STATUS_NOTES = {
    "won": "the case is already won: no win probability; time to payment and payment delay "
           "are still predicted",
    "lost": "the case is already lost: nothing left to predict",
    "closed": "payment received: the case is closed, nothing left to predict",
}
_ANSWER_KEY = {"outcome": "win_probability", "remaining_time": "remaining_time",
               "payment_delay": "payment_delay"}


def _target_answers(target: str, result: dict[str, np.ndarray], as_of: np.ndarray,
                    due: pd.Series, ids: list[str]) -> list[Any]:
    """Per row of ``result``, what the response says for ``target``; dates are computed
    on microsecond integers for all rows at once (pandas date sums cost ~0.1 ms each)."""
    if target == "outcome":
        return result["p_win"].astype(float).tolist()
    point, lower, upper = (np.asarray(result[c], dtype=float)
                           for c in ("prediction_days", "lower_days", "upper_days"))
    if target == "remaining_time":
        point, lower, upper = (np.maximum(v, 0.0) for v in (point, lower, upper))
        ends = (_datetimes(_shifted(as_of, days)) for days in (point, lower, upper))
        return [{"days": d, "p10_days": lo, "p90_days": hi, "expected_end": e,
                 "end_p10": e10, "end_p90": e90}
                for d, lo, hi, e, e10, e90 in zip(point.tolist(), lower.tolist(),
                                                  upper.tolist(), *ends, strict=True)]
    due_at = np.full(len(ids), _NAT, dtype=np.int64)
    if len(due):
        known = due.reindex(ids)
        due_at = np.where(known.isna().to_numpy(), _NAT,
                          pd.DatetimeIndex(known).as_unit("us").asi8)
    paid_at = _shifted(due_at, point)
    return [{"days": d, "p10_days": lo, "p90_days": hi, "due_date": dd,
             "expected_payment_date": pd_}
            for d, lo, hi, dd, pd_ in zip(point.tolist(), lower.tolist(), upper.tolist(),
                                          _datetimes(due_at), _datetimes(paid_at),
                                          strict=True)]


_NAT = np.iinfo(np.int64).min
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


_MAX_DAYS = 1_000_000.0  # beyond, a duration would overflow the microsecond clock
_FIRST_US = (datetime(1, 1, 1, tzinfo=UTC) - _EPOCH) // _MICROSECOND
_LAST_US = (datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC) - _EPOCH) // _MICROSECOND


def _shifted(micros: np.ndarray, days: np.ndarray) -> np.ndarray:
    """``micros`` plus ``days``; missing (``_NAT``) where either is, or where the days are
    not a duration a date could hold (a model fed absurd input can say anything)."""
    usable = (micros != _NAT) & np.isfinite(days) & (np.abs(days) <= _MAX_DAYS)
    step = np.round(np.where(usable, days, 0.0) * 86_400_000_000).astype(np.int64)
    return np.where(usable, micros + step, _NAT)


def _datetimes(micros: np.ndarray) -> list[datetime | None]:
    """UTC datetimes (exact to the microsecond) for the response, None where missing or
    past what a date can hold (year 1 to 9999)."""
    return [None if us == _NAT or not _FIRST_US <= us <= _LAST_US
            else _EPOCH + timedelta(microseconds=us) for us in micros.tolist()]


def _applies(target: str, status: str) -> bool:
    if status in ("lost", "closed"):
        return False
    return not (target == "outcome" and status == "won")
