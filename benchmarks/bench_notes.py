"""Generated Markdown with hand-written notes kept: the part of a results file above a marker line is rewritten by
its benchmark, the text below the marker (a reader's analysis) is carried over unchanged.

Used by bench_audit.py (AUDIT.md) and bench_trainer.py (RESULTS.md).
"""

from __future__ import annotations

from pathlib import Path


def marker_for(script: str) -> str:
    """The marker line a script writes: `<!-- below this line: written by hand, kept by SCRIPT -->`."""
    return f"<!-- below this line: written by hand, kept by {script} -->"


def write_keeping_notes(path: Path, generated: str, marker: str) -> None:
    """Write `generated`, then the marker line, then whatever followed the marker in the file already there.

    A file without the marker (first run, or written before the marker existed) gets an empty notes section.
    """
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    notes = text.split(marker, 1)[1] if marker in text else "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(generated.rstrip("\n") + "\n\n" + marker + notes, encoding="utf-8")
