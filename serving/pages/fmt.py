"""Numbers for people, used by the templates as filters. Only pages round: the API's
JSON keeps its full-precision numbers."""

from __future__ import annotations

import math
from datetime import date, datetime
from typing import Any

import pandas as pd


def _missing(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float) and math.isnan(value)


def percent(share: Any) -> str:
    """0.734 -> "73%" (whole percentages)."""
    if _missing(share):
        return "–"
    return f"{round(100.0 * float(share)):.0f}%"


def whole_days(value: Any) -> str:
    if _missing(value):
        return "–"
    n = round(float(value))
    return "1 day" if n == 1 else f"{n:,} days"


def days_late(value: Any) -> str:
    """A payment delay in days -> "3 days late", "15 days early" or "on the due date":
    "-15 days late" makes a reader do the sign in their head."""
    if _missing(value):
        return "–"
    n = round(float(value))
    if n == 0:
        return "on the due date"
    return f"{whole_days(abs(n))} {'late' if n > 0 else 'early'}"


def as_date(value: Any) -> str:
    """A date as a date (the time of day and zone of a forecast mean nothing to a rep)."""
    if _missing(value):
        return "–"
    if isinstance(value, str):
        value = pd.Timestamp(value)
    if isinstance(value, datetime | pd.Timestamp):
        return value.strftime("%d %b %Y")
    if isinstance(value, date):
        return value.strftime("%d %b %Y")
    return str(value)


def money(value: Any, currency: Any = None) -> str:
    """48000 with EUR -> "EUR 48,000"; without a currency, the amount as exported."""
    if _missing(value):
        return "–"
    amount = f"{float(value):,.0f}"
    return amount if _missing(currency) or not currency else f"{currency} {amount}"


def month(label: str) -> str:
    """"2024-11" -> "Nov 2024"."""
    try:
        return pd.Period(label, freq="M").strftime("%b %Y")
    except (ValueError, TypeError):
        return str(label)


def percent_points(value: Any) -> str:
    """A percentage already in points (a discount of 12.5) -> "12.5%"."""
    if _missing(value):
        return "–"
    return f"{float(value):.3g}%"


def or_dash(value: Any) -> str:
    return "–" if _missing(value) else str(value)


FILTERS = {"percent_points": percent_points, "or_dash": or_dash, "percent": percent,
           "whole_days": whole_days, "days_late": days_late, "as_date": as_date,
           "money": money, "month": month}
