"""Jobs 2.1/2.2 handlers: job definitions, runs, outputs, cancel and repair.

Job settings are checked by job_settings.py; a new run is a document from engine/run_documents.py,
which the engine's scheduler executes.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import io
import tarfile
import threading
from pathlib import Path

from databricks.sdk.service import jobs as sdk_jobs

from ..engine.clock import Clock, real_now_ms
from ..engine.clusters import LOCAL_USER
from ..engine.errors import invalid, require
from ..engine.run_documents import RunDocuments
from ..engine.run_state import (
    ACTIVE_RUN_STATES,
    FAILED_RESULTS,
    public_run,
    public_task_run,
    repair_item,
    set_state,
)
from ..engine.scheduler import Scheduler
from ..engine.state import StateStore
from ..http.http_types import Request, Response, Router, q_bool, q_int
from ..http.request_shapes import check_body, normalize
from .job_settings import validate_settings

# runs/submit in the single-task shape (Jobs 2.0 style, what Airflow's DatabricksSubmitRunOperator sends):
# these fields sit at the top level of the body instead of in `tasks`.
SINGLE_TASK_FIELDS = (
    "notebook_task",
    "spark_python_task",
    "spark_jar_task",
    "spark_submit_task",
    "python_wheel_task",
    "dbt_task",
    "sql_task",
    "pipeline_task",
    "run_job_task",
    "new_cluster",
    "existing_cluster_id",
    "libraries",
)
_API = sdk_jobs.JobsAPI


def does_not_exist(what: str, ident) -> Exception:
    # Databricks answers 400 INVALID_PARAMETER_VALUE here, not 404; the SDK maps it to
    # ResourceDoesNotExist for jobs/get and runs/get (databricks/sdk/errors/overrides.py).
    return invalid(f"{what} {ident} does not exist.")


class Jobs:
    def __init__(self, store: StateStore, scheduler: Scheduler, host, token: str):
        self.store = store
        self.s = scheduler
        self.host = host
        self.runs = RunDocuments(store, host, scheduler.active_count)
        self._secret = hashlib.sha256(b"artifacts:" + token.encode()).digest()
        self._create_lock = threading.Lock()
        self.clock = Clock()  # the dispatcher's, from register()

    def register(self, d: Router) -> None:
        self.clock = d.clock
        for version in ("2.1", "2.2"):
            b = f"/api/{version}/jobs"
            for method, name, fn in [
                ("POST", "create", self.create),
                ("POST", "reset", self.reset),
                ("POST", "update", self.update),
                ("GET", "get", self.get),
                ("GET", "list", self.list),
                ("POST", "delete", self.delete),
                ("POST", "run-now", self.run_now),
                ("POST", "runs/submit", self.submit),
                ("GET", "runs/get", self.get_run),
                ("GET", "runs/get-output", self.get_output),
                ("POST", "runs/cancel", self.cancel),
                ("POST", "runs/cancel-all", self.cancel_all),
                ("POST", "runs/repair", self.repair),
                ("GET", "runs/list", self.list_runs),
                ("POST", "runs/delete", self.delete_run),
            ]:
                d.route(method, f"{b}/{name}", fn)
        d.public_route("GET", r"/local/dbt-artifacts/(?P<task_run_id>\d+)\.tar\.gz", self.artifacts)

    # -- job definitions ---------------------------------------------------------------------
    def _job(self, job_id) -> dict:
        job = self.store.get("job", int(job_id)) if str(job_id).strip().isdigit() else None
        if job is None:
            raise does_not_exist("Job", job_id)
        return job

    def _public_job(self, job: dict) -> dict:
        return self.clock.shift(sdk_jobs.Job.from_dict(job).as_dict())

    def create(self, req: Request) -> dict:
        body = check_body(req.json(), _API.create)
        settings = validate_settings(
            normalize({k: v for k, v in body.items() if k != "access_control_list"}, sdk_jobs.JobSettings)
        )
        job_id = self.store.next_id("job", 1000)
        self.store.put(
            "job",
            job_id,
            {
                "job_id": job_id,
                "creator_user_name": LOCAL_USER,
                "run_as_user_name": LOCAL_USER,
                "created_time": real_now_ms(),
                "settings": settings,
            },
        )
        return {"job_id": job_id}

    def reset(self, req: Request) -> dict:
        body = check_body(req.json(), _API.reset)
        job = self._job(require(body, "job_id"))
        job["settings"] = validate_settings(normalize(require(body, "new_settings"), sdk_jobs.JobSettings))
        self.store.put("job", job["job_id"], job)
        return {}

    def update(self, req: Request) -> dict:
        body = check_body(req.json(), _API.update)
        job = self._job(require(body, "job_id"))
        settings = copy.deepcopy(job["settings"])
        new_settings = normalize(body.get("new_settings") or {}, sdk_jobs.JobSettings)
        for k in ("tasks", "job_clusters"):
            key = "task_key" if k == "tasks" else "job_cluster_key"
            if any(not x.get(key) for x in new_settings.get(k, [])):
                raise invalid(f"Every entry of new_settings.{k} needs a {key}")
        for k, v in new_settings.items():
            if k in ("tasks", "job_clusters"):  # merged by key, as Databricks does
                key = "task_key" if k == "tasks" else "job_cluster_key"
                merged = {x[key]: x for x in settings.get(k, [])}
                merged.update({x[key]: x for x in v})
                settings[k] = list(merged.values())
            else:
                settings[k] = v
        for field in body.get("fields_to_remove") or []:
            if field.startswith("tasks/"):
                settings["tasks"] = [t for t in settings.get("tasks", []) if t["task_key"] != field.split("/", 1)[1]]
            elif field.startswith("job_clusters/"):
                settings["job_clusters"] = [
                    c for c in settings.get("job_clusters", []) if c["job_cluster_key"] != field.split("/", 1)[1]
                ]
            else:
                settings.pop(field, None)
        job["settings"] = validate_settings(settings)
        self.store.put("job", job["job_id"], job)
        return {}

    def get(self, req: Request) -> dict:
        return self._public_job(self._job(require(req.params(), "job_id")))

    def list(self, req: Request) -> dict:
        p = req.params()
        limit = q_int(p, "limit", 20) or 20
        if limit < 0 or limit > 100:
            raise invalid("limit must be between 0 and 100")
        offset = _offset(p)
        jobs = sorted((j for _, j in self.store.all("job")), key=lambda j: -j["job_id"])
        if p.get("name"):
            jobs = [j for j in jobs if j["settings"].get("name", "").lower() == p["name"].lower()]
        page = [self._public_job(j) for j in jobs[offset : offset + limit]]
        if not q_bool(p.get("expand_tasks", False)):
            page = [
                dict(j, settings={k: v for k, v in j["settings"].items() if k not in ("tasks", "job_clusters")})
                for j in page
            ]
        return _page_response("jobs", page, offset, limit, len(jobs))

    def delete(self, req: Request) -> dict:
        job = self._job(require(check_body(req.json(), _API.delete), "job_id"))
        self.store.delete("job", job["job_id"])
        return {}

    # -- creating runs -----------------------------------------------------------------------------
    def _idempotent(self, scope: str, token: str | None):
        if not token:
            return None
        run_id = self.store.get("idempotency", f"{scope}:{token}")
        return run_id

    def run_now(self, req: Request) -> dict:
        body = check_body(req.json(), _API.run_now)
        with self._create_lock:
            job = self._job(require(body, "job_id"))
            existing = self._idempotent(f"job{job['job_id']}", body.get("idempotency_token"))
            if existing is not None:
                return {"run_id": existing, "number_in_job": existing}
            settings = job["settings"]
            tasks = settings.get("tasks") or []
            only = body.get("only")
            if only:
                unknown = [k for k in only if k not in {t["task_key"] for t in tasks}]
                if unknown:
                    raise invalid(f"Task keys in 'only' are not tasks of job {job['job_id']}: {', '.join(unknown)}")
                tasks = [t for t in tasks if t["task_key"] in only]
            declared = {p["name"]: p.get("default", "") for p in settings.get("parameters") or []}
            overrides = body.get("job_parameters") or {}
            unknown = [k for k in overrides if k not in declared]
            if unknown and declared:
                raise invalid(f"Job parameters not defined on job {job['job_id']}: {', '.join(unknown)}")
            job_parameters = [
                {"name": k, "default": v, **({"value": str(overrides[k])} if k in overrides else {})}
                for k, v in declared.items()
            ]
            job_parameters += [{"name": k, "value": str(overrides[k])} for k in unknown]
            overriding = {
                k: body[k]
                for k in ("notebook_params", "python_params", "python_named_params", "job_parameters", "dbt_commands")
                if body.get(k) is not None
            }
            run = self.runs.new_run(
                job_id=job["job_id"],
                run_name=settings.get("name"),
                run_type="JOB_RUN",
                tasks=tasks,
                job_clusters=settings.get("job_clusters") or [],
                timeout=settings.get("timeout_seconds") or 0,
                params=overriding,
                job_parameters=job_parameters,
                overriding=overriding,
                max_concurrent=settings.get("max_concurrent_runs", 1),
                queue=bool((settings.get("queue") or {}).get("enabled")),
                git_source=settings.get("git_source"),
                environments=settings.get("environments") or [],
                performance_target=body.get("performance_target") or settings.get("performance_target"),
            )
            if body.get("idempotency_token"):
                self.store.put("idempotency", f"job{job['job_id']}:{body['idempotency_token']}", run["run_id"])
            self._launch(run)
        return {"run_id": run["run_id"], "number_in_job": run["number_in_job"]}

    def submit(self, req: Request) -> dict:
        body = check_body(req.json(), _API.submit)
        tasks = body.get("tasks") or []
        single = {k: body[k] for k in SINGLE_TASK_FIELDS if k in body}
        if single and tasks:
            raise invalid(f"Pass either tasks or a single task at the top level ({', '.join(single)}), not both.")
        if single:  # one task named after the run, as Databricks does for single-task submits
            tasks = [dict(single, task_key=body.get("run_name") or "Untitled")]
        with self._create_lock:
            existing = self._idempotent("submit", body.get("idempotency_token"))
            if existing is not None:
                return {"run_id": existing}
            if body.get("job_clusters"):
                raise invalid(
                    "runs/submit does not accept job_clusters; use new_cluster or existing_cluster_id on each task, or create a job."
                )
            settings = validate_settings(
                {
                    "tasks": tasks,
                    "name": body.get("run_name") or "Untitled",
                    **({"git_source": body["git_source"]} if body.get("git_source") else {}),
                    **({"environments": body["environments"]} if body.get("environments") else {}),
                },
                sdk_jobs.SubmitTask,
                name_field="run_name",
                task_keys=not single,
            )
            if not settings["tasks"]:
                raise invalid("runs/submit needs at least one task")
            run = self.runs.new_run(
                job_id=None,
                run_name=body.get("run_name") or "Untitled",
                run_type="SUBMIT_RUN",
                tasks=settings["tasks"],
                job_clusters=[],
                timeout=body.get("timeout_seconds") or 0,
                params={},
                job_parameters=[],
                overriding={},
                max_concurrent=0,
                queue=False,
                git_source=settings.get("git_source"),
                environments=settings.get("environments") or [],
            )
            if body.get("idempotency_token"):
                self.store.put("idempotency", f"submit:{body['idempotency_token']}", run["run_id"])
            self._launch(run)
        return {"run_id": run["run_id"]}

    def artifacts_link(self, task_run_id: int) -> str:
        """The signed dbt artifacts link of runs/get-output (also on the task run page)."""
        sig = hmac.new(self._secret, str(task_run_id).encode(), hashlib.sha256).hexdigest()
        return f"{self.host()}/local/dbt-artifacts/{task_run_id}.tar.gz?sig={sig}"

    def _launch(self, run: dict) -> None:
        if run.pop("_skipped", False):
            self.store.put("run", run["run_id"], run)
            return
        self.s.start(run, [t["task_key"] for t in run["tasks"]])

    # -- reading runs ----------------------------------------------------------------------------
    def _run(self, run_id) -> dict:
        run = self.store.get("run", int(run_id)) if str(run_id).strip().isdigit() else None
        if run is None:
            raise does_not_exist("Run", run_id)
        return run

    def public(self, run: dict, expand_tasks: bool = True, include_history: bool = True) -> dict:
        return public_run(run, self.clock, expand_tasks=expand_tasks, include_history=include_history)

    def get_run(self, req: Request) -> dict:
        p = req.params()
        run_id = q_int(p, "run_id")
        if run_id is None:
            raise invalid("Missing required field: run_id")
        record = self.store.get("task_run", run_id)
        if record is not None and self.store.get("run", run_id) is None:
            return self._task_metadata(run_id, record)
        return self.public(self._run(run_id), include_history=q_bool(p.get("include_history", True)))

    def _task_metadata(self, task_run_id: int, record: dict) -> dict:
        return public_task_run(self._task_view_of(task_run_id, record), self._run(record["parent_run_id"]), self.clock)

    def _task_view_of(self, task_run_id: int, record: dict) -> dict:
        run = self._run(record["parent_run_id"])
        task = next((t for t in run["tasks"] if t["run_id"] == task_run_id), None)
        if task is None:  # an earlier attempt replaced by a repair
            task = record.get("view") or {"task_key": record["task_key"], "run_id": task_run_id}
        return task

    def get_output(self, req: Request) -> dict:
        run_id = q_int(req.params(), "run_id")
        if run_id is None:
            raise invalid("Missing required field: run_id")
        record = self.store.get("task_run", run_id)
        if record is None:
            self._run(run_id)
            raise invalid(
                f"Retrieving the output of runs with multiple tasks is not supported (run {run_id}). "
                f"Call runs/get-output with a task run id (runs/get -> tasks[].run_id)."
            )
        task = self._task_view_of(run_id, record)
        out: dict = {"metadata": self._task_metadata(run_id, record)}
        outcome = record.get("outcome") or {}
        task_kind = "notebook_task" if task.get("notebook_task") else "dbt_task" if task.get("dbt_task") else None
        if task_kind == "notebook_task" and task.get("state", {}).get("result_state") == "SUCCESS":
            out["notebook_output"] = {
                "result": outcome.get("notebook_result"),
                "truncated": bool(outcome.get("notebook_result_truncated")),
            }
            if out["notebook_output"]["result"] is None:
                out["notebook_output"].pop("result")
        if outcome.get("error"):
            out["error"] = outcome["error"]
        if outcome.get("error_trace"):
            out["error_trace"] = outcome["error_trace"]
        if task_kind != "notebook_task" and outcome.get("logs") is not None:
            out["logs"] = outcome.get("logs", "")
            out["logs_truncated"] = bool(outcome.get("logs_truncated"))
        if task_kind == "dbt_task":
            dbt_out: dict = {}
            if outcome.get("dbt_artifacts_dir"):
                dbt_out = {"artifacts_link": self.artifacts_link(run_id), "artifacts_headers": {}}
            out["dbt_output"] = dbt_out
        return out

    def artifacts(self, req: Request) -> Response:
        """The dbt artifacts tarball behind dbt_output.artifacts_link (signed link, no bearer token)."""
        task_run_id = req.path_params["task_run_id"]
        sig = (req.query.get("sig") or [""])[-1]
        expected = hmac.new(self._secret, task_run_id.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(sig, expected):
            return Response.json(
                {"error_code": "PERMISSION_DENIED", "message": "Invalid or missing artifact link signature."}, 403
            )
        record = self.store.get("task_run", task_run_id) or {}
        folder = (record.get("outcome") or {}).get("dbt_artifacts_dir")
        if not folder or not Path(folder).is_dir():
            return Response.json(
                {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": f"No dbt artifacts for task run {task_run_id}"},
                404,
            )
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            tar.add(folder, arcname="target")
        return Response(200, buf.getvalue(), {"Content-Type": "application/gzip"})

    def list_runs(self, req: Request) -> dict:
        p = req.params()
        active_only, completed_only = q_bool(p.get("active_only", False)), q_bool(p.get("completed_only", False))
        if active_only and completed_only:
            raise invalid("active_only and completed_only cannot both be true")
        limit = q_int(p, "limit", 20) or 25
        if limit < 0 or limit > 25:
            raise invalid("limit must be between 1 and 25")
        offset = _offset(p)
        runs = [r for _, r in self.store.all("run")]
        if p.get("job_id"):
            runs = [r for r in runs if str(r.get("job_id")) == str(p["job_id"])]
        if p.get("run_type"):
            runs = [r for r in runs if r.get("run_type") == p["run_type"]]
        if active_only:
            runs = [r for r in runs if r["state"]["life_cycle_state"] in ACTIVE_RUN_STATES]
        if completed_only:
            runs = [r for r in runs if r["state"]["life_cycle_state"] not in ACTIVE_RUN_STATES]
        # The filters are in the workspace's (possibly skewed) clock, like the times it reports.
        start_from, start_to = q_int(p, "start_time_from"), q_int(p, "start_time_to")
        if start_from:
            since = self.clock.from_reported(start_from)
            runs = [r for r in runs if r.get("start_time", 0) >= since]
        if start_to:
            until = self.clock.from_reported(start_to)
            runs = [r for r in runs if r.get("start_time", 0) <= until]
        runs.sort(key=lambda r: -r["run_id"])
        page = [self.public(r, q_bool(p.get("expand_tasks", False))) for r in runs[offset : offset + limit]]
        return _page_response("runs", page, offset, limit, len(runs))

    # -- changing runs ----------------------------------------------------------------------------
    def cancel(self, req: Request) -> dict:
        run = self._run(require(check_body(req.json(), _API.cancel_run), "run_id"))
        self.s.cancel(run["run_id"])
        return {}

    def cancel_all(self, req: Request) -> dict:
        body = check_body(req.json(), _API.cancel_all_runs)
        if not body.get("job_id") and not q_bool(body.get("all_queued_runs", False)):
            raise invalid("Provide job_id, or all_queued_runs=true")
        for _, run in self.store.all("run"):
            if run["state"]["life_cycle_state"] not in ACTIVE_RUN_STATES:
                continue
            if body.get("job_id") and str(run.get("job_id")) != str(body["job_id"]):
                continue
            if not body.get("job_id") and run["state"]["life_cycle_state"] != "QUEUED":
                continue
            self.s.cancel(run["run_id"])
        return {}

    def delete_run(self, req: Request) -> dict:
        run = self._run(require(check_body(req.json(), _API.delete_run), "run_id"))
        if run["state"]["life_cycle_state"] in ACTIVE_RUN_STATES:
            raise invalid(f"Run {run['run_id']} is still active; cancel it before deleting.")
        self.store.delete("run", run["run_id"])
        return {}

    def repair(self, req: Request) -> dict:
        body = check_body(req.json(), _API.repair_run)
        with self._create_lock:
            run = self._run(require(body, "run_id"))
            if run["state"]["life_cycle_state"] in ACTIVE_RUN_STATES or self.s.executor(run["run_id"]) is not None:
                raise invalid(f"Run {run['run_id']} is still active; only a terminated run can be repaired.")
            repairs = [h for h in run.get("repair_history", []) if h["type"] == "REPAIR"]
            latest = repairs[-1]["id"] if repairs else None
            given = body.get("latest_repair_id")
            if latest is not None and (given is None or int(given) != latest):
                raise invalid(f"The latest_repair_id {given} does not match the run's latest repair id {latest}.")
            if latest is None and given is not None:
                raise invalid(
                    f"Run {run['run_id']} has not been repaired yet; latest_repair_id {given} does not match."
                )
            keys = [t["task_key"] for t in run["tasks"]]
            if q_bool(body.get("rerun_all_failed_tasks", False)):
                selected = [t["task_key"] for t in run["tasks"] if t["state"].get("result_state") in FAILED_RESULTS]
            else:
                selected = list(body.get("rerun_tasks") or [])
                unknown = [k for k in selected if k not in keys]
                if unknown:
                    raise invalid(f"Task keys not found in run {run['run_id']}: {', '.join(unknown)}")
            if not selected:
                raise invalid(
                    "Nothing to repair: pass rerun_tasks or rerun_all_failed_tasks (and the run must have failed tasks)."
                )
            if q_bool(body.get("rerun_dependent_tasks", False)):
                changed = True
                while changed:
                    changed = False
                    for t in run["tasks"]:
                        if t["task_key"] not in selected and any(
                            d["task_key"] in selected for d in t.get("depends_on", [])
                        ):
                            selected.append(t["task_key"])
                            changed = True
            overriding = {
                k: body[k]
                for k in ("notebook_params", "python_params", "python_named_params", "job_parameters", "dbt_commands")
                if body.get(k) is not None
            }
            if overriding:
                run["_spec"]["params"] = dict(run["_spec"].get("params") or {}, **overriding)
                if body.get("job_parameters"):
                    for jp in run.get("job_parameters", []):
                        if jp["name"] in body["job_parameters"]:
                            jp["value"] = str(body["job_parameters"][jp["name"]])
            repair_id = self.store.next_id("repair", 500000)
            new_ids = []
            tasks_after: list[dict] = []
            for t in run["tasks"]:
                if t["task_key"] in selected:
                    record = self.store.get("task_run", t["run_id"]) or {}
                    record["view"] = t
                    self.store.put("task_run", t["run_id"], record)
                    if any(x["task_key"] == t["task_key"] for x in tasks_after):
                        continue  # a retried task's earlier attempts give way to the repair's one attempt
                    spec = next(s for s in run["_spec"]["tasks"] if s["task_key"] == t["task_key"])
                    view = self.runs.task_view(run, spec)
                    view["attempt_number"] = 0
                    tasks_after.append(view)
                    new_ids.append(view["run_id"])
                else:
                    tasks_after.append(t)
            run["tasks"] = tasks_after
            run["repair_history"].append(repair_item("REPAIR", real_now_ms(), new_ids, repair_id))
            set_state(run, "PENDING")
            run.pop("end_time", None)
            self.s.start(run, [k for k in keys if k in selected], repair_id=repair_id)
        return {"repair_id": repair_id}


def _offset(params: dict) -> int:
    """Our page tokens are offsets; anything else is a bad token, not a crash."""
    token = params.get("page_token")
    if token not in (None, ""):
        if not str(token).isdigit():
            raise invalid(f"Invalid page_token {token!r}")
        return int(str(token))
    return max(0, q_int(params, "offset", 0) or 0)


def _page_response(list_key: str, page: list, offset: int, limit: int, total: int) -> dict:
    """Databricks list paging: the list is omitted when empty; tokens are offsets."""
    out: dict = {"has_more": offset + limit < total}
    if page:
        out[list_key] = page
    if offset + limit < total:
        out["next_page_token"] = str(offset + limit)
    if offset > 0:
        out["prev_page_token"] = str(max(0, offset - limit))
    return out
