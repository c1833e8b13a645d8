"""Headless Chromium for the tests, driven over the DevTools protocol (CDP) with ``websockets``.

No Playwright or Selenium: Debian's ``chromium`` (scripts/browser.sh installs it) is started with
``--remote-debugging-port=0`` and one page target is driven through a flattened CDP session on the
browser's websocket. Every wait polls ``Runtime.evaluate`` until a deadline (no fixed sleeps), so
it holds on a loaded machine. The browser never leaves loopback (``--host-resolver-rules``).

    with Browser.launch(tmp_path / "chromium") as browser:
        browser.navigate(stack.app_url)
        wait_streamlit_idle(browser)
        sign_in(browser, stack.app_url, "owner@flowbank.demo")
        browser.wait_for_text("Hello Olivia Owner")
        browser.screenshot(tmp_path / "home.png")

Clicks are real mouse events at the element's centre (after scrolling it into view), typing is
``Input.insertText`` into the focused element (what React's controlled inputs need).
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from websockets.sync.client import ClientConnection, connect

DEFAULT_TIMEOUT_S: Final = 30.0
POLL_S: Final = 0.1
CHROMIUM_CANDIDATES: Final = ("chromium", "chromium-browser", "google-chrome")
CHROMIUM_FLAGS: Final = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--no-default-browser-check",
    "--hide-scrollbars", "--mute-audio", "--disable-dev-shm-usage", "--no-proxy-server",
    # Keep the browser on loopback: the OIDC mock's page links a CDN stylesheet, for one.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
)
# What counts as clickable when clicking by text.
CLICKABLE: Final = "button, a, [role=button], [role=tab], [role=option], [role=menuitem], label, summary"


class BrowserError(AssertionError):
    """The browser did not start, a CDP call failed, or a wait ran out (message has the details)."""


class CdpError(BrowserError):
    """A CDP command answered with an error."""


def find_chromium() -> str:
    """Path of the Chromium executable; BrowserError naming the fix when there is none."""
    override = os.environ.get("FLOWBANK_CHROMIUM")
    if override:
        return override
    for name in CHROMIUM_CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    raise BrowserError("chromium is not installed: run `bash scripts/browser.sh` as root "
                       "(apt-get install chromium), or deselect the browser tests with -m 'not browser'")


@dataclass(frozen=True, slots=True)
class Element:
    """Where an element is (CSS pixels, viewport coordinates) and what it says."""

    x: float
    y: float
    text: str


_FIND_JS: Final = r"""
(([selector, text, exact]) => {
  const visible = (el) => {
    const r = el.getBoundingClientRect();
    const s = getComputedStyle(el);
    return r.width > 0 && r.height > 0 && s.visibility !== 'hidden' && s.display !== 'none';
  };
  const norm = (s) => (s || '').replace(/\s+/g, ' ').trim();
  let found = null;
  for (const el of document.querySelectorAll(selector)) {
    if (!visible(el)) continue;
    if (text !== null) {
      const t = norm(el.innerText || el.value || el.getAttribute('aria-label'));
      if (exact ? t !== norm(text) : !t.includes(norm(text))) continue;
    }
    found = el;
    break;
  }
  if (!found) return null;
  found.scrollIntoView({block: 'center', inline: 'center'});
  const r = found.getBoundingClientRect();
  return {x: r.left + r.width / 2, y: r.top + r.height / 2, text: norm(found.innerText || found.value)};
})
"""


class Browser:
    """One headless Chromium with one page. Use :meth:`launch` (a context manager)."""

    def __init__(self, process: subprocess.Popen[bytes], ws: ClientConnection, session_id: str,
                 log_path: Path) -> None:
        self._process = process
        self._ws = ws
        self._session_id = session_id
        self._ids = itertools.count(1)
        self.log_path = log_path
        # JavaScript errors and console.error/warn output of the page, oldest first (see call()).
        self.console: list[str] = []

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    @contextmanager
    def launch(cls, workdir: Path, *, width: int = 1400, height: int = 900,
               timeout_s: float = 60.0) -> Iterator[Browser]:
        """Start Chromium with a fresh profile under ``workdir``; closed when the block ends."""
        executable = find_chromium()
        profile = workdir / "profile"
        profile.mkdir(parents=True, exist_ok=True)
        log_path = workdir / "chromium.log"
        argv = [executable, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}",
                "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0", "about:blank"]
        with open(log_path, "ab") as log:
            process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                       start_new_session=True)
        browser: Browser | None = None
        try:
            ws_url = _devtools_url(profile / "DevToolsActivePort", process, log_path, timeout_s)
            ws = connect(ws_url, max_size=None, open_timeout=timeout_s, proxy=None)  # loopback: never a proxy
            browser = cls(process, ws, "", log_path)
            target = browser.call("Target.createTarget", {"url": "about:blank"}, session=False)
            attached = browser.call("Target.attachToTarget", {"targetId": target["targetId"], "flatten": True},
                                    session=False)
            browser._session_id = attached["sessionId"]
            browser.call("Page.enable")
            browser.call("Runtime.enable")
            browser.call("Emulation.setDeviceMetricsOverride",
                         {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
            yield browser
        finally:
            if browser is not None:
                browser._ws.close()
            _stop(process)

    def call(self, method: str, params: dict[str, Any] | None = None, *, session: bool = True,
             timeout_s: float = DEFAULT_TIMEOUT_S) -> dict[str, Any]:
        """Send one CDP command (to the page's session unless ``session=False``); its result."""
        message_id = next(self._ids)
        message: dict[str, Any] = {"id": message_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = self._session_id
        self._ws.send(json.dumps(message))
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BrowserError(f"CDP {method}: no answer within {timeout_s:.0f} s")
            try:
                raw = self._ws.recv(timeout=remaining)
            except TimeoutError:
                continue
            answer = json.loads(raw)
            if answer.get("id") != message_id:
                self._note_event(answer)  # an event, or the answer to an abandoned call
                continue
            if "error" in answer:
                raise CdpError(f"CDP {method}: {answer['error'].get('message')} {answer['error'].get('data', '')}")
            result: dict[str, Any] = answer.get("result", {})
            return result

    # ------------------------------------------------------------------ page state

    def evaluate(self, expression: str, *, await_promise: bool = False) -> Any:
        """The JSON value of a JavaScript expression in the page; BrowserError if it throws."""
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                "awaitPromise": await_promise})
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise BrowserError(f"JavaScript error: {text}")
        return result.get("result", {}).get("value")

    def url(self) -> str:
        return str(self.evaluate("location.href"))

    def text(self) -> str:
        """The page's visible text (``document.body.innerText``)."""
        return str(self.evaluate("document.body ? document.body.innerText : ''") or "")

    def title(self) -> str:
        return str(self.evaluate("document.title"))

    def count(self, selector: str) -> int:
        return int(self.evaluate(f"document.querySelectorAll({json.dumps(selector)}).length"))

    def cookies(self) -> list[dict[str, Any]]:
        """The cookies the page's URL would send (``Network.getCookies``)."""
        cookies: list[dict[str, Any]] = self.call("Network.getCookies").get("cookies", [])
        return cookies

    # ------------------------------------------------------------------ waiting

    def wait_until(self, expression: str, *, timeout_s: float = DEFAULT_TIMEOUT_S, what: str | None = None) -> Any:
        """Poll a JavaScript expression until it is truthy; its value. Errors while the page
        navigates (no execution context, an exception) count as "not yet"."""
        deadline = time.monotonic() + timeout_s
        last_error = ""
        while True:
            try:
                value = self.evaluate(expression)
                if value:
                    return value
            except BrowserError as exc:
                last_error = str(exc)
            if time.monotonic() > deadline:
                raise BrowserError(
                    f"timed out after {timeout_s:.0f} s waiting for {what or expression}; at {self._safe_url()}"
                    + (f"; last error: {last_error}" if last_error else "")
                    + f"\npage text:\n{self._safe_text()[:3000]}")
            time.sleep(POLL_S)

    def wait_for_selector(self, selector: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        """Wait until some element matches ``selector`` and is visible."""
        self.wait_until(f"{_FIND_JS}([{json.dumps(selector)}, null, true]) !== null",
                        timeout_s=timeout_s, what=f"selector {selector!r}")

    def wait_for_text(self, text: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        """Wait until the page's visible text contains ``text`` (whitespace-normalised)."""
        needle = json.dumps(" ".join(text.split()))
        self.wait_until(f"(document.body ? document.body.innerText : '').replace(/\\s+/g, ' ').includes({needle})",
                        timeout_s=timeout_s, what=f"text {text!r}")

    def wait_for_text_gone(self, text: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        needle = json.dumps(" ".join(text.split()))
        self.wait_until(
            f"document.body && !document.body.innerText.replace(/\\s+/g, ' ').includes({needle})",
            timeout_s=timeout_s, what=f"text {text!r} to disappear")

    def wait_for_url(self, prefix: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> str:
        """Wait until ``location.href`` starts with ``prefix`` and the document has loaded."""
        value = self.wait_until(
            f"location.href.startsWith({json.dumps(prefix)}) && document.readyState === 'complete'"
            " && location.href", timeout_s=timeout_s, what=f"URL {prefix}...")
        return str(value)

    # ------------------------------------------------------------------ acting

    def navigate(self, url: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        """Load ``url`` (following redirects) and wait until the new document is complete."""
        self.evaluate("window.__flowbankOldDocument = true")  # gone once the new document is there
        result = self.call("Page.navigate", {"url": url}, timeout_s=timeout_s)
        if result.get("errorText"):
            raise BrowserError(f"navigating to {url}: {result['errorText']}")
        self.wait_until("!window.__flowbankOldDocument && document.readyState === 'complete'",
                        timeout_s=timeout_s, what=f"{url} to load")

    def find(self, selector: str, *, text: str | None = None, exact: bool = True,
             timeout_s: float = DEFAULT_TIMEOUT_S) -> Element:
        """Wait for the first visible element matching ``selector`` (and ``text``); scroll it into view."""
        spec = json.dumps([selector, text, exact])
        found = self.wait_until(f"{_FIND_JS}({spec})", timeout_s=timeout_s,
                                what=f"{selector!r}" + (f" with text {text!r}" if text is not None else ""))
        return Element(x=float(found["x"]), y=float(found["y"]), text=str(found["text"]))

    def click(self, selector: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> Element:
        """Click (real mouse events) the first visible element matching ``selector``."""
        element = self.find(selector, timeout_s=timeout_s)
        self._mouse_click(element)
        return element

    def click_text(self, text: str, *, selector: str = CLICKABLE, exact: bool = True,
                   timeout_s: float = DEFAULT_TIMEOUT_S) -> Element:
        """Click the first visible clickable element whose text is ``text`` (or contains it)."""
        element = self.find(selector, text=text, exact=exact, timeout_s=timeout_s)
        self._mouse_click(element)
        return element

    def type_into(self, selector: str, text: str, *, clear: bool = True,
                  timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        """Focus the input matching ``selector`` and type ``text`` (replacing its value if ``clear``)."""
        self.find(selector, timeout_s=timeout_s)
        self.evaluate(f"""(() => {{
            const el = document.querySelector({json.dumps(selector)});
            el.focus();
            if ({'true' if clear else 'false'} && typeof el.select === 'function') el.select();
        }})()""")
        self.call("Input.insertText", {"text": text})

    def press(self, key: str) -> None:
        """Press and release a key on the focused element: "Enter", "Tab", "Escape" or one character."""
        codes = {"Enter": (13, "\r"), "Tab": (9, ""), "Escape": (27, ""), "Backspace": (8, "")}
        code, text = codes.get(key, (ord(key.upper()[:1] or " "), key))
        base = {"key": key, "code": key if key in codes else f"Key{key.upper()}", "windowsVirtualKeyCode": code}
        self.call("Input.dispatchKeyEvent", {"type": "keyDown", **base, **({"text": text} if text else {})})
        self.call("Input.dispatchKeyEvent", {"type": "keyUp", **base})

    def screenshot(self, path: Path, *, full_page: bool = False) -> Path:
        """Save a PNG of the viewport (or the whole page) to ``path``."""
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            size = self.evaluate(
                "({w: document.documentElement.scrollWidth, h: document.documentElement.scrollHeight})")
            params |= {"captureBeyondViewport": True,
                       "clip": {"x": 0, "y": 0, "width": size["w"], "height": size["h"], "scale": 1}}
        data = self.call("Page.captureScreenshot", params, timeout_s=60)["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    # ------------------------------------------------------------------ internals

    def _note_event(self, event: dict[str, Any]) -> None:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            self.console.append(f"exception: {details.get('exception', {}).get('description') or details.get('text')}")
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "warning", "assert"):
            args = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
            self.console.append(f"console.{params['type']}: {args}")
        del self.console[:-200]  # bounded

    def _mouse_click(self, element: Element) -> None:
        point = {"x": element.x, "y": element.y}
        self.call("Input.dispatchMouseEvent", {"type": "mouseMoved", **point})
        self.call("Input.dispatchMouseEvent", {"type": "mousePressed", **point, "button": "left", "clickCount": 1})
        self.call("Input.dispatchMouseEvent", {"type": "mouseReleased", **point, "button": "left", "clickCount": 1})

    def _safe_url(self) -> str:
        try:
            return self.url()
        except BrowserError:
            return "?"

    def _safe_text(self) -> str:
        try:
            return self.text()
        except BrowserError:
            return "?"


def _devtools_url(port_file: Path, process: subprocess.Popen[bytes], log_path: Path, timeout_s: float) -> str:
    """Chromium writes its DevTools port and browser path into the profile when it is ready."""
    deadline = time.monotonic() + timeout_s
    while True:
        if port_file.exists():
            lines = port_file.read_text("utf-8").splitlines()
            if len(lines) >= 2:
                return f"ws://127.0.0.1:{lines[0].strip()}{lines[1].strip()}"
        if process.poll() is not None:
            raise BrowserError(f"chromium exited with code {process.returncode}:\n"
                               f"{log_path.read_text('utf-8', errors='replace')[-3000:]}")
        if time.monotonic() > deadline:
            raise BrowserError(f"chromium did not open its DevTools port within {timeout_s:.0f} s:\n"
                               f"{log_path.read_text('utf-8', errors='replace')[-3000:]}")
        time.sleep(POLL_S)


def _stop(process: subprocess.Popen[bytes], grace_s: float = 10.0) -> None:
    """Stop Chromium and its helpers (its own process group, started by us)."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    try:  # helpers (renderers, zygote) of an exited browser
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


# ---------------------------------------------------------------------- Streamlit and sign-in

STREAMLIT_IDLE_JS: Final = (
    "(() => { const app = document.querySelector('[data-testid=\"stApp\"]');"
    " return !!app && app.getAttribute('data-test-script-state') === 'notRunning'"
    " && app.getAttribute('data-test-connection-state') === 'CONNECTED'; })()"
)
AUTH_COOKIE: Final = "_streamlit_user"


def wait_streamlit_idle(browser: Browser, *, timeout_s: float = 60.0) -> None:
    """Wait until the Streamlit app is connected and its script has finished running."""
    browser.wait_until(STREAMLIT_IDLE_JS, timeout_s=timeout_s, what="the Streamlit app to finish running")


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def sign_in(browser: Browser, app_url: str, sub: str, *, button_text: str = "Sign in",
            timeout_s: float = 60.0) -> None:
    """The real OIDC sign-in: open the app, click ``button_text`` (which calls ``st.login()``),
    type ``sub`` into the mock provider's form, press Authorize, and come back signed in (the
    ``_streamlit_user`` cookie set by Streamlit's callback)."""
    browser.navigate(app_url, timeout_s=timeout_s)
    wait_streamlit_idle(browser, timeout_s=timeout_s)
    browser.click_text(button_text, selector="button", timeout_s=timeout_s)
    browser.wait_until("location.pathname.startsWith('/oauth2/authorize') && document.readyState === 'complete'",
                       timeout_s=timeout_s, what="the provider's sign-in page")
    browser.type_into('input[name="sub"]', sub, timeout_s=timeout_s)
    browser.click_text("Authorize", selector='button[type="submit"]', timeout_s=timeout_s)
    browser.wait_for_url(_origin(app_url), timeout_s=timeout_s)
    if not any(c.get("name", "").startswith(AUTH_COOKIE) for c in browser.cookies()):
        raise BrowserError(f"signed in as {sub!r} but no {AUTH_COOKIE} cookie came back; at {browser.url()}\n"
                           f"{browser.text()[:2000]}")
    wait_streamlit_idle(browser, timeout_s=timeout_s)


def sign_out(browser: Browser, app_url: str, *, button_text: str = "Sign out", timeout_s: float = 60.0) -> str:
    """Click ``button_text`` (which calls ``st.logout()``), confirm on the provider's end-session
    page when it shows one, and wait to be back on the app without the sign-in cookie.
    Returns ``"provider"`` when the provider's end-session page was confirmed, else ``"app"``."""
    browser.evaluate("window.__flowbankBeforeSignOut = true")  # gone once the browser has navigated
    browser.click_text(button_text, selector="button", timeout_s=timeout_s)
    origin = _origin(app_url)
    where = browser.wait_until(
        "!window.__flowbankBeforeSignOut && document.readyState === 'complete'"
        " && (location.pathname.startsWith('/oauth2/end_session') ? 'provider'"
        f" : location.href.startsWith({json.dumps(origin)}) ? 'app' : '')",
        timeout_s=timeout_s, what="the sign-out redirect")
    if where == "provider":
        browser.click_text("End session", selector='button[type="submit"]', timeout_s=timeout_s)
        browser.wait_for_url(origin, timeout_s=timeout_s)
    if any(c.get("name", "").startswith(AUTH_COOKIE) for c in browser.cookies()):
        raise BrowserError(f"signed out but the {AUTH_COOKIE} cookie is still there")
    wait_streamlit_idle(browser, timeout_s=timeout_s)
    return str(where)
