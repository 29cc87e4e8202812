"""The one place that writes files: a self-contained HTML report (and optional PNGs)."""

from __future__ import annotations

import contextlib
import html
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import optuna
import plotly.graph_objects as go
import plotly.io
import plotly.offline

from reports.blocks import Block, FigureBlock, ListBlock, NoteBlock, Section, TableBlock, format_value
from reports.sections import build_report, slug

PLOTLY_CONFIG: dict[str, Any] = {"displaylogo": False, "responsive": True}
PNG_NEEDS = ("PNG export needs the kaleido package and a Chrome/Chromium it can drive (pip install kaleido; "
             "plotly_get_chrome installs a Chrome); the HTML report was written")
CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; color: #222;
       max-width: 1200px; margin: 0 auto; padding: 1.5rem 2rem 4rem; line-height: 1.45; }
h1 { font-size: 1.7rem; margin-bottom: .2rem; }
h2 { font-size: 1.35rem; margin-top: 2.5rem; border-bottom: 2px solid #e3e6ea; padding-bottom: .25rem; }
h3 { font-size: 1.1rem; margin-top: 2rem; }
.meta { color: #666; font-size: .9rem; }
nav.toc { background: #f6f8fa; border: 1px solid #e3e6ea; border-radius: 6px; padding: .6rem 1.2rem; }
nav.toc ul { margin: .2rem 0; padding-left: 1.2rem; } nav.toc a { text-decoration: none; color: #0b5cad; }
table { border-collapse: collapse; margin: .8rem 0; font-size: .9rem; }
caption { text-align: left; font-weight: 600; padding: .3rem 0; }
th, td { border: 1px solid #d9dde2; padding: .25rem .6rem; vertical-align: top; text-align: left; }
th { background: #f6f8fa; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.note { margin: .6rem 0; } .missing { background: #fff8e1; border-left: 4px solid #f0b400; padding: .4rem .8rem; }
.table-wrap { overflow-x: auto; }
.figure { margin: 1rem 0; border: 1px solid #eef0f2; border-radius: 6px; }
"""


@dataclass(frozen=True)
class ReportResult:
    """What `write_report` wrote, and what it had to leave out."""

    path: Path
    figures: int
    skipped: list[str] = field(default_factory=list)
    png_files: list[Path] = field(default_factory=list)
    png_note: str | None = None


def page_title(studies: Sequence[optuna.Study]) -> str:
    if len(studies) == 1:
        return f"Sweep report: {studies[0].study_name}"
    return f"Sweep report: {len(studies)} studies compared"


def skipped_items(sections: Sequence[Section]) -> list[str]:
    """`study: section: reason` for everything the report could not show."""
    return [f"{s.group + ': ' if s.group else ''}{s.title}: {reason}" for s in sections for reason in s.missing]


def figure_blocks(sections: Sequence[Section]) -> list[tuple[Section, FigureBlock]]:
    return [(s, b) for s in sections for b in s.figures]


def figure_id(index: int, section: Section, block: FigureBlock) -> str:
    """A stable id (and PNG file stem) for the index-th figure."""
    return f"fig-{index:02d}-" + (f"{slug(section.group)}-" if section.group else "") + block.name


def render_figure(fig: go.Figure, div_id: str) -> str:
    """A figure's div and script; plotly.js itself is loaded once, in the page head."""
    height = fig.layout.height
    return str(fig.to_html(full_html=False, include_plotlyjs=False, include_mathjax=False, config=PLOTLY_CONFIG,
                           div_id=div_id, default_width="100%", default_height=f"{height or 450}px"))


def _cell(value: Any) -> str:
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    return f'<td class="num">{html.escape(format_value(value))}</td>' if numeric else \
        f"<td>{html.escape(format_value(value))}</td>"


def render_table(table: TableBlock) -> str:
    """A table in a horizontally scrolling box; key/value tables (no column names) get no header row."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in table.columns)
    thead = f"<thead><tr>{head}</tr></thead>" if any(table.columns) else ""
    body = "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in table.rows)
    caption = f"<caption>{html.escape(table.caption)}</caption>" if table.caption else ""
    return f'<div class="table-wrap"><table>{caption}{thead}<tbody>{body}</tbody></table></div>'


def render_block(block: Block, figure_ids: dict[int, str]) -> str:
    if isinstance(block, FigureBlock):
        caption = f"<p class='note'>{html.escape(block.caption)}</p>" if block.caption else ""
        return f'<div class="figure">{render_figure(block.figure, figure_ids[id(block)])}</div>{caption}'
    if isinstance(block, TableBlock):
        return render_table(block)
    if isinstance(block, NoteBlock):
        return f'<p class="note{" missing" if block.missing else ""}">{html.escape(block.text)}</p>'
    if isinstance(block, ListBlock):
        items = "".join(f"<li>{html.escape(item)}</li>" for item in block.items)
        caption = f"<p class='note'><strong>{html.escape(block.caption)}</strong></p>" if block.caption else ""
        return f"{caption}<ul>{items}</ul>"
    raise TypeError(f"block must be a FigureBlock, TableBlock, NoteBlock or ListBlock, got {type(block).__name__}")


def group_anchor(section: Section) -> str:
    """The id of the heading above a study's sections (section anchors start with that study's `s<i>-`)."""
    return f"{section.anchor.split('-')[0]}-{slug(section.group or '')}"


def render_toc(sections: Sequence[Section]) -> str:
    lines, group = ["<nav class='toc'><strong>Contents</strong><ul>"], None
    for section in sections:
        if section.group != group:
            if group is not None:
                lines.append("</ul></li>")
            if section.group is not None:
                lines.append(f"<li><a href='#{group_anchor(section)}'>{html.escape(section.group)}</a><ul>")
            group = section.group
        lines.append(f"<li><a href='#{section.anchor}'>{html.escape(section.title)}</a></li>")
    if group is not None:
        lines.append("</ul></li>")
    lines.append("</ul></nav>")
    return "".join(lines)


# How every report starts: `sweep report --out` replaces a file only when it starts so (an earlier report)
PAGE_START = '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">'


def render_page(studies: Sequence[optuna.Study], sections: Sequence[Section]) -> Iterator[str]:
    """The page in pieces (figures rendered lazily, so a long report streams to disk)."""
    title = html.escape(page_title(studies))
    ids = {id(block): figure_id(i, section, block) for i, (section, block) in enumerate(figure_blocks(sections), 1)}
    yield (f"{PAGE_START}\n"
           f'<meta name="viewport" content="width=device-width, initial-scale=1">\n<title>{title}</title>\n'
           f"<style>{CSS}</style>\n<script type=\"text/javascript\">")
    yield plotly.offline.get_plotlyjs()
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    yield (f"</script>\n</head>\n<body>\n<h1>{title}</h1>\n<p class='meta'>generated {generated}; "
           f"{len(ids)} figures; works offline</p>\n")
    yield render_toc(sections)
    group = None
    for section in sections:
        if section.group != group and section.group is not None:
            yield f"\n<h2 id='{group_anchor(section)}'>{html.escape(section.group)}</h2>"
        group = section.group
        level = 3 if section.group is not None else 2
        yield f"\n<section id='{section.anchor}'><h{level}>{html.escape(section.title)}</h{level}>"
        for block in section.blocks:
            yield render_block(block, ids)
        yield "</section>"
    yield "\n</body>\n</html>\n"


def write_atomic(out: Path, parts: Iterable[str]) -> None:
    """Write `parts` to a temp file beside `out`, then move it into place; on any error, leave no trace."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            for part in parts:
                handle.write(part)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.chmod(out.stat().st_mode & 0o777 if out.exists() else 0o644)
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _write_pngs(figures: Sequence[go.Figure], paths: Sequence[Path]) -> None:
    """Every PNG in one renderer session (kaleido >= 1 drives one Chrome for the batch); raises if it cannot."""
    plotly.io.write_images(fig=list(figures), file=list(paths), format="png", width=1100, scale=2,
                           height=[int(f.layout.height or 450) for f in figures])


def write_pngs(sections: Sequence[Section], png_dir: Path) -> tuple[list[Path], str | None]:
    """Each figure as `<figure id>.png` in `png_dir`, all or none: a failed export leaves the folder as it was
    and returns a sentence saying what is missing."""
    blocks = figure_blocks(sections)
    names = [f"{figure_id(i, section, block)}.png" for i, (section, block) in enumerate(blocks, 1)]
    made = [d for d in (png_dir, *png_dir.parents) if not d.exists()]  # removed again if nothing is written
    png_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".png-", dir=png_dir))
    try:
        _write_pngs([block.figure for _, block in blocks], [staging / name for name in names])
        absent = [name for name in names if not (staging / name).is_file()]
        if absent:
            raise RuntimeError(f"the renderer wrote no {absent[0]}")
        for name in names:
            os.replace(staging / name, png_dir / name)
    except Exception as exc:  # kaleido missing, no Chrome, or a renderer crash: the HTML report stands alone
        reason = " ".join(str(exc).split()) or type(exc).__name__
        shutil.rmtree(staging, ignore_errors=True)
        for folder in made:  # the folders this call made, innermost first: none is left empty behind
            with contextlib.suppress(OSError):
                folder.rmdir()
        return [], f"No PNG files were written: {PNG_NEEDS} (export failed with: {reason[:200]})."
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return [png_dir / name for name in names], None


def write_report(
    studies: Sequence[optuna.Study], out: Path, *, png_dir: Path | None = None, seed: int = 0
) -> ReportResult:
    """Write one self-contained HTML report (plotly.js embedded once, no network needed) atomically to `out`."""
    out = Path(out)
    sections = build_report(studies, seed=seed)
    write_atomic(out, render_page(studies, sections))
    png_files: list[Path] = []
    png_note = None
    if png_dir is not None:
        png_files, png_note = write_pngs(sections, Path(png_dir))
    return ReportResult(path=out, figures=len(figure_blocks(sections)), skipped=skipped_items(sections),
                        png_files=png_files, png_note=png_note)
