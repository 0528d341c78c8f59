"""Passive observation: errors on live traffic count against a server.

HAProxy's ``observe`` and ``error_limit`` (its "health analyze"): the checks
look at a server every few seconds, but live traffic sees every failure. With
``observe = "layer4"`` failed connections count; with ``"layer7"`` invalid
responses and 5xx statuses count too (501 and 505 excepted, as in HAProxy:
they say the request was at fault, not the server). ``error_limit`` errors
with no passed check in between take the server down at once (HAProxy's
``on-error mark-down``); the checks then bring it back after ``rise``
successes.

This module only says whether an observation is an error and names it in
HAProxy's words; ``ServerState`` counts.
"""

from __future__ import annotations

from appliance.checks.state import HEALTH_ANALYZE, CheckResult

_CLIENT_FAULTS = (501, 505)  # "not implemented", "version not supported": the request's fault


def status_error(observe: str, status: int) -> CheckResult | None:
    """The error a response ``status`` counts as under ``observe``, or None."""
    if observe != "layer7" or status < 500 or status in _CLIENT_FAULTS:
        return None
    return CheckResult(False, HEALTH_ANALYZE, info="Wrong http response")


def failure_error(observe: str, reason: str) -> CheckResult | None:
    """The error a failure on live traffic (a check reason such as "Layer4 timeout") counts as."""
    if observe == "none":
        return None
    if reason.startswith("Layer4"):
        return CheckResult(False, HEALTH_ANALYZE, info="L4 unsuccessful connection")
    if observe == "layer7":
        return CheckResult(False, HEALTH_ANALYZE, info="Invalid http response")
    return None
