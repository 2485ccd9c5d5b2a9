"""The run pages in a real browser, on real Spark (one JVM: an all-purpose cluster both runs use).

Run A (a job, run-now, started while the cluster is still starting so the timeline shows the
wait): `greet` prints a line and display()s a DataFrame, then `summarize`. Run B (runs/submit):
a notebook whose second cell fails. The browser logs in with the one-time link that
`python -m dbx_assets.local_workspace login-url` prints (as `make dev` does), lands on run A's
page and finds each task with its state, the timeline, the printed line, the table and, on run
B, the error in the failing cell. Screenshots go to the test's tmp dir (paths printed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from databricks.sdk.service import jobs
from sdk_helpers import upload_notebook, wait_for_run

CHROMIUM = "/usr/bin/chromium"
HEADER = "# Databricks notebook source\n"
SEP = "\n# COMMAND ----------\n"
GREET = SEP.join(
    [
        'print("hello from the greet task")',
        'df = spark.createDataFrame([(1, "Oslo", 3.5), (2, "Rome", 7.25)], "id INT, city STRING, score DOUBLE")\ndisplay(df)',
        'dbutils.notebook.exit("greeted 2 cities")',
    ]
)
SUMMARIZE = 'print("summary done")'
BROKEN = SEP.join(
    [
        'print("about to read the orders")',
        'orders = spark.table("no_such_orders_table")',
        'print("never printed")',
    ]
)


def test_run_pages_in_a_browser(local_workspace, workspace_client, tmp_path):
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: run `make browser`"
    from playwright.sync_api import expect, sync_playwright

    w = workspace_client
    greet = upload_notebook(w, "/Shared/run_page/greet", GREET)
    summarize = upload_notebook(w, "/Shared/run_page/summarize", SUMMARIZE)
    broken = upload_notebook(w, "/Shared/run_page/broken", BROKEN)
    cluster_id = w.clusters.create(
        cluster_name="run-page-browser", spark_version="15.4.x-scala2.12", num_workers=0
    ).cluster_id
    try:
        job_id = w.jobs.create(
            name="run-page-demo",
            parameters=[jobs.JobParameterDefinition(name="day", default="2024-05-01")],
            tasks=[
                jobs.Task(
                    task_key="greet",
                    existing_cluster_id=cluster_id,
                    notebook_task=jobs.NotebookTask(notebook_path=greet),
                ),
                jobs.Task(
                    task_key="summarize",
                    existing_cluster_id=cluster_id,
                    depends_on=[jobs.TaskDependency(task_key="greet")],
                    notebook_task=jobs.NotebookTask(notebook_path=summarize),
                ),
            ],
        ).job_id
        run_a = wait_for_run(w, w.jobs.run_now(job_id=job_id).run_id)  # started while the cluster starts
        run_b = wait_for_run(
            w,
            w.jobs.submit(
                run_name="broken-orders",
                tasks=[
                    jobs.SubmitTask(
                        task_key="load_orders",
                        existing_cluster_id=cluster_id,
                        notebook_task=jobs.NotebookTask(notebook_path=broken),
                    )
                ],
            ).run_id,
        )
    finally:
        w.clusters.delete(cluster_id)
    assert run_a.state and run_a.state.result_state == jobs.RunResultState.SUCCESS, run_a.state
    assert run_b.state and run_b.state.result_state == jobs.RunResultState.FAILED, run_b.state
    assert run_a.run_page_url and run_b.run_page_url
    path_a = run_a.run_page_url.removeprefix(local_workspace.host)

    # The login link, as make dev prints it.
    link = subprocess.run(
        [
            sys.executable,
            "-m",
            "dbx_assets.local_workspace",
            "login-url",
            "--state-dir",
            str(local_workspace.state_dir),
            "--path",
            path_a,
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout.strip()
    assert local_workspace.token not in link

    shots: list[Path] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"], headless=True
        )
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            page.set_default_timeout(15_000)

            def shot(name: str) -> None:
                shots.append(tmp_path / name)
                page.screenshot(path=str(shots[-1]), full_page=True)

            page.goto(local_workspace.host + path_a)  # no session yet: the login form, not the page
            expect(page.locator("form[action='/login']")).to_be_visible()
            assert "run-page-demo" not in page.content()
            shot("0-login.png")

            page.goto(link)  # the one-time link logs in and lands on run A's page
            assert page.url == run_a.run_page_url
            expect(page.locator("h1")).to_contain_text("run-page-demo")
            expect(page.locator("h1 .badge")).to_have_text("Succeeded")
            for key in ("greet", "summarize"):
                expect(page.locator(f"svg.task-graph a[data-task='{key}']")).to_have_attribute(
                    "data-state", "Succeeded"
                )
                expect(page.locator(f"table.tasks tr[data-task='{key}']")).to_contain_text("Succeeded")
            expect(page.locator("svg.timeline a.timeline-row")).to_have_count(2)
            expect(page.locator("svg.timeline rect.bar-setup")).not_to_have_count(0)  # greet waited for the cluster
            expect(page.locator("table.params")).to_contain_text("2024-05-01")
            expect(page.locator("table.clusters")).to_contain_text("run-page-browser")
            shot("1-run-page.png")

            page.locator("svg.task-graph a[data-task='greet']").click()  # into the task run
            expect(page.locator("h1")).to_contain_text("greet")
            expect(page.locator(".cell[data-cell='1'] pre.stdout")).to_contain_text("hello from the greet task")
            table = page.locator(".cell[data-cell='2'] table.display-table")
            expect(table.locator("th")).to_have_text(["idint", "citystring", "scoredouble"])
            expect(table).to_contain_text("Oslo")
            expect(page.locator(".exit-value")).to_contain_text("greeted 2 cities")
            shot("2-task-output.png")

            page.goto(run_b.run_page_url)
            expect(page.locator("h1 .badge")).to_have_text("Failed")
            expect(page.locator("svg.task-graph a[data-task='load_orders']")).to_have_attribute("data-state", "Failed")
            shot("3-failed-run.png")
            page.locator("table.tasks a", has_text="load_orders").click()
            failed = page.locator(".cell.failed")
            expect(failed).to_have_count(1)
            expect(failed).to_have_attribute("data-cell", "2")
            expect(failed).to_contain_text("no_such_orders_table")
            expect(page.locator(".cell[data-cell='1'] pre.stdout")).to_contain_text("about to read the orders")
            assert page.locator(".cell[data-cell='3']").count() == 0  # never ran
            shot("4-failed-cell.png")

            page.goto(local_workspace.host + "/")
            expect(page.locator("table.runs")).to_contain_text("broken-orders")
            shot("5-index.png")
            page.locator("a", has_text="run-page-browser").first.click()
            expect(page.locator("table.events")).to_contain_text("RUNNING")
            shot("6-cluster.png")
            assert local_workspace.token not in page.content()
        finally:
            browser.close()
    print("screenshots:", *shots, sep="\n  ")


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q", "-s"]))
