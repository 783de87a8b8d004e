"""Prefix features of one partition of cases, equal to the single-process transform.

A partition holds whole cases (events shuffled by case); every encoder but the
cross-case one reads only a prefix's own case, so it runs on the partition as it is.
The cross-case features are looked up in the whole log's history, joined on the
driver from every partition's case facts (``scaleout.history``). The pipeline itself
(categories, vocabularies) is fitted once, on the driver, from the training cut.
"""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
from sklearn.utils.validation import check_is_fitted

from features.crosscase import CaseFacts, CrossCaseEncoder
from features.encoders import Coded, Encoded
from features.pipeline import FRAME_KEYS, EncodedPrefixes, PrefixPipeline
from features.prefixes import prepare_rows, select_prefixes
from scaleout.history import encode_from_history, set_history


def with_history(pipeline: PrefixPipeline, facts: CaseFacts) -> PrefixPipeline:
    """A copy of the fitted pipeline whose cross-case history is ``facts`` (the whole
    log's, joined from the partitions): what each partition is given, and what the
    bundle keeps, as ``refresh_history(whole log)`` would set it."""
    check_is_fitted(pipeline, "encoders_")
    out = copy.copy(pipeline)
    out.encoders_ = [set_history(copy.copy(enc), facts) if isinstance(enc, CrossCaseEncoder)
                     else enc for enc in pipeline.encoders_]
    return out


def encode_partition(pipeline: PrefixPipeline, events: pd.DataFrame,
                     last_only: bool = False) -> EncodedPrefixes:
    """``pipeline.encode(whole log)`` restricted to this partition's cases.

    ``pipeline`` must hold the whole log's history (``with_history``): the cross-case
    features are read from it, never from the partition alone.
    """
    check_is_fitted(pipeline, "schema_")
    pipeline._check_input(events)
    rows = prepare_rows(events)
    encoded: Encoded = {}
    for enc in pipeline.encoders_:
        encoded.update(encode_from_history(enc, rows) if isinstance(enc, CrossCaseEncoder)
                       else enc.encode(rows))
    if last_only:
        ids = rows["case_id"]
        keep = np.r_[ids[1:] != ids[:-1], True] if len(ids) else np.zeros(0, dtype=bool)
    else:
        keep = select_prefixes(rows["prefix_len"], pipeline.max_prefix_len,
                               pipeline.thin_after, pipeline.thin_step)
    keys = {key: (rows.array(key) if key in ("prefix_end", "case_start") else rows[key])[keep]
            for key in FRAME_KEYS}
    features = {name: Coded(value.codes[keep], value.categories)
                if isinstance(value, Coded) else value[keep]
                for name, value in encoded.items()}
    return EncodedPrefixes(keys=keys, features=features, rows=rows, kept=keep)


def transform_partition(pipeline: PrefixPipeline, events: pd.DataFrame,
                        last_only: bool = False) -> pd.DataFrame:
    """Keys then features of the partition's prefixes, as ``transform`` gives them."""
    return encode_partition(pipeline, events, last_only).frame()
