"""Databricks notebook formats, as pure text: SOURCE in each language and IPYNB (Jupyter).

A notebook is its language plus a list of cells. A cell is its text with the magic, if any, as
its first line (`%sql\\nSELECT 1`, `%md\\n# Title`), the way an .ipynb code cell holds it and the
way a SOURCE cell reads once its `# MAGIC ` prefixes are stripped. Both the workspace API
(import/export conversions) and the task runtime (parsing cells) read notebooks through here.

SOURCE (what Databricks exports as "Source file"):

    -- Databricks notebook source          (# for PYTHON and R, -- for SQL, // for SCALA)
    SELECT 1

    -- COMMAND ----------

    -- MAGIC %python
    -- MAGIC print(_sqldf)

IPYNB: nbformat 4 JSON; the language is `metadata["application/vnd.databricks.v1+notebook"]
["language"]` (Databricks' own key), else `metadata.language_info.name`, else the kernelspec's;
markdown cells are `%md` cells; a cell's title is its `application/vnd.databricks.v1+cell` title.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

LANGUAGES = ("PYTHON", "SQL", "SCALA", "R")
RUNNABLE_LANGUAGES = ("PYTHON", "SQL")  # what a local cluster runs
COMMENT = {"PYTHON": "#", "SQL": "--", "SCALA": "//", "R": "#"}
FILE_EXTENSIONS = {"PYTHON": "py", "SQL": "sql", "SCALA": "scala", "R": "r"}  # export's file_type
NOTEBOOK_KEY = "application/vnd.databricks.v1+notebook"
CELL_KEY = "application/vnd.databricks.v1+cell"


class NotebookFormatError(ValueError):
    """Content that is not a notebook in the format it claims to be."""


@dataclass(frozen=True)
class NotebookCell:
    text: str  # the magic (if any) as the first line, then the body
    title: str | None = None


@dataclass(frozen=True)
class Notebook:
    language: str  # PYTHON, SQL, SCALA or R
    cells: tuple[NotebookCell, ...]


def header(language: str) -> str:
    return f"{COMMENT[language]} Databricks notebook source"


def separator(language: str) -> str:
    return f"{COMMENT[language]} COMMAND ----------"


def normalize_language(value: object) -> str | None:
    """'python' / 'PYTHON' / 'Python' -> 'PYTHON'; None for anything else."""
    if not isinstance(value, str):
        return None
    upper = value.strip().upper()
    return upper if upper in LANGUAGES else None


def is_ipynb(text: str) -> bool:
    return text.lstrip("\ufeff \t\r\n").startswith("{")


def source_language(text: str) -> str | None:
    """The language a SOURCE notebook's header names (`#` is PYTHON: R shares it), or None."""
    first = text.lstrip("\ufeff").split("\n", 1)[0].strip()
    for language in ("PYTHON", "SQL", "SCALA"):
        if first == header(language):
            return language
    return None


# ----------------------------------------------------------------------------------- SOURCE
def parse_source(text: str, language: str | None = None, path: str = "notebook") -> Notebook:
    """A SOURCE notebook; `language` says which when the header cannot (R vs Python)."""
    detected = source_language(text)
    if detected is None:
        expected = header(language or "PYTHON")
        raise NotebookFormatError(
            f"{path} is not a Databricks SOURCE-format notebook: its first line must be {expected!r}."
        )
    if language is None or COMMENT[language] != COMMENT[detected]:
        language = detected
    lines = text.lstrip("\ufeff").splitlines()
    sep = separator(language)
    chunks: list[list[str]] = [[]]
    for line in lines[1:]:
        if line.strip() == sep:
            chunks.append([])
        else:
            chunks[-1].append(line)
    return Notebook(language, tuple(_source_cell(chunk, COMMENT[language]) for chunk in chunks))


def _source_cell(lines: list[str], comment: str) -> NotebookCell:
    title = None
    kept = []
    for line in lines:
        if line.startswith(f"{comment} DBTITLE"):
            title = line.split(",", 1)[1].strip() if "," in line else None
        else:
            kept.append(line)
    magic = f"{comment} MAGIC"
    body = [line for line in kept if line.strip()]
    if body and all(line.startswith(magic) for line in body):
        kept = [line[len(magic) + 1 :] if line.startswith(magic + " ") else line[len(magic) :] for line in kept]
    while kept and not kept[0].strip():  # the blank lines around a separator are layout, not content
        kept.pop(0)
    while kept and not kept[-1].strip():
        kept.pop()
    return NotebookCell("\n".join(kept), title)


def to_source(notebook: Notebook) -> str:
    """The notebook as Databricks exports it in SOURCE format."""
    comment = COMMENT[notebook.language]
    blocks = []
    for cell in notebook.cells:
        text = cell.text.strip("\n")
        lines = text.split("\n") if text else []
        if _magic_line(text) is not None:
            lines = [f"{comment} MAGIC {line}" if line else f"{comment} MAGIC" for line in lines]
        if cell.title:
            lines.insert(0, f"{comment} DBTITLE 1,{cell.title}")
        blocks.append("\n".join(lines))
    return header(notebook.language) + "\n" + f"\n\n{separator(notebook.language)}\n\n".join(blocks) + "\n"


def _magic_line(text: str) -> str | None:
    first = next((line.strip() for line in text.split("\n") if line.strip()), "")
    return first if first.startswith("%") else None


# ----------------------------------------------------------------------------------- IPYNB
def parse_ipynb(text: str, path: str = "notebook") -> Notebook:
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise NotebookFormatError(f"{path} is not a valid Jupyter notebook: {exc}.") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("cells"), list):
        raise NotebookFormatError(f"{path} is not a valid Jupyter notebook: it has no 'cells' list.")
    if doc.get("nbformat") not in (None, 4):
        raise NotebookFormatError(
            f"{path} is a Jupyter notebook in nbformat {doc.get('nbformat')}; only nbformat 4 is supported."
        )
    metadata = doc.get("metadata")
    language = ipynb_language(metadata if isinstance(metadata, dict) else {})
    cells: list[NotebookCell] = []
    for i, cell in enumerate(doc["cells"], start=1):
        if not isinstance(cell, dict) or cell.get("cell_type") not in ("code", "markdown", "raw"):
            raise NotebookFormatError(
                f"{path} is not a valid Jupyter notebook: cell {i} has no cell_type of code, markdown or raw."
            )
        source = cell.get("source", "")
        if isinstance(source, list) and all(isinstance(s, str) for s in source):
            source = "".join(source)
        if not isinstance(source, str):
            raise NotebookFormatError(f"{path} is not a valid Jupyter notebook: cell {i}'s source is not text.")
        if cell["cell_type"] == "raw":
            continue
        meta = cell.get("metadata")
        dbx = meta.get(CELL_KEY) if isinstance(meta, dict) else None
        title = dbx.get("title") if isinstance(dbx, dict) else None
        if cell["cell_type"] == "markdown":
            source = "%md\n" + source
        cells.append(NotebookCell(source, title if isinstance(title, str) and title else None))
    return Notebook(language, tuple(cells))


def ipynb_language(metadata: dict) -> str:
    dbx = metadata.get(NOTEBOOK_KEY)
    candidates = [
        dbx.get("language") if isinstance(dbx, dict) else None,
        (metadata.get("language_info") or {}).get("name") if isinstance(metadata.get("language_info"), dict) else None,
        (metadata.get("kernelspec") or {}).get("language") if isinstance(metadata.get("kernelspec"), dict) else None,
    ]
    for value in candidates:
        if value is None:
            continue
        language = normalize_language(value)
        if language is None:
            raise NotebookFormatError(f"Notebook language {value!r} is not one of python, sql, scala or r.")
        return language
    return "PYTHON"


def to_ipynb(notebook: Notebook, name: str) -> str:
    """The notebook as Databricks exports it in JUPYTER format."""
    cells: list[dict[str, Any]] = []
    for cell in notebook.cells:
        text = cell.text.strip("\n")
        magic = _magic_line(text)
        markdown = magic == "%md"
        if markdown:
            text = text.split("\n", 1)[1] if "\n" in text else ""
        out: dict[str, Any] = {
            "cell_type": "markdown" if markdown else "code",
            "metadata": {
                CELL_KEY: {
                    "cellMetadata": {},
                    "inputWidgets": {},
                    "nuid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{name}/{len(cells)}/{text}")),
                    "showTitle": bool(cell.title),
                    "title": cell.title or "",
                }
            },
            "source": text.splitlines(keepends=True),
        }
        if not markdown:
            out.update(execution_count=0, outputs=[])
        cells.append(out)
    doc = {
        "cells": cells,
        "metadata": {
            NOTEBOOK_KEY: {
                "dashboards": [],
                "environmentMetadata": None,
                "language": notebook.language.lower(),
                "notebookMetadata": {"pythonIndentUnit": 4} if notebook.language == "PYTHON" else {},
                "notebookName": name,
                "widgets": {},
            },
            "language_info": {"name": notebook.language.lower()},
        },
        "nbformat": 4,
        "nbformat_minor": 0,
    }
    return json.dumps(doc, indent=1, ensure_ascii=False) + "\n"


# ----------------------------------------------------------------------------------- either
def read_notebook(text: str, language: str | None = None, path: str = "notebook") -> Notebook:
    """A notebook in either format: IPYNB when the text is JSON, else SOURCE."""
    if is_ipynb(text):
        return parse_ipynb(text, path)
    return parse_source(text, language, path)
