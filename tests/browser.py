"""Headless-Chromium harness for the tests: render a local HTML file offline and report what happened.

Drives Debian's chromium (apt-get install chromium) through Playwright's Python API (``executable_path``);
Playwright's own browser downloads are never used. Every request other than the page itself is recorded and aborted,
so a page that renders here renders with no network at all.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import struct
import tempfile
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Debian's binary itself first: /usr/bin/chromium is a shell wrapper that adds flags from /etc/chromium.d
# (--enable-remote-extensions among them); the flags below are then the whole command line.
CHROMIUM_CANDIDATES = (
    "/usr/lib/chromium/chromium",
    "/usr/bin/chromium",
    "/usr/bin/chromium-browser",
    "/usr/bin/google-chrome",
)

# Headless as root, on a closed network: no sandbox (root), no GPU, and none of Chromium's background traffic
# (component updates, sync, safe browsing, ...) that would otherwise try Google hosts. Any host name the browser
# itself tries to resolve fails at once; the page's own requests never get that far (see on_route).
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--disable-domain-reliability",
    "--disable-features=Translate,MediaRouter,OptimizationHints,CertificateTransparencyComponentUpdater",
    "--host-resolver-rules=MAP * ~NOTFOUND",
    # Lets WebGL (plotly's parcoords, scattergl) fall back to SwiftShader on the CPU, as recent Chromium does only
    # when told to.
    "--enable-unsafe-swiftshader",
)

# For each .plotly-graph-div: its size and whether plotly drew into it.
_FIGURES_JS = """() => Array.from(document.querySelectorAll('.plotly-graph-div')).map((div) => {
  const box = div.getBoundingClientRect();
  return {
    id: div.id || '',
    width: box.width,
    height: box.height,
    drawn: !!(div.querySelector('svg.main-svg') || div.querySelector('.plot-container')),
  };
})"""

# True once every figure div has plotly's markup (or there are none); polled until wait_ms runs out.
_ALL_DRAWN_JS = """() => Array.from(document.querySelectorAll('.plotly-graph-div'))
  .every((div) => !!(div.querySelector('svg.main-svg') || div.querySelector('.plot-container')))"""


def find_chromium() -> str | None:
    """The Chromium binary to drive: $SWEEP_CHROMIUM, else Debian's (apt-get install chromium), else one on PATH."""
    env = os.environ.get("SWEEP_CHROMIUM")
    if env:
        return env if os.access(env, os.X_OK) else None
    for path in CHROMIUM_CANDIDATES:
        if os.access(path, os.X_OK):
            return path
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def chromium_unavailable_reason() -> str | None:
    """Why render_page cannot run here (None when it can)."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -e '.[dev]')"
    if find_chromium() is None:
        return "no Chromium binary (apt-get install chromium, or set SWEEP_CHROMIUM)"
    return None


def chromium_available() -> bool:
    return chromium_unavailable_reason() is None


@dataclass
class FigureInfo:
    id: str
    width: float
    height: float
    drawn: bool

    @property
    def rendered(self) -> bool:
        return self.drawn and self.width > 0 and self.height > 0


@dataclass
class PageResult:
    url: str
    screenshot: Path
    console_errors: list[str] = field(default_factory=list)
    console_warnings: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)  # every URL asked for other than the page itself
    figures: list[FigureInfo] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def figure_count(self) -> int:
        return len(self.figures)

    @property
    def rendered_count(self) -> int:
        return sum(f.rendered for f in self.figures)

    def summary(self) -> str:
        return (
            f"{self.url}: {self.rendered_count}/{self.figure_count} figures rendered, "
            f"{len(self.console_errors)} console errors, {len(self.page_errors)} page errors, "
            f"{len(self.requests)} requests, {self.seconds:.1f}s, screenshot {self.screenshot}"
        )


def render_page(
    html_path: Path,
    screenshot: Path,
    *,
    wait_ms: int = 15_000,
    settle_ms: int = 300,
    load_timeout_ms: int = 60_000,
    viewport: tuple[int, int] = (1280, 900),
) -> PageResult:
    """Open html_path (file://) in headless Chromium with every other request blocked, and report.

    Waits for the load event (up to load_timeout_ms), then up to wait_ms for plotly to draw every figure div, then
    settle_ms more (late errors, animations). Takes a full-page PNG screenshot to `screenshot`.
    """
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
    from playwright.sync_api import sync_playwright

    executable = find_chromium()
    if executable is None:
        raise RuntimeError(chromium_unavailable_reason() or "no Chromium")
    url = Path(html_path).resolve().as_uri()
    result = PageResult(url=url, screenshot=Path(screenshot))
    started = time.monotonic()

    def on_route(route: Any) -> None:
        # The page itself loads; everything else is listed and aborted, so nothing leaves the machine.
        if route.request.url != url:
            route.abort("blockedbyclient")
        else:
            route.continue_()

    def on_request(request: Any) -> None:
        if request.url != url and not request.url.startswith("data:"):
            result.requests.append(request.url)

    def on_websocket(ws: Any) -> None:
        result.requests.append(ws.url)
        ws.close(code=1008, reason="blocked by the test harness")

    def on_console(message: Any) -> None:
        if message.type == "error":
            result.console_errors.append(message.text)
        elif message.type == "warning":
            result.console_warnings.append(message.text)

    with tempfile.TemporaryDirectory(prefix="sweep-chromium-") as profile, sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            profile,
            executable_path=executable,
            headless=True,
            args=list(CHROMIUM_ARGS),
            viewport={"width": viewport[0], "height": viewport[1]},
            service_workers="block",
        )
        try:
            context.route("**/*", on_route)
            # A routed WebSocket that never calls connect_to_server() stays a local mock: nothing is dialled.
            context.route_web_socket("**/*", on_websocket)
            context.on("request", on_request)
            context.on("console", on_console)
            page = context.pages[0] if context.pages else context.new_page()
            page.on("pageerror", lambda error: result.page_errors.append(str(error)))
            page.goto(url, wait_until="load", timeout=load_timeout_ms)
            # A figure that never draws is reported in result.figures, not raised.
            with contextlib.suppress(PlaywrightTimeoutError):
                page.wait_for_function(_ALL_DRAWN_JS, timeout=wait_ms, polling=100)
            page.wait_for_timeout(settle_ms)
            result.figures = [FigureInfo(**f) for f in page.evaluate(_FIGURES_JS)]
            result.screenshot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(result.screenshot), full_page=True)
        finally:
            context.close()
    result.seconds = time.monotonic() - started
    return result


# --- reading the screenshot back -------------------------------------------------------------------------------


@dataclass
class ImageStats:
    width: int
    height: int
    distinct_colours: int
    top_colour_share: float  # fraction of pixels that have the most common colour


def png_stats(path: Path) -> ImageStats:
    """Size and colour counts of a PNG: with Pillow when installed, else with the small (slow) decoder below."""
    try:
        from PIL import Image
    except ImportError:
        width, height, pixels = decode_png(Path(path).read_bytes())
        counts = Counter(pixels[i : i + 3] for i in range(0, len(pixels), 3))
        colours = list(counts.values())
    else:
        with Image.open(path) as image:
            rgb = image.convert("RGB")
            width, height = rgb.size
            colours = [count for count, _ in rgb.getcolors(maxcolors=width * height) or []]
    return ImageStats(width, height, len(colours), max(colours) / (width * height))


def decode_png(data: bytes) -> tuple[int, int, bytes]:
    """(width, height, RGB bytes) of an 8-bit, non-interlaced RGB or RGBA PNG — what Chromium's screenshots are."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    pos, idat, header = 8, [], b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
    width, height, depth, colour_type, _, _, interlace = struct.unpack(">IIBBBBB", header)
    if depth != 8 or colour_type not in (2, 6) or interlace:
        raise ValueError(f"unsupported PNG: depth {depth}, colour type {colour_type}, interlace {interlace}")
    bpp = 3 if colour_type == 2 else 4
    stride = width * bpp
    raw = zlib.decompress(b"".join(idat))
    prev = bytearray(stride)
    out = bytearray()
    for y in range(height):
        kind = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        if kind == 1:  # Sub
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 0xFF
        elif kind == 2:  # Up
            line = bytearray((a + b) & 0xFF for a, b in zip(line, prev, strict=True))
        elif kind == 3:  # Average
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 0xFF
        elif kind == 4:  # Paeth
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b = prev[i]
                c = prev[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[i] = (line[i] + pred) & 0xFF
        elif kind != 0:
            raise ValueError(f"bad PNG filter {kind} on row {y}")
        out += line if bpp == 3 else bytes(b for i, b in enumerate(line) if i % 4 != 3)
        prev = line
    return width, height, bytes(out)
