"""Feature groups a log gives nothing to read are not built at all.

An encoder whose every input column is empty in the training log produces columns that
are missing on every row: they cost time at every transform (the cross-case encoder
indexes the whole history) and tell a model nothing. Public logs without a rep, region
or account (loan applications, traffic fines) are the common case.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from features.crosscase import CrossCaseEncoder
from features.encoders import PrefixEncoder

#: the key columns of the cross-case facts (``features.crosscase``)
CROSS_CASE_KEYS = ("rep", "region", "account")


def reads_something(encoder: PrefixEncoder, events: pd.DataFrame) -> bool:
    """Whether ``encoder`` has an input column the training events fill."""
    if isinstance(encoder, CrossCaseEncoder):  # as-of facts per rep, region and account
        return any(column in events and bool(events[column].notna().any())
                   for column in CROSS_CASE_KEYS)
    return True


def without_unread(encoders: Sequence[PrefixEncoder],
                   events: pd.DataFrame) -> list[PrefixEncoder]:
    return [encoder for encoder in encoders if reads_something(encoder, events)]
