"""One fitted object from raw canonical events to the prefix feature frame.

The same ``PrefixPipeline`` builds the training matrix and scores one running case at
scoring, so training and serving can never compute a feature two ways. It stores the
feature schema (names, dtypes, categories) and refuses frames that do not match.

Example (runs as it stands)::

    >>> from features.simulate import simulate_log
    >>> from features.log import canonicalize
    >>> from features.mapping import default_mapping
    >>> mapping = default_mapping()
    >>> log = canonicalize(simulate_log(n_cases=200, seed=3)[0], mapping)
    >>> pipe = PrefixPipeline(roles=mapping.roles).fit(log.events)
    >>> frame = pipe.transform(log.events)
    >>> list(frame.columns[:4])
    ['case_id', 'prefix_len', 'prefix_end', 'case_start']
    >>> len(frame) == len(log.events)
    True
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from features.crosscase import CrossCaseEncoder
from features.encoders import (
    ActivityCountEncoder,
    AttributeEncoder,
    Coded,
    ConformanceEncoder,
    DateAttributeEncoder,
    Encoded,
    LastStateEncoder,
    NumericHistoryEncoder,
    PrefixEncoder,
    TimeEncoder,
    as_frame,
)
from features.errors import FeatureSchemaError
from features.labels import build_labels
from features.mapping import Roles
from features.prefixes import (
    KEY_COLUMNS,
    Columns,
    EventRows,
    decoded,
    prepare_events,
    prepare_rows,
    select_prefixes,
)
from features.pruning import without_unread
from features.schema import CORE_COLUMNS, LABEL_ONLY_COLUMNS, ROW_COLUMN
from features.sequence import ChangingAttributeEncoder, SequenceEncoder
from features.small import SMALL_FRAME_ROWS

FRAME_KEYS = (*KEY_COLUMNS, "case_start")
#: read by dedicated encoders (last state, cross-case) rather than as plain attributes
_NOT_ATTRIBUTES = {*CORE_COLUMNS, *LABEL_ONLY_COLUMNS, ROW_COLUMN, "account", "stage",
                   "payment_terms"}


class PrefixPipeline(BaseEstimator):
    """Canonical events -> one feature row per prefix (keys first, then features).

    Parameters are the knobs a data scientist tunes; everything learned from the
    training log (categories, activities, the cross-case history) ends in ``_``.
    """

    def __init__(self, roles: Roles | None = None, max_prefix_len: int | None = None,
                 thin_after: int | None = None, thin_step: int = 1, min_frequency: int = 5,
                 max_categories: int = 100, fiscal_year_start_month: int = 1,
                 recent_days: float = 30.0) -> None:
        self.roles = roles
        self.max_prefix_len = max_prefix_len
        self.thin_after = thin_after
        self.thin_step = thin_step
        self.min_frequency = min_frequency
        self.max_categories = max_categories
        self.fiscal_year_start_month = fiscal_year_start_month
        self.recent_days = recent_days

    # ----------------------------------------------------------------- fitting
    def _roles(self) -> Roles:
        return self.roles if self.roles is not None else Roles()

    def _encoders(self, events: pd.DataFrame, rows: EventRows | None = None
                  ) -> list[PrefixEncoder]:
        """The encoders for these (training) events; ``rows``: their ``EventRows``."""
        roles = self._roles()
        attributes = [c for c in events.columns
                      if c not in _NOT_ATTRIBUTES and c not in roles.label_only]
        dates = [c for c in attributes if isinstance(events[c].dtype, pd.DatetimeTZDtype)]
        categorical = [c for c in attributes if not pd.api.types.is_numeric_dtype(events[c])
                       and c not in dates]
        numeric = [c for c in attributes if pd.api.types.is_numeric_dtype(events[c])]
        rows = EventRows(prepare_events(events)) if rows is None else rows
        # numbers that take two values within a case (a case's nunique > 1): one value
        # differs from the one known before it
        history = [c for c in numeric if rows.filled(c) and bool(rows.changes(c).any())]
        return [
            AttributeEncoder(categorical=categorical, numeric=numeric,
                             min_frequency=self.min_frequency, max_categories=self.max_categories),
            DateAttributeEncoder(columns=dates),
            ActivityCountEncoder(),
            NumericHistoryEncoder(columns=history),
            LastStateEncoder(min_frequency=self.min_frequency, max_categories=self.max_categories),
            TimeEncoder(invoice_activities=roles.invoice,
                        fiscal_year_start_month=self.fiscal_year_start_month),
            ConformanceEncoder(expected_order=roles.expected_order, stage_order=roles.stage_order),
            SequenceEncoder(min_frequency=self.min_frequency, max_categories=self.max_categories),
            ChangingAttributeEncoder(columns=["resource", *categorical],
                                     min_frequency=self.min_frequency),
            CrossCaseEncoder(roles=roles, recent_days=self.recent_days),
        ]

    def fit(self, events: pd.DataFrame, y: object = None) -> PrefixPipeline:
        rows = prepare_rows(events)  # each column converted once for every encoder
        built = without_unread(self._encoders(events, rows), events)  # features.pruning
        self.encoders_ = [enc.fit(rows) for enc in built]
        self.feature_names_out_ = [n for enc in self.encoders_ for n in enc.feature_names_out_]
        repeated = sorted({n for n in self.feature_names_out_
                           if self.feature_names_out_.count(n) > 1})
        if repeated:  # a bug of the encoders, not of the data: say which names
            raise FeatureSchemaError(f"two encoders produce the feature(s) {repeated}")
        first = np.arange(min(len(rows), 1))  # the first case's first row: its own head
        sample = as_frame(self._encoded(rows.head(first)), pd.RangeIndex(len(first)))
        self.schema_ = {name: _dtype_spec(sample[name]) for name in self.feature_names_out_}
        self.extra_columns_ = [c for c in events.columns if c not in _NOT_ATTRIBUTES]
        return self

    def refresh_history(self, events: pd.DataFrame) -> PrefixPipeline:
        """Replace the stored cross-case history (e.g. with the whole extract before
        deployment) without touching anything else the pipeline learned."""
        check_is_fitted(self, "encoders_")
        for enc in self.encoders_:
            if isinstance(enc, CrossCaseEncoder):
                enc.set_history(prepare_events(events))
        return self

    # ----------------------------------------------------------- transforming
    def _encoded(self, rows: EventRows) -> Encoded:
        encoded: Encoded = {}
        for enc in self.encoders_:
            encoded.update(enc.encode(rows))
        return encoded

    def transform(self, events: pd.DataFrame, last_only: bool = False) -> pd.DataFrame:
        """Keys (case, prefix length, prefix end, case start) then the features.

        ``last_only`` keeps each case's latest prefix: what is scored for a
        running case. Otherwise the prefixes chosen by ``max_prefix_len``/thinning.
        """
        encoded = self.encode(events, last_only=last_only, text_keys=True)
        encoded.rows = None  # the events' arrays go before the frame is built
        return encoded.frame()

    def encode(self, events: pd.DataFrame | Columns, last_only: bool = False,
               each_case_alone: bool = False, text_keys: bool = False) -> EncodedPrefixes:
        """What ``transform`` returns, as arrays: a scorer turns them into the model's
        matrix and readable values without building (and re-checking) a frame.

        ``events``: a canonical frame, or its columns as arrays (``EventLog.columns``,
        which a small log holds: then no frame is built at all).

        ``each_case_alone`` encodes every case as if it were given alone: its cross-case
        features count the fitted history and itself, none of the other given cases,
        for answers that must not depend on which cases were scored together.

        ``text_keys``: case ids as pandas holds them where that is the text dtype a frame
        gives them anyway (long pyarrow text), rather than as objects (``transform``).
        """
        check_is_fitted(self, "schema_")
        self._check_input(events)
        rows = prepare_rows(events, each_case_alone)  # columns converted once for all encoders
        if last_only:
            ids = rows["case_id"]
            keep = np.r_[ids[1:] != ids[:-1], True] if len(ids) else np.zeros(0, dtype=bool)
        else:
            keep = select_prefixes(rows["prefix_len"], self.max_prefix_len, self.thin_after,
                                   self.thin_step)
        # times stay pandas datetime arrays (to_numpy would box every one as a Timestamp)
        if keep.all():  # every prefix kept (training): no copies of a large matrix
            keep = slice(None)
        kept_rows = keep if isinstance(keep, slice) else np.flatnonzero(keep)
        # the kept prefixes are each case's first ones (max_prefix_len): encoders that
        # read only a row's own case encode those rows alone, the others are cut
        if isinstance(keep, slice) or not _first_rows_of_cases(keep, rows.cases.k):
            features = self._encoded_kept(rows, kept_rows)
        else:
            head = rows.head(kept_rows)
            cut = {id(enc): _kept(enc.encode(rows), kept_rows) for enc in self.encoders_
                   if enc.reads_other_cases}
            del rows  # nothing else reads every event: let their arrays go
            features = {}
            for enc in self.encoders_:  # in schema order
                features.update(cut.pop(id(enc)) if enc.reads_other_cases
                                else enc.encode(head))
            rows, keep = head, slice(None)
        as_held = {"prefix_end", "case_start"}  # times as datetime arrays
        if text_keys and _frame_text(rows.array("case_id")):
            as_held.add("case_id")
        keys = {key: (rows.array(key) if key in as_held else rows[key])[keep]
                for key in FRAME_KEYS}
        return EncodedPrefixes(keys=keys, features=features, rows=rows, kept=keep)

    def _encoded_kept(self, rows: EventRows, kept_rows: np.ndarray | slice) -> Encoded:
        """The encoders' features of every row, cut to the kept prefixes encoder by
        encoder."""
        features: Encoded = {}
        for enc in self.encoders_:
            features.update(_kept(enc.encode(rows), kept_rows))
        return features

    def fit_transform(self, events: pd.DataFrame, y: object = None) -> pd.DataFrame:
        return self.fit(events).transform(events)

    def labels(self, events: pd.DataFrame,
               extraction_time: pd.Timestamp | None = None) -> pd.DataFrame:
        """Labels aligned row by row with ``transform(events)`` (same prefix selection)."""
        prepared = prepare_events(events)
        labels = build_labels(prepared, self._roles(), extraction_time)
        keep = select_prefixes(prepared["prefix_len"], self.max_prefix_len, self.thin_after,
                               self.thin_step)
        return labels[keep].reset_index(drop=True)

    # ------------------------------------------------------------- the schema
    def get_feature_names_out(self, input_features: object = None) -> np.ndarray:
        check_is_fitted(self, "feature_names_out_")
        return np.asarray(self.feature_names_out_, dtype=object)

    def readable_names(self) -> dict[str, str]:
        """Feature name -> words for explanations."""
        check_is_fitted(self, "encoders_")
        names: dict[str, str] = {}
        for enc in self.encoders_:
            names.update(enc.readable_names())
        return names

    def feature_groups(self) -> dict[str, tuple[str, str]]:
        """Feature -> (group, words) where encoders group features for explanations."""
        check_is_fitted(self, "encoders_")
        groups: dict[str, tuple[str, str]] = {}
        for enc in self.encoders_:
            groups.update(enc.feature_groups())
        return groups

    def summary_names(self) -> list[str]:
        """The features the encoders call summaries (``PrefixEncoder.summary_names``)."""
        check_is_fitted(self, "encoders_")
        return [name for enc in self.encoders_ for name in enc.summary_names()]

    def feature_matrix(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Only the features, in schema order, after checking the schema."""
        self.check_features(frame)
        return frame[self.feature_names_out_]

    def check_features(self, frame: pd.DataFrame) -> None:
        """Refuse a frame whose features differ from the training schema, saying how."""
        check_is_fitted(self, "schema_")
        missing = [n for n in self.feature_names_out_ if n not in frame.columns]
        if missing:
            raise FeatureSchemaError(f"features missing from the frame: {missing}")
        for name, spec in self.schema_.items():
            found = _dtype_spec(frame[name])
            if found != spec:
                raise FeatureSchemaError(
                    f"feature {name!r}: expected {spec}, found {found}; the frame was not "
                    "built by this pipeline")

    def _check_input(self, events: pd.DataFrame | Columns) -> None:
        needed = {"case_id", "activity", "timestamp", *self.extra_columns_}
        missing = sorted(needed - set(events))  # a frame's column names, or the mapping's
        if missing:
            raise FeatureSchemaError(
                f"event log lacks column(s) {missing} that the pipeline was trained with")
        if not isinstance(events["timestamp"].dtype, pd.DatetimeTZDtype):
            raise FeatureSchemaError("column 'timestamp' must be tz-aware (canonical log)")


def _frame_text(values: Any) -> bool:
    """Long pyarrow text (``features.schema.text_dtype``): the dtype a frame gives a
    column of Python strings too, so the frame may hold it as it is."""
    return (len(values) > SMALL_FRAME_ROWS and isinstance(values.dtype, pd.StringDtype)
            and values.dtype == pd.StringDtype("pyarrow", na_value=np.nan))


def _first_rows_of_cases(keep: np.ndarray, k: np.ndarray) -> bool:
    """Whether the kept rows are a prefix of every case: no kept row follows a row of
    its case that is left out (``k``: each row's place in its case, rows by case)."""
    return not bool(np.any(keep[1:] & ~keep[:-1] & (k[1:] > 0)))


def _kept(encoded: Encoded, rows: np.ndarray | slice) -> Encoded:
    """One encoder's features of the kept prefixes (``rows``: their positions, or every
    row). Each column of every event is let go as soon as its kept rows are copied, so
    the features of all events never exist at once: a transform's peak memory is about
    one copy of the kept features."""
    if isinstance(rows, slice):
        return encoded
    out: Encoded = {}
    for name in list(encoded):
        value = encoded.pop(name)
        out[name] = (Coded(value.codes[rows], value.categories) if isinstance(value, Coded)
                     else value[rows])
    return out


@dataclass
class EncodedPrefixes:
    """Prefix keys and features as arrays, in schema order (``Coded`` categoricals)."""

    keys: dict[str, Any]  # case_id, prefix_len: ndarray; prefix_end, case_start: DatetimeArray
    features: Encoded
    rows: EventRows | None = None  # the events the prefixes were encoded from
    kept: Any = field(default_factory=lambda: slice(None))  # which of their rows

    def last_given(self, column: str) -> np.ndarray:
        """Per prefix, the column's latest non-missing value in its case so far (NaN if
        none), e.g. what scoring reports as missing or unknown to the model."""
        if self.rows is None:
            raise ValueError("these prefixes were not encoded from events")
        return self.rows.last_known(column)[self.kept]

    def has_column(self, column: str) -> bool:
        return self.rows is not None and column in self.rows

    def __len__(self) -> int:
        return len(self.keys["case_id"])

    @property
    def names(self) -> list[str]:
        return list(self.features)

    def frame(self) -> pd.DataFrame:
        """Keys then features, as ``PrefixPipeline.transform`` returns them."""
        return as_frame({**self.keys, **self.features}, pd.RangeIndex(len(self)))

    def matrix(self) -> np.ndarray:
        """The float matrix LightGBM builds from the frame: codes for categories, NaN for
        missing (``models.matrix.as_matrix`` of the frame, without the frame)."""
        out = np.empty((len(self), len(self.features)), dtype="float64")
        for j, value in enumerate(self.features.values()):
            if isinstance(value, Coded):
                out[:, j] = np.where(value.codes < 0, np.nan, value.codes)
            else:
                out[:, j] = value
        return out

    def readable(self, name: str) -> np.ndarray:
        """A feature's values as objects: category names (NaN where missing), numbers."""
        value = self.features[name]
        if isinstance(value, Coded):
            return decoded(value.codes, value.categories)
        return value.astype(object)


def _dtype_spec(column: pd.Series) -> dict[str, Any]:
    if isinstance(column.dtype, pd.CategoricalDtype):
        return {"dtype": "category", "categories": [str(c) for c in column.cat.categories]}
    return {"dtype": "float64" if pd.api.types.is_float_dtype(column) else str(column.dtype)}
