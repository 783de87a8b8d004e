"""The canonical event log: the one in-memory form every later stage trusts.

Every reader ends here, so features, models and serving never see an export's own
column names, formats or time zones. Columns, in this order:

=================== ======================== ===== =========================================
column              dtype                    level meaning
=================== ======================== ===== =========================================
case_id             str                      event the opportunity (case)
activity            str                      event canonical activity name
timestamp           datetime64[us, UTC]      event when it happened, always UTC
resource            str (may be missing)     event who did the step
value               float64                  case  opportunity value (may change per event)
currency            str                      case  currency of ``value``
rep                 str                      case  owning sales rep
region              str                      case  region / territory
account             str                      case  customer account (recurs across cases)
lead_source         str                      case  web, referral, partner, ...
product             str                      case  product category
contract_type       str                      case  standard / non-standard
payment_terms       str                      case  terms as exported ("Net 30")
payment_terms_days  float64                  case  terms in days, parsed by the mapping
lost_reason         str                      case  LABEL-ONLY: never a feature
stage               str                      event sales stage at that event
discount_pct        float64                  event discount of a quote, in percent
=================== ======================== ===== =========================================

Columns a mapping declares under ``extra_columns`` follow, with the dtype it names
(``category`` -> str, ``number`` -> float64). Rows are sorted by case, time, and the
row's position in the file, so ties keep the export's order.
"""

from __future__ import annotations

from typing import Final, Literal

import numpy as np
import pandas as pd

from features.small import SMALL_FRAME_ROWS

Kind = Literal["id", "activity", "time", "category", "number"]

CORE_COLUMNS: Final = ("case_id", "activity", "timestamp", "resource")
REQUIRED_ROLES: Final = ("case_id", "activity", "timestamp")

#: canonical column -> kind; the order is the canonical column order.
CANONICAL_KINDS: Final[dict[str, Kind]] = {
    "case_id": "id",
    "activity": "activity",
    "timestamp": "time",
    "resource": "category",
    "value": "number",
    "currency": "category",
    "rep": "category",
    "region": "category",
    "account": "category",
    "lead_source": "category",
    "product": "category",
    "contract_type": "category",
    "payment_terms": "category",
    "payment_terms_days": "number",
    "lost_reason": "category",
    "stage": "category",
    "discount_pct": "number",
}

#: columns that hold money or shares and so must not be negative.
NON_NEGATIVE: Final = ("value", "discount_pct", "payment_terms_days")

#: known only once the outcome is known; the feature pipeline must never read them.
LABEL_ONLY_COLUMNS: Final = ("lost_reason",)

#: the row's position in the source file (1 = first data row), kept for error reports.
ROW_COLUMN: Final = "source_row"

TIMESTAMP_DTYPE: Final = "datetime64[us, UTC]"

#: events outside these years are quarantined: ERP placeholders such as 9999-12-31 ("no
#: date yet") or 0001-01-01 are not event times, and date arithmetic on them overflows.
PLAUSIBLE_YEARS: Final = (1900, 2199)




def text_dtype(n: int) -> pd.StringDtype | str:
    """The canonical text dtype (``str``) with the storage that suits ``n`` rows.

    pyarrow-backed ``str`` pays a fixed cost per conversion to numpy whatever the size,
    which dominated reading one running case; Python storage does not. Both are pandas'
    ``str`` dtype (they compare equal to "str"); big logs keep pyarrow.
    """
    return pd.StringDtype("python", na_value=np.nan) if n <= SMALL_FRAME_ROWS else "str"


def empty_column(kind: Kind, n: int) -> pd.Series:
    """A missing-valued column of the canonical dtype, for roles an export lacks."""
    if kind == "number":
        return pd.Series([float("nan")] * n, dtype="float64")
    if kind == "time":
        return pd.Series(pd.NaT, index=range(n), dtype=TIMESTAMP_DTYPE)
    return pd.Series([None] * n, dtype=text_dtype(n))
