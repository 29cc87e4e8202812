"""The service's page for people: server-rendered, escaped, behind the token, and live in a real browser.

The first tests use FastAPI's test client on a store of constructed trials (no training): escaping, login, the
static files, the figures endpoint. The browser tests start the real app with uvicorn on localhost and drive Debian's
chromium (tests/browser.py's flags): the live study view redraws as trials land and stops asking once the study is
finished; the studies list refreshes on its own; and the whole flow on the tiny BERT: submit a spec with a data file
on the page, a worker runs it, the page follows without a reload, Export downloads a zip holding the model. Every
request to another host is recorded and refused; no console error is allowed.

SWEEP_SERVICE_SCREENSHOT=docs/service.png saves the live study page's screenshot there (how docs/service.png is made).
"""

from __future__ import annotations

import contextlib
import datetime
import io
import os
import shutil
import socket
import tempfile
import threading
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import optuna
import pytest
import uvicorn
import yaml
from browser import CHROMIUM_ARGS, chromium_unavailable_reason, find_chromium, png_stats
from conftest import quickstart_subset, split_per_class, write_csv
from fastapi import FastAPI
from fastapi.testclient import TestClient
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

from record import StudyRecord, Timings, trial_attrs, write_study
from sweep.service.app import create_app
from sweep.service.settings import ServiceSettings
from sweep.storage import open_storage

TOKEN = "s3cret-token-for-tests"
DISTRIBUTIONS = {
    "learning_rate": FloatDistribution(1e-5, 1e-3, log=True),
    "batch_size": CategoricalDistribution([16, 32]),
    "epochs": IntDistribution(1, 4),
}
# (learning_rate, batch_size, epochs, per-epoch validation values): the constructed study's trials, in order
TRIALS = [
    (3e-5, 32, 2, [0.52, 0.61]),
    (2e-4, 16, 3, [0.66, 0.74, 0.78]),
    (8e-4, 32, 2, [0.41, 0.45]),
    (1e-4, 16, 3, [0.63, 0.71, 0.75]),
    (5e-5, 16, 4, [0.58, 0.66, 0.70, 0.72]),
    (4e-4, 32, 3, [0.60, 0.69, 0.73]),
]


# --- a store of constructed studies --------------------------------------------------------------------------


def make_study(url: str, name: str, budget: int, *, submitted_at: float | None = None) -> optuna.Study:
    study = optuna.create_study(study_name=name, storage=url, direction="maximize")
    record = StudyRecord(spec={"name": name}, data_fingerprint="0" * 16, metric="f1_macro", budget=budget,
                         label_names=["billing", "bug", "feature", "account"],
                         submitted_at=submitted_at or time.time())  # fmt: skip
    write_study(study.set_user_attr, record)
    return study


def add_trial(study: optuna.Study, index: int, *, running: bool = False) -> None:
    lr, batch, epochs, values = TRIALS[index % len(TRIALS)]
    best = max(values)
    attrs = trial_attrs(best_epoch=1 if running else values.index(best) + 1,
                        worker=f"gpu-{index % 2 + 1}:{4100 + index}",
                        timings=Timings(train=20.0 + index, validation=1.0, total=22.0 + index))  # fmt: skip
    trial = create_trial(
        state=TrialState.RUNNING if running else TrialState.COMPLETE,
        value=None if running else best,
        params={"learning_rate": lr, "batch_size": batch, "epochs": epochs},
        distributions=DISTRIBUTIONS,
        user_attrs=attrs,
        intermediate_values={i + 1: v for i, v in enumerate(values[:1] if running else values)},
    )
    if trial.datetime_complete is not None:  # as long as a small trial takes
        trial.datetime_start = trial.datetime_complete - datetime.timedelta(seconds=22.0 + 3 * index)
    study.add_trial(trial)


@pytest.fixture()
def store(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'service.db'}"


def client(url: str, folder: Path, **extra: Any) -> TestClient:
    return TestClient(create_app(ServiceSettings(storage_url=url, folder=folder, **extra)))


# --- without a browser ----------------------------------------------------------------------------------------


def test_pages_escape_what_users_wrote(store: str, tmp_path: Path) -> None:
    name = '<img src=x onerror="alert(1)">&'
    add_trial(make_study(store, name, budget=3), 0)
    c = client(store, tmp_path / "srv")
    page = c.get("/studies/" + name)
    assert page.status_code == 200
    assert "<img src=x" not in page.text
    assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;&amp;" in page.text
    # the API links are built with the name quoted for a URL, not only escaped for HTML
    assert "/api/studies/%3Cimg%20src%3Dx%20onerror%3D%22alert%281%29%22%3E%26/export" in page.text
    missing = c.get("/studies/<b>nope")
    assert missing.status_code == 404
    assert "<b>nope" not in missing.text and "&lt;b&gt;nope" in missing.text
    index = c.get("/")
    assert index.status_code == 200
    csp = page.headers["content-security-policy"]
    assert "script-src 'self';" in csp and "unsafe-inline" not in csp.split("style-src")[0], csp
    assert 'id="submit-form"' in index.text and 'name="spec"' in index.text and 'name="data"' in index.text
    # the list is in the page itself (read without its script too), the name escaped and its link quoted
    assert "<img src=x" not in index.text
    assert '<a href="/studies/%3Cimg%20src%3Dx%20onerror%3D%22alert%281%29%22%3E%26">&lt;img src=x' in index.text
    assert ">1/3</span>" in index.text and "0.6100 f1_macro" in index.text and "loading…" not in index.text


def test_the_studies_list_is_drawn_in_the_page_and_says_when_there_is_none(store: str, tmp_path: Path) -> None:
    c = client(store, tmp_path / "srv")
    assert "no study yet: submit one below" in c.get("/").text  # a fresh store
    add_trial(make_study(store, "older", budget=2, submitted_at=1_700_000_000.0), 1, running=True)
    add_trial(make_study(store, "newer", budget=4), 0)
    text = c.get("/").text
    assert text.index('data-study="newer"') < text.index('data-study="older"')  # newest submission first
    row = text[text.index('data-study="older"'):].split("</tr>")[0]
    assert "state-running" in row and ">0/2</span>" in row and "gpu-2:4101" in row and "2023-11-14 22:13:20 UTC" in row
    assert "no study yet" not in text


def test_a_study_page_without_a_store_says_why_as_a_page(tmp_path: Path) -> None:
    c = client("postgresql+psycopg://sweep:hunter2@127.0.0.1:1/sweeps", tmp_path / "srv")
    page = c.get("/studies/any")
    assert page.status_code in (400, 503) and page.headers["content-type"].startswith("text/html")
    assert "127.0.0.1:1" in page.text and "hunter2" not in page.text
    index = c.get("/")  # the list page itself opens without a store, says why it has no list, and keeps the form
    assert index.status_code == 200 and 'id="submit-form"' in index.text
    assert "could not read the studies: " in index.text and "127.0.0.1:1" in index.text and "hunter2" not in index.text


def test_static_files_are_a_fixed_list_and_plotly_is_ours(store: str, tmp_path: Path) -> None:
    make_study(store, "s", budget=1)
    c = client(store, tmp_path / "srv")
    plotly_js = c.get("/static/plotly.min.js")
    assert plotly_js.status_code == 200
    assert len(plotly_js.content) > 1_000_000 and b"plotly.js" in plotly_js.content[:2000]
    assert "max-age" in plotly_js.headers["cache-control"]
    assert c.get("/static/app.js").headers["content-type"].startswith("text/javascript")
    assert c.get("/static/style.css").status_code == 200
    for bad in ("nothing.js", "..%2Fpages.py", "%2E%2E%2Fsettings.py", "templates"):
        assert c.get("/static/" + bad).status_code == 404, bad
    # nothing the pages load comes from another host
    for page in ("/", "/studies/s"):
        html = c.get(page).text
        assert "http://" not in html and "https://" not in html and "//cdn" not in html


def test_templates_and_static_files_ship_as_package_data() -> None:
    import fnmatch
    import json
    import re

    import sweep.service

    root = Path(sweep.service.__file__).parent
    pyproject = (root.parents[1] / "pyproject.toml").read_text(encoding="utf-8")
    table = r'^\[tool\.setuptools\.package-data\][^\[]*?^"sweep\.service" = (\[.*?\])$'
    found = re.search(table, pyproject, re.M | re.S)
    assert found, "pyproject.toml ships no package data for sweep.service"
    shipped = json.loads(found.group(1))
    files = [p.relative_to(root).as_posix() for d in ("templates", "static") for p in (root / d).iterdir()]
    assert files and all(any(fnmatch.fnmatch(f, pat) for pat in shipped) for f in files), (files, shipped)


def test_figures_are_the_reports_plotly_figures(store: str, tmp_path: Path) -> None:
    study = make_study(store, "figs", budget=6)
    c = client(store, tmp_path / "srv")
    empty = c.get("/studies/figs/figures.json").json()
    assert empty["history"] is None and empty["learning_curves"] is None and empty["importance"] is None
    assert "at least 2 completed trials" in empty["importance_note"]

    add_trial(study, 0)
    one = c.get("/studies/figs/figures.json").json()
    assert one["finished"] == 1 and one["importance"] is None
    assert one["history"]["layout"]["title"]["text"] == "Optimization history"
    assert [len(t["x"]) for t in one["learning_curves"]["data"]] == [2]

    for i in range(1, 4):
        add_trial(study, i)
    add_trial(study, 4, running=True)
    four = c.get("/studies/figs/figures.json").json()
    assert four["state"] == "running" and four["finished"] == 4
    history = {t["name"]: t for t in four["history"]["data"]}
    assert history["best so far"]["y"] == [0.61, 0.78, 0.78, 0.78]
    assert len(four["learning_curves"]["data"]) == 5, "the running trial's first evaluation is drawn too"
    assert four["importance"]["layout"]["title"]["text"] == "Hyperparameter importance"
    # what 4 trials cannot show is said under the live figure as under the report's
    assert four["importance_note"].startswith("From 4 completed trials for ")
    assert "a rough hint, not a ranking" in four["importance_note"]
    assert c.get("/studies/nope/figures.json").status_code == 404


def test_login_sets_a_strict_httponly_cookie_and_pages_need_it(store: str, tmp_path: Path) -> None:
    make_study(store, "private", budget=2)
    c = client(store, tmp_path / "srv", token=TOKEN)
    for page in ("/", "/studies/private"):
        answer = c.get(page, follow_redirects=False)
        assert answer.status_code == 303 and answer.headers["location"] == "/login", page
    assert c.get("/studies/private/figures.json").status_code == 401
    assert c.get("/api/studies").status_code == 401  # the API answers JSON, it does not redirect
    form = c.get("/login")
    assert form.status_code == 200 and 'type="password"' in form.text

    wrong = c.post("/login", data={"token": "guess"}, follow_redirects=False)
    assert wrong.status_code == 401 and "not the token this server was started with" in wrong.text
    assert "set-cookie" not in wrong.headers and "guess" not in wrong.text
    assert c.post("/login", data={}, follow_redirects=False).status_code == 401

    newline = c.post("/login", data={"token": TOKEN + "\n"}, follow_redirects=False)  # `curl -d token@file`
    assert newline.status_code == 303
    right = c.post("/login", data={"token": TOKEN}, follow_redirects=False)
    assert right.status_code == 303 and right.headers["location"] == "/"
    cookie = right.headers["set-cookie"]
    assert cookie.startswith("sweep_session=") and TOKEN not in cookie  # a signed session, not the token
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    assert f"Max-Age={12 * 3600}" in cookie
    assert "Secure" not in cookie, "plain http on localhost: a Secure cookie would never come back"
    for page in ("/", "/studies/private", "/studies/private/figures.json", "/api/studies"):
        answer = c.get(page)
        assert answer.status_code == 200, page
        assert TOKEN not in answer.text, f"{page} shows the token"
    assert c.get("/login", follow_redirects=False).headers["location"] == "/"
    assert "log out" in c.get("/").text

    https = TestClient(c.app, base_url="https://testserver")
    secure = https.post("/login", data={"token": TOKEN}, follow_redirects=False).headers["set-cookie"]
    assert "Secure" in secure

    kept = c.cookies.get("sweep_session")
    out = c.post("/logout", follow_redirects=False)
    assert out.status_code == 303 and 'sweep_session=""' in out.headers["set-cookie"]
    c.cookies.set("sweep_session", kept)  # a copy kept of the logged-out session's cookie is refused
    assert c.get("/api/studies").status_code == 401


def test_without_a_token_there_is_no_login(store: str, tmp_path: Path) -> None:
    make_study(store, "open", budget=2)
    c = client(store, tmp_path / "srv")
    assert c.get("/login", follow_redirects=False).headers["location"] == "/"
    assert "log out" not in c.get("/").text
    assert c.get("/").status_code == 200


# --- in a real browser ----------------------------------------------------------------------------------------


@pytest.fixture
def browser_ready() -> None:
    reason = chromium_unavailable_reason()
    if reason is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the browser tests, but: {reason}")
    pytest.skip(f"no headless browser here: {reason}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.contextmanager
def serving(app: FastAPI) -> Iterator[str]:
    """The app on a real uvicorn on 127.0.0.1 (a thread), as `sweep serve` runs it; yields its origin."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@dataclass
class Seen:
    """What the browser did besides showing the page."""

    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)  # requests to any other host (refused)
    requests: list[str] = field(default_factory=list)  # paths asked of our server, in order
    refused: list[str] = field(default_factory=list)  # "METHOD path status" of every 4xx/5xx answer

    def asked(self, prefix: str) -> int:
        return sum(p.startswith(prefix) for p in self.requests)


@contextlib.contextmanager
def browser(origin: str) -> Iterator[tuple[Any, Seen]]:
    """A headless Chromium page that may talk to `origin` only (anything else is recorded and aborted)."""
    from playwright.sync_api import sync_playwright

    seen = Seen()
    ours = urlsplit(origin).netloc

    def on_route(route: Any) -> None:
        parts = urlsplit(route.request.url)
        if parts.scheme in ("http", "https") and parts.netloc == ours:
            seen.requests.append(parts.path + (f"?{parts.query}" if parts.query else ""))
            route.continue_()
        else:
            seen.foreign.append(route.request.url)
            route.abort("blockedbyclient")

    def on_websocket(ws: Any) -> None:
        seen.foreign.append(ws.url)
        ws.close(code=1008, reason="blocked by the test")

    with tempfile.TemporaryDirectory(prefix="sweep-chromium-") as profile, sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            profile, executable_path=find_chromium(), headless=True, args=BROWSER_ARGS,
            viewport={"width": 1280, "height": 900}, service_workers="block", accept_downloads=True,
        )  # fmt: skip
        try:
            context.route("**/*", on_route)
            context.route_web_socket("**/*", on_websocket)
            context.on("response", lambda r: seen.refused.append(
                f"{r.request.method} {urlsplit(r.url).path} {r.status}") if r.status >= 400 else None)
            context.on("console", lambda m: seen.console_errors.append(m.text) if m.type == "error" else None)
            page = context.pages[0] if context.pages else context.new_page()
            page.on("pageerror", lambda error: seen.page_errors.append(str(error)))
            page.set_default_timeout(30_000)
            yield page, seen
        finally:
            context.close()


def text_of(page: Any, selector: str) -> str:
    return str(page.locator(selector).inner_text())


def wait_text(page: Any, selector: str, wanted: str, timeout_ms: int = 30_000) -> None:
    page.wait_for_function(
        "([sel, want]) => { const n = document.querySelector(sel); return !!n && n.textContent.includes(want); }",
        arg=[selector, wanted], timeout=timeout_ms,
    )  # fmt: skip


# tests/browser.py's flags, but the browser may resolve our own loopback address (every host name still fails)
BROWSER_ARGS = [
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1" if a.startswith("--host-resolver-rules") else a
    for a in CHROMIUM_ARGS
]
DRAWN_JS = "(id) => !!document.querySelector('#' + id + '.js-plotly-plot .main-svg')"


def save_screenshot(page: Any, tmp_path: Path) -> Path:
    shot = tmp_path / "service.png"
    page.screenshot(path=str(shot), full_page=True)
    wanted = os.environ.get("SWEEP_SERVICE_SCREENSHOT")
    if wanted:
        Path(wanted).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, wanted)
    return shot


def test_live_view_redraws_in_place_and_stops_when_finished(
    store: str, tmp_path: Path, browser_ready: None
) -> None:
    study = make_study(store, "support-tickets-minilm", budget=6)
    add_trial(study, 0)
    app = create_app(ServiceSettings(storage_url=store, folder=tmp_path / "srv", refresh_seconds=0.3))
    with serving(app) as origin, browser(origin) as (page, seen):
        page.goto(origin + "/studies/support-tickets-minilm", wait_until="load")
        wait_text(page, "#progress", "1/6 trials finished")
        assert text_of(page, "#state") == "queued"
        marker = page.evaluate("window.sweepPageLoad")
        page.wait_for_function(DRAWN_JS, arg="fig-history")
        assert page.locator("#fig-importance").is_hidden()
        assert page.locator("#data").is_hidden(), "a study without a data report shows no data section"
        assert "at least 2 completed trials" in text_of(page, "#importance-note")
        assert page.locator("#export").get_attribute("aria-disabled") == "false"

        for i in range(1, 4):  # trials land while the page is open
            add_trial(study, i)
        add_trial(study, 4, running=True)
        wait_text(page, "#progress", "4/6 trials finished")
        wait_text(page, "#state", "running")
        page.wait_for_function(DRAWN_JS, arg="fig-importance")
        assert page.evaluate("window.sweepPageLoad") == marker, "the page was reloaded instead of updated"
        assert page.url == origin + "/studies/support-tickets-minilm"
        assert "trial 1" in text_of(page, "#best") and "0.7800 f1_macro" in text_of(page, "#best")
        assert text_of(page, "#best-params") == "learning_rate=2.00e-4, batch_size=16, epochs=3"
        assert "gpu-1:4104" in text_of(page, "#running")
        assert page.locator("#trials tbody tr").count() == 5
        assert page.locator("#trials tr.best td").first.inner_text() == "1"
        assert page.locator("#stop").is_enabled() and page.locator("#resume").is_disabled()
        page.wait_for_timeout(500)  # let the redrawn figures settle for the picture
        shot = save_screenshot(page, tmp_path)

        if has_route(app, "POST", "/api/studies/{name}/stop"):  # Stop, then Resume, from the page
            page.click("#stop")
            wait_text(page, "#stopped", "stopped by a user of the service")
            assert page.locator("#stop").is_disabled() and page.locator("#resume").is_enabled()
            page.click("#resume")
            page.wait_for_selector("#stopped", state="hidden")
            assert page.locator("#stop").is_enabled() and page.locator("#resume").is_disabled()

        # the study finishes: the page says so, then stops asking
        study.tell(4, 0.72)
        add_trial(study, 5)
        wait_text(page, "#state", "finished")
        wait_text(page, "#progress", "6/6 trials finished")
        asked = seen.asked("/api/studies/support-tickets-minilm")
        page.wait_for_timeout(1500)  # five refresh periods
        assert seen.asked("/api/studies/support-tickets-minilm") == asked, f"still polled: {seen.requests[-6:]}"
        assert page.locator("#stop").is_disabled()
        assert page.evaluate("window.sweepPageLoad") == marker

        # a colleague continues it from elsewhere: the open page follows, slowly (it showed "finished" for good)
        from sweep.catalog import resume_study

        resume_study("support-tickets-minilm", store, 7)
        wait_text(page, "#progress", "6/7 trials finished", timeout_ms=15_000)
        wait_text(page, "#state", "queued")

        if has_route(app, "POST", "/api/studies/{name}/resume"):  # more trials for the finished study, from the page
            assert page.input_value("#more-trials") == "11" and page.get_attribute("#more-trials", "min") == "7"
            page.fill("#more-trials", "8")
            page.click("#more-go")
            wait_text(page, "#state", "queued")
            wait_text(page, "#progress", "6/8 trials finished")
            assert page.evaluate("window.sweepPageLoad") == marker
            # a refused request's reason stays on the page (the next refresh wiped it within 62 ms)
            page.fill("#more-trials", "100000000")
            page.click("#more-go")
            wait_text(page, "#action-error", "must be at most")
            page.wait_for_timeout(1500)  # several refreshes
            assert page.locator("#action-error").is_visible() and "must be at most" in text_of(page, "#action-error")

    refused = [r for r in seen.refused if r != "POST /api/studies/support-tickets-minilm/resume 400"]  # the one above
    errors = [e for e in seen.console_errors if "status of 400" not in e]  # Chromium logs that refusal too
    assert seen.page_errors == [] and errors == [], (seen.page_errors, seen.console_errors, seen.refused)
    assert refused == []
    assert seen.foreign == [], "the page asked another host"
    assert "/static/plotly.min.js" in seen.requests
    stats = png_stats(shot)
    assert stats.width >= 1200 and stats.distinct_colours > 200 and stats.top_colour_share < 0.95


def test_studies_list_refreshes_and_needs_login_with_a_token(
    store: str, tmp_path: Path, browser_ready: None
) -> None:
    add_trial(make_study(store, "first", budget=2, submitted_at=1_700_000_000.0), 0)
    app = create_app(ServiceSettings(storage_url=store, folder=tmp_path / "srv", token=TOKEN, refresh_seconds=0.3))
    with serving(app) as origin, browser(origin) as (page, seen):
        page.goto(origin + "/", wait_until="load")
        assert urlsplit(page.url).path == "/login"
        assert page.locator("form[action='/logout']").count() == 0
        page.fill("input[name=token]", "wrong")
        page.click("form[action='/login'] button[type=submit]")
        assert "not the token this server was started with" in text_of(page, "#login-error")
        page.fill("input[name=token]", TOKEN)
        page.click("form[action='/login'] button[type=submit]")
        page.wait_for_url(origin + "/")
        wait_text(page, "#studies", "first")
        row = page.locator("#studies tr[data-study=first]")
        assert "1/2" in row.inner_text() and "0.6100 f1_macro" in row.inner_text()
        assert row.locator(".badge").inner_text() == "queued"
        marker = page.evaluate("window.sweepPageLoad")
        make_study(store, "<b>second</b>", budget=3)  # a new study appears without a reload, as text
        wait_text(page, "#studies", "<b>second</b>")
        assert page.locator("#studies b").count() == 0
        assert page.evaluate("window.sweepPageLoad") == marker
        names = page.locator("#studies tbody tr").evaluate_all("rows => rows.map(r => r.dataset.study)")
        assert names == ["<b>second</b>", "first"], "newest submission first"
        # the cookie is HttpOnly: the page's script cannot read the token
        assert TOKEN not in page.evaluate("document.cookie")
    assert seen.page_errors == [] and seen.foreign == [], (seen.page_errors, seen.foreign)
    assert seen.refused == ["POST /login 401"], seen.refused
    # the one 401 of the wrong token shows as a failed resource in the console; nothing else may
    assert all("401" in e for e in seen.console_errors), seen.console_errors


# --- the whole flow on the tiny BERT ---------------------------------------------------------------------------


def has_route(app: FastAPI, method: str, path: str) -> bool:
    """Whether the API has this route (read from its OpenAPI schema: included routers are not in `app.routes`)."""
    return method.lower() in app.openapi().get("paths", {}).get(path, {})


def flow_spec(encoder: Path) -> dict[str, Any]:
    return {
        "name": "browser-flow",
        "model": {"encoder": str(encoder), "max_length": 32},
        "search": {
            "n_trials": 2,
            "sampler": "random",
            "pruner": "none",
            "space": {"learning_rate": {"low": 1e-3, "high": 5e-3, "log": True}, "batch_size": 8, "epochs": 1},
        },
        "trainer": {"num_threads": 1},
    }


def test_submit_follow_and_export_on_the_page(tmp_path: Path, tiny_bert: Path, browser_ready: None) -> None:
    from sweep.joining import join_study

    url = f"sqlite:///{tmp_path / 'service.db'}"
    rows = quickstart_subset(12, seed=5)
    train, val = split_per_class(rows, 3)
    train_csv = write_csv(tmp_path / "upload" / "train.csv", train)
    val_csv = write_csv(tmp_path / "upload" / "val.csv", val)
    spec = flow_spec(tiny_bert)
    open_storage(url)  # the store's tables, as `sweep serve` creates them before its first request
    app = create_app(ServiceSettings(storage_url=url, folder=tmp_path / "srv", model_roots=(tiny_bert.parent,),
                                     refresh_seconds=0.5))  # fmt: skip
    can_submit = has_route(app, "POST", "/api/studies")
    can_export = has_route(app, "GET", "/api/studies/{name}/export")
    if not can_submit:  # created as `sweep run SPEC --workers 0` would, so the rest of the flow still runs
        from sweep.runner import run_study

        data = {"train": str(train_csv), "validation": str(val_csv), "cache_dir": str(tmp_path / "cache")}
        made = {**spec, "storage": url, "data": data, "checkpoint_dir": str(tmp_path / "checkpoints")}
        (tmp_path / "spec.yaml").write_text(yaml.safe_dump(made), encoding="utf-8")
        run_study(tmp_path / "spec.yaml", workers=0)

    with serving(app) as origin, browser(origin) as (page, seen):
        page.goto(origin + "/", wait_until="load")
        if can_submit:
            # a spec with two mistakes: every problem is listed under the form, nothing is created
            bad = {**spec, "search": {**spec["search"], "n_trials": 0, "sampler": "grid-of-doom"}}
            page.fill("textarea[name=spec_text]", yaml.safe_dump(bad))
            page.set_input_files("input[name=data]", str(train_csv))
            page.click("#submit-button")
            page.wait_for_selector("#submit-errors li")
            lines = page.locator("#submit-errors li").all_inner_texts()
            assert len(lines) >= 2 and any("n_trials" in line for line in lines), lines
            assert urlsplit(page.url).path == "/"

            page.fill("textarea[name=spec_text]", yaml.safe_dump(spec))
            page.set_input_files("input[name=validation]", str(val_csv))
            page.click("#submit-button")
            page.wait_for_url(origin + "/studies/browser-flow", timeout=120_000)
        else:
            page.goto(origin + "/studies/browser-flow", wait_until="load")
        wait_text(page, "#progress", "0/2 trials finished")
        assert text_of(page, "#state") == "queued"
        marker = page.evaluate("window.sweepPageLoad")

        # a worker takes the study (in this process's main thread; the server answers from its own thread)
        join_study("browser-flow", url, threads=1)
        wait_text(page, "#progress", "2/2 trials finished")
        wait_text(page, "#state", "finished")
        assert page.evaluate("window.sweepPageLoad") == marker, "the page was reloaded instead of updated"
        page.wait_for_function(DRAWN_JS, arg="fig-curves")
        page.wait_for_function(DRAWN_JS, arg="fig-history")
        # two trials of a tiny model may score the same: then the page says why there is no importance
        importance = page.evaluate(DRAWN_JS, "fig-importance")
        assert importance or "importance needs" in text_of(page, "#importance-note")
        assert page.locator("#trials tbody tr").count() == 2
        assert "36 train, 12 validation examples, 4 labels" in text_of(page, "#data-summary")
        assert page.locator("#classes tbody tr").count() == 4

        if can_export:
            with page.expect_download(timeout=120_000) as download_info:
                page.click("#export")
            download = download_info.value
            assert download.suggested_filename.startswith("browser-flow-trial-")
            assert download.suggested_filename.endswith(".zip")
            saved = tmp_path / download.suggested_filename
            download.save_as(saved)
            names = zipfile.ZipFile(io.BytesIO(saved.read_bytes())).namelist()
            assert any(n.rsplit("/", 1)[-1] == "config.json" for n in names), names
            # a trial's own export link: asked for first, then saved under the server's file name
            with page.expect_download(timeout=120_000) as download_info:
                page.locator("#trials a.export-trial").first.click()
            assert download_info.value.suggested_filename.startswith("browser-flow-trial-")
            assert download_info.value.suggested_filename.endswith(".zip")

    # the one refused request is the bad spec (the browser logs it as a failed resource); nothing else failed
    assert seen.refused == (["POST /api/studies 400"] if can_submit else []), seen.refused
    assert seen.page_errors == [], seen.page_errors
    assert len(seen.console_errors) == len(seen.refused), seen.console_errors
    assert all("400" in e for e in seen.console_errors), seen.console_errors
    assert seen.foreign == [], "the page asked another host"
    missing = [what for what, there in (("POST /api/studies", can_submit), ("export", can_export)) if not there]
    if missing:
        pytest.skip(f"the flow ran without {', '.join(missing)}: not built in this branch yet (engineer API's routes)")
