"""reports: plotly figures and the HTML report (no torch here)."""
