"""Prefix features of one partition of cases, equal to the single-process transform.

A partition holds whole cases (events shuffled by case); every encoder but the
cross-case one reads only a prefix's own case, so it runs on the partition as it is.
The cross-case features are lookups joined by key (``scaleout.history``): each
partition routes its facts and queries to key buckets, the buckets answer, and the
answers come back to the partition's prefixes by position. The pipeline itself
(categories, vocabularies) is fitted once, on the driver, from the training cut; the
workers get it without its cross-case history.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.utils.validation import check_is_fitted

from features.crosscase import CaseFacts, CrossCaseEncoder
from features.encoders import Coded, Encoded
from features.pipeline import FRAME_KEYS, EncodedPrefixes, PrefixPipeline
from features.prefixes import EventRows, prepare_rows, select_prefixes
from scaleout.history import answer, encode_answered, needs, route, without_history
from scaleout.input import OnEvents


def with_history(pipeline: PrefixPipeline, facts: CaseFacts) -> PrefixPipeline:
    """A copy of the fitted pipeline whose cross-case history is ``facts`` (the whole
    log's, joined from the partitions on the driver): what the bundle keeps, as
    ``refresh_history(whole log)`` would set it."""
    check_is_fitted(pipeline, "encoders_")
    out = copy.copy(pipeline)
    out.encoders_ = [copy.copy(enc).set_facts(facts) if isinstance(enc, CrossCaseEncoder)
                     else enc for enc in pipeline.encoders_]
    return out


def for_workers(pipeline: PrefixPipeline) -> PrefixPipeline:
    """A copy of the fitted pipeline without cross-case history: what every worker gets
    (its size does not grow with the log)."""
    check_is_fitted(pipeline, "encoders_")
    out = copy.copy(pipeline)
    out.encoders_ = [without_history(copy.copy(enc)) if isinstance(enc, CrossCaseEncoder)
                     else enc for enc in pipeline.encoders_]
    return out


def _cross_case(pipeline: PrefixPipeline) -> CrossCaseEncoder | None:
    found = [enc for enc in pipeline.encoders_ if isinstance(enc, CrossCaseEncoder)]
    return found[0] if found else None


def _kept(pipeline: PrefixPipeline, rows: EventRows, last_only: bool) -> np.ndarray:
    """The prefix rows ``transform`` keeps (each case's latest with ``last_only``)."""
    if last_only:
        ids = rows["case_id"]
        return np.r_[ids[1:] != ids[:-1], True] if len(ids) else np.zeros(0, dtype=bool)
    return select_prefixes(rows["prefix_len"], pipeline.max_prefix_len,
                           pipeline.thin_after, pipeline.thin_step)


def _queried(pipeline: PrefixPipeline, rows: EventRows, last_only: bool,
             only_cases: Callable[[pd.DataFrame], pd.DataFrame] | None,
             events: pd.DataFrame) -> np.ndarray:
    kept = _kept(pipeline, rows, last_only)
    if only_cases is not None:  # e.g. the open cases: the facts of all, queries of some
        kept = kept & np.isin(rows["case_id"], pd.unique(only_cases(events)["case_id"]))
    return kept


def route_partition(pipeline: PrefixPipeline, events: pd.DataFrame, last_only: bool,
                    buckets: int, store: str | None,
                    only_cases: Callable[[pd.DataFrame], pd.DataFrame] | None = None
                    ) -> list[Any]:
    """The partition's cross-case facts (of every case) and the queries of the prefixes
    ``transform`` keeps (of the cases in ``only_cases(events)`` if given), one piece
    per key bucket."""
    rows = prepare_rows(events)
    encoder = _cross_case(pipeline)
    assert encoder is not None  # only called when the pipeline has one
    kept = _queried(pipeline, rows, last_only, only_cases, events)
    return route(rows, kept, encoder, buckets, store)


def answers_in_process(pipeline: PrefixPipeline, events: pd.DataFrame, last_only: bool,
                       only_cases: Callable[[pd.DataFrame], pd.DataFrame] | None = None
                       ) -> list[Any]:
    """The key join in this process with one bucket (a log that fits here)."""
    encoder = _cross_case(pipeline)
    if encoder is None:
        return []
    pieces = route_partition(pipeline, events, last_only, 1, None, only_cases)
    return answer(needs(encoder), None, *pieces)


def _item(values: Sequence[Any], i: int) -> Any:
    return values[i]


def cross_case_answers(client: Any, parts: list[Any], pipeline: PrefixPipeline,
                       worker_pipeline: Any, last_only: bool = False,
                       store: str | None = None,
                       only_cases: Callable[[pd.DataFrame], pd.DataFrame] | None = None
                       ) -> list[list[Any]]:
    """Futures, for each partition, of the key buckets' answers to its prefixes
    (empty lists when the pipeline has no cross-case encoder).

    ``parts``: futures of canonical partitions (or of ``StoredPart``); ``store``: a
    folder every worker reaches, to keep the pieces in flight on disk."""
    encoder = _cross_case(pipeline)
    if encoder is None or not parts:
        return [[] for _ in parts]
    buckets = len(parts)
    asked = needs(encoder)
    routed = [client.submit(OnEvents(route_partition, 1), worker_pipeline, part, last_only,
                            buckets, store, only_cases) for part in parts]
    pieces = [[client.submit(_item, r, k) for k in range(buckets)] for r in routed]
    del routed
    answered = [client.submit(answer, asked, store, *[pieces[i][k] for i in range(len(parts))])
                for k in range(buckets)]
    del pieces
    return [[client.submit(_item, answered[k], i) for k in range(buckets)]
            for i in range(len(parts))]


def encode_partition(pipeline: PrefixPipeline, events: pd.DataFrame,
                     last_only: bool = False, *answers: Any) -> EncodedPrefixes:
    """``pipeline.encode(whole log)`` restricted to this partition's cases.

    ``answers``: the key buckets' answers to this partition's prefixes
    (``cross_case_answers``); the cross-case features are read from them, never from
    the partition alone.
    """
    check_is_fitted(pipeline, "schema_")
    pipeline._check_input(events)
    rows = prepare_rows(events)
    keep = _kept(pipeline, rows, last_only)
    encoded: Encoded = {}
    for enc in pipeline.encoders_:
        if isinstance(enc, CrossCaseEncoder):
            encoded.update(encode_answered(enc, rows, keep, len(answers), answers))
        else:
            encoded.update({name: Coded(value.codes[keep], value.categories)
                            if isinstance(value, Coded) else value[keep]
                            for name, value in enc.encode(rows).items()})
    keys = {key: (rows.array(key) if key in ("prefix_end", "case_start") else rows[key])[keep]
            for key in FRAME_KEYS}
    return EncodedPrefixes(keys=keys, features=encoded, rows=rows, kept=keep)


def transform_partition(pipeline: PrefixPipeline, events: pd.DataFrame,
                        last_only: bool = False, *answers: Any) -> pd.DataFrame:
    """Keys then features of the partition's prefixes, as ``transform`` gives them."""
    return encode_partition(pipeline, events, last_only, *answers).frame()
