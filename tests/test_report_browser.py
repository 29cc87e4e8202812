"""The HTML report renders offline in a real (headless Chromium) browser: every figure drawn, no errors, no requests.

Skipped with its reason where no browser is installed; under CI (CI set), a missing browser fails instead, since
.ci/run installs Debian's chromium first. The full-page screenshot stays in pytest's tmp_path (path printed; -s).
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import optuna
import pytest
from browser import chromium_unavailable_reason, png_stats, render_page
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

from record import StudyRecord, Timings, trial_attrs, write_study

LABELS = ["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"]
DISTRIBUTIONS = {
    "learning_rate": FloatDistribution(1e-5, 1e-3, log=True),
    "batch_size": CategoricalDistribution([16, 32]),
    "epochs": IntDistribution(1, 4),
}


@pytest.fixture
def browser_ready() -> None:
    reason = chromium_unavailable_reason()
    if reason is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the browser tests, but: {reason}")
    pytest.skip(f"no headless browser here: {reason}")


def per_class(rng: random.Random, f1: float) -> dict[str, dict[str, float]]:
    scores = {}
    for label in LABELS:
        p, r = min(1.0, f1 + rng.uniform(-0.1, 0.1)), min(1.0, f1 + rng.uniform(-0.1, 0.1))
        scores[label] = {"precision": p, "recall": r, "f1": 2 * p * r / (p + r), "support": rng.randint(5, 40)}
    return scores


def confusion(rng: random.Random, f1: float) -> list[list[int]]:
    size = len(LABELS)
    diagonal = int(30 * f1)
    return [[diagonal + rng.randint(0, 5) if i == j else rng.randint(0, 4) for j in range(size)] for i in range(size)]


def make_study(name: str, n_complete: int, n_pruned: int, seed: int) -> optuna.Study:
    """An in-memory study shaped like a sweep's: searched params, per-epoch values, the attrs the objective records."""
    rng = random.Random(seed)
    study = optuna.create_study(study_name=name, direction="maximize")
    write_study(study.set_user_attr, StudyRecord(metric="f1_macro", label_names=LABELS, data_report={
        "class_distribution": {
            "train": {label: rng.randint(40, 400) for label in LABELS},
            "validation": {label: rng.randint(5, 60) for label in LABELS},
        },
        "warnings": ["2 rows had an empty text and were dropped", "class ABBR has fewer than 50 training rows"],
    }))  # fmt: skip
    for number in range(n_complete + n_pruned):
        pruned = number >= n_complete
        params = {
            "learning_rate": 10 ** rng.uniform(-5, -3),
            "batch_size": rng.choice([16, 32]),
            "epochs": rng.randint(2, 4),
        }
        epoch1 = rng.uniform(0.3, 0.6) if pruned else rng.uniform(0.5, 0.8)
        epoch2 = epoch1 + rng.uniform(-0.05, 0.15)
        best = max(epoch1, epoch2)
        metrics = {"f1_macro": best, "accuracy": min(1.0, best + 0.05), "loss": 1.5 - best}
        attrs = trial_attrs(
            best_epoch=1 if epoch1 >= epoch2 else 2,
            hyperparameters={**params, "weight_decay": 0.01, "warmup_ratio": 0.1, "max_length": 64},
            per_class=per_class(rng, best),
            confusion_matrix=confusion(rng, best),
            metrics=metrics,
            timings=Timings(train=rng.uniform(5, 20), validation=rng.uniform(0.5, 2), total=rng.uniform(8, 25)),
        )
        study.add_trial(
            create_trial(
                state=TrialState.PRUNED if pruned else TrialState.COMPLETE,
                value=None if pruned else best,
                params=params,
                distributions=DISTRIBUTIONS,
                user_attrs=attrs,
                intermediate_values={1: epoch1} if pruned else {1: epoch1, 2: epoch2},
            )
        )
    return study


def test_report_renders_offline_in_chromium(tmp_path: Path, browser_ready: None) -> None:
    from reports import write_report

    studies = [make_study("minilm-lr", 6, 2, seed=1), make_study("minilm-bs", 4, 1, seed=2)]
    out = tmp_path / "report.html"
    started = time.monotonic()
    report = write_report(studies, out)
    print(f"write_report: {report.figures} figures, skipped {report.skipped}, {time.monotonic() - started:.1f}s")
    assert out.is_file()

    page = render_page(out, tmp_path / "report.png")
    print(page.summary())
    assert page.console_errors == []
    assert page.page_errors == []
    assert page.requests == [], "the report must need no network at all"
    assert page.figure_count > 5
    assert page.figure_count == report.figures
    not_drawn = [f for f in page.figures if not f.rendered]
    assert page.rendered_count == page.figure_count, f"figures not drawn: {not_drawn}"

    shot = png_stats(page.screenshot)
    print(f"screenshot {page.screenshot}: {shot}")
    assert shot.width >= 1000
    assert shot.height > 900 * 2, "a full-page screenshot of many figures is taller than the viewport"
    assert shot.distinct_colours > 200, "the screenshot is (nearly) blank"
    assert shot.top_colour_share < 0.95


def test_harness_reports_requests_errors_and_undrawn_figures(tmp_path: Path, browser_ready: None) -> None:
    """The control: a page that fetches a script, throws, and has an empty figure div is caught on every count."""
    page_path = tmp_path / "broken.html"
    page_path.write_text(
        "<!doctype html><html><head><meta charset='utf-8'></head><body><h1>broken</h1>"
        '<div class="plotly-graph-div" style="width:400px;height:300px"></div>'
        '<script src="http://127.0.0.1:9/x.js"></script>'
        '<script>throw new Error("boom")</script></body></html>',
        encoding="utf-8",
    )
    page = render_page(page_path, tmp_path / "broken.png", wait_ms=500)
    print(page.summary(), page.console_errors)
    assert page.requests == ["http://127.0.0.1:9/x.js"]
    assert len(page.page_errors) == 1 and "boom" in page.page_errors[0]
    assert page.figure_count == 1 and page.rendered_count == 0
    assert page.screenshot.is_file()


def test_confusion_matrix_cells_show_their_counts_in_chromium(tmp_path: Path, browser_ready: None) -> None:
    """A user's report drew "-" in every cell: plotly's heatmap texttemplate has no customdata."""
    from browser import CHROMIUM_ARGS, find_chromium
    from playwright.sync_api import sync_playwright

    from reports.figures import ConfusionData, plot_confusion

    page_file = tmp_path / "confusion.html"
    page_file.write_text(plot_confusion(ConfusionData(["neg", "pos"], [[19, 0], [14, 7]])).to_html(
        include_plotlyjs=True, full_html=True), encoding="utf-8")  # fmt: skip
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=find_chromium(), args=list(CHROMIUM_ARGS))
        try:
            page = browser.new_page()
            page.goto(page_file.as_uri(), wait_until="load")
            page.wait_for_selector("svg.main-svg", timeout=15_000)
            texts = page.eval_on_selector_all(".heatmaplayer text, g.textpoint text, svg text",
                                              "els => els.map((e) => e.textContent.trim())")  # fmt: skip
        finally:
            browser.close()
    assert {"19", "0", "14", "7"} <= set(texts) and "-" not in texts
