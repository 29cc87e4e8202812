"""reports: plotly figures built from Optuna studies and plain data, and one HTML writer (no torch here)."""

from reports.blocks import Section
from reports.expected import expected_max_performance
from reports.page import ReportResult, write_report
from reports.sections import build_report

__all__ = ["ReportResult", "Section", "build_report", "expected_max_performance", "write_report"]
