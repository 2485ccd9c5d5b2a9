"""A cluster's event history, kept in the stored cluster document under the private `_events` key
(clusters/get never shows it: ClusterDetails drops unknown keys), recorded as the cluster's state
changes and served by clusters/events (api/clusters.py) and the cluster page.

Each event has the Clusters API's ClusterEvent shape (`cluster_id`, `timestamp` in real epoch
ms, `type`, `details`), with the event types and details Databricks documents (ClusterEventType,
EventDetails; the Clusters API 2.0 reference's example: TERMINATING with `details.reason`, RUNNING
with `current_num_workers`/`target_num_workers`, RESTARTING with `details.user`):
- CREATING when a cluster is created: `cluster_size`, `attributes`, and `user` for a cluster made
  through the Clusters API or `job_run_name` for a job cluster (made by the jobs service)
- STARTING when a terminated cluster is started, RESTARTING when a running one restarts: `user`
- RUNNING when its driver is up: `current_num_workers`, `target_num_workers`; for a cluster on an
  instance pool also `instance_id` (the pool's instance) and `driver_state_message` (an idle
  instance started ahead, or a driver started cold on the pool's capacity, and why)
- TERMINATING when it is stopped (or found dead): `reason` (the termination reason), and `user`
  when a user asked (USER_REQUEST). Databricks' ClusterEventType has no TERMINATED event: the
  cluster reaching TERMINATED adds none, and a cluster that dies without passing through
  TERMINATING (a failed start, a workspace restart) gets its TERMINATING event then.
- EDITED when clusters/edit changes its attributes or size: `previous_attributes`,
  `attributes`, `previous_cluster_size`, `cluster_size`, `user`
`details` also carries notes only the cluster page reads (`message`, `seconds_to_start`,
`cluster_source`), which the API drops through the SDK's EventDetails.
"""

from __future__ import annotations

import time

from databricks.sdk.service import compute

MAX_EVENTS = 500  # per cluster, the oldest dropped first (Databricks keeps 30 days of them)


def record_transition(doc: dict, previous: dict | None) -> None:
    """Append to `doc["_events"]` what changed since `previous` (the stored document; None: a new cluster)."""
    events = list((previous or {}).get("_events") or doc.get("_events") or [])
    state, before = doc.get("state"), (previous or {}).get("state")
    user = _user(doc)
    if previous is None:
        events.append(
            _event(
                doc,
                "CREATING",
                cluster_size=_size(doc),
                attributes=_attributes(doc),
                user=user,
                job_run_name=doc.get("cluster_name") if doc.get("cluster_source") == "JOB" else None,
                cluster_source=doc.get("cluster_source"),  # page note
            )
        )
    elif state == before:
        if _attributes(doc) != _attributes(previous) or _size(doc) != _size(previous):
            events.append(
                _event(
                    doc,
                    "EDITED",
                    previous_attributes=_attributes(previous),
                    attributes=_attributes(doc),
                    previous_cluster_size=_size(previous),
                    cluster_size=_size(doc),
                    user=user,
                )
            )
    elif state == "PENDING" and before == "TERMINATED":
        events.append(_event(doc, "STARTING", user=user))
    elif state == "RESTARTING":
        events.append(_event(doc, "RESTARTING", user=user, message=doc.get("state_message") or None))
    elif state == "RUNNING":
        workers = _workers(doc)
        seconds = round((time.time() * 1000 - doc["start_time"]) / 1000, 1) if doc.get("start_time") else None
        events.append(
            _event(
                doc,
                "RUNNING",
                current_num_workers=workers,
                target_num_workers=workers,
                instance_id=(doc.get("driver") or {}).get("instance_id"),  # the pool instance it runs on
                driver_state_message=doc.get("_driver_source"),  # how it got its driver (a pool's, ...)
                seconds_to_start=seconds,
            )
        )
    elif state == "TERMINATING" or (state == "TERMINATED" and before != "TERMINATING"):
        reason = doc.get("termination_reason")
        asked = (reason or {}).get("code") == "USER_REQUEST"
        events.append(
            _event(
                doc,
                "TERMINATING",
                reason=reason,
                user=user if asked else None,
                message=doc.get("state_message") or None,  # page note
            )
        )
    doc["_events"] = events[-MAX_EVENTS:]


def _user(doc: dict) -> str | None:
    """Who acts on a cluster: its creator for an all-purpose cluster; nobody (the control plane) for a job cluster."""
    return None if doc.get("cluster_source") == "JOB" else doc.get("creator_user_name")


def _workers(doc: dict) -> int:
    if doc.get("num_workers") is not None:
        return int(doc["num_workers"])
    return int((doc.get("autoscale") or {}).get("min_workers") or 0)


def _size(doc: dict) -> dict:
    return compute.ClusterSize.from_dict(doc).as_dict()


def _attributes(doc: dict) -> dict:
    return compute.ClusterAttributes.from_dict(doc).as_dict()


def _event(doc: dict, kind: str, **details) -> dict:
    return {
        "cluster_id": doc.get("cluster_id"),
        "timestamp": int(time.time() * 1000),
        "type": kind,
        "details": {k: v for k, v in details.items() if v is not None},
    }
