"""`make prefect`: start a local Prefect server and serve the pipeline as a scheduled deployment.

    python -m pipelines.serve [--port 4200] [--cron "0 3 * * *"] [--profile default] [--no-server]
        [--on-busy enqueue|cancel] [--stage-timeout SECONDS] [--mlflow-ui URL]

The server listens on 127.0.0.1 only and keeps its sqlite database under ``$PREFECT_HOME``
(``.prefect/`` in the project, set by the Makefile). Stopping this process (Ctrl-C) stops the
server it started and, Prefect's default, pauses the deployment's schedule; pass
``--keep-schedule`` to leave the schedule active for another serve process to pick up.

The deployment runs one flow run at a time: its concurrency limit is 1 (Prefect's own, kept by the
server across every serve process of the deployment), because every run rewrites params.yaml and
runs `dvc repro` in the one project. A run started while another is running waits
(``--on-busy enqueue``, the default: it is held in the state AwaitingConcurrencySlot and starts
when the slot frees) or is cancelled at once with "Deployment concurrency limit reached."
(``--on-busy cancel``).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

DEPLOYMENT = "privobfnet"
ON_BUSY = {"enqueue": "ENQUEUE", "cancel": "CANCEL_NEW"}  # Prefect's collision strategies


def concurrency(on_busy: str = "enqueue"):
    """The deployment's concurrency limit: one run at a time, the next one queued or cancelled."""
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy

    return ConcurrencyLimitConfig(
        limit=1, collision_strategy=ConcurrencyLimitStrategy[ON_BUSY[on_busy]]
    )


def wait_http(url: str, timeout_s: float = 120.0, poll_s: float = 0.5) -> None:
    """Poll ``url`` until it answers 2xx; raise if it never does."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(poll_s)
    raise TimeoutError(f"{url} did not answer within {timeout_s:.0f} s")


def wait_for_server(api_url: str, timeout_s: float = 90.0) -> None:
    """Poll ``<api>/health`` until the Prefect server answers; raise if it never does."""
    wait_http(f"{api_url}/health", timeout_s)


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM a child started in its own session (its process group), SIGKILL after 30 s."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def start_server(port: int) -> subprocess.Popen:
    """`prefect server start` on 127.0.0.1:port in its own process group."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "prefect",
            "server",
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        start_new_session=True,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, default=4200)
    parser.add_argument(
        "--cron", default="0 3 * * *", help="the deployment's schedule (cron syntax, UTC)"
    )
    parser.add_argument("--profile", default="default", help="the flow's profile parameter")
    parser.add_argument(
        "--no-server", action="store_true", help="serve against an already running server"
    )
    parser.add_argument(
        "--keep-schedule", action="store_true", help="do not pause the schedule on exit"
    )
    parser.add_argument(
        "--on-busy",
        choices=sorted(ON_BUSY),
        default="enqueue",
        help="a run started while another runs: waits for it (enqueue) or is cancelled (cancel)",
    )
    parser.add_argument(
        "--stage-timeout",
        type=float,
        help="the flow's stage_timeout_s: seconds a stage may run before it is stopped and fails "
        "the run (default: the flow's, 12 h)",
    )
    parser.add_argument(
        "--mlflow-ui",
        help="the flow's mlflow_ui: the MLflow UI that the evaluate run's link points into",
    )
    args = parser.parse_args(argv)
    if args.stage_timeout is not None and args.stage_timeout <= 0:
        parser.error(f"--stage-timeout {args.stage_timeout:g}: not a positive number of seconds")
    parameters = {"profile": args.profile}
    if args.stage_timeout is not None:
        parameters["stage_timeout_s"] = args.stage_timeout
    if args.mlflow_ui:
        parameters["mlflow_ui"] = args.mlflow_ui

    api_url = f"http://127.0.0.1:{args.port}/api"
    # Prefect reads its settings when first imported: set the API before that, or the runner would
    # talk to a temporary in-process server instead of this one.
    os.environ["PREFECT_API_URL"] = api_url
    from pipelines.flow import pipeline

    server = None if args.no_server else start_server(args.port)
    try:
        wait_for_server(api_url)
        print(
            f"Prefect UI: http://127.0.0.1:{args.port}  (deployment privobfnet-pipeline/{DEPLOYMENT}, "
            f"cron {args.cron!r}, profile {args.profile!r}, one run at a time: {args.on_busy})",
            flush=True,
        )
        pipeline.serve(
            name=DEPLOYMENT,
            cron=args.cron,
            parameters=parameters,
            global_limit=concurrency(args.on_busy),
            pause_on_shutdown=not args.keep_schedule,
            tags=["privobfnet", args.profile],
        )
    finally:
        if server is not None:
            stop(server)
    return 0


if __name__ == "__main__":
    sys.exit(main())
