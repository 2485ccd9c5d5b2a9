"""dbt tasks: run each `dbt ...` command with dbt's programmatic API inside the task
process, so dbt-spark `method: session` uses the cluster's attached SparkSession."""

from __future__ import annotations

import os
import shlex
import shutil
from pathlib import Path

from ..runtime_types import DbtInvocation, TaskOutcome

ARTIFACTS = ("run_results.json", "manifest.json")


class DbtCommandError(ValueError):
    pass


def dbt_args(command: str) -> list[str]:
    args = shlex.split(command)
    if not args or args[0] != "dbt":
        raise DbtCommandError(f"dbt task command {command!r} must start with 'dbt'")
    if len(args) < 2:
        raise DbtCommandError(f"dbt task command {command!r} names no dbt subcommand")
    return args[1:]


def _copy_project(source: Path, dest: Path) -> Path:
    # Work on a copy so target/, logs/ and dbt_packages/ land in this run's output dir,
    # never in the synced workspace project.
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(source, dest, ignore=shutil.ignore_patterns("target", "logs", ".git", "__pycache__"))
    return dest


def run_dbt(dbt: DbtInvocation, output_dir: Path) -> TaskOutcome:
    from dbt.cli.main import dbtRunner

    try:
        commands = [dbt_args(c) for c in dbt.commands]
    except DbtCommandError as exc:
        return TaskOutcome("FAILED", state_message=str(exc), error=f"DbtCommandError: {exc}")
    if not dbt.project_dir.is_dir():
        msg = f"dbt project dir {dbt.project_dir} does not exist; sync the project before running the dbt task."
        return TaskOutcome("FAILED", state_message=msg, error=msg)
    project = _copy_project(dbt.project_dir, output_dir / "dbt_project")
    profiles_dir = dbt.profiles_dir or dbt.project_dir
    target_path = output_dir / "dbt_target"
    # Environment rather than flags: not every subcommand (e.g. deps) accepts every flag.
    os.environ.update(
        DBT_PROJECT_DIR=str(project),
        DBT_PROFILES_DIR=str(profiles_dir),
        DBT_TARGET_PATH=str(target_path),
        DBT_LOG_PATH=str(output_dir / "dbt_logs"),
    )
    runner = dbtRunner()
    failure: TaskOutcome | None = None
    for command, args in zip(dbt.commands, commands, strict=True):
        print(f"===== {command}", flush=True)
        result = runner.invoke(args)
        if not result.success:
            summary = _failure_summary(result)
            failure = TaskOutcome(
                "FAILED",
                state_message=f"`{command}` failed: {summary}",
                error=f"DbtCommandFailed: {summary}",
            )
            break
    outcome = failure or TaskOutcome("SUCCESS")
    artifacts = output_dir / "dbt_artifacts"
    artifacts.mkdir(exist_ok=True)
    for name in ARTIFACTS:
        if (target_path / name).is_file():
            shutil.copy2(target_path / name, artifacts / name)
    outcome.dbt_artifacts_dir = artifacts
    return outcome


def _failure_summary(result) -> str:  # type: ignore[no-untyped-def]
    if result.exception is not None:
        return str(result.exception).strip().splitlines()[0] if str(result.exception).strip() else type(result.exception).__name__
    failed = []
    for node_result in getattr(result.result, "results", None) or []:
        status = str(getattr(node_result, "status", ""))
        if status.lower() in ("error", "fail", "runtimeerror"):
            name = getattr(getattr(node_result, "node", None), "name", "?")
            message = (getattr(node_result, "message", "") or "").strip().splitlines()
            failed.append(f"{name} ({status.lower()}): {message[0] if message else ''}".rstrip(": "))
    return "; ".join(failed[:5]) + (f" (+{len(failed) - 5} more)" if len(failed) > 5 else "") if failed else "dbt reported failure"
