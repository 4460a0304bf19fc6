"""Downtime and losses: stop events with reason codes, and the loss buckets they fall into.

``config`` (the reason hierarchy: bucket → category → code, and the debounce), ``losses`` (which
bucket each stop's lost time goes to: pure), ``store`` (reasons entered by operators or mapped from
a PLC reason tag, in ``downtime.sqlite``), ``service`` (stops of a window from the stored state
timeline, reasons, losses per batch and shift). Stops themselves are not stored: they are derived
from the state records every time, so a changed debounce or cutoff applies to history too; a reason
is attached to a stop by its line and start time.
"""
