"""Feature groups a log gives nothing to read are not built at all.

An encoder whose every input column is empty in the training log produces columns that
are missing on every row: they cost time at every transform (the cross-case encoder
indexes the whole history) and tell a model nothing. Public logs without a rep, region
or account (loan applications, traffic fines) are the common case. Within the cross-case
encoder the same holds per key: a log with accounts but no rep (Helpdesk) gets the
account's features only (``CrossCaseEncoder.keys_``); the time encoder leaves out its
stage and invoice-ageing columns on a log without stages or invoices.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from features.crosscase import CrossCaseEncoder, readable_keys
from features.encoders import PrefixEncoder


def reads_something(encoder: PrefixEncoder, events: pd.DataFrame) -> bool:
    """Whether ``encoder`` has an input column the training events fill (the cross-case
    encoder: a rep, region or account with features under its roles; it leaves out
    the other keys itself when fitted)."""
    if isinstance(encoder, CrossCaseEncoder):
        return bool(readable_keys(
            lambda column: column in events and bool(events[column].notna().any()),
            encoder.resolved_roles()))
    return True


def without_unread(encoders: Sequence[PrefixEncoder],
                   events: pd.DataFrame) -> list[PrefixEncoder]:
    return [encoder for encoder in encoders if reads_something(encoder, events)]
