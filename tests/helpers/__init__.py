"""Shared test helpers (not tests): importable as `helpers.*` because pyproject.toml puts tests/ on
pytest's pythonpath."""
