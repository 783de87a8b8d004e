"""What a model makes of the cases it is given: inputs it lacks or never saw, numbers
it cannot read.

A model answers every row it gets, whatever the row holds; these checks say when an
answer rests on a guess (an attribute not given, a category unknown to the model, a
number far outside its training range) and refuse a case whose input is not a finite
number, so no consumer of a model passes such an answer on in silence.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from features.pipeline import EncodedPrefixes
from features.schema import CORE_COLUMNS
from features.small import is_missing

if TYPE_CHECKING:
    from models.bundle import TargetBundle


def input_notes(bundle: TargetBundle, encoded: EncodedPrefixes) -> dict[str, list[str]]:
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


def number_checks(bundle: TargetBundle, encoded: EncodedPrefixes, M: np.ndarray
                   ) -> tuple[set[str], dict[str, list[str]]]:
    """Cases not to predict, and notes: a feature that is not a finite number (an amount
    of ``inf`` or ``1e999``) refuses its case, since every model would read it as the most
    extreme value it knows, with no warning; a finite one far outside the training range
    (beyond it by more than the range's own width) is predicted, and said to be so.

    The checks run on the model's matrix, so a number from JSON, a CSV cell or a huge
    integer are caught alike, and so are features that overflow while being derived."""
    ranges = bundle.derived("numeric ranges", lambda: _numeric_ranges(bundle))
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
