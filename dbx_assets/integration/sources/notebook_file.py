"""Reading Databricks SOURCE-format notebook files (no Databricks calls)."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

NOTEBOOK_HEADER = "# Databricks notebook source"
CELL_SEPARATOR = "# COMMAND ----------"
_MAGIC_MD = re.compile(r"^# MAGIC %md(-sandbox)?\s*$")


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
