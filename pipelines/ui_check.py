"""`make ui-check`: both UIs on loopback, seen by headless Chromium, screenshots in reports/figures/.

    python -m pipelines.ui_check [--out reports/figures] [--chromium chromium]

1. starts ``prefect server`` (the project's ``.prefect/`` store) and serves the deployment
   (``pipelines.serve --no-server``), and ``mlflow ui`` on the project's sqlite store, each on a free
   port of 127.0.0.1;
2. waits until the deployment ``privobfnet-pipeline/privobfnet`` exists and the MLflow UI answers;
3. loads the Prefect deployment page, the MLflow experiment page and the MLflow registered-models
   page in headless Chromium (``--headless --no-sandbox --disable-gpu
   --disable-background-networking``), saves a screenshot of each and checks that the rendered
   page names what it should (the deployment and its cron; the stage runs; the registered models);
4. stops every process it started, by pid (stopping the serve process pauses the schedule).

Exits non-zero, naming the page, if a page does not render what it should.
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from pipelines.serve import DEPLOYMENT, stop, wait_for_server, wait_http

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--hide-scrollbars", "--window-size=1440,900", "--no-first-run"]
FLOW = "privobfnet-pipeline"
# the "+" beside the newest parent run in MLflow's runs table: show that pipeline's stage runs
EXPAND_NEWEST_PIPELINE_JS = """
(() => {
  const expander = document.querySelector('.ag-row button[data-component-id*="runnamecellrenderer" i]');
  if (expander) expander.click();
  return Boolean(expander);
})()
"""
# the MLflow UI's own preferences: the assistant panel closed
MLFLOW_PREFERENCES = (("mlflow.assistant.panelOpen_v1", "false"),
                      ("mlflow.assistant.fab.autoOpenedOnFirstLoad_v1", "true"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """A child in its own process group (so its own children stop with it), output to ``log``."""
    handle = log.open("w")
    return subprocess.Popen(cmd, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)


def get_json(url: str, timeout_s: float = 120.0, what: str = "") -> dict:
    """GET ``url`` until it answers 200 with JSON (the deployment appears once serve registered it)."""
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return json.loads(response.read())
        except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError) as error:
            last = error
        time.sleep(1)
    raise TimeoutError(f"{what or url} not available within {timeout_s:.0f} s: {last}")


@dataclass(frozen=True)
class Page:
    name: str
    url: str
    screenshot: Path
    must_show: tuple[str, ...]
    local_storage: tuple[tuple[str, str], ...] = ()  # UI preferences set before a reload
    action_js: str = ""  # run once the page has rendered, before the screenshot


DISMISS_JS = """
(() => {  // close promotion pop-ups, tours and the assistant panel that cover the page
  let closed = 0;
  for (const el of document.querySelectorAll('button')) {
    const label = (el.getAttribute('aria-label') || '').toLowerCase();
    const text = (el.innerText || '').trim().toLowerCase();
    if (label === 'close' || (el.closest('[role=dialog]') && ['got it', 'close', 'dismiss', 'no thanks', 'skip'].includes(text))) {
      el.click();
      closed++;
    }
  }
  return closed;
})()
"""


class DevTools:
    """A minimal Chrome DevTools Protocol client over one page's websocket."""

    def __init__(self, websocket_url: str):
        from websockets.sync.client import connect

        self._ws = connect(websocket_url, max_size=64 * 2**20, open_timeout=30)
        self._next = 0

    def call(self, method: str, timeout_s: float = 60.0, **params) -> dict:
        self._next += 1
        self._ws.send(json.dumps({"id": self._next, "method": method, "params": params}))
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            message = json.loads(self._ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if message.get("id") == self._next:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
        raise TimeoutError(f"{method}: no answer within {timeout_s:.0f} s")

    def evaluate(self, expression: str):
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")

    def close(self) -> None:
        self._ws.close()


def _wait_loaded(tools: DevTools, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while tools.evaluate("document.readyState") != "complete" and time.monotonic() < deadline:
        time.sleep(0.5)


def capture(chromium: str, page: Page, profile_dir: Path, settle_s: float = 8.0) -> list[str]:
    """Load ``page`` in headless Chromium, let it render, close pop-ups, save a screenshot.

    Returns the expected texts the rendered page lacks.
    """
    port = free_port()
    browser = subprocess.Popen([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile_dir}",
                                f"--remote-debugging-port={port}", "about:blank"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        targets = get_json(f"http://127.0.0.1:{port}/json/list", timeout_s=60, what="chromium's DevTools")
        tab = next(t for t in targets if t.get("type") == "page")
        tools = DevTools(tab["webSocketDebuggerUrl"])
        try:
            tools.call("Page.enable")
            tools.call("Emulation.setDeviceMetricsOverride", width=1440, height=900, deviceScaleFactor=1, mobile=False)
            tools.call("Page.navigate", url=page.url)
            _wait_loaded(tools)
            if page.local_storage:
                for key, value in page.local_storage:
                    tools.evaluate(f"localStorage.setItem({json.dumps(key)}, {json.dumps(value)})")
                tools.call("Page.reload")
                time.sleep(1)
                _wait_loaded(tools)
            time.sleep(settle_s)  # the single-page apps fetch their data after the load event
            for _ in range(3):
                if not tools.evaluate(DISMISS_JS):
                    break
                time.sleep(1.5)
            if page.action_js and tools.evaluate(page.action_js):
                time.sleep(settle_s / 2)
            text = tools.evaluate("document.body.innerText") or ""
            shot = tools.call("Page.captureScreenshot", format="png")["data"]
        finally:
            tools.close()
    finally:
        stop(browser)
    page.screenshot.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot.write_bytes(base64.b64decode(shot))
    return [expected for expected in page.must_show if expected not in text]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("reports/figures"))
    parser.add_argument("--chromium", default=shutil.which("chromium") or "chromium")
    parser.add_argument("--cron", default="0 3 * * *")
    parser.add_argument("--profile", default="default")
    args = parser.parse_args(argv)
    if shutil.which(args.chromium) is None:
        print(f"{args.chromium}: not found; install Debian's chromium (apt-get install chromium)", file=sys.stderr)
        return 2

    import mlflow
    from mlflow import MlflowClient

    from ops.common import load_params
    from ops.tracking import EXPERIMENT_KIND, TRAINING_KIND, project_root, tracking_uri

    root = project_root()
    logs = root / ".cache" / "ui_check"
    logs.mkdir(parents=True, exist_ok=True)
    prefect_port, mlflow_port = free_port(), free_port()
    api = f"http://127.0.0.1:{prefect_port}/api"
    env = dict(os.environ, PREFECT_HOME=os.environ.get("PREFECT_HOME", str(root / ".prefect")),
               PREFECT_API_URL=api, PREFECT_SERVER_ANALYTICS_ENABLED="false")
    cfg = load_params()
    store = tracking_uri(cfg, root)
    mlflow.set_tracking_uri(store)
    client = MlflowClient()
    experiment = client.get_experiment_by_name(cfg.tracking.experiment)
    if experiment is None:
        print(f"no MLflow experiment {cfg.tracking.experiment!r} in {store}: run `make run` first", file=sys.stderr)
        return 2
    experiment_id = experiment.experiment_id
    if EXPERIMENT_KIND not in experiment.tags:  # stores made before stage_run set it
        client.set_experiment_tag(experiment_id, EXPERIMENT_KIND, TRAINING_KIND)
    models = [m.name for m in client.search_registered_models()]

    py = sys.executable
    procs = [start([py, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(prefect_port)],
                   env, logs / "prefect_server.log")]
    try:
        wait_for_server(api)
        procs.append(start([py, "-m", "pipelines.serve", "--no-server", "--port", str(prefect_port),
                            "--cron", args.cron, "--profile", args.profile], env, logs / "prefect_serve.log"))
        procs.append(start([py, "-m", "mlflow", "ui", "--backend-store-uri", store, "--host", "127.0.0.1",
                            "--port", str(mlflow_port)], env, logs / "mlflow_ui.log"))
        deployment = get_json(f"{api}/deployments/name/{FLOW}/{DEPLOYMENT}", what=f"deployment {FLOW}/{DEPLOYMENT}")
        mlflow_url = f"http://127.0.0.1:{mlflow_port}"
        wait_http(mlflow_url)
        pages = [
            Page("Prefect deployment", f"http://127.0.0.1:{prefect_port}/deployments/deployment/{deployment['id']}",
                 args.out / "ui_prefect_deployment.png", (DEPLOYMENT, FLOW, "Schedules")),
            Page("MLflow experiment", f"{mlflow_url}/#/experiments/{experiment_id}/runs",
                 args.out / "ui_mlflow_experiment.png", (cfg.tracking.experiment, "pipeline ", "train_ensemble"),
                 MLFLOW_PREFERENCES, EXPAND_NEWEST_PIPELINE_JS),
            Page("MLflow registered models", f"{mlflow_url}/#/models",
                 args.out / "ui_mlflow_models.png", tuple(models), MLFLOW_PREFERENCES),
        ]
        failures = []
        for page in pages:
            missing = capture(args.chromium, page, logs / "chromium-profile")
            status = "ok" if not missing else f"MISSING {missing}"
            print(f"{page.name}: {page.url} -> {page.screenshot} ({status})", flush=True)
            if missing:
                failures.append(f"{page.name} ({page.url}) does not show {missing}")
    finally:
        for proc in reversed(procs):
            stop(proc)
    if failures:
        print("\n".join(failures) + f"\nserver logs: {logs}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
