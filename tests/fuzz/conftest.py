"""The fuzz targets' counts and times, printed at the end of every run that has them."""

from __future__ import annotations

from _fuzz import REPORTS


def pytest_terminal_summary(terminalreporter):
    if REPORTS:
        terminalreporter.section("fuzzed inputs")
        for report in REPORTS:
            terminalreporter.write_line(report.summary().strip())
