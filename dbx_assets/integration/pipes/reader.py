"""Reading one task's message channel: the chunk files dagster_pipes' blob-store message writer
uploads (`1.json`, `2.json`, ... one JSON message per line), polled by the step rather than by a
thread of its own, so the step decides how often the channel costs an API call.

Each task has its own folder, so one task closing its channel says nothing about another's
(the multi-task bug of dagster-io/dagster#33700 cannot happen). A retried task writes `1.json`
again: a chunk that changes after it was read means a new attempt, whose messages replace the
earlier attempt's reports.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import dagster as dg

from dbx_assets.integration.sources.pipes_layout import TaskChannel, mounted_path
from dbx_assets.integration.workspace_files import StoredFile, WorkspaceFiles

_CHUNK = re.compile(r"^(\d+)\.json$")

# Where a task's stdout/stderr lines go on the step's side (its compute logs capture both streams).
StreamWriter = Callable[[str, str], None]


def write_to_step_streams(stream: str, text: str) -> None:
    (sys.stderr if stream == "stderr" else sys.stdout).write(text)


class TaskChannelReader(dg.PipesMessageReader):
    """One task's channel: lists its folder once per `poll()`, reads the chunks not read yet, and
    hands each message to a Dagster `PipesMessageHandler` (results, logs, opened/closed). The
    task's stdout and stderr lines go to the step's streams, each line prefixed with the task key."""

    def __init__(
        self,
        context: dg.AssetExecutionContext,
        storage: WorkspaceFiles,
        channel: TaskChannel,
        *,
        write_stream: StreamWriter = write_to_step_streams,
    ):
        self._context = context
        self._storage = storage
        self.channel = channel
        self._write_stream = write_stream
        self.attempts = 0
        self._start_attempt()

    # -- dg.PipesMessageReader ------------------------------------------------------------------
    @contextmanager
    def read_messages(self, handler: dg.PipesMessageHandler) -> Iterator[dict[str, Any]]:
        yield self.writer_params()

    def no_messages_debug_text(self) -> str:
        return f"Task {self.channel.task_key} wrote no messages to {self.channel.messages_dir}."

    def writer_params(self) -> dict[str, Any]:
        """What the notebook's message writer is opened with (documented in the README)."""
        return {"path": mounted_path(self.channel.messages_dir), "include_stdio_in_messages": True}

    # -- state ------------------------------------------------------------------------------------
    @property
    def handler(self) -> dg.PipesMessageHandler:
        return self._handler

    @property
    def opened(self) -> bool:
        return self._handler.received_opened_message

    @property
    def closed(self) -> bool:
        return self._handler.received_closed_message

    def _start_attempt(self) -> None:
        self._handler = dg.PipesMessageHandler(self._context, self)
        self._read: dict[str, tuple[int, int]] = {}  # chunk name -> (size, modified) when read
        self._partial: dict[str, str] = {"stdout": "", "stderr": ""}

    # -- polling ----------------------------------------------------------------------------------
    def poll(self) -> int:
        """One listing, then the new chunks in order. Returns the number of messages handled."""
        listed = {f.name: f for f in self._storage.list(self.channel.messages_dir) if _CHUNK.match(f.name)}
        if any(name in listed and _stamp(listed[name]) != stamp for name, stamp in self._read.items()):
            self.flush_streams()
            self._start_attempt()  # the task was retried: its new attempt rewrote a chunk
        handled = 0
        for name in sorted(set(listed) - set(self._read), key=lambda n: int(n.split(".")[0])):
            messages = _parse(self._storage.read(f"{self.channel.messages_dir}/{name}"))
            if messages is None:
                break  # still being written: read it (and what follows) next time
            self._read[name] = _stamp(listed[name])
            for message in messages:
                self._handle(message)
                handled += 1
        return handled

    def _handle(self, message: dict[str, Any]) -> None:
        method, params = message.get("method"), message.get("params") or {}
        if method == "opened":
            self.attempts += 1
        if method == "log_external_stream":
            self._forward(str(params.get("stream")), str(params.get("text", "")))
            return
        if method == "log" and "message" in params:
            message = {**message, "params": {**params, "message": f"[{self.channel.task_key}] {params['message']}"}}
        if method == "closed":
            self.flush_streams()
        self._handler.handle_message(message)  # type: ignore[arg-type]  # a PipesMessage read from JSON

    def _forward(self, stream: str, text: str) -> None:
        """Whole lines, labelled; a line split across chunks waits for its end."""
        stream = "stderr" if stream == "stderr" else "stdout"
        lines = (self._partial[stream] + text).split("\n")
        self._partial[stream] = lines.pop()
        if lines:
            self._write_stream(stream, "".join(f"[{self.channel.task_key}] {line}\n" for line in lines))

    def flush_streams(self) -> None:
        for stream, rest in self._partial.items():
            if rest:
                self._write_stream(stream, f"[{self.channel.task_key}] {rest}\n")
                self._partial[stream] = ""


def _stamp(f: StoredFile) -> tuple[int, int]:
    return (f.size, f.modified)


def _parse(raw: bytes) -> list[dict[str, Any]] | None:
    """A chunk's messages, or None when it is not complete JSON lines yet."""
    try:
        return [json.loads(line) for line in raw.decode("utf-8").splitlines() if line.strip()]
    except (UnicodeDecodeError, ValueError):
        return None
