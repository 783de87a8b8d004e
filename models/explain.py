"""SHAP values in words: what raised or lowered a prediction, with the case's values.

The bundle computes the values (``TargetBundle.contributions``); this module lists the
largest per case as a person reads them ("deal size 12,000 — raises the win chance"),
so that every consumer of a model (the API, the pages, the MLflow pyfunc) explains it
alike.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from features.pipeline import EncodedPrefixes

if TYPE_CHECKING:
    from models.bundle import TargetBundle

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



def explain_rows(bundle: TargetBundle, features: EncodedPrefixes, top_k: int,
                 M: np.ndarray | None = None, values: np.ndarray | None = None
                 ) -> list[dict[str, Any]]:
    """Top-k SHAP contributions per row, in words; they add up with the rest to the output.
    Terms of exactly zero are not listed, so a row may list fewer than ``top_k``.

    Features an encoder groups (a discount's min, max and mean; the two quarter
    positions) are explained as one item, their contributions summed: a linear base
    splits the effect of near-collinear features into large opposite terms that mean
    nothing alone. ``M``: ``features.matrix()`` when the caller has it (one conversion);
    ``values``: ``bundle.contributions`` of it when already computed.
    """
    target = bundle.target_name
    if values is None:
        values = bundle.contributions(features.matrix() if M is None else M)
    units = bundle.derived("explained units", lambda: _ExplainedUnits(
        list(bundle.pipeline.feature_names_out_), bundle.pipeline.feature_groups(),
        bundle.pipeline.readable_names()))
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
            if amount == 0.0:  # moves nothing, yet would read "raises the win chance"
                continue  # (a shipped baseline's features all are; they stay in the sum)
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
