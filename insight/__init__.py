"""Process insight: the actual Lead-to-Cash process, described from the event log.

``analyze(read_log(path, mapping))`` returns an ``Insight`` of typed sections (process
map, variants, funnel, bottlenecks, rework, conformance, discounts, payments, segments),
each a dataclass of data frames with documented columns; ``report.render_html`` turns it
into a self-contained page. Imports ``features`` only.
"""

from insight.analyze import Insight, analyze
from insight.context import Context, InsightError

__all__ = ["Context", "Insight", "InsightError", "analyze"]
