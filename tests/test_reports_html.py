"""reports.write_report: one self-contained, offline HTML file, written atomically; optional PNGs."""

from __future__ import annotations

import importlib.util
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import optuna
import plotly.graph_objects as go
import plotly.offline
import pytest
from test_reports_figures import rich_study

import reports.page
from record import read_study, write_study
from reports import ReportResult, build_report, write_report

PLOTLY_JS = plotly.offline.get_plotlyjs()
MARKER = PLOTLY_JS[:400]  # the licence banner and loader: appears once per embedded copy


def outside_plotly_js(text: str) -> str:
    """The page without the embedded plotly.js bundle (whose source mentions map-tile URLs it never fetches here)."""
    assert text.count(PLOTLY_JS) == 1
    return text.replace(PLOTLY_JS, "")


@pytest.fixture(scope="module")
def studies() -> list[optuna.Study]:
    return [rich_study("alpha"), rich_study("beta <b>&</b>")]


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory, studies: list[optuna.Study]) -> tuple[ReportResult, str]:
    out = tmp_path_factory.mktemp("single") / "report.html"
    result = write_report(studies[:1], out, seed=0)
    return result, out.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def compared(tmp_path_factory: pytest.TempPathFactory, studies: list[optuna.Study]) -> tuple[ReportResult, str]:
    out = tmp_path_factory.mktemp("compared") / "report.html"
    result = write_report(studies, out, seed=0)
    return result, out.read_text(encoding="utf-8")


def test_plotly_js_is_embedded_exactly_once(single: tuple[ReportResult, str]) -> None:
    _, text = single
    assert text.count(MARKER) == 1
    assert text.count(PLOTLY_JS) == 1
    assert text.count("<script") == 1 + single[0].figures  # the bundle, then one script per figure
    assert not re.search(r"<script[^>]*\ssrc=", text)


def test_no_external_references(single: tuple[ReportResult, str], compared: tuple[ReportResult, str]) -> None:
    for _, text in (single, compared):
        page = outside_plotly_js(text)
        assert "http://" not in page and "https://" not in page
        assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", page, flags=re.I)
        assert "mathjax" not in page.lower()
        assert "<link" not in page and "@import" not in page and "url(" not in page
        for target in re.findall(r"""href=["']([^"']*)["']""", page):
            assert target.startswith("#"), target


def test_one_div_per_figure(single: tuple[ReportResult, str], studies: list[optuna.Study]) -> None:
    result, text = single
    expected = sum(len(s.figures) for s in build_report(studies[:1], seed=0))
    assert result.figures == expected
    assert expected >= 10
    page = outside_plotly_js(text)
    assert page.count('class="plotly-graph-div"') == expected
    assert page.count("Plotly.newPlot(") == expected
    ids = re.findall(r'id="(fig-[^"]+)" class="plotly-graph-div"', page)
    assert len(set(ids)) == expected


def test_page_structure(single: tuple[ReportResult, str], studies: list[optuna.Study]) -> None:
    result, text = single
    assert "<title>Sweep report: alpha</title>" in text
    page = outside_plotly_js(text)
    assert page.count("<section id=") == len(build_report(studies[:1]))
    for title in ("Summary", "What to try next", "Hyperparameter importance", "Learning curves",
                  "Expected validation performance", "Data"):
        assert f">{title}</h2>" in page
    assert "<caption>Per-class scores of trial 3 at its best epoch, lowest F1 first</caption>" in page
    assert "RuntimeError: CUDA out of memory" in page
    assert result.skipped == []


def test_every_link_has_a_target(compared: tuple[ReportResult, str]) -> None:
    page = outside_plotly_js(compared[1])
    ids = re.findall(r"""\sid=["']([^"']+)["']""", page)
    assert len(ids) == len(set(ids))
    links = re.findall(r"""href=["']#([^"']+)["']""", page)
    assert len(links) > 20
    assert set(links) <= set(ids)


def test_comparison_page(compared: tuple[ReportResult, str], studies: list[optuna.Study]) -> None:
    result, text = compared
    page = outside_plotly_js(text)
    assert "<title>Sweep report: 2 studies compared</title>" in page
    order = [page.index(h) for h in (">Comparison</h2>", ">alpha</h2>", ">beta &lt;b&gt;&amp;&lt;/b&gt;</h2>")]
    assert order == sorted(order)
    assert "<caption>Best trial of each study</caption>" in page
    assert result.figures == sum(len(s.figures) for s in build_report(studies, seed=0))


def test_user_text_is_escaped(tmp_path: Path) -> None:
    study = rich_study('<script>alert("name")</script>')
    record = read_study(study)
    report = {**record.data_report, "warnings": ["<script>alert('warning')</script>"]}
    labels = ["<img src=x onerror=alert(1)>", "returns", "shipping"]
    write_study(study.set_user_attr, replace(record, label_names=labels, data_report=report))
    empty = optuna.create_study(study_name="<script>alert('empty')</script>")  # named in notes and headings
    out = tmp_path / "report.html"
    write_report([study, empty], out)
    page = outside_plotly_js(out.read_text(encoding="utf-8"))
    assert "<script>alert" not in page
    assert "<img src=x" not in page
    assert "&lt;script&gt;alert(&#x27;warning&#x27;)&lt;/script&gt;" in page
    assert "&lt;script&gt;alert(&quot;name&quot;)&lt;/script&gt;" in page
    assert "left out of the figures): &lt;script&gt;alert(&#x27;empty&#x27;)&lt;/script&gt;" in page


def test_atomic_write_replaces_and_leaves_no_temp_file(tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    out.write_text("old report")
    result = write_report([optuna.create_study(study_name="empty")], out)
    assert result.path == out
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]
    text = out.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    assert result.figures == 0
    assert any("This study has no trials yet." in item for item in result.skipped)
    assert "This study has no trials yet." in text


def test_an_error_mid_write_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def failing(fig: go.Figure, div_id: str) -> str:
        calls.append(div_id)
        if len(calls) == 2:
            raise RuntimeError("disk on fire")
        return "<div>figure</div>"

    monkeypatch.setattr(reports.page, "render_figure", failing)
    study = rich_study()
    out = tmp_path / "report.html"
    with pytest.raises(RuntimeError, match="disk on fire"):
        write_report([study], out)
    assert len(calls) == 2
    assert list(tmp_path.iterdir()) == []
    out.write_text("previous report")
    calls.clear()
    with pytest.raises(RuntimeError, match="disk on fire"):
        write_report([study], out)
    assert out.read_text() == "previous report"
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]


def test_png_export_with_a_working_renderer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    drawn: list[tuple[Any, Path]] = []

    def fake_pngs(figures: list[go.Figure], paths: list[Path]) -> None:
        for fig, path in zip(figures, paths, strict=True):
            drawn.append((fig, path))
            path.write_bytes(b"\x89PNG fake")

    monkeypatch.setattr(reports.page, "_write_pngs", fake_pngs)
    png_dir = tmp_path / "png" / "nested"
    result = write_report([rich_study()], tmp_path / "report.html", png_dir=png_dir)
    assert result.png_note is None
    assert len(result.png_files) == result.figures == len(drawn)
    assert all(isinstance(fig, go.Figure) for fig, _ in drawn)
    assert sorted(png_dir.iterdir()) == sorted(result.png_files)  # no staging folder left behind
    assert all(p.suffix == ".png" and p.read_bytes().startswith(b"\x89PNG") for p in result.png_files)
    assert any(p.name.endswith("confusion-matrix.png") for p in result.png_files)
    assert (tmp_path / "report.html").is_file()


def test_a_failed_png_export_leaves_the_folder_as_it_was(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def crashing_pngs(figures: list[go.Figure], paths: list[Path]) -> None:
        for path in paths[:2]:
            path.write_bytes(b"\x89PNG")
        raise RuntimeError("Chrome crashed\nwhile rendering")

    monkeypatch.setattr(reports.page, "_write_pngs", crashing_pngs)
    png_dir = tmp_path / "png"
    png_dir.mkdir()
    (png_dir / "keep.txt").write_text("mine")
    result = write_report([rich_study()], tmp_path / "report.html", png_dir=png_dir)
    assert result.png_files == []
    assert [p.name for p in png_dir.iterdir()] == ["keep.txt"]
    assert result.png_note is not None
    assert result.png_note.startswith("No PNG files were written")
    assert "Chrome crashed while rendering" in result.png_note
    assert (tmp_path / "report.html").is_file()
    write_report([rich_study()], tmp_path / "report.html", png_dir=tmp_path / "new" / "png")
    assert not (tmp_path / "new").exists()  # the folders it made for nothing are gone again; an existing one stays


@pytest.mark.skipif(importlib.util.find_spec("kaleido") is not None, reason="kaleido is installed here")
def test_png_export_without_kaleido_still_writes_the_report(tmp_path: Path) -> None:
    result = write_report([rich_study()], tmp_path / "report.html", png_dir=tmp_path / "png")
    assert (tmp_path / "report.html").is_file()
    assert result.png_files == []
    assert result.png_note is not None
    assert result.png_note.startswith("No PNG files were written")
    assert "kaleido" in result.png_note and "Chrome" in result.png_note
    assert "the HTML report was written" in result.png_note
    assert not (tmp_path / "png").exists()  # no empty folder left behind
