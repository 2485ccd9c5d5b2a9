"""Reading Databricks notebook files (no Databricks calls): SOURCE files (`.py`, `.sql`, `.scala`,
`.r`, each with its language's header) and Jupyter `.ipynb` files, Databricks' default format."""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
from dataclasses import dataclass
from pathlib import Path

NOTEBOOK_HEADER = "# Databricks notebook source"
CELL_SEPARATOR = "# COMMAND ----------"
# SOURCE files by extension: their language and the comment their header and MAGIC lines start with.
SOURCE_EXTENSIONS = {".py": ("PYTHON", "#"), ".sql": ("SQL", "--"), ".scala": ("SCALA", "//"), ".r": ("R", "#")}
NOTEBOOK_EXTENSIONS = (".py", ".sql", ".ipynb", ".scala", ".r")
_NOTEBOOK_RUN = re.compile(r"dbutils\.notebook\.run\(\s*(?:path\s*=\s*)?[\"']([^\"']+)[\"']")
_LANGUAGES = ("PYTHON", "SQL", "SCALA", "R")


class NotebookFileError(ValueError):
    """A notebook file that cannot be used (missing, not a Databricks notebook)."""


@dataclass(frozen=True)
class NotebookFile:
    path: Path
    text: str
    language: str = "PYTHON"  # PYTHON, SQL, SCALA or R
    format: str = "SOURCE"  # SOURCE, or JUPYTER for an .ipynb (the Workspace import format)

    @property
    def code_version(self) -> str:
        """Changes exactly when the notebook's content changes, so the UI can flag stale assets."""
        return hashlib.sha256(self.text.encode()).hexdigest()[:16]

    def cells(self) -> list[str]:
        """Each cell's text with its magic (if any) as the first line, `# MAGIC ` prefixes removed."""
        if self.format == "JUPYTER":
            cells = []
            for cell in json.loads(self.text)["cells"]:
                source = "".join(cell.get("source", []))
                if cell.get("cell_type") == "markdown":
                    cells.append("%md\n" + source)
                elif cell.get("cell_type") == "code":
                    cells.append(source)
            return cells
        comment = _comment(self.path)
        body = self.text.split("\n", 1)[1] if "\n" in self.text else ""
        separator = re.escape(f"{comment} COMMAND ----------")
        chunks = [c.strip("\n") for c in re.split(rf"^{separator}\s*$", body, flags=re.M)]
        return [_unmagic(chunk, comment) for chunk in chunks]

    def first_markdown(self) -> str | None:
        """The text of the first %md cell, the asset's default description."""
        for cell in self.cells():
            first, _, rest = cell.strip().partition("\n")
            magic, _, inline = first.strip().partition(" ")
            if magic in ("%md", "%md-sandbox"):
                text = (inline + "\n" + rest).strip()
                return text or None
        return None

    def run_targets(self) -> list[str]:
        """The notebooks this one runs, with `%run <path>` or `dbutils.notebook.run("<path>", ...)` (a
        literal path), as written: relative or absolute."""
        targets = []
        for cell in self.cells():
            first = cell.strip().split("\n", 1)[0].strip()
            if first.startswith("%run ") and first.split()[1:]:
                targets.append(first.split()[1].strip("\"'"))
            targets += _NOTEBOOK_RUN.findall(cell)
        return targets


def _comment(path: Path) -> str:
    return SOURCE_EXTENSIONS.get(path.suffix.lower(), ("PYTHON", "#"))[1]


def _unmagic(chunk: str, comment: str) -> str:
    lines = [line for line in chunk.split("\n") if not line.startswith(f"{comment} DBTITLE")]
    magic = f"{comment} MAGIC"
    body = [line for line in lines if line.strip()]
    if body and all(line.startswith(magic) for line in body):
        lines = [line[len(magic) + 1 :] if line.startswith(magic + " ") else line[len(magic) :] for line in lines]
    return "\n".join(lines)


def notebook_file_for(notebooks_dir: Path, rel: str) -> str | None:
    """The file a %run path names, relative to `notebooks_dir`: as written, or with a notebook extension
    (the workspace drops it); None if there is none."""
    if posixpath.splitext(rel)[1].lower() in NOTEBOOK_EXTENSIONS and (notebooks_dir / rel).is_file():
        return rel
    return next((rel + ext for ext in NOTEBOOK_EXTENSIONS if (notebooks_dir / (rel + ext)).is_file()), None)


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
            file = notebook_file_for(notebooks_dir, rel)
            if file is None:
                raise NotebookFileError(
                    f"Notebook {notebooks_dir / current} runs %run {target}, but {notebooks_dir / rel}.py does not "
                    "exist (nor a .sql, .ipynb, .scala or .r notebook of that name)."
                )
            if file in found or file == notebook:
                continue
            found[file] = read_notebook(notebooks_dir / file)
            pending.append(file)
    return dict(sorted(found.items()))


def read_notebook(path: Path) -> NotebookFile:
    if not path.is_file():
        raise NotebookFileError(
            f"Notebook {path} does not exist. Create it in {path.parent}/ or fix the 'notebook' of its declaration."
        )
    suffix = path.suffix.lower()
    if suffix not in NOTEBOOK_EXTENSIONS:
        raise NotebookFileError(
            f"Notebook {path} is not a notebook file: use a SOURCE file (.py, .sql, .scala or .r, as Databricks "
            "exports 'Source file') or an .ipynb (as it exports 'IPython Notebook')."
        )
    text = path.read_text(encoding="utf-8")
    if suffix == ".ipynb":
        return NotebookFile(path=path, text=text, language=_ipynb_language(path, text), format="JUPYTER")
    language, comment = SOURCE_EXTENSIONS[suffix]
    header = f"{comment} Databricks notebook source"
    if not text.startswith(header):
        raise NotebookFileError(
            f"Notebook {path} is not in Databricks SOURCE format: its first line must be "
            f"'{header}' (cells separated by '{comment} COMMAND ----------'). Export it from Databricks "
            "as 'Source file' or add the header."
        )
    return NotebookFile(path=path, text=text, language=language)


def _ipynb_language(path: Path, text: str) -> str:
    """The language of an .ipynb, where Databricks puts it (else Jupyter's language_info / kernelspec);
    a file that is not a notebook is an error naming the file and the fix."""
    fix = "Export it from Databricks as 'IPython Notebook', or fix the file."
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise NotebookFileError(f"Notebook {path} is not a valid Jupyter notebook ({exc}). {fix}") from None
    cells = doc.get("cells") if isinstance(doc, dict) else None
    if not isinstance(cells, list) or not all(
        isinstance(c, dict) and c.get("cell_type") in ("code", "markdown", "raw") for c in cells
    ):
        raise NotebookFileError(
            f"Notebook {path} is not a valid Jupyter notebook: it needs a 'cells' list of code, markdown "
            f"and raw cells. {fix}"
        )
    if any(not isinstance(c.get("source", ""), (str, list)) for c in cells):
        raise NotebookFileError(f"Notebook {path} is not a valid Jupyter notebook: a cell's source is not text. {fix}")
    metadata = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}

    def field(key: str, name: str) -> object:
        value = metadata.get(key)
        return value.get(name) if isinstance(value, dict) else None

    candidates = [
        field("application/vnd.databricks.v1+notebook", "language"),
        field("language_info", "name"),
        field("kernelspec", "language"),
    ]
    value = next((v for v in candidates if v), "python")
    language = str(value).upper()
    if language not in _LANGUAGES:
        raise NotebookFileError(
            f"Notebook {path} says its language is {value!r}; Databricks notebooks are python, sql, scala or r "
            "(metadata['application/vnd.databricks.v1+notebook']['language'])."
        )
    return language
