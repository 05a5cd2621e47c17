"""The bodies of the reports a call's end causes, by event type: Infobip's status
report (``call.status``) and Tata's call details (``call.details``).

Kept by event type, not by routing object, because a call a killed node left open is
reported later from its stored snapshot (``calls.recovery``), when only the event type
and the summary are left.
"""

from __future__ import annotations

from callmask.calls.outcome import CallSummary
from callmask.routing import infobip, tata


def payload_for(event_type: str, summary: CallSummary) -> dict[str, object]:
    if event_type == infobip.STATUS_REPORT:
        return infobip.status_report_of(summary)
    return tata.call_details_of(summary)
