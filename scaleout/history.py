"""Cross-case features on Dask: as-of lookups computed per key and joined back by row.

Cross-case features (a rep's workload and win rate, an account's payment habits) read
*other* cases, so a partition of cases cannot compute them alone. Holding the whole
log's history on every worker would grow each worker with the log; instead the lookups
are a join by key, in three steps over ``K`` key buckets:

1. **route** (per partition of cases): the partition's case facts
   (``features.crosscase.case_facts``) are split by the hash of each case's rep, region
   and account into the bucket that owns that value, and so are its prefixes' queries
   (the value each prefix last knew, and its time);
2. **answer** (per bucket): the facts of the bucket's values, from every partition,
   are joined in the order the single-process history lists them (``join_facts``) and
   indexed as the encoder indexes its history; the bucket answers every query routed to
   it (the as-of sums each feature needs, at the times it needs them);
3. **join back** (per partition): each prefix takes its answers by position and the
   encoder's own rule (``features.crosscase.column_features``) makes the features.

A worker thus holds one partition, or one bucket (the facts and queries of ``1/K`` of
the keys), never the whole log's history. Within a group (one rep, one account) the
facts are summed in the same sequence as in the whole log's history, so the running
sums, and the features, are those of the single-process transform bit for bit
(``tests/scaleout`` compares them).

The driver still joins every partition's facts into one history (``join_facts``,
``CrossCaseEncoder.set_facts``): that is the history the trained bundle keeps for serving, as
``refresh_history(whole log)`` would set it; no worker receives it.
"""

from __future__ import annotations

import os
import pickle
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.crosscase import (
    DAY_SECONDS,
    FACT_KINDS,
    TIME_OFFSET,
    CaseFacts,
    CrossCaseEncoder,
    case_facts,
    column_features,
    facts_by_kind,
    index_key,
    probe_key,
)
from features.encoders import Encoded
from features.mapping import Roles
from features.prefixes import EventRows, prepare_rows, sort_key

#: a lookup the features need: (fact kind, seconds added to the prefix's time)
Need = tuple[str, int]


def partition_facts(events: pd.DataFrame, roles: Roles) -> CaseFacts:
    """The facts of one partition's cases (each case whole in the partition)."""
    return case_facts(prepare_rows(events), roles)


def join_facts(parts: Sequence[CaseFacts]) -> CaseFacts:
    """Partitions' facts as one history, cases in the single-process order.

    ``prepare_events`` sorts events by case id (``sort_key``), so a whole-log history
    lists cases in that order and each case's win/loss events in time order; ties in
    time are then broken the same way here, and the running sums see the facts in the
    same sequence. Facts of some cases only (a key bucket's) come out in the order the
    whole history lists those cases.
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
    order = np.argsort(sort_key(ids), kind="stable")
    joined = CaseFacts(ids=ids, columns=columns, decisions=decisions).take(order)
    # take() renumbers the decisions but keeps their sequence: put them in case order
    # (within a case they are already in time order, as in a whole-log history)
    seq = np.argsort(joined.decisions["case"], kind="stable")
    joined.decisions = {k: v[seq] for k, v in joined.decisions.items()}
    return joined


def without_history(encoder: CrossCaseEncoder) -> CrossCaseEncoder:
    """The fitted encoder with an empty history: what a worker is given (its lookups
    go to the key buckets), so that no worker holds a history growing with the log."""
    empty = encoder.facts_.take(np.zeros(0, dtype=np.int64))
    return encoder.set_facts(empty)


# ------------------------------------------------------------------ the key join
def needs(encoder: CrossCaseEncoder) -> dict[str, list[Need]]:
    """The lookups each key column's features make, found by running the encoder's
    rule (``column_features``) once on a probe: so a change in that rule changes what
    the buckets answer, rather than silently reading a lookup nobody computed."""
    roles = encoder.resolved_roles()
    recent = int(encoder.recent_days * DAY_SECONDS)
    return {column: probe_key(column, roles, recent)[1] for column in encoder.keys_}


def bucket_of(values: np.ndarray, buckets: int) -> np.ndarray:
    """The key bucket of each (non-missing) value: the same in every process."""
    if len(values) == 0:
        return np.zeros(0, dtype=np.int64)
    hashed = pd.util.hash_array(np.asarray(values, dtype=object), categorize=True)
    return (hashed % np.uint64(buckets)).astype(np.int64)


@dataclass
class Queries:
    """What one partition asks one bucket about one key column: for each prefix (in
    the partition's order) the value it last knew (``values[codes]``) and its time."""

    values: np.ndarray
    codes: np.ndarray
    t: np.ndarray


@dataclass(frozen=True)
class Stored:
    """A piece of the key join kept as a file in the store (the partitions' folder),
    not in worker memory; read (and removed) by the one task that takes it."""

    path: str


def keep(obj: Any, store: str | None) -> Any:
    """``obj`` itself, or written to ``store`` and referred to by path."""
    if store is None:
        return obj
    path = Path(store) / f"keyjoin-{uuid.uuid4().hex}.pkl"
    with path.open("wb") as handle:
        pickle.dump(obj, handle, protocol=pickle.HIGHEST_PROTOCOL)
    return Stored(str(path))


def take(obj: Any) -> Any:
    """A piece kept by ``keep``: read back (and the file removed) if stored."""
    if not isinstance(obj, Stored):
        return obj
    with open(obj.path, "rb") as handle:
        out = pickle.load(handle)  # written by keep() in this same job
    os.remove(obj.path)
    return out


def _route_values(rows: EventRows, column: str, kept: np.ndarray, buckets: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The kept prefixes' last-known values of ``column``: their distinct values, each
    prefix's code among them (-1 when missing), each distinct value's bucket and each
    prefix's bucket (-1 when missing: not asked, NaN as the encoder gives)."""
    values = rows.last_known(column)[kept]
    codes, uniques = pd.factorize(np.asarray(values, dtype=object))
    uniques = np.asarray(uniques, dtype=object)
    unique_bucket = bucket_of(uniques, buckets)
    query_bucket = np.where(codes >= 0, unique_bucket[np.maximum(codes, 0)], -1)
    return uniques, codes, unique_bucket, query_bucket


def route(rows: EventRows, kept: np.ndarray, encoder: CrossCaseEncoder, buckets: int,
          store: str | None) -> list[Any]:
    """Step 1: per bucket, ``({column: facts of this partition's cases whose value the
    bucket owns}, {column: queries of the kept prefixes whose value it owns})``, for the
    key columns the encoder reads."""
    facts = case_facts(rows, encoder.resolved_roles())
    t = rows.sec[kept] + TIME_OFFSET
    pieces: list[dict[str, tuple[CaseFacts, Queries]]] = [{} for _ in range(buckets)]
    for column in encoder.keys_:
        values = facts[column]
        known = ~pd.isna(values)
        fact_bucket = np.full(len(values), -1, dtype=np.int64)
        fact_bucket[known] = bucket_of(values[known], buckets)
        uniques, codes, unique_bucket, query_bucket = _route_values(rows, column, kept,
                                                                    buckets)
        for k in range(buckets):
            mine = query_bucket == k
            used = np.flatnonzero(unique_bucket == k)
            renumber = np.full(len(uniques), -1, dtype=np.int64)
            renumber[used] = np.arange(len(used))
            queries = Queries(values=uniques[used], codes=renumber[codes[mine]].astype(np.int32),
                              t=t[mine])
            pieces[k][column] = (_for_column(facts, column, np.flatnonzero(fact_bucket == k)),
                                 queries)
    # facts and queries kept apart: a bucket holds every partition's facts of its keys,
    # but their queries one partition at a time
    return [(keep({c: f for c, (f, _) in piece.items()}, store),
             keep({c: q for c, (_, q) in piece.items()}, store)) for piece in pieces]


def _for_column(facts: CaseFacts, column: str, positions: np.ndarray) -> CaseFacts:
    """The facts of the cases at ``positions`` that the as-of index of ``column``
    reads (``facts_by_kind``): its value and when it appeared, and only the ends, cycle
    times, payments and win/loss events its fact kinds count."""
    kinds = FACT_KINDS[column]
    names = [column, f"{column}_sec"]
    if "closed" in kinds or "done" in kinds:
        names.append("end_sec")
    if "done" in kinds:
        names.append("cycle_days")
    if "paid" in kinds:
        names += ["payment_sec", "payment_delay_days"]
    decisions = facts.decisions
    if "decided" not in kinds:
        decisions = {name: values[:0] for name, values in decisions.items()}
    subset = CaseFacts(ids=facts.ids, columns={n: facts.columns[n] for n in names},
                       decisions=decisions)
    return subset.take(positions)


def answer(asked: dict[str, list[Need]], store: str | None, *pieces: Any) -> list[Any]:
    """Step 2: one bucket's answers to every partition, in the partitions' order: per
    column, per lookup, an array of as-of sums row by row with that partition's
    queries (zeros for a value no case began with, as the encoder's fresh code).

    The facts of every partition are joined first; the queries are then read, answered
    and let go one partition at a time."""
    facts = [take(f) for f, _ in pieces]
    indexes = {}
    for column, column_needs in asked.items():
        given = [f[column] for f in facts if len(f[column])]
        kinds = {kind for kind, _ in column_needs}
        indexes[column] = index_key(join_facts(given) if given else facts[0][column], column,
                                 kinds)
    del facts
    answers = []
    for _, queries_ref in pieces:
        queries = take(queries_ref)
        out: dict[str, dict[Need, np.ndarray]] = {}
        for column, column_needs in asked.items():
            groups, index = indexes[column]
            asked_here = queries[column]
            codes = groups.positions(asked_here.values)
            codes[codes < 0] = len(groups)  # a value without facts: zeros, not missing
            q = codes[asked_here.codes]
            out[column] = {(kind, offset): index[kind].at(q, asked_here.t + offset)
                           for kind, offset in column_needs}
        answers.append(keep(out, store))
        del queries
    return answers


def encode_answered(encoder: CrossCaseEncoder, rows: EventRows, kept: np.ndarray,
                    buckets: int, answers: Sequence[Any]) -> Encoded:
    """Step 3: the cross-case features of the kept prefixes from the buckets' answers,
    by the encoder's own rule; equal to ``encoder.encode`` of the whole log (with the
    whole log as history) at those prefixes, bit for bit."""
    roles = encoder.resolved_roles()
    loaded = [take(a) for a in answers]
    current = case_facts(rows, roles)
    t = rows.sec[kept] + TIME_OFFSET
    recent = int(encoder.recent_days * DAY_SECONDS)
    out: Encoded = {}
    for column in encoder.keys_:
        query_bucket = _route_values(rows, column, kept, buckets)[3]
        widths = {kind: arrays[2].shape[1] for kind, arrays in facts_by_kind(
            current, column, np.zeros(len(current), dtype=np.int64)).items()}
        found: dict[Need, np.ndarray] = {}
        for need in (loaded[0][column] if loaded else {}):
            result = np.full((len(t), widths[need[0]]), np.nan)  # missing value: NaN
            for k, answer_k in enumerate(loaded):
                result[query_bucket == k] = answer_k[column][need]
            found[need] = result

        def at(kind: str, times: np.ndarray | None = None, found=found) -> np.ndarray:
            need = (kind, 0 if times is None or not len(times) else int(times[0] - t[0]))
            if need not in found:
                raise KeyError(f"cross-case lookup {need} was not computed by the key "
                               "buckets (scaleout.history.needs)")
            return found[need]

        query_values = rows.last_known(column)
        column_features(out, column, at, roles, t, recent,
                        lambda q_values=query_values: CrossCaseEncoder.self_counted(
                            rows, current, q_values, rows.sec + TIME_OFFSET)[kept])
    return {name: out[name] for name in encoder.feature_names_out_}
