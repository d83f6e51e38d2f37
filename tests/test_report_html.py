"""report.html: a self-contained twin of report.md / sweep_report.md, checked in a real headless browser."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import select
import shutil
import signal
import subprocess
import time
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from PIL import Image  # noqa: E402  (pillow comes with matplotlib)

from promptrl.report_html import render_html, write_html  # noqa: E402

RED, BLUE = (214, 39, 40), (31, 119, 180)

REPORT_MD = """# promptrl train: sentiment <b>v2</b>

Status: **ok**

| metric | baseline (mean ± std) | trained (mean ± std) |
|---|---|---|
| reward | 0.713 ± 0.058 | 0.873 ± 0.012 |
| f1_score | 0.700 ± 0.050 | 0.861 ± 0.020 |

## Baseline vs trained

![Baseline vs trained](comparison.png)

## Training history

![Training history](history.png)

## Prompts

Instructions: answer with <script>alert("pwned")</script> and <img src=x onerror=alert(1)>

```mermaid
graph TD; x-->y
```
"""


def _png(path: Path, color) -> bytes:
    """A small matplotlib figure filled with one colour (so the screenshot shows whether it was painted)."""
    fig, ax = plt.subplots(figsize=(4, 2), dpi=50)
    fig.patch.set_facecolor([c / 255 for c in color])
    ax.set_axis_off()
    fig.savefig(path, facecolor=fig.get_facecolor())
    plt.close(fig)
    return path.read_bytes()


@pytest.fixture
def report_dir(tmp_path):
    _png(tmp_path / "comparison.png", RED)
    _png(tmp_path / "history.png", BLUE)
    (tmp_path / "report.md").write_text(REPORT_MD, encoding="utf-8")
    return tmp_path


def _inlined(page: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'<img src="data:image/png;base64,([^"]+)"', page)]


def test_write_html_inlines_images_beside_the_markdown(report_dir):
    out = write_html(report_dir / "report.md")
    assert out == report_dir / "report.html"
    page = out.read_text(encoding="utf-8")
    assert _inlined(page) == [(report_dir / "comparison.png").read_bytes(), (report_dir / "history.png").read_bytes()]
    assert 'src="comparison.png"' not in page and "http" not in page.split("<body>")[1]  # nothing fetched at view time
    assert "<title>promptrl train: sentiment &lt;b&gt;v2&lt;/b&gt;</title>" in page
    assert "<td class=\"num\">0.873 ± 0.012</td>" in page and "<td>reward</td>" in page
    assert not list(report_dir.glob(".report.html.*"))  # the atomic write left no temp file


def test_sweep_report_gets_sweep_report_html(tmp_path):
    (tmp_path / "sweep_report.md").write_text("# Sweep report\n\n![sweep](sweep_report.png)\n")
    _png(tmp_path / "sweep_report.png", BLUE)
    assert write_html(tmp_path / "sweep_report.md") == tmp_path / "sweep_report.html"
    assert len(_inlined((tmp_path / "sweep_report.html").read_text())) == 1


def test_lm_text_is_escaped_not_markup(report_dir):
    page = write_html(report_dir / "report.md").read_text()
    body = page.split("<body>")[1]
    assert "<script" not in body and "<img src=x" not in body and "<b>" not in body
    assert "&lt;script&gt;alert(&quot;pwned&quot;)&lt;/script&gt;" in body


def test_title_is_the_first_level_one_heading():
    page = render_html("```\n# not a title\n```\n\n## Setup\n\n# Sweep report: `outputs/x`\n", ".")
    assert "<title>Sweep report: outputs/x</title>" in page


def test_mermaid_stays_readable_source(report_dir):
    page = write_html(report_dir / "report.md").read_text()
    assert '<pre class="mermaid"><code>graph TD; x--&gt;y\n</code></pre>' in page


@pytest.mark.parametrize("src", ["missing.png", "https://example.com/a.png", "../outside.png", "/etc/hosts",
                                 "notes.txt"])
def test_an_image_that_cannot_be_inlined_shows_its_alt_text(tmp_path, src):
    (tmp_path / "run").mkdir()
    _png(tmp_path / "outside.png", RED)
    (tmp_path / "run" / "notes.txt").write_text("not an image")
    page = render_html(f"# r\n\n![Training history]({src})\n", base_dir=tmp_path / "run")
    assert "<img" not in page
    assert '<span class="missing-image" role="img" aria-label="Training history">[Training history]</span>' in page


def test_only_all_numeric_columns_are_right_aligned():
    page = render_html("| job | optimizer.k | cost |\n|---|---|---|\n| 0 | 3 | - |\n| 1 | x | 0.0040 |\n", ".")
    assert '<th class="num">job</th>' in page and '<td class="num">1</td>' in page
    assert "<th>optimizer.k</th>" in page and "<td>3</td>" in page  # one text cell: the column stays left
    assert '<th class="num">cost</th>' in page and '<td class="num">-</td>' in page


# --- the real browser --------------------------------------------------------------------------------------

_BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def _find_browser() -> str | None:
    return next(filter(None, map(shutil.which, _BROWSERS)), None)


class _Chromium:
    """Headless Chromium driven over the DevTools protocol on a pipe (fds 3/4): the stdlib is enough to
    see the page's exceptions, console.error calls and failed loads, run a script and take a screenshot."""

    def __init__(self, binary: str, profile: Path, timeout: float = 20):
        self.timeout, self.events, self._buf, self._id = timeout, [], b"", 0
        to_browser, self._write = os.pipe()
        self._read, from_browser = os.pipe()

        def child_fds():  # the browser reads commands on fd 3 and writes replies on fd 4
            high = [os.dup2(to_browser, 100), os.dup2(from_browser, 101)]
            os.dup2(high[0], 3), os.dup2(high[1], 4)

        self.stderr = profile / "stderr.log"
        with open(self.stderr, "wb") as err:
            self.proc = subprocess.Popen(
                [binary, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe",
                 "--no-first-run", f"--user-data-dir={profile}", "--window-size=1000,1400", "about:blank"],
                pass_fds=(3, 4), preexec_fn=child_fds, start_new_session=True,
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        os.close(to_browser), os.close(from_browser)
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.send(f"{domain}.enable", session=self.session)

    def _message(self) -> dict:
        deadline = time.monotonic() + self.timeout
        while b"\0" not in self._buf:
            if not select.select([self._read], [], [], max(0.0, deadline - time.monotonic()))[0]:
                raise TimeoutError(f"chromium did not answer in {self.timeout} s; see {self.stderr}")
            chunk = os.read(self._read, 1 << 20)
            if not chunk:
                raise EOFError(f"chromium exited: {self.stderr.read_text(errors='replace')[-2000:]}")
            self._buf += chunk
        message, self._buf = self._buf.split(b"\0", 1)
        return json.loads(message)

    def send(self, method: str, session: str | None = None, **params) -> dict:
        self._id += 1
        command = {"id": self._id, "method": method, "params": params, **({"sessionId": session} if session else {})}
        os.write(self._write, json.dumps(command).encode() + b"\0")
        while (message := self._message()).get("id") != self._id:
            self.events.append(message)
        if "error" in message:
            raise RuntimeError(f"{method}: {message['error']}")
        return message["result"]

    def open(self, url: str) -> list[str]:
        """Load url; return the page's errors (uncaught exceptions, console.error/assert, error log entries)."""
        self.events.clear()
        self.send("Page.navigate", session=self.session, url=url)
        while not any(e.get("method") == "Page.loadEventFired" for e in self.events):
            self.events.append(self._message())
        self.send("Runtime.evaluate", session=self.session, expression="0")  # flush events queued during load
        errors = []
        for e in self.events:
            method, p = e.get("method"), e.get("params", {})
            if method == "Runtime.exceptionThrown":
                errors.append(p["exceptionDetails"].get("exception", {}).get("description")
                              or p["exceptionDetails"]["text"])
            elif method == "Runtime.consoleAPICalled" and p["type"] in ("error", "assert"):
                errors.append(" ".join(str(a.get("value", a.get("description"))) for a in p["args"]))
            elif method == "Log.entryAdded" and p["entry"]["level"] == "error":
                errors.append(p["entry"]["text"])
        return errors

    def evaluate(self, expression: str):
        return self.send("Runtime.evaluate", session=self.session, expression=expression,
                         returnByValue=True)["result"]["value"]

    def screenshot(self) -> Image.Image:
        data = self.send("Page.captureScreenshot", session=self.session, format="png")["data"]
        return Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB")

    def close(self):
        try:
            self.send("Browser.close")
            self.proc.wait(5)
        except Exception:  # noqa: BLE001 - a browser that will not close is killed (its own process group)
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
        finally:
            os.close(self._write), os.close(self._read)


@pytest.fixture
def browser(tmp_path):
    binary = _find_browser()
    if binary is None:
        pytest.skip(f"no headless Chromium on PATH (looked for {', '.join(_BROWSERS)}); "
                    "`make install-browser` installs Debian's")
    profile = tmp_path / "chromium-profile"  # a profile of its own: other Chromium processes may be running
    profile.mkdir()
    chromium = _Chromium(binary, profile)
    yield chromium
    chromium.close()


def _share(image: Image.Image, color, tolerance=12) -> float:
    """The fraction of the screenshot's pixels within `tolerance` of `color`."""
    hits = sum(n for n, px in image.getcolors(image.width * image.height)
               if all(abs(a - b) <= tolerance for a, b in zip(px, color)))
    return hits / (image.width * image.height)


def test_report_html_in_a_headless_browser(browser, report_dir, tmp_path):
    # The console check must be able to fail: a page that throws and logs an error is caught.
    (tmp_path / "broken.html").write_text("<!DOCTYPE html><title>x</title><img src='nope.png'>"
                                          "<script>console.error('logged'); throw new Error('boom')</script>")
    caught = browser.open((tmp_path / "broken.html").as_uri())
    assert any("boom" in e for e in caught) and "logged" in caught and any("nope.png" in e or "ERR_FILE" in e
                                                                             for e in caught), caught

    url = write_html(report_dir / "report.md").as_uri()
    assert browser.open(url) == []
    page = browser.evaluate("""({title: document.title, h1: document.querySelector('h1').innerText,
        cells: [...document.querySelectorAll('td')].map(td => td.innerText),
        images: [...document.images].map(i => [i.alt, i.naturalWidth, i.complete]),
        scripts: document.scripts.length, text: document.body.innerText,
        viewport: [innerWidth, innerHeight]})""")
    assert page["title"] == page["h1"] == "promptrl train: sentiment <b>v2</b>"
    assert page["cells"] == ["reward", "0.713 ± 0.058", "0.873 ± 0.012",
                             "f1_score", "0.700 ± 0.050", "0.861 ± 0.020"]
    assert page["images"] == [["Baseline vs trained", 200, True], ["Training history", 200, True]]
    assert page["scripts"] == 0 and '<script>alert("pwned")</script>' in page["text"]

    shot = browser.screenshot()
    shot.save(tmp_path / "report.png")  # kept in pytest's tmp dir, to look at when this fails
    assert list(shot.size) == page["viewport"]
    # Both figures were painted: each fills 200x100 px (1.4% of the screen) with its own colour.
    assert _share(shot, RED) > 0.01 and _share(shot, BLUE) > 0.01
    assert _share(shot, (255, 255, 255)) < 0.97  # not a blank page: text and the table show too
