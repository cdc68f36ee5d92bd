"""`make ui-check`: both UIs on loopback, seen by headless Chromium, screenshots in reports/figures/.

    python -m tools.ui_check [--out reports/figures] [--chromium chromium]

1. starts ``prefect server`` (the project's ``.prefect/`` store) and serves the deployment
   (``pipelines.serve --no-server``), and ``mlflow ui`` on the project's sqlite store, each on a free
   port of 127.0.0.1;
2. waits until the deployment ``privobfnet-pipeline/privobfnet`` exists and the MLflow UI answers;
3. drives Debian's headless Chromium with Playwright (``executable_path``: Playwright's own browser
   download is not used) through the Prefect deployment page, the newest ``privobfnet-tables``
   artifact (when a flow run made one), the MLflow experiment page and the MLflow
   registered-models page. Each page is polled until its rendered text names what it should
   (the deployment, its flow, schedule and concurrency limit; the artifact's key and the tables'
   title; a pipeline parent run and, once the newest one is
   expanded, its stage runs; the registered models) or a deadline passes; MLflow's pop-ups are
   closed by clicking; then a screenshot is saved. No fixed sleeps: a page is shot as soon as it
   shows what it must;
4. stops every process it started, by pid (stopping the serve process pauses the schedule).

Exits non-zero, naming the page, if a page does not render what it should.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from playwright.sync_api import Browser, expect, sync_playwright
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Page as Tab
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from ops.params import load_params
from pipelines.artifacts import TABLES_KEY
from pipelines.serve import DEPLOYMENT, stop, wait_for_server, wait_http
from privobfnet.io import atomic_path

# Playwright adds --headless itself (headless=True is its default)
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--hide-scrollbars",
    "--no-first-run",
]
VIEWPORT = {"width": 1440, "height": 900}
FLOW = "privobfnet-pipeline"
POLL_MS = 250  # how often a waiting page's text is read again
SHOWS_ALL_JS = (
    "texts => Boolean(document.body) && texts.every(text => document.body.innerText.includes(text))"
)
# the "+" beside the newest parent run in MLflow's runs table (sorted newest first): its stage runs
NEWEST_PIPELINE_EXPANDER = '.ag-row button[data-component-id*="runnamecellrenderer" i]'
# pop-ups that cover the page (MLflow's "new Model Registry UI" promotion): a dialog's dismiss
# buttons, then any open panel's "Close" (MLflow's assistant, should its preference below not hold)
DIALOG = "[role=dialog]:visible"
MODAL_MASK = "[class*='modal-mask']:visible"
DISMISS_NAMES = re.compile(r"^(close|got it|dismiss|no thanks|skip)$", re.IGNORECASE)
CLOSE_BUTTON = "button[aria-label='close' i]:visible"
# the MLflow UI's own preferences: the assistant panel closed and not auto-opened on first load
MLFLOW_PREFERENCES = (
    ("mlflow.assistant.panelOpen_v1", "false"),
    ("mlflow.assistant.fab.autoOpenedOnFirstLoad_v1", "true"),
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """A child in its own process group (so its own children stop with it), output to ``log``."""
    handle = log.open("w")
    return subprocess.Popen(
        cmd, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
    )


def get_json(url: str, timeout_s: float = 120.0, what: str = "") -> dict:
    """GET ``url`` until it answers 200 with JSON (the deployment appears once serve registered it)."""
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return json.loads(response.read())
        except (
            urllib.error.URLError,
            ConnectionError,
            TimeoutError,
            json.JSONDecodeError,
        ) as error:
            last = error
        time.sleep(1)
    raise TimeoutError(f"{what or url} not available within {timeout_s:.0f} s: {last}")


def latest_artifact(api: str, key: str) -> dict | None:
    """The newest Prefect artifact with ``key`` (API JSON), or None when no flow run made one.

    (``/artifacts/<key>/latest`` answers with the key's collection, whose id no artifact page knows.)
    """
    query = {"artifacts": {"key": {"any_": [key]}}, "sort": "CREATED_DESC", "limit": 1}
    request = urllib.request.Request(
        f"{api}/artifacts/filter",
        data=json.dumps(query).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        found = json.loads(response.read())
    return found[0] if found else None


def plain_heading(markdown: str) -> str:
    """The first heading of a markdown document without inline markup (rendered, its text is the
    same), without its ``#``s; empty when there is none."""
    for line in markdown.splitlines():
        if line.startswith("#") and not any(mark in line for mark in "`*_[<"):
            return line.lstrip("#").strip()
    return ""


def active_crons(deployment: dict) -> list[str]:
    """The cron strings of a Prefect deployment's active schedules (API JSON)."""
    return [
        entry["schedule"]["cron"]
        for entry in deployment.get("schedules") or []
        if entry.get("active") and "cron" in entry.get("schedule", {})
    ]


def wait_for_deployment(api: str, cron: str, timeout_s: float = 120.0) -> dict:
    """Poll until serve has registered the deployment with ``cron`` active; returns its API JSON.

    The deployment may already exist from an earlier serve, its schedule paused: that one is not ready.
    """
    url, what = f"{api}/deployments/name/{FLOW}/{DEPLOYMENT}", f"deployment {FLOW}/{DEPLOYMENT}"
    deadline = time.monotonic() + timeout_s
    while True:
        deployment = get_json(url, timeout_s=max(1.0, deadline - time.monotonic()), what=what)
        crons = active_crons(deployment)
        if cron in crons:
            return deployment
        if time.monotonic() >= deadline:
            raise TimeoutError(
                f"{what}: active cron schedules {crons}, not {cron!r}, after {timeout_s:.0f} s"
            )
        time.sleep(1)


@dataclass(frozen=True)
class Page:
    name: str
    url: str
    screenshot: Path
    must_show: tuple[str, ...]
    local_storage: tuple[
        tuple[str, str], ...
    ] = ()  # UI preferences, set before the page's own scripts run
    close_popups: bool = False
    expand: str = (
        ""  # CSS selector of a control clicked (the first match) once ``must_show`` is there
    )
    shown_after_expand: tuple[str, ...] = ()


def _ms_left(deadline: float) -> float:
    """Playwright's timeouts are in milliseconds; 0 would mean no timeout at all."""
    return max(1.0, (deadline - time.monotonic()) * 1000)


def wait_for_texts(tab: Tab, texts: tuple[str, ...], deadline: float) -> list[str]:
    """Poll the page's rendered text until it contains every one of ``texts``; returns those still missing."""
    if not texts:
        return []
    try:
        tab.wait_for_function(
            SHOWS_ALL_JS, arg=list(texts), polling=POLL_MS, timeout=_ms_left(deadline)
        )
        return []
    except PlaywrightTimeoutError:
        text = tab.inner_text("body")
        return [expected for expected in texts if expected not in text]


def close_popups(tab: Tab, deadline: float) -> None:
    """Click away promotion dialogs, then any other open panel's close button; wait until they are gone."""
    for button in tab.locator(DIALOG).get_by_role("button", name=DISMISS_NAMES).all():
        button.click(timeout=_ms_left(deadline))
    # a closed dialog's mask fades out, then leaves the page
    expect(tab.locator(f"{DIALOG}, {MODAL_MASK}")).to_have_count(0, timeout=_ms_left(deadline))
    for button in tab.locator(CLOSE_BUTTON).all():
        button.click(timeout=_ms_left(deadline))
    expect(tab.locator(CLOSE_BUTTON)).to_have_count(0, timeout=_ms_left(deadline))
    tab.mouse.move(
        0, 0
    )  # the pointer stayed where the close button was: no hover in the screenshot


def show(tab: Tab, page: Page, deadline: float) -> list[str]:
    """Load ``page`` and bring it to what the screenshot should show; returns what it lacks."""
    tab.goto(page.url, timeout=_ms_left(deadline))
    missing = wait_for_texts(tab, page.must_show, deadline)
    if missing:
        return [f"text {text!r}" for text in missing]
    if page.close_popups:
        close_popups(tab, deadline)
    if page.expand:
        # a click event, not a mouse click: the pointer would leave a hover and a focused-cell
        # border in the screenshot
        tab.locator(page.expand).first.dispatch_event("click", timeout=_ms_left(deadline))
        return [
            f"text {text!r} once expanded"
            for text in wait_for_texts(tab, page.shown_after_expand, deadline)
        ]
    return []


def capture(browser: Browser, page: Page, timeout_s: float = 120.0) -> list[str]:
    """Load ``page`` in a fresh browser context, wait until it shows what it must, save a screenshot.

    Returns what the page still lacked when ``timeout_s`` ran out (the screenshot is saved either
    way, to show what it did render).
    """
    deadline = time.monotonic() + timeout_s
    context = browser.new_context(viewport=VIEWPORT)
    try:
        if page.local_storage:
            context.add_init_script(
                script="".join(
                    f"localStorage.setItem({json.dumps(key)}, {json.dumps(value)});"
                    for key, value in page.local_storage
                )
            )
        tab = context.new_page()
        try:
            problems = show(tab, page, deadline)
        except (
            PlaywrightTimeoutError
        ) as error:  # the page never loaded, a pop-up stayed, nothing to expand
            problems = [error.message.splitlines()[0]]
        with atomic_path(page.screenshot) as tmp:
            tab.screenshot(path=tmp, type="png")
    finally:
        context.close()
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("reports/figures"))
    parser.add_argument("--chromium", default=shutil.which("chromium") or "chromium")
    parser.add_argument("--cron", default="0 3 * * *")
    parser.add_argument("--profile", default="default")
    args = parser.parse_args(argv)
    chromium = shutil.which(args.chromium)
    if chromium is None:
        print(
            f"{args.chromium}: not found; install Debian's chromium (apt-get install chromium)",
            file=sys.stderr,
        )
        return 2

    import mlflow
    from mlflow import MlflowClient

    from ops.tracking import EXPERIMENT_KIND, TRAINING_KIND, project_root, tracking_uri

    root = project_root()
    logs = root / ".cache" / "ui_check"
    logs.mkdir(parents=True, exist_ok=True)
    prefect_port, mlflow_port = free_port(), free_port()
    api = f"http://127.0.0.1:{prefect_port}/api"
    env = dict(
        os.environ,
        PREFECT_HOME=os.environ.get("PREFECT_HOME", str(root / ".prefect")),
        PREFECT_API_URL=api,
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
    )
    cfg = load_params()
    store = tracking_uri(cfg, root)
    mlflow.set_tracking_uri(store)
    client = MlflowClient()
    experiment = client.get_experiment_by_name(cfg.tracking.experiment)
    if experiment is None:
        print(
            f"no MLflow experiment {cfg.tracking.experiment!r} in {store}: run `make run` first",
            file=sys.stderr,
        )
        return 2
    experiment_id = experiment.experiment_id
    if EXPERIMENT_KIND not in experiment.tags:  # stores made before stage_run set it
        client.set_experiment_tag(experiment_id, EXPERIMENT_KIND, TRAINING_KIND)
    models = [m.name for m in client.search_registered_models()]

    py = sys.executable
    procs = [
        start(
            [
                py,
                "-m",
                "prefect",
                "server",
                "start",
                "--host",
                "127.0.0.1",
                "--port",
                str(prefect_port),
            ],
            env,
            logs / "prefect_server.log",
        )
    ]
    try:
        wait_for_server(api)
        procs.append(
            start(
                [
                    py,
                    "-m",
                    "pipelines.serve",
                    "--no-server",
                    "--port",
                    str(prefect_port),
                    "--cron",
                    args.cron,
                    "--profile",
                    args.profile,
                ],
                env,
                logs / "prefect_serve.log",
            )
        )
        procs.append(
            start(
                [
                    py,
                    "-m",
                    "mlflow",
                    "ui",
                    "--backend-store-uri",
                    store,
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(mlflow_port),
                ],
                env,
                logs / "mlflow_ui.log",
            )
        )
        deployment = wait_for_deployment(api, args.cron)
        mlflow_url = f"http://127.0.0.1:{mlflow_port}"
        wait_http(mlflow_url)
        pages = [
            Page(
                "Prefect deployment",
                f"http://127.0.0.1:{prefect_port}/deployments/deployment/{deployment['id']}",
                args.out / "ui_prefect_deployment.png",
                (DEPLOYMENT, FLOW, "Schedules", "Scheduled for", "Concurrency Limit"),
            ),
            Page(
                "MLflow experiment",
                f"{mlflow_url}/#/experiments/{experiment_id}/runs",
                args.out / "ui_mlflow_experiment.png",
                (cfg.tracking.experiment, "pipeline "),
                MLFLOW_PREFERENCES,
                close_popups=True,
                expand=NEWEST_PIPELINE_EXPANDER,
                shown_after_expand=("train_ensemble",),
            ),
            Page(
                "MLflow registered models",
                f"{mlflow_url}/#/models",
                args.out / "ui_mlflow_models.png",
                tuple(models),
                MLFLOW_PREFERENCES,
                close_popups=True,
            ),
        ]
        tables = latest_artifact(api, TABLES_KEY)
        if tables is None:
            print(
                f"Prefect artifact {TABLES_KEY}: none yet (a flow run with the report stage makes "
                "it); its page is not shot",
                flush=True,
            )
        else:
            pages.insert(
                1,
                Page(
                    "Prefect tables artifact",
                    f"http://127.0.0.1:{prefect_port}/artifacts/artifact/{tables['id']}",
                    args.out / "ui_prefect_tables.png",
                    tuple(
                        text
                        for text in (
                            TABLES_KEY,
                            tables["description"],
                            plain_heading(tables["data"]),
                        )
                        if text
                    ),
                ),
            )
        failures = []
        with sync_playwright() as playwright:
            try:
                browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
            except PlaywrightError as error:
                print(f"Playwright could not start {chromium}: {error}", file=sys.stderr)
                return 2
            try:
                for page in pages:
                    started = time.monotonic()
                    problems = capture(browser, page)
                    status = "ok" if not problems else f"MISSING {'; '.join(problems)}"
                    print(
                        f"{page.name}: {page.url} -> {page.screenshot} ({status}, "
                        f"{time.monotonic() - started:.1f} s)",
                        flush=True,
                    )
                    if problems:
                        failures.append(f"{page.name} ({page.url}) lacks: {'; '.join(problems)}")
            finally:
                browser.close()
    finally:
        for proc in reversed(procs):
            stop(proc)
    if failures:
        print("\n".join(failures) + f"\nserver logs: {logs}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
