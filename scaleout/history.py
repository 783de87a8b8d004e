"""The cross-case history of a log built partition by partition, and as-of lookups in it.

Cross-case features (a rep's workload and win rate, an account's payment habits) read
*other* cases, so a partition of cases cannot compute them alone. Each partition
instead contributes its cases' facts (``features.crosscase.case_facts``: one row per
case plus its win/loss events), far smaller than the events; the driver joins them in
the order the single-process pipeline holds them (cases sorted as ``prepare_events``
sorts them), and every partition then looks its prefixes up in that one history, as of
each prefix's end.

Why not ``PrefixPipeline.transform`` on a partition with the history stored: it adds
the partition's facts and subtracts their stored copies (``s + p - s``), which is
exact for counts but not, bit for bit, for sums of days. Looking the prefixes up in
the whole history alone gives exactly the running sums the single-process transform
of the whole log builds, in the same order, hence the same bits.

This mirrors the query side of ``CrossCaseEncoder.encode`` (the branch where the
given cases are the whole history); ``tests/scaleout`` compares the two bit for bit.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from features.crosscase import (
    DAY_SECONDS,
    FACT_KINDS,
    TIME_OFFSET,
    TIME_SPAN,
    AsOf,
    CaseFacts,
    CrossCaseEncoder,
    case_facts,
    column_features,
    facts_by_kind,
)
from features.encoders import Encoded
from features.mapping import Roles
from features.prefixes import EventRows, Lookup, _sort_key, prepare_rows


def partition_facts(events: pd.DataFrame, roles: Roles) -> CaseFacts:
    """The facts of one partition's cases (each case whole in the partition)."""
    return case_facts(prepare_rows(events), roles)


def join_facts(parts: Sequence[CaseFacts]) -> CaseFacts:
    """Partitions' facts as one history, cases in the single-process order.

    ``prepare_events`` sorts events by case id (``_sort_key``), so a whole-log history
    lists cases in that order and each case's win/loss events in time order; ties in
    time are then broken the same way here, and the running sums see the facts in the
    same sequence.
    """
    parts = [p for p in parts if len(p)]
    if not parts:
        raise ValueError("no cases in any partition")
    offsets = np.cumsum([0, *[len(p) for p in parts[:-1]]])
    ids = np.concatenate([p.ids for p in parts])
    columns = {name: np.concatenate([p.columns[name] for p in parts])
               for name in parts[0].columns}
    decisions = {name: np.concatenate([p.decisions[name] + (off if name == "case" else 0)
                                       for p, off in zip(parts, offsets, strict=True)])
                 for name in parts[0].decisions}
    if len(pd.unique(ids)) != len(ids):
        raise ValueError("a case appears in two partitions: shuffle the events by case first")
    order = np.argsort(_sort_key(ids), kind="stable")
    joined = CaseFacts(ids=ids, columns=columns, decisions=decisions).take(order)
    # take() renumbers the decisions but keeps their sequence: put them in case order
    # (within a case they are already in time order, as in a whole-log history)
    seq = np.argsort(joined.decisions["case"], kind="stable")
    joined.decisions = {k: v[seq] for k, v in joined.decisions.items()}
    return joined


def set_history(encoder: CrossCaseEncoder, facts: CaseFacts) -> CrossCaseEncoder:
    """Store ``facts`` as the encoder's history, as ``set_history`` does from events."""
    encoder.facts_ = facts
    encoder.cases_ = Lookup(facts.ids)
    encoder.groups_ = {}
    encoder.index_ = {}
    for column in FACT_KINDS:
        values = facts[column]
        encoder.groups_[column] = Lookup(pd.unique(values[~pd.isna(values)]))
        codes = encoder.groups_[column].positions(values)
        encoder.index_[column] = {kind: AsOf.build(*arrays, TIME_SPAN)
                                  for kind, arrays in facts_by_kind(facts, column, codes).items()}
    return encoder


def encode_from_history(encoder: CrossCaseEncoder, rows: EventRows) -> Encoded:
    """Cross-case features of ``rows`` looked up in the stored history alone.

    Valid only when the history holds these cases' facts exactly as ``rows`` give them
    (it was joined from the same partitions): then this equals ``encoder.encode`` of
    the whole log, bit for bit.
    """
    roles = encoder._roles()
    current = case_facts(rows, roles)
    t = rows.sec + TIME_OFFSET
    recent = int(encoder.recent_days * DAY_SECONDS)
    out: Encoded = {}
    for column in FACT_KINDS:
        query_values = rows.last_known(column)
        groups = encoder.groups_[column]
        q = groups.positions(query_values)
        # a value no stored case began with (a rep taking over a deal) is a group without
        # facts: zeros, as the encoder's fresh code gives, not missing
        q[(q < 0) & ~pd.isna(query_values)] = len(groups)
        index = encoder.index_[column]
        cache: dict[str, np.ndarray] = {}

        def at(kind: str, times: np.ndarray | None = None, index=index, q=q,
               cache=cache) -> np.ndarray:
            if times is not None:
                return index[kind].at(q, times)
            if kind not in cache:
                cache[kind] = index[kind].at(q, t)
            return cache[kind]

        column_features(out, column, at, roles, t, recent,
                        lambda q_values=query_values: CrossCaseEncoder._self_counted(
                            rows, current, q_values, t))
    return {name: out[name] for name in encoder.feature_names_out_}
