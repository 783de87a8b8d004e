"""The simulator's log as a CRM table: one row per deal with a date column per milestone.

Many CRM reports (an opportunity list with "created", "closed" and "invoiced" dates)
hold no event rows at all. This export lets the simulator write such a table, and
``features/mappings/crm_table.yaml`` reads it back into events through
``events_from_columns``, so that path runs end to end on data with a known truth.
"""

from __future__ import annotations

from importlib import resources
from typing import Final

import pandas as pd

from features.mapping import Mapping

#: date column -> the activity whose first occurrence it records
MILESTONE_COLUMNS: Final[dict[str, str]] = {
    "lead_date": "Lead Captured",
    "created_date": "Opportunity Created",
    "qualified_date": "Opportunity Qualified",
    "quote_date": "Quote Issued",
    "signed_date": "Contract Signed",
    "won_date": "Opportunity Won",
    "lost_date": "Opportunity Lost",
    "invoice_date": "Invoice Created",
    "paid_date": "Payment Received",
}
#: deal attributes, as the simulator's event columns name them (first value per deal;
#: the discount, known only once quoted, is left out: on a deal's single row it would
#: reach back to the lead)
DEAL_COLUMNS: Final[tuple[str, ...]] = (
    "amount", "currency", "owner", "region", "account", "lead_source", "product_line",
    "contract_type", "payment_terms", "lost_reason",
)


def deals_table(events: pd.DataFrame) -> pd.DataFrame:
    """One row per opportunity of the simulator's export, in order of first event."""
    order = events.sort_values(["event_time"], kind="stable")
    by_case = order.groupby("opportunity_id", sort=False)
    table = by_case[list(DEAL_COLUMNS)].first()
    firsts = order[order["activity"].isin(list(MILESTONE_COLUMNS.values()))].groupby(
        ["opportunity_id", "activity"], sort=False)["event_time"].min().unstack()
    for column, activity in MILESTONE_COLUMNS.items():
        table[column] = firsts[activity].reindex(table.index) if activity in firsts else pd.NaT
    return table.reset_index()[["opportunity_id", *MILESTONE_COLUMNS, *DEAL_COLUMNS]]


def crm_table_mapping() -> Mapping:
    """The mapping that reads ``deals_table``'s export back into events."""
    import yaml

    text = resources.files("features.mappings").joinpath("crm_table.yaml").read_text("utf-8")
    return Mapping.from_dict(yaml.safe_load(text), source="features/mappings/crm_table.yaml")
