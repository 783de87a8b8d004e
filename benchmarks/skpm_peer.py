"""skpm's sequence encodings as peers of the real-log benchmark (``benchmarks/real_logs.py``).

skpm (MIT, ``pip install -e '.[benchmark]'``) builds features per event on a canonical
event log (``skpm.to_event_log``: a ``(case_id, timestamp, event_id)`` index); the row of
a case's k-th event is then the prefix of length k. Three encodings, as the
outcome-oriented literature names them:

- ``skpm_agg``: ``Aggregation(method="sum")`` of the one-hot activities, resources and
  categorical attributes (counts so far), ``Aggregation(method="mean")`` of the numbers
  plus their current value, and skpm's relative times (``TimestampExtractor`` case
  features: time since the case's start and since the previous event);
- ``skpm_window``: ``Windowing(n=WINDOW)`` (the last ``WINDOW`` events, each in its own
  columns) of the one-hot attributes, the numbers and the relative times;
- ``skpm_window_abs``: the same window plus skpm's absolute time of each event
  (``TimestampExtractor`` event features: the epoch time and its calendar positions).

The one-hot vocabularies are learnt on the training events only (values seen less than
``MIN_FREQUENCY`` times, or beyond the most frequent ``max_categories``, share skpm's
"infrequent" column; unseen test values land there too). The prefix length k is added
to every encoding, as to pm4py's. Nothing of the product imports this module.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.schema import LABEL_ONLY_COLUMNS, ROW_COLUMN

ENCODINGS = ("skpm_agg", "skpm_window", "skpm_window_abs")
#: events per window: the literature's windows are short; 5 covers Helpdesk's median case
WINDOW = 5
MIN_FREQUENCY = 5
#: one-hot columns per attribute: all the usual activities; fewer for windowed attributes
#: (each is repeated WINDOW times), except the activity itself
MAX_CATEGORIES = {"agg": 100, "window": 20}


def skpm_available() -> bool:
    try:
        import skpm  # noqa: F401
    except ImportError:
        return False
    finally:
        _restore_sklearn_output()
    return True


def _restore_sklearn_output() -> None:
    """``import skpm`` sets scikit-learn's global ``transform_output`` to pandas; our own
    models (the logistic base's scaler) must run as they do without skpm installed."""
    import sklearn

    sklearn.set_config(transform_output="default")


def columns_of(events: pd.DataFrame) -> tuple[list[str], list[str]]:
    """String and numeric event columns the log fills (as pm4py's peer reads them)."""
    skip = {"case_id", "timestamp", ROW_COLUMN, *LABEL_ONLY_COLUMNS}
    filled = [c for c in events.columns if c not in skip and events[c].notna().any()]
    numeric = [c for c in filled if pd.api.types.is_numeric_dtype(events[c])]
    return [c for c in filled if c not in numeric], numeric


def _canonical(events: pd.DataFrame, strings: list[str], numbers: list[str]) -> pd.DataFrame:
    """skpm's canonical log, with our tie order (skpm's own sort is stable)."""
    from skpm import to_event_log

    _restore_sklearn_output()
    ordered = events.sort_values(["case_id", "timestamp", ROW_COLUMN], kind="stable")
    flat = ordered[["case_id", "timestamp", *strings, *numbers]].copy()
    for column in strings:
        flat[column] = flat[column].astype("object").where(flat[column].notna(), "<missing>")
        flat[column] = flat[column].astype(str)
    return to_event_log(flat)


class SkpmEncoding:
    """One of :data:`ENCODINGS`, fitted on the training events, applied to any events."""

    def __init__(self, encoding: str) -> None:
        if encoding not in ENCODINGS:
            raise ValueError(f"unknown skpm encoding {encoding!r}; one of {ENCODINGS}")
        self.encoding = encoding

    def fit(self, events: pd.DataFrame) -> SkpmEncoding:
        from sklearn.preprocessing import OneHotEncoder

        self.strings_, self.numbers_ = columns_of(events)
        log = _canonical(events, self.strings_, self.numbers_)
        window = self.encoding != "skpm_agg"
        cap = MAX_CATEGORIES["window" if window else "agg"]
        self.onehots_ = {}
        for column in self.strings_:
            encoder = OneHotEncoder(handle_unknown="infrequent_if_exist",
                                    min_frequency=MIN_FREQUENCY,
                                    max_categories=MAX_CATEGORIES["agg"]
                                    if column == "activity" else cap,
                                    sparse_output=False, dtype=np.float64)
            self.onehots_[column] = encoder.fit(log[[column]])
        return self

    def transform(self, events: pd.DataFrame, max_prefix_len: int) -> pd.DataFrame:
        """One row per (case, k <= max_prefix_len): ``case_id``, ``prefix_len``, features."""
        from skpm.feature_extraction import TimestampExtractor
        from skpm.sequence_encoding import Aggregation, Windowing

        log = _canonical(events, self.strings_, self.numbers_)
        onehot = pd.concat(
            [pd.DataFrame(enc.transform(log[[c]]), index=log.index,
                          columns=[f"{c}={v}" for v in enc.get_feature_names_out([c])])
             for c, enc in self.onehots_.items()], axis=1)
        numbers = log[self.numbers_].astype("float64")
        relative = TimestampExtractor(case_features="all", event_features=None,
                                      time_unit="d").fit_transform(log)
        if self.encoding == "skpm_agg":
            counts = Aggregation(method="sum").fit_transform(onehot)
            means = Aggregation(method="mean").fit_transform(numbers).add_suffix("_mean")
            parts = [counts, means, numbers, relative]
        else:
            inputs = [onehot, numbers, relative]
            if self.encoding == "skpm_window_abs":
                inputs.append(TimestampExtractor(case_features=None, event_features="all",
                                                 time_unit="d").fit_transform(log))
            parts = [Windowing(n=WINDOW).fit_transform(pd.concat(inputs, axis=1))]
        features = pd.concat(parts, axis=1)
        position = features.groupby(level="case_id", sort=False).cumcount().to_numpy()
        keep = position < max_prefix_len
        out = features[keep].reset_index(drop=True)
        out.columns = [f"f{i}" for i in range(out.shape[1])]  # LightGBM: no JSON characters
        keys = pd.DataFrame({
            "case_id": log.index.get_level_values("case_id")[keep],
            "prefix_len": position[keep] + 1})
        return pd.concat([keys, out], axis=1)
