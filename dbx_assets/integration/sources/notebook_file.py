"""Reading Databricks SOURCE-format notebook files (no Databricks calls)."""

from __future__ import annotations

import hashlib
import posixpath
import re
from dataclasses import dataclass
from pathlib import Path

NOTEBOOK_HEADER = "# Databricks notebook source"
CELL_SEPARATOR = "# COMMAND ----------"
_MAGIC_MD = re.compile(r"^# MAGIC %md(-sandbox)?\s*$")
_MAGIC_RUN = re.compile(r"^# MAGIC %run\s+(\S+)")
_NOTEBOOK_RUN = re.compile(r"dbutils\.notebook\.run\(\s*(?:path\s*=\s*)?[\"']([^\"']+)[\"']")


class NotebookFileError(ValueError):
    """A notebook file that cannot be used (missing, not SOURCE format)."""


@dataclass(frozen=True)
class NotebookFile:
    path: Path
    text: str

    @property
    def code_version(self) -> str:
        """Changes exactly when the notebook's content changes, so the UI can flag stale assets."""
        return hashlib.sha256(self.text.encode()).hexdigest()[:16]

    def cells(self) -> list[str]:
        body = self.text.split("\n", 1)[1] if "\n" in self.text else ""
        return [c.strip("\n") for c in re.split(rf"^{re.escape(CELL_SEPARATOR)}\s*$", body, flags=re.M)]

    def first_markdown(self) -> str | None:
        """The text of the first %md cell, the asset's default description."""
        for cell in self.cells():
            lines = cell.strip().splitlines()
            if lines and _MAGIC_MD.match(lines[0].strip()):
                text = "\n".join(re.sub(r"^# MAGIC ?", "", line) for line in lines[1:]).strip()
                return text or None
        return None

    def run_targets(self) -> list[str]:
        """The notebooks this one runs, with `%run <path>` or `dbutils.notebook.run("<path>", ...)` (a
        literal path), as written: relative or absolute."""
        targets = []
        for cell in self.cells():
            lines = [line.strip() for line in cell.strip().splitlines() if line.strip()]
            match = _MAGIC_RUN.match(lines[0]) if lines else None
            if match:
                targets.append(match.group(1).strip("\"'"))
            targets += _NOTEBOOK_RUN.findall(cell)
        return targets


def read_run_dependencies(notebooks_dir: Path, notebook: str) -> dict[str, NotebookFile]:
    """The notebook files `notebook` (a path relative to `notebooks_dir`) `%run`s, directly or through
    another helper, keyed by their path relative to `notebooks_dir`. Relative %run paths resolve
    next to the notebook, as in the workspace; absolute ones name notebooks deployed elsewhere."""
    found: dict[str, NotebookFile] = {}
    pending = [notebook]
    while pending:
        current = pending.pop()
        text = read_notebook(notebooks_dir / current)
        for target in text.run_targets():
            if target.startswith("/"):
                continue
            rel = posixpath.normpath(posixpath.join(posixpath.dirname(current), target))
            if rel.startswith("../") or rel == "..":
                raise NotebookFileError(
                    f"Notebook {notebooks_dir / current} runs %run {target}, which is outside {notebooks_dir}; "
                    "keep helper notebooks in the notebooks folder."
                )
            rel = rel if rel.endswith(".py") else f"{rel}.py"
            if rel in found or rel == notebook:
                continue
            if not (notebooks_dir / rel).is_file():
                raise NotebookFileError(
                    f"Notebook {notebooks_dir / current} runs %run {target}, but {notebooks_dir / rel} does not exist."
                )
            found[rel] = read_notebook(notebooks_dir / rel)
            pending.append(rel)
    return dict(sorted(found.items()))


def read_notebook(path: Path) -> NotebookFile:
    if not path.is_file():
        raise NotebookFileError(
            f"Notebook {path} does not exist. Create it in {path.parent}/ or fix the 'notebook' of its declaration."
        )
    text = path.read_text(encoding="utf-8")
    if not text.startswith(NOTEBOOK_HEADER):
        raise NotebookFileError(
            f"Notebook {path} is not in Databricks SOURCE format: its first line must be "
            f"'{NOTEBOOK_HEADER}' (cells separated by '{CELL_SEPARATOR}'). Export it from Databricks "
            "as 'Source file' or add the header."
        )
    return NotebookFile(path=path, text=text)
