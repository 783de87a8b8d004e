"""A check of the export's columns for values known only once the outcome is known.

Real exports carry such columns: a variant id computed on the whole case, ``isclosed``,
``iscancelled``, a close value that is 0 for every loss. Written on every row of a
case, they reach back to its first event and hand the model the answer. No model
metric shows this (it only looks too good), so the columns are checked at training
time, with the evidence, and a mapping can mark them ``roles.label_only``.

Two signs, each measured on the decided cases:
- the value at a case's **first event** separates won from lost almost perfectly
  (numbers: ROC AUC; categories: the share of cases whose value's majority outcome is
  their own, over values shared by several cases, against the base rate);
- the value **changes at the outcome event** in nearly every decided case and almost
  nowhere else (a flag set when the case closes).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from features.mapping import Roles
from features.outcomes import LOST, WON, case_outcomes, outcome_events
from features.schema import CORE_COLUMNS, LABEL_ONLY_COLUMNS, ROW_COLUMN

#: thresholds of "almost perfectly": far above what any honest attribute reaches (the
#: simulator's strongest, the deal value, has an AUC of ~0.66 at the first event)
SEPARATION = 0.97
CHANGE_AT_OUTCOME = 0.9
CHANGE_ELSEWHERE = 0.05
MIN_PER_CLASS = 10
#: a category counts only through values shared by this many cases: an id-like column
#: (one value per case) separates anything and says nothing
MIN_CASES_PER_VALUE = 5

_NOT_CHECKED = {*CORE_COLUMNS, *LABEL_ONLY_COLUMNS, ROW_COLUMN, "payment_terms_days"}


@dataclass(frozen=True)
class LeakFinding:
    """One column that looks like it is known only at the end, and why."""

    column: str
    sign: str  # "separates_at_first_event" or "changes_at_outcome"
    score: float
    evidence: str


def find_leaky_columns(events: pd.DataFrame, roles: Roles) -> list[LeakFinding]:
    """The columns of a canonical log that show either sign (see the module docstring);
    columns the mapping already marks ``roles.label_only`` are not checked."""
    outcome = case_outcomes(events, roles)
    decided = outcome[outcome.isin([WON, LOST])]
    won = decided.eq(WON)
    if won.sum() < MIN_PER_CLASS or (~won).sum() < MIN_PER_CLASS:
        return []
    columns = [c for c in events.columns
               if c not in _NOT_CHECKED and c not in roles.label_only
               and events[c].notna().any()]
    first = events.groupby("case_id", sort=False).head(1).set_index("case_id")[columns]
    findings = [f for c in columns
                if (f := _separates_at_first_event(c, first.loc[decided.index, c], won))]
    findings += _changes_at_outcome(events, roles, columns)
    return findings


def _separates_at_first_event(column: str, values: pd.Series,
                              won: pd.Series) -> LeakFinding | None:
    base = max(won.mean(), 1 - won.mean())
    if pd.api.types.is_numeric_dtype(values.dtype):
        given = values.notna().to_numpy()
        y = won.to_numpy()[given]
        if y.sum() < MIN_PER_CLASS or (~y).sum() < MIN_PER_CLASS:
            return None
        auc = float(roc_auc_score(y, values.to_numpy()[given]))
        score = max(auc, 1 - auc)
        if score < SEPARATION:
            return None
        means = values[given].groupby(y).mean()
        return LeakFinding(column, "separates_at_first_event", score,
                           f"at a case's first event, {column!r} alone tells won from lost "
                           f"with ROC AUC {score:.3f} (mean {means.get(True, np.nan):.4g} "
                           f"for won, {means.get(False, np.nan):.4g} for lost)")
    cells = pd.DataFrame({"value": values.astype(object).where(values.notna(), "(empty)"),
                          "won": won.to_numpy()})
    per_value = cells.groupby("value")["won"].agg(["mean", "size"])
    shared = per_value[per_value["size"] >= MIN_CASES_PER_VALUE]
    covered = shared["size"].sum() / len(cells)
    if len(shared) < 2 or covered < 0.5:
        return None
    score = float((np.maximum(shared["mean"], 1 - shared["mean"]) * shared["size"]).sum()
                  / shared["size"].sum())
    if score < SEPARATION or score - base < (1 - base) / 2:
        return None
    top = shared.sort_values("size", ascending=False).head(3)
    said = ", ".join(f"{v!r}: {m:.0%} won of {n}" for v, (m, n) in top.iterrows())
    return LeakFinding(column, "separates_at_first_event", score,
                       f"at a case's first event, the value of {column!r} predicts the "
                       f"outcome of {score:.1%} of decided cases (base rate {base:.1%}): "
                       f"{said}")


def _changes_at_outcome(events: pd.DataFrame, roles: Roles,
                        columns: list[str]) -> list[LeakFinding]:
    """Columns whose value changes exactly at the deciding event, and hardly elsewhere."""
    ordered = events.reset_index(drop=True)
    decided = outcome_events(ordered, roles)
    if decided.empty:
        return []
    same_case = np.r_[False, ordered["case_id"].to_numpy()[1:]
                      == ordered["case_id"].to_numpy()[:-1]]
    deciding = ordered["activity"].isin([*roles.won, *roles.lost, *roles.end_activities])
    at_outcome = same_case & deciding.to_numpy() & (
        ordered["case_id"].map(decided["outcome_time"]) == ordered["timestamp"]).to_numpy()
    # the first such row per case: its deciding event
    first_hit = at_outcome & ~pd.Series(at_outcome).groupby(
        ordered["case_id"].to_numpy()).cumsum().gt(1).to_numpy()
    elsewhere = same_case & ~first_hit
    if first_hit.sum() < 2 * MIN_PER_CLASS:
        return []
    findings = []
    for column in columns:
        values = ordered[column].astype(object).where(ordered[column].notna(), None)
        changed = (values != values.shift(1)).to_numpy()
        at_share = float(changed[first_hit].mean())
        other_share = float(changed[elsewhere].mean()) if elsewhere.any() else 0.0
        if at_share >= CHANGE_AT_OUTCOME and other_share <= CHANGE_ELSEWHERE:
            findings.append(LeakFinding(
                column, "changes_at_outcome", at_share,
                f"{column!r} changes at the outcome event in {at_share:.0%} of "
                f"{int(first_hit.sum()):,} decided cases and at {other_share:.1%} of the "
                "other events: a value set when the case closes"))
    return findings
