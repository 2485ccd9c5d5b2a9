"""A cluster's event history (created, running, restarting, terminating, terminated with the
reason), kept in the stored cluster document under the private `_events` key, in the shape of
the Clusters API's ClusterEvent. The cluster page shows it; clusters/get never does
(ClusterDetails drops unknown keys)."""

from __future__ import annotations

import time

MAX_EVENTS = 200
_TYPES = {
    "PENDING": "STARTING",
    "RUNNING": "RUNNING",
    "RESTARTING": "RESTARTING",
    "TERMINATING": "TERMINATING",
    "TERMINATED": "TERMINATED",
}


def record_transition(doc: dict, previous: dict | None) -> None:
    """Append an event to `doc` when its state differs from the stored `previous` one."""
    events = list((previous or {}).get("_events") or doc.get("_events") or [])
    state, before = doc.get("state"), (previous or {}).get("state")
    if previous is None:
        events.append(
            _event(doc, "CREATING", {"user": doc.get("creator_user_name"), "cluster_source": doc.get("cluster_source")})
        )
    if previous is None or state == before or state not in _TYPES:
        doc["_events"] = events[-MAX_EVENTS:]
        return
    details: dict = {}
    if doc.get("state_message"):
        details["message"] = doc["state_message"]
    if state == "TERMINATED" and doc.get("termination_reason"):
        details["reason"] = doc["termination_reason"]
    if state == "RUNNING" and doc.get("start_time"):
        details["seconds_to_start"] = round((time.time() * 1000 - doc["start_time"]) / 1000, 1)
    events.append(_event(doc, _TYPES[state], details))
    doc["_events"] = events[-MAX_EVENTS:]


def _event(doc: dict, kind: str, details: dict) -> dict:
    return {
        "cluster_id": doc.get("cluster_id"),
        "timestamp": int(time.time() * 1000),
        "type": kind,
        "details": {k: v for k, v in details.items() if v is not None},
    }
