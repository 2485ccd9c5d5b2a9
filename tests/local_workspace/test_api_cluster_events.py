"""clusters/events for a cluster that has been started and terminated, as Databricks answers it (no
JVM: the fake runtime's clusters). databricks-sdk-py's own integration test (test_clusters.py,
test_cluster_events) lists a used cluster's STARTING and TERMINATING events through the SDK and
expects some; these check that and the rest of the API: order, time window, type filter, both
kinds of pagination, and each event's details."""

from __future__ import annotations

from datetime import timedelta

import pytest
from databricks.sdk.errors import InvalidParameterValue
from databricks.sdk.service import compute, jobs
from databricks.sdk.service.compute import EventType, GetEventsOrder
from sdk_helpers import upload_notebook, wait_for_run

from dbx_assets.local_workspace.engine.clusters import LOCAL_USER

EVENTS = "/api/2.1/clusters/events"
LIFECYCLE = ["CREATING", "RUNNING", "TERMINATING", "STARTING", "RUNNING", "TERMINATING"]  # oldest first


@pytest.fixture(scope="module")
def used_cluster(fake_client) -> str:
    """Created (so started), terminated, started again, terminated again."""
    w = fake_client
    wait = timedelta(minutes=2)
    cluster_id = (
        w.clusters.create(
            cluster_name="events", spark_version="15.4.x-scala2.12", num_workers=0, autotermination_minutes=30
        )
        .result(timeout=wait)
        .cluster_id
    )
    assert cluster_id is not None
    w.clusters.delete_and_wait(cluster_id, timeout=wait)
    w.clusters.start_and_wait(cluster_id, timeout=wait)
    w.clusters.delete_and_wait(cluster_id, timeout=wait)
    return cluster_id


def _types(events) -> list[str]:
    return [e["type"] if isinstance(e, dict) else e.type.value for e in events]


def test_the_sdk_lists_starting_and_terminating_events_of_a_used_cluster(fake_client, used_cluster):
    """What the SDK's integration test asks of a real workspace."""
    found = list(fake_client.clusters.events(used_cluster, event_types=[EventType.STARTING, EventType.TERMINATING]))
    assert found and _types(found) == ["TERMINATING", "STARTING", "TERMINATING"]  # newest first


def test_events_come_newest_first_unless_asked_otherwise(fake_client, used_cluster):
    newest_first = list(fake_client.clusters.events(used_cluster))
    assert _types(newest_first) == LIFECYCLE[::-1]
    stamps = [e.timestamp for e in newest_first]
    assert stamps == sorted(stamps, reverse=True) and all(isinstance(t, int) and t > 0 for t in stamps)
    assert {e.cluster_id for e in newest_first} == {used_cluster}
    oldest_first = list(fake_client.clusters.events(used_cluster, order=GetEventsOrder.ASC))
    assert _types(oldest_first) == LIFECYCLE


def test_each_event_carries_databricks_details(fake_client, used_cluster):
    raw = fake_client.api_client.do("POST", EVENTS, body={"cluster_id": used_cluster, "order": "ASC"})["events"]
    creating, running, terminating, starting, _, _ = raw
    assert creating["details"]["user"] == LOCAL_USER and creating["details"]["cluster_size"] == {"num_workers": 0}
    assert creating["details"]["attributes"]["spark_version"] == "15.4.x-scala2.12"
    assert running["details"] == {"current_num_workers": 0, "target_num_workers": 0}
    assert terminating["details"]["reason"]["code"] == "USER_REQUEST"
    assert terminating["details"]["reason"]["type"] == "SUCCESS"
    assert terminating["details"]["user"] == LOCAL_USER
    assert starting["details"] == {"user": LOCAL_USER}
    allowed = set(compute.EventDetails.__dataclass_fields__)  # nothing Databricks would not send
    assert all(set(e["details"]) <= allowed for e in raw)
    assert all(set(e) == {"cluster_id", "timestamp", "type", "details"} for e in raw)


def test_a_time_window_and_types_narrow_the_events(fake_client, used_cluster):
    w = fake_client
    everything = w.api_client.do("POST", EVENTS, body={"cluster_id": used_cluster, "order": "ASC"})
    stamps = [e["timestamp"] for e in everything["events"]]
    assert everything["total_count"] == 6 and "next_page" not in everything
    # From the first termination to the second start, both inclusive.
    window = {"cluster_id": used_cluster, "start_time": stamps[2], "end_time": stamps[3], "order": "ASC"}
    narrowed = w.api_client.do("POST", EVENTS, body=window)
    assert [e["timestamp"] for e in narrowed["events"]] == [t for t in stamps if stamps[2] <= t <= stamps[3]]
    assert set(_types(narrowed["events"])) <= {"TERMINATING", "STARTING", "RUNNING"}
    running = w.api_client.do("POST", EVENTS, body={"cluster_id": used_cluster, "event_types": ["RUNNING"]})
    assert _types(running["events"]) == ["RUNNING", "RUNNING"] and running["total_count"] == 2
    nothing = w.api_client.do("POST", EVENTS, body={"cluster_id": used_cluster, "event_types": ["NODES_LOST"]})
    assert nothing == {"total_count": 0}


def test_offset_pages_chain_through_next_page(fake_client, used_cluster):
    w = fake_client
    first = w.api_client.do("POST", EVENTS, body={"cluster_id": used_cluster, "limit": 4})
    assert _types(first["events"]) == LIFECYCLE[::-1][:4] and first["total_count"] == 6
    follow = first["next_page"]
    assert follow["offset"] == 4 and follow["limit"] == 4 and follow["cluster_id"] == used_cluster
    assert "end_time" in follow  # a descending listing is pinned to its window
    second = w.api_client.do("POST", EVENTS, body=follow)
    assert _types(second["events"]) == LIFECYCLE[::-1][4:] and "next_page" not in second
    # The SDK's iterator follows next_page by itself, one event per page here.
    assert _types(w.clusters.events(used_cluster, limit=1)) == LIFECYCLE[::-1]


def test_token_pages_go_both_ways(fake_client, used_cluster):
    w = fake_client
    first = w.api_client.do("POST", EVENTS, body={"cluster_id": used_cluster, "page_size": 4})
    assert len(first["events"]) == 4 and first["prev_page_token"] == "" and first["next_page_token"]
    assert first["total_count"] == 0 and "next_page" not in first  # total_count is 0 with tokens
    body = {"cluster_id": used_cluster, "page_token": first["next_page_token"], "page_size": 4}
    second = w.api_client.do("POST", EVENTS, body=body)
    assert _types(second["events"]) == LIFECYCLE[::-1][4:] and second["next_page_token"] == ""
    body = {"cluster_id": used_cluster, "page_token": second["prev_page_token"], "page_size": 4}
    back = w.api_client.do("POST", EVENTS, body=body)
    assert back["events"] == first["events"]


def test_malformed_event_requests_are_refused(fake_client, used_cluster):
    w = fake_client
    for body in (
        {"cluster_id": used_cluster, "offset": 2},  # descending from an offset needs end_time
        {"cluster_id": used_cluster, "limit": 501},
        {"cluster_id": used_cluster, "page_token": "not-a-token"},
        {"cluster_id": "0000-000000-nothere"},
    ):
        with pytest.raises(InvalidParameterValue):
            w.api_client.do("POST", EVENTS, body=body)
    with pytest.raises(InvalidParameterValue, match="NOT_A_TYPE"):
        w.api_client.do("POST", EVENTS, body={"cluster_id": used_cluster, "event_types": ["NOT_A_TYPE"]})


def test_a_job_cluster_records_its_run_and_why_it_ended(fake_client):
    w = fake_client
    path = upload_notebook(w, "/Shared/events/quick", "pass\n")
    run_id = w.jobs.submit(
        run_name="events-job",
        tasks=[
            jobs.SubmitTask(
                task_key="q",
                notebook_task=jobs.NotebookTask(notebook_path=path),
                new_cluster=compute.ClusterSpec(spark_version="15.4.x-scala2.12", num_workers=0),
            )
        ],
    ).run_id
    run = wait_for_run(w, run_id)
    assert run.tasks and run.tasks[0].cluster_instance and run.tasks[0].cluster_instance.cluster_id
    cluster_id = run.tasks[0].cluster_instance.cluster_id
    events = list(w.clusters.events(cluster_id, order=GetEventsOrder.ASC))
    assert _types(events) == ["CREATING", "RUNNING", "TERMINATING"]
    creating, _, terminating = events
    assert creating.details.job_run_name and creating.details.user is None  # made by the jobs service
    assert terminating.details.reason.code == compute.TerminationReasonCode.JOB_FINISHED
