"""Tiny logs written by the tests: every expected figure can be counted by hand."""

from __future__ import annotations

import pandas as pd

from features.log import EventLog, canonicalize
from features.mapping import Mapping

MAPPING = {
    "name": "tiny",
    "columns": {"case_id": "case", "activity": "activity", "timestamp": "time",
                "stage": "stage", "region": "region", "rep": "rep", "value": "value",
                "currency": "currency", "discount_pct": "discount",
                "payment_terms": "terms"},
    "optional": ["stage", "region", "rep", "value", "currency", "discount_pct",
                 "payment_terms"],
    "roles": {
        "won": ["Opportunity Won"], "lost": ["Opportunity Lost"],
        "invoice": ["Invoice Created"], "payment": ["Payment Received"],
        "stage_order": ["Lead", "Prospecting", "Proposal", "Negotiation", "Closed"],
        "expected_order": ["Lead Captured", "Opportunity Created", "Quote Issued",
                           "Opportunity Won", "Invoice Created", "Payment Received"],
    },
}

# case, day, activity, stage, discount
_ROWS = [
    ("A", 0, "Lead Captured", "Lead", None),
    ("A", 1, "Opportunity Created", "Prospecting", None),
    ("A", 3, "Quote Issued", "Proposal", 20.0),
    ("A", 5, "Discount Approved", "Proposal", None),
    ("A", 6, "Opportunity Won", "Closed", None),
    ("A", 7, "Invoice Created", "Closed", None),
    ("A", 40, "Payment Received", "Closed", None),
    ("B", 0, "Lead Captured", "Lead", None),
    ("B", 2, "Opportunity Created", "Prospecting", None),
    ("B", 4, "Quote Issued", "Negotiation", 5.0),
    ("B", 8, "Quote Issued", "Proposal", 10.0),
    ("B", 9, "Opportunity Lost", "Closed", None),
    ("C", 0, "Lead Captured", "Lead", None),
    ("C", 1, "Quote Issued", "Proposal", 25.0),
    ("C", 3, "Opportunity Won", "Closed", None),
    ("C", 4, "Invoice Created", "Closed", None),
    ("D", 0, "Lead Captured", "Lead", None),
    ("D", 1, "Opportunity Created", "Prospecting", None),
]
_CASES = {"A": ("North", "Ann", 1000.0, "EUR"), "B": ("North", "Bob", 2000.0, "EUR"),
          "C": ("South", "Cy", 3000.0, "USD"), "D": ("South", "Cy", 4000.0, "USD")}
START = pd.Timestamp("2024-01-01T09:00:00Z")


def tiny_frame() -> pd.DataFrame:
    rows = []
    for case, day, activity, stage, discount in _ROWS:
        region, rep, value, currency = _CASES[case]
        rows.append({"case": case, "activity": activity,
                     "time": (START + pd.Timedelta(days=day)).isoformat(),
                     "stage": stage, "region": region, "rep": rep, "value": value,
                     "currency": currency, "discount": discount, "terms": "Net 30"})
    return pd.DataFrame(rows)


def tiny_log(frame: pd.DataFrame | None = None, mapping: dict | None = None) -> EventLog:
    return canonicalize(tiny_frame() if frame is None else frame,
                        Mapping.from_dict(mapping or MAPPING), source="tiny.csv")
