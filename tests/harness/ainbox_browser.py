"""ainbox_browser: a real browser for end-to-end tests of the edge's page.

Headless Chromium (Debian's `chromium`) driven over its DevTools protocol on a pipe
(--remote-debugging-pipe: messages are JSON texts ended by a NUL byte, on the browser's
descriptors 3 and 4), with the standard library only. It opens a page, lets it run its script
(fetches, EventSource) and evaluates expressions in it: `--dump-dom` cannot be used, because
it dumps the document at load, before any script's fetch has answered.

    with Browser(scratch) as b:
        b.open("http://127.0.0.1:3000/")
        b.wait("document.getElementById('live').textContent === 'live'", 20)
"""

import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import time


def chromium_path():
    """The Chromium binary, or None if it is not installed."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


class BrowserError(Exception):
    pass


class Browser:
    def __init__(self, scratch, timeout=30):
        self.bin = chromium_path()
        if not self.bin:
            raise BrowserError("chromium is not installed")
        self.profile = tempfile.mkdtemp(prefix="chromium-", dir=scratch)
        self.log = open(os.path.join(scratch, "chromium.log"), "ab")
        to_browser_r, self.to_browser = os.pipe()
        self.from_browser, from_browser_w = os.pipe()
        # The child's ends above 9, so that placing them on 3 and 4 cannot close one another.
        to_browser_r, from_browser_w = self._high(to_browser_r), self._high(from_browser_w)
        # The browser reads fd 3 and writes fd 4: bash puts the pipe ends there (dash cannot name
        # a descriptor above 9).
        cmd = (f"exec {self.bin} --headless --no-sandbox --disable-gpu --no-first-run "
               f"--disable-extensions --remote-debugging-pipe --user-data-dir={self.profile} "
               f"about:blank 3<&{to_browser_r} 4>&{from_browser_w} "
               f"{to_browser_r}<&- {from_browser_w}>&-")
        self.proc = subprocess.Popen(["/bin/bash", "-c", cmd], pass_fds=(to_browser_r,
                                     from_browser_w), stdout=self.log, stderr=self.log,
                                     start_new_session=True)
        os.close(to_browser_r)
        os.close(from_browser_w)
        self.timeout = timeout
        self.next_id = 1
        self.buf = b""
        self.session = None

    @staticmethod
    def _high(fd):
        high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
        os.close(fd)
        return high

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        for fd in (self.to_browser, self.from_browser):
            try:
                os.close(fd)
            except OSError:
                pass
        self.log.close()
        shutil.rmtree(self.profile, ignore_errors=True)

    def _read_message(self, deadline):
        import select
        while b"\0" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError("no answer from chromium in time")
            ready, _, _ = select.select([self.from_browser], [], [], left)
            if ready:
                chunk = os.read(self.from_browser, 65536)
                if not chunk:
                    raise BrowserError("chromium closed its pipe (see chromium.log)")
                self.buf += chunk
        text, self.buf = self.buf.split(b"\0", 1)
        return json.loads(text)

    def call(self, method, params=None, session=True):
        """One DevTools command; its result (raises on an error answer)."""
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        self.next_id += 1
        if session and self.session:
            msg["sessionId"] = self.session
        os.write(self.to_browser, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            answer = self._read_message(deadline)
            if answer.get("id") != msg["id"]:
                continue  # an event, or an answer to something else
            if "error" in answer:
                raise BrowserError(f"{method}: {answer['error']}")
            return answer.get("result", {})

    def open(self, url):
        """Opens `url` in a new tab and attaches to it."""
        target = self.call("Target.createTarget", {"url": url}, session=False)["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True},
                                 session=False)["sessionId"]

    def eval(self, expression):
        """The value of a JavaScript expression in the page (JSON-able)."""
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in result:
            return None
        return result.get("result", {}).get("value")

    def wait(self, expression, timeout, what=None):
        """Waits until `expression` is truthy in the page; returns its value."""
        deadline = time.monotonic() + timeout
        value = None
        while time.monotonic() < deadline:
            value = self.eval(expression)
            if value:
                return value
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what or expression} "
                             f"(page: {self.eval('document.body && document.body.innerText')!r})")
