"""The step's side of Pipes for one Databricks run: one context and one channel per pipes-enabled
task. Created before the run starts, it writes each task's context, reads the channels of the
tasks that can be running while the step waits between polls of the run, and when a task ends
waits (bounded) for its channel to close and folds what the task reported into that task's report.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence

import dagster as dg
from databricks.sdk import WorkspaceClient

from dbx_assets.integration.jobs.model import DAGSTER_RUN_PARAMETER
from dbx_assets.integration.jobs.runner import TaskFinished, job_parameter
from dbx_assets.integration.pipes.context_data import task_context_data
from dbx_assets.integration.pipes.merge import merge_reported
from dbx_assets.integration.pipes.reader import StreamWriter, TaskChannelReader, write_to_step_streams
from dbx_assets.integration.sources.base import Selection, SourceTask, TaskReport
from dbx_assets.integration.sources.pipes_layout import channel_parameter_of, task_channel
from dbx_assets.integration.workspace_files import WorkspaceFiles

_NEVER_RAN = ("UPSTREAM_FAILED", "UPSTREAM_CANCELED", "EXCLUDED", "SKIPPED")


class PipesChannels:
    """Pipes for the pipes-enabled tasks among `tasks` (all of the step's selected tasks).

    poll_seconds:   while the step waits longer than this between polls of the run, the channels
                    are read again every `poll_seconds` (the bound on a log line's delay, plus the
                    notebook writer's upload interval)
    close_seconds:  how long to wait, after a task ended, for its channel's "closed" message
    read_client:    what the channels are read through while the run goes (default `client`), e.g. the
                    step's watch client, whose short retry budget lets the step ride out an outage
    """

    def __init__(
        self,
        context: dg.AssetExecutionContext,
        client: WorkspaceClient,
        tasks: Sequence[SourceTask],
        selection: Selection,
        *,
        poll_seconds: float = 5.0,
        close_seconds: float = 10.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        write_stream: StreamWriter = write_to_step_streams,
        read_client: WorkspaceClient | None = None,
    ):
        self._context = context
        self._client = client
        self._storage = WorkspaceFiles(client)
        self._read_storage = WorkspaceFiles(read_client or client)
        self._selection = selection
        self._tasks = {t.task_key: t for t in tasks}
        self._parameters = {t.task_key: p for t in tasks if (p := channel_parameter_of(t.settings)) is not None}
        self._poll_seconds = poll_seconds
        self._close_seconds = close_seconds
        self._sleep = sleep
        self._clock = clock
        self._write_stream = write_stream
        self._readers: dict[str, TaskChannelReader] = {}
        self._depends_on: dict[str, set[str]] = {}
        self._ended: set[str] = set()

    @property
    def enabled(self) -> bool:
        return bool(self._parameters)

    # -- before the run -----------------------------------------------------------------------------
    def prepare(
        self, task_keys: Sequence[str], *, dagster_run_id: str | None = None, run_id: int | None = None
    ) -> None:
        """Write the context of each pipes-enabled task among `task_keys` and create its messages
        folder, before the run (or repair) starts them. The channel is keyed by the Databricks run's
        `dagster_run_id` job parameter: this step's run id for a new run, the original one when
        repairing `run_id` (a repair keeps its run's job parameters)."""
        keys = [k for k in task_keys if k in self._parameters]
        if not keys:
            return
        if dagster_run_id is None:
            if run_id is None:
                raise ValueError("prepare() needs the Dagster run id or the Databricks run being repaired")
            dagster_run_id = job_parameter(self._client.jobs.get_run(run_id), DAGSTER_RUN_PARAMETER) or ""
        producers = {
            asset: t.task_key for t in self._tasks.values() if t.task_key in task_keys for asset in t.asset_keys
        }
        self._readers, self._ended = {}, set()
        for key in keys:
            task = self._tasks[key]
            channel = task_channel(key, self._parameters[key], dagster_run_id)
            reader = TaskChannelReader(self._context, self._read_storage, channel, write_stream=self._write_stream)
            self._storage.make_dir(channel.messages_dir)
            data = task_context_data(self._context, task.asset_keys, {"databricks_task_key": key})
            self._storage.write(channel.context_path, json.dumps(data).encode())
            self._readers[key] = reader
            self._depends_on[key] = {producers[a] for a in task.upstream_keys if a in producers} - {key}
        self._context.log.info(
            f"Dagster Pipes channels for {', '.join(keys)} under {self._readers[keys[0]].channel.folder.rsplit('/', 1)[0]}"
        )

    # -- while the run goes -----------------------------------------------------------------------------
    def wait(self, seconds: float) -> None:
        """Sleep `seconds` between polls of the run, reading the channels of the tasks that may be
        running: once now, then every `poll_seconds` of a longer wait."""
        deadline = self._clock() + seconds
        while True:
            self._poll_running()
            left = deadline - self._clock()
            if left <= 0:
                return
            self._sleep(min(left, self._poll_seconds) if self._readers else left)

    def _poll_running(self) -> None:
        """A task can only be running once every task it depends on has ended: the others cost nothing."""
        for key, reader in self._readers.items():
            if key not in self._ended and self._depends_on[key] <= self._ended:
                reader.poll()

    # -- when a task ends -----------------------------------------------------------------------------------
    def complete(self, finished: TaskFinished, report: TaskReport) -> TaskReport:
        """`report` (the task's events from its source) with what the task reported through Pipes:
        its materialization metadata and data version merged into the one materialization of each
        of its assets, its asset check results added. A report about anything the task does not
        own fails the task's assets, naming both."""
        self._ended.add(finished.task_key)
        reader = self._readers.get(finished.task_key)
        if reader is None:
            return report
        self._drain(reader, ran=finished.result_state not in _NEVER_RAN)
        results = reader.handler.get_reported_results()
        return merge_reported(self._tasks[finished.task_key], results, report, self._selection)

    def _drain(self, reader: TaskChannelReader, *, ran: bool) -> None:
        reader.poll()
        if not ran:
            return
        # The writer uploads its last chunk before the notebook ends; waiting covers storage that
        # shows a file late. A notebook that never opened Pipes gets one more look, not the full wait.
        deadline = self._clock() + (self._close_seconds if reader.opened else min(1.0, self._close_seconds))
        while not reader.closed and self._clock() < deadline:
            self._sleep(0.5)
            reader.poll()
        reader.flush_streams()
        key = reader.channel.task_key
        if not reader.opened:
            self._context.log.warning(
                f"Task {key} is declared with pipes=True but never opened Dagster Pipes (nothing in "
                f"{reader.channel.messages_dir}); only its exit value is reported. Open it with open_dagster_pipes(...)."
            )
        elif not reader.closed:
            self._context.log.warning(
                f"Task {key}'s Dagster Pipes channel did not close within {self._close_seconds:g}s of the task's end: "
                "messages it buffered may be lost. Use open_dagster_pipes(...) as a `with` block."
            )
