"""Benchmarks (pytest-benchmark suites; `make test` runs the not-slow cases once each, untimed) and their report.

    python -m pytest benchmarks/ -m "not slow" --benchmark-json results.json
    python -m benchmarks.report results.json --out DIR

A package so that the suites share `benchmarks.problem` and the report is `python -m benchmarks.report`.
"""
