"""A headless Chromium the browser tests drive through its DevTools protocol over a pipe
(--remote-debugging-pipe: JSON messages ending in NUL on file descriptors 3 and 4), so they need
no driver package and no network. Shared by the HTML viewer's tests (tests/viz/test_html.py) and
the serve playground's (tests/serve/test_playground.py); pytest puts tests/ on sys.path (the
rootdir conftest.py), so a test imports it as `from browser import ...`.

    @pytest.fixture(scope="module")
    def browser():
        b = start_browser("the viewer's browser tests")   # skips where Chromium is missing
        yield b
        b.close()

Every wait is bounded in time; `Browser.close` ends the Chromium process it started.
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio",
)


def chromium_binary() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


class Browser:
    """Chromium driven over --remote-debugging-pipe: JSON messages ending in NUL on fds 3/4."""

    def __init__(self, binary: str) -> None:
        self.profile = tempfile.mkdtemp(prefix="attnlab-chromium-")
        to_chrome_r, self._out = os.pipe()
        self._in, from_chrome_w = os.pipe()

        def wire() -> None:  # in the child: its fd 3 reads our commands, fd 4 writes replies
            a, b = os.dup(to_chrome_r), os.dup(from_chrome_w)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.proc = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={self.profile}", "--remote-debugging-pipe",
             "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            close_fds=False, preexec_fn=wire,
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buf = b""
        self._id = 0
        self.events: list[dict[str, Any]] = []

    def _message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no message from chromium in time")
            ready, _, _ = select.select([self._in], [], [], left)
            if ready:
                chunk = os.read(self._in, 1 << 20)
                if not chunk:
                    raise RuntimeError("chromium closed its DevTools pipe")
                self._buf += chunk
        raw, _, self._buf = self._buf.partition(b"\0")
        return json.loads(raw)

    def _write(self, method: str, params: dict[str, Any], session: str | None) -> int:
        self._id += 1
        message: dict[str, Any] = {"id": self._id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        data = json.dumps(message).encode() + b"\0"
        while data:
            data = data[os.write(self._out, data):]
        return self._id

    def _event(self, message: dict[str, Any]) -> None:
        self.events.append(message)
        if message.get("method") == "Page.javascriptDialogOpening":  # never leave it blocking
            self._write("Page.handleJavaScriptDialog", {"accept": False}, message["sessionId"])

    def send(self, method: str, params: dict[str, Any] | None = None,
             session: str | None = None, timeout: float = 15.0) -> dict[str, Any]:
        wanted = self._write(method, params or {}, session)
        deadline = time.monotonic() + timeout
        while True:
            message = self._message(deadline)
            if message.get("id") == wanted:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            if "method" in message:
                self._event(message)

    def wait_for(self, method: str, session: str, timeout: float = 15.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        for event in self.events:
            if event.get("method") == method and event.get("sessionId") == session:
                return event
        while True:
            message = self._message(deadline)
            if "method" in message:
                self._event(message)
                if message["method"] == method and message.get("sessionId") == session:
                    return message

    def close(self) -> None:
        try:
            self._write("Browser.close", {}, None)
            self.proc.wait(timeout=10)
        except Exception:
            self.proc.kill()
            self.proc.wait()
        os.close(self._in)
        os.close(self._out)
        shutil.rmtree(self.profile, ignore_errors=True)


class Page:
    """One tab: load a file, evaluate JS, hover, press keys; records errors and requests."""

    def __init__(self, browser: Browser, width: int = 1400, height: int = 1000) -> None:
        self.browser = browser
        target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = browser.send(
            "Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable")
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
        self.send("Emulation.setFocusEmulationEnabled", {"enabled": True})

    def send(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.browser.send(method, params, self.session)

    def load(self, path: Path) -> None:
        """Open a local file (events seen before are forgotten)."""
        self.goto(path.resolve().as_uri())

    def goto(self, url: str, timeout: float = 15.0) -> None:
        """Open `url` and wait (bounded) for its load event; events seen before are forgotten."""
        self.browser.events.clear()
        self.send("Page.navigate", {"url": url})
        self.browser.wait_for("Page.loadEventFired", self.session, timeout)

    def js(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def hover(self, selector: str) -> None:
        box = self.js(f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
                      " e.scrollIntoView({block: 'center'}); const r = e.getBoundingClientRect();"
                      " return [r.left + r.width / 2, r.top + r.height / 2]; })()")
        self.send("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": box[0], "y": box[1]})

    def press(self, key: str) -> None:
        for kind in ("keyDown", "keyUp"):
            self.send("Input.dispatchKeyEvent", {"type": kind, "key": key, "text": key})

    def _centre(self, selector: str) -> list[float]:
        box = self.js(f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
                      " if (!e) return null; e.scrollIntoView({block: 'center'});"
                      " const r = e.getBoundingClientRect();"
                      " return [r.left + r.width / 2, r.top + r.height / 2]; })()")
        if box is None:
            raise AssertionError(f"no element matches {selector!r}")
        return box

    def click(self, selector: str) -> None:
        """A left click in the middle of the element, as a mouse does it."""
        x, y = self._centre(selector)
        self.send("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": x, "y": y})
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y,
                                                   "button": "left", "clickCount": 1})

    def type_text(self, selector: str, text: str, *, clear: bool = True) -> None:
        """Focus the input or textarea and type `text` into it (emptied first by default), as
        the keyboard does: the page sees input events."""
        if clear:
            self.js(f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
                    " e.value = ''; })()")
        self.js(f"document.querySelector({json.dumps(selector)}).focus()")
        self.send("Input.insertText", {"text": text})

    def choose(self, selector: str, value: str) -> None:
        """Pick an option of a <select> and fire its change event, as a user's choice does."""
        self.js(f"(() => {{ const s = document.querySelector({json.dumps(selector)});"
                f" s.value = {json.dumps(value)}; s.dispatchEvent(new Event('change')); }})()")

    def wait_until(self, expression: str, timeout: float = 15.0, what: str = "") -> Any:
        """Poll the JS `expression` until it is truthy and return its value; fail after
        `timeout` seconds naming `what` (or the expression) and the page's errors so far."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.js(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"waited {timeout:g} s for {what or expression}; "
                                     f"page errors: {self.errors()}")
            time.sleep(0.05)

    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions, dialogs (alert/confirm) seen on this tab."""
        found = []
        for event in self.browser.events:
            method, params = event.get("method"), event.get("params", {})
            if event.get("sessionId") != self.session:
                continue
            if method == "Runtime.exceptionThrown":
                details = params["exceptionDetails"]
                found.append(f"exception: {details.get('exception', details).get('description')}")
            elif method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
                found.append(f"console.{params['type']}: {params['args']}")
            elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                found.append(f"log: {params['entry']['text']}")
            elif method == "Page.javascriptDialogOpening":
                found.append(f"dialog: {params['message']}")
        return found

    def requests(self) -> list[str]:
        return [e["params"]["request"]["url"] for e in self.browser.events
                if e.get("method") == "Network.requestWillBeSent"
                and e.get("sessionId") == self.session]

    def screenshot(self, path: Path) -> None:
        data = self.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
        path.write_bytes(base64.b64decode(data["data"]))



def start_browser(what: str) -> Browser:
    """A started headless Chromium, or a pytest skip naming `what` needs it when none is
    installed or it cannot start here (an environment problem, not a failure of the page)."""
    binary = chromium_binary()
    if binary is None:
        pytest.skip(f"Chromium is not installed (Debian: apt-get install chromium); {what} "
                    "need it")
    browser = Browser(binary)
    try:
        browser.send("Browser.getVersion", timeout=30)
    except Exception as err:
        browser.close()
        pytest.skip(f"Chromium at {binary} did not start headless: {err}")
    return browser
