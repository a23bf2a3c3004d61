"""Open a pushed Label Studio task in headless Chromium and save a screenshot.

Chromium is driven over the DevTools protocol through ``--remote-debugging-pipe`` (file
descriptors 3 and 4), so nothing beyond the project venv and Debian's ``chromium`` is needed.
The browser is logged in with a Django session cookie obtained from Label Studio's login form.

Against a running server::

    python scripts/screenshot_task.py --url http://127.0.0.1:8080 --username admin@mycelium.local \\
        --password … --project 1 --task 3 --out bench/out/task.png

Self-contained demo (starts Label Studio from the cached template, pushes one pre-annotated
task built by ``labeling.task_payload``, screenshots it, stops the server)::

    python scripts/screenshot_task.py --demo --out bench/out/task.png
"""

from __future__ import annotations

import argparse
import base64
import itertools
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DEMO_TEXT = (
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
    "How many clips did Natalia sell altogether in April and May?"
)


class DevToolsPipe:
    """A minimal Chrome DevTools Protocol client over Chromium's debugging pipe."""

    def __init__(self, chromium: str, user_data_dir: Path, width: int, height: int):
        to_browser_read, self._to_browser = os.pipe()
        self._from_browser, from_browser_write = os.pipe()

        def wire_fds() -> None:
            os.dup2(to_browser_read, 3)
            os.dup2(from_browser_write, 4)

        self.process = subprocess.Popen(
            [
                chromium,
                "--headless=new",
                "--remote-debugging-pipe",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--hide-scrollbars",
                f"--user-data-dir={user_data_dir}",
                f"--window-size={width},{height}",
                "about:blank",
            ],
            preexec_fn=wire_fds,
            pass_fds=(3, 4),  # the child's fds after wire_fds; everything else is closed
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_browser_read)
        os.close(from_browser_write)
        self._ids = itertools.count(1)
        self._buffer = b""

    def _read_message(self, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while b"\0" not in self._buffer:
            if time.monotonic() > deadline:
                raise TimeoutError("no message from Chromium")
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed the DevTools pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def call(
        self, method: str, params: dict[str, Any] | None = None, session: str | None = None, timeout: float = 60.0
    ) -> dict[str, Any]:
        """Send one command and wait for its result (events in between are dropped)."""
        message_id = next(self._ids)
        payload: dict[str, Any] = {"id": message_id, "method": method, "params": params or {}}
        if session:
            payload["sessionId"] = session
        os.write(self._to_browser, json.dumps(payload).encode() + b"\0")
        while True:
            message = self._read_message(timeout)
            if message.get("id") == message_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=5)
        except Exception:  # noqa: BLE001 — the browser may already be gone
            pass
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def login_cookie(url: str, username: str, password: str) -> str:
    """Log in through the form and return the ``sessionid`` cookie."""
    with httpx.Client(base_url=url, follow_redirects=False, timeout=30) as http:
        page = http.get("/user/login/")
        match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
        if not match:
            raise RuntimeError(f"no CSRF token on {url}/user/login/")
        response = http.post(
            "/user/login/",
            data={"csrfmiddlewaretoken": match.group(1), "email": username, "password": password},
            headers={"Referer": f"{url}/user/login/"},
        )
        session = http.cookies.get("sessionid")
        if response.status_code not in (200, 302) or not session:
            raise RuntimeError(f"login as {username} failed at {url} (HTTP {response.status_code})")
        return session


def screenshot_task(
    url: str,
    username: str,
    password: str,
    project: int,
    task: int,
    out: Path,
    settle_seconds: float = 8.0,
    width: int = 1400,
    height: int = 900,
) -> dict[str, Any]:
    """Open the task's labeling view and save a PNG; return what the page showed."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if chromium is None:
        raise RuntimeError("no chromium on PATH (Debian: apt-get install chromium)")
    session_id = login_cookie(url, username, password)
    with tempfile.TemporaryDirectory(prefix="mycelium-chromium-") as profile:
        browser = DevToolsPipe(chromium, Path(profile), width, height)
        try:
            target = browser.call("Target.createTarget", {"url": "about:blank"})["targetId"]
            page = browser.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            browser.call("Network.enable", session=page)
            browser.call("Network.setCookie", {"name": "sessionid", "value": session_id, "url": url}, session=page)
            browser.call(
                "Emulation.setDeviceMetricsOverride",
                {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
                session=page,
            )
            browser.call("Page.enable", session=page)
            browser.call("Page.navigate", {"url": f"{url}/projects/{project}/data?task={task}"}, session=page)
            deadline = time.monotonic() + 60
            seen: dict[str, Any] = {}
            while time.monotonic() < deadline:
                time.sleep(1.0)
                probe = browser.call(
                    "Runtime.evaluate",
                    {
                        "expression": """JSON.stringify({
                          regions: document.querySelectorAll('.htx-highlight').length,
                          text: (document.querySelector('.lsf-main-content, .lsf-main-view, [class*=main-content]')
                                 || document.body).innerText.slice(0, 400),
                          title: document.title})""",
                        "returnByValue": True,
                    },
                    session=page,
                )
                seen = json.loads(probe["result"]["value"])
                if seen["regions"] > 0:
                    break
            time.sleep(settle_seconds if seen.get("regions") else 0)
            shot = browser.call("Page.captureScreenshot", {"format": "png"}, session=page)
        finally:
            browser.close()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(base64.b64decode(shot["data"]))
    return {"screenshot": str(out), "highlighted_regions": seen.get("regions", 0), "title": seen.get("title")}


def demo_task() -> dict[str, Any]:
    """A GSM8K task as ``review push`` builds it from specialists' outputs (values as a C2v1 model
    might give them: step 1's op is the uncertain decision), through ``labeling.task_payload``."""
    from labeling.task_payload import RegionPrediction, ReviewDraft, SelectionInfo, StepDraft, build_task

    def span(phrase: str) -> tuple[int, int]:
        start_ = DEMO_TEXT.index(phrase)
        return start_, start_ + len(phrase)

    m48 = {"kind": "problem", "start": 22, "end": 24, "value": "48", "reading": "literal"}
    half = span("half")
    draft = ReviewDraft(
        source="model",
        program_text="48 / 2 = 24\n48 + 24 = 72",
        steps=(
            StepDraft(1, "DIV", span("she sold half as many clips in May"), 0.58, (("DIV", 0.58), ("MUL", 0.34)),
                      (m48, {"kind": "problem", "start": half[0], "end": half[1], "value": "2",
                             "reading": "reciprocal"}), (0.93, 0.61)),
            StepDraft(2, "ADD", span("How many clips did Natalia sell altogether in April and May?"), 0.91,
                      (("ADD", 0.91), ("MUL", 0.05)), (m48, {"kind": "step", "ref": 1}), (0.88, 0.95)),
        ),
        regions=(RegionPrediction(*span("Natalia sold clips to 48 of her friends in April"), 0.83),),
        answer_type="integer", answer_type_p=0.97, answer="72", program_status="executes",
        model_version="C1v1.C2v1.C3v1.C4v1.C5v1.C6v1",
        notes=("Candidate programs disagree: answers 72, 96",),
    )
    selection = SelectionInfo(0.71, "composite=0.710; entropy=0.74 margin=0.76 lc=0.62 over 3 decisions; "
                              "candidate programs disagree", {"entropy": 0.74, "margin": 0.76, "disagreement": 1.0})
    return build_task(problem_id=1, round_number=1, text=DEMO_TEXT, model_version="r1-9f2c1ab0",
                      task_score=0.29, draft=draft, selection=selection, dataset="gsm8k")


def demo(out: Path) -> dict[str, Any]:
    """Start Label Studio, push one pre-annotated task, screenshot it."""
    from labeling import client as ls
    from labeling.config_xml import label_config
    from labeling.server import free_port, start
    token = secrets.token_hex(20)
    password = secrets.token_urlsafe(12)
    with tempfile.TemporaryDirectory(prefix="mycelium-ls-demo-") as tmp:
        with start(free_port(), Path(tmp) / "data", token, password=password) as server:
            sdk = ls.connect(server.url, token)
            project = ls.ensure_project(sdk, "Mycelium review (screenshot)", label_config(), "r1-attention")

            task = demo_task()
            [task_id] = ls.import_tasks(sdk, project.id, [task])
            return screenshot_task(server.url, server.username, password, project.id, task_id, out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo", action="store_true", help="start a throwaway Label Studio with one task")
    parser.add_argument("--url")
    parser.add_argument("--username")
    parser.add_argument("--password")
    parser.add_argument("--project", type=int)
    parser.add_argument("--task", type=int)
    parser.add_argument("--out", type=Path, default=Path("bench/out/label_studio_task.png"))
    args = parser.parse_args()
    if args.demo:
        report = demo(args.out)
    else:
        missing = [name for name in ("url", "username", "password", "project", "task") if getattr(args, name) is None]
        if missing:
            parser.error(f"missing --{', --'.join(missing)} (or use --demo)")
        report = screenshot_task(args.url, args.username, args.password, args.project, args.task, args.out)
    print(json.dumps(report))
    return 0 if report["highlighted_regions"] > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
