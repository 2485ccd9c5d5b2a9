"""Jobs with a `git_source`: tasks whose source is GIT run the files of one commit of a remote
repository, as Databricks runs them. The commit is resolved once per run (from git_commit,
git_tag or git_branch) and recorded as the run's `git_source.git_snapshot.used_commit`; every
task of the run (and a repair of it) reads the same checkout.

Locally the repository must be reachable from this machine with the `git` CLI: a `file://`
URL or a local path (tests), or any URL git can clone without prompting for credentials.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from pathlib import Path

GIT_TIMEOUT_SECONDS = 300
_REFS = ("git_commit", "git_tag", "git_branch")


class GitCheckoutError(RuntimeError):
    pass


def task_uses_git(task_block: dict, git_source: dict | None) -> bool:
    """A task's `source`: GIT, WORKSPACE, or unset (GIT when the job has a git_source)."""
    source = (task_block.get("source") or "").upper()
    if source == "GIT":
        if not git_source:
            raise GitCheckoutError("The task's source is GIT but the job has no git_source.")
        return True
    return source == "" and bool(git_source)


def validate_git_source(git_source: dict) -> str | None:
    """Why a git_source cannot be used (None: it can)."""
    if not git_source.get("git_url"):
        return "git_source.git_url is required"
    if not git_source.get("git_provider"):
        return "git_source.git_provider is required"
    given = [r for r in _REFS if git_source.get(r)]
    if len(given) != 1:
        return "git_source needs exactly one of git_branch, git_tag or git_commit"
    return None


def _git(args: list[str], cwd: Path | None = None) -> str:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}  # never wait for credentials
    try:
        proc = subprocess.run(
            ["git", *args],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_SECONDS,
            stdin=subprocess.DEVNULL,
        )
    except FileNotFoundError:
        raise GitCheckoutError("The git CLI is not installed on this machine.") from None
    except subprocess.TimeoutExpired:
        raise GitCheckoutError(f"git {args[0]} timed out after {GIT_TIMEOUT_SECONDS} s") from None
    if proc.returncode != 0:
        raise GitCheckoutError(
            (proc.stderr or proc.stdout).strip().splitlines()[-1]
            if (proc.stderr or proc.stdout).strip()
            else f"git {args[0]} failed with code {proc.returncode}"
        )
    return proc.stdout.strip()


class GitCheckouts:
    """One checkout per run under `root`/<run_id>, made on first use."""

    def __init__(self, root: Path):
        self.root = root
        self._lock = threading.Lock()

    def checkout(self, run_id: int, git_source: dict) -> tuple[Path, str]:
        """(the checkout dir, the commit it is at) for this run; raises GitCheckoutError."""
        problem = validate_git_source(git_source)
        if problem:
            raise GitCheckoutError(problem)
        pinned = (git_source.get("git_snapshot") or {}).get("used_commit")
        dest = self.root / str(run_id)
        with self._lock:
            if dest.is_dir() and (dest / ".git").exists():
                head = _git(["rev-parse", "HEAD"], dest)
                if not pinned or head == pinned:
                    return dest, head
            shutil.rmtree(dest, ignore_errors=True)
            dest.parent.mkdir(parents=True, exist_ok=True)
            url = git_source["git_url"]
            try:
                _git(["clone", "--quiet", "--no-checkout", url, str(dest)])
                ref = pinned or self._ref(git_source)
                _git(["-c", "advice.detachedHead=false", "checkout", "--quiet", "--detach", ref], dest)
            except GitCheckoutError as exc:
                shutil.rmtree(dest, ignore_errors=True)
                raise GitCheckoutError(
                    f"Failed to checkout Git repository {url} at {self._describe(git_source)}: {exc}"
                ) from None
            return dest, _git(["rev-parse", "HEAD"], dest)

    @staticmethod
    def _ref(git_source: dict) -> str:
        if git_source.get("git_commit"):
            return str(git_source["git_commit"])
        if git_source.get("git_tag"):
            return f"refs/tags/{git_source['git_tag']}"
        return f"refs/remotes/origin/{git_source['git_branch']}"

    @staticmethod
    def _describe(git_source: dict) -> str:
        for r in _REFS:
            if git_source.get(r):
                return f"{r.removeprefix('git_')} {git_source[r]}"
        return "no reference"


def repo_file(
    checkout: Path, relative: str, suffixes: tuple[str, ...] = ("", ".py", ".sql", ".ipynb", ".scala", ".r")
) -> Path | None:
    """A repo-relative path inside `checkout` (notebooks omit their extension); None if absent or outside."""
    if relative.startswith("/"):
        return None
    for suffix in suffixes:
        candidate = checkout / f"{relative}{suffix}"
        if candidate.resolve().is_relative_to(checkout.resolve()) and candidate.is_file():
            return candidate
    return None
