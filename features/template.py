"""The Excel data template companies fill in when they have no ready export.

Its column names are those of the default mapping, so a filled-in template reads with
no mapping at all; its second and third sheets explain each column and activity so a
CRM administrator can fill it without asking us.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from features.mapping import default_mapping

#: (template column, canonical role, level, required, type, explanation)
COLUMN_GUIDE: tuple[tuple[str, str, str, str, str, str], ...] = (
    ("opportunity_id", "case_id", "event", "yes", "text",
     "The opportunity (case) the event belongs to; the same id on every row of it."),
    ("activity", "activity", "event", "yes", "text",
     "What happened; one of the names on the 'activities' sheet."),
    ("event_time", "timestamp", "event", "yes", "date-time",
     "When it happened, e.g. 2024-03-01T14:30:00Z; without a zone it is read as UTC."),
    ("user", "resource", "event", "no", "text", "Who performed the step."),
    ("amount", "value", "case", "recommended", "number",
     "Opportunity value in its currency; may change from event to event."),
    ("currency", "currency", "case", "no", "text", "ISO currency code, e.g. EUR."),
    ("stage", "stage", "event", "recommended", "text",
     "Sales stage at the event: Lead, Prospecting, Qualification, Proposal, Negotiation, "
     "Closing, Closed Won, Closed Lost."),
    ("owner", "rep", "case", "recommended", "text", "The sales rep who owns the opportunity."),
    ("region", "region", "case", "recommended", "text", "Region or territory."),
    ("account", "account", "case", "recommended", "text",
     "Customer account; use the same name for every deal with that customer."),
    ("lead_source", "lead_source", "case", "recommended", "text",
     "Where the lead came from: web, referral, event, partner, outbound ..."),
    ("product_line", "product", "case", "recommended", "text", "Product category."),
    ("discount_pct", "discount_pct", "event", "recommended", "number",
     "Discount of a quote in percent (on quote events)."),
    ("contract_type", "contract_type", "case", "no", "text", "standard or non-standard."),
    ("payment_terms", "payment_terms", "case", "recommended", "text",
     "Payment terms such as 'Net 30'; the number is read as days."),
    ("lost_reason", "lost_reason", "case", "no", "text",
     "Why a lost deal was lost. Used for reporting only, never to predict."),
)

ACTIVITY_GUIDE: tuple[tuple[str, str], ...] = (
    ("Lead Captured", "A lead enters the CRM; the case starts."),
    ("Opportunity Created", "The lead becomes an opportunity."),
    ("Opportunity Qualified", "Budget, authority, need and timing confirmed."),
    ("Meeting Held", "A meeting with the customer (repeatable)."),
    ("Quote Issued", "A quote is sent; repeat it for every re-quote, with its discount."),
    ("Discount Approval Requested", "A discount above policy goes to a manager."),
    ("Discount Approved", "The manager approves the discount."),
    ("Quote Accepted", "The customer accepts a quote."),
    ("Legal Review Requested", "A non-standard contract goes to legal."),
    ("Legal Review Completed", "Legal signs off."),
    ("Stage Regressed", "The opportunity moves back to an earlier stage."),
    ("Contract Signed", "Both parties signed."),
    ("Opportunity Won", "The deal is booked (outcome: won)."),
    ("Opportunity Lost", "The deal is lost (outcome: lost); give the lost_reason."),
    ("Sales Order Created", "The order is entered in the ERP."),
    ("Order Fulfilled", "Goods delivered or service rendered."),
    ("Invoice Created", "Invoice issued; its date plus payment terms is the due date."),
    ("Invoice Sent", "Invoice sent to the customer."),
    ("Invoice Corrected", "An invoice had to be corrected (then sent again)."),
    ("Payment Reminder Sent", "A reminder or dunning letter."),
    ("Payment Received", "Cash received; the case ends."),
)


def write_template(path: str | Path) -> Path:
    """Write the template: an empty events sheet with two example rows and two guides."""
    path = Path(path)
    mapping = default_mapping()
    missing = set(mapping.known_activities) - {name for name, _ in ACTIVITY_GUIDE}
    if missing:  # the guide must explain every activity the default mapping knows
        raise AssertionError(f"activity guide lacks {sorted(missing)}")
    columns = [name for name, *_ in COLUMN_GUIDE]
    example = pd.DataFrame(
        [
            ["OPP-1001", "Lead Captured", "2024-03-01T09:15:00Z", "j.smith", 25000, "EUR",
             "Lead", "j.smith", "EMEA North", "Acme GmbH", "web", "Software", None,
             "standard", "Net 30", None],
            ["OPP-1001", "Quote Issued", "2024-03-12T14:30:00Z", "j.smith", 25000, "EUR",
             "Proposal", "j.smith", "EMEA North", "Acme GmbH", "web", "Software", 12.5,
             "standard", "Net 30", None],
        ],
        columns=columns,
    )
    guide = pd.DataFrame(
        COLUMN_GUIDE, columns=["column", "role", "level", "required", "type", "explanation"]
    )
    activities = pd.DataFrame(ACTIVITY_GUIDE, columns=["activity", "meaning"])
    with pd.ExcelWriter(path, engine="openpyxl") as writer:
        example.to_excel(writer, sheet_name="events", index=False)
        guide.to_excel(writer, sheet_name="columns", index=False)
        activities.to_excel(writer, sheet_name="activities", index=False)
    return path
