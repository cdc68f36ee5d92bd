"""tools.ui_check against local pages (127.0.0.1 only): waiting on what a page shows, pop-ups, the schedule."""

from __future__ import annotations

import json
import shutil
from http.server import BaseHTTPRequestHandler

import pytest
from PIL import Image

from tests.conftest import local_http_server
from tools.ui_check import (
    CHROMIUM_FLAGS,
    DEPLOYMENT,
    FLOW,
    Page,
    active_crons,
    capture,
    wait_for_deployment,
)

# Renders late, as the single-page apps do once their data has come: the text after 0.8 s, then a
# promotion dialog over a dark mask whose close button removes the dialog at once and the mask after a
# 0.3 s fade; an expander that adds a line. The preference set before the page's own scripts ran is shown.
APP = """<!doctype html><html><body style="margin:0;background:#fff">
<p id="pref"></p><div id="app">loading</div>
<script>
document.getElementById('pref').textContent = 'pref=' + localStorage.getItem('ui.panelOpen');
setTimeout(() => {
  document.getElementById('app').innerHTML =
    '<p>pipeline run</p><button class="expander" ' +
    'onclick="this.insertAdjacentHTML(\\'afterend\\', \\'<p>train_ensemble</p>\\')">+</button>';
  document.body.insertAdjacentHTML('beforeend',
    '<div class="x-modal-mask" style="position:fixed;inset:0;background:rgb(0,0,0)"></div>' +
    '<div role="dialog" style="position:fixed;top:40%;left:40%;background:#fff"><p>Try the new UI</p>' +
    '<button aria-label="Close" id="close">x</button></div>');
  document.getElementById('close').onclick = () => {
    document.querySelector('[role=dialog]').remove();
    setTimeout(() => document.querySelector('.x-modal-mask').remove(), 300);
  };
}, 800);
</script></body></html>"""


def deployment_json(active: bool, cron: str = "0 3 * * *") -> dict:
    return {
        "id": "d1",
        "name": DEPLOYMENT,
        "schedules": [
            {"active": active, "schedule": {"cron": cron, "timezone": "UTC", "day_or": True}}
        ],
    }


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_GET(self):
        srv = self.server
        srv.requests.append(self.path)
        if self.path == "/app":
            body, kind = APP.encode(), "text/html"
        elif self.path == f"/api/deployments/name/{FLOW}/{DEPLOYMENT}" and srv.deployments:
            body, kind = (
                json.dumps(
                    srv.deployments.pop(0) if len(srv.deployments) > 1 else srv.deployments[0]
                ).encode(),
                "application/json",
            )
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def server():
    with local_http_server(_Handler, requests=[], deployments=[]) as httpd:
        yield httpd


@pytest.fixture(scope="module")
def browser():
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (make chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


def test_active_crons_skips_paused_and_non_cron_schedules():
    deployment = {
        "schedules": [
            {"active": True, "schedule": {"cron": "0 3 * * *"}},
            {"active": False, "schedule": {"cron": "0 4 * * *"}},
            {"active": True, "schedule": {"interval": 3600}},
        ]
    }
    assert active_crons(deployment) == ["0 3 * * *"]
    assert active_crons({"schedules": None}) == []


def test_wait_for_deployment_waits_until_serve_has_activated_the_schedule(server):
    # what an earlier serve left (schedule paused on its shutdown), then what this serve registers
    server.deployments = [deployment_json(active=False), deployment_json(active=True)]
    deployment = wait_for_deployment(f"{server.url}/api", "0 3 * * *", timeout_s=20)
    assert active_crons(deployment) == ["0 3 * * *"]
    assert len(server.requests) == 2


def test_wait_for_deployment_names_the_schedules_it_found_when_the_cron_never_comes(server):
    server.deployments = [deployment_json(active=True, cron="0 5 * * *")]
    with pytest.raises(TimeoutError, match=r"0 5 \* \* \*.*not '0 3 \* \* \*'"):
        wait_for_deployment(f"{server.url}/api", "0 3 * * *", timeout_s=2)


def test_capture_waits_for_late_text_closes_the_popup_expands_and_shoots(server, browser, tmp_path):
    page = Page(
        "app",
        f"{server.url}/app",
        tmp_path / "shot.png",
        ("pipeline run", "pref=false"),
        local_storage=(("ui.panelOpen", "false"),),
        close_popups=True,
        expand=".expander",
        shown_after_expand=("train_ensemble",),
    )
    assert capture(browser, page, timeout_s=30) == []
    with Image.open(page.screenshot) as shot:
        assert shot.size == (1440, 900)
        # the black mask had faded out and left before the shot: the page's white shows in the corner
        assert shot.convert("RGB").getpixel((1400, 880)) == (255, 255, 255)


def test_capture_reports_what_the_page_never_shows_and_still_saves_the_screenshot(
    server, browser, tmp_path
):
    page = Page("app", f"{server.url}/app", tmp_path / "shot.png", ("no such text",))
    assert capture(browser, page, timeout_s=3) == ["text 'no such text'"]
    assert page.screenshot.stat().st_size > 0


def test_capture_reports_a_text_missing_after_the_expander_was_clicked(server, browser, tmp_path):
    page = Page(
        "app",
        f"{server.url}/app",
        tmp_path / "shot.png",
        ("pipeline run",),
        close_popups=True,
        expand=".expander",
        shown_after_expand=("evaluate",),
    )
    assert capture(browser, page, timeout_s=6) == ["text 'evaluate' once expanded"]
