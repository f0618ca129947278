"""Argument parsing shared by every job's spark-submit `main()`."""

from __future__ import annotations

import argparse
from datetime import date

from pipeline.config import Settings, load_settings
from pipeline.progress import configure_logging


def parse_job_args(description: str, argv: list[str] | None = None, extra: dict[str, dict] | None = None,
                   dated: bool = True) -> tuple[Settings, date | None, argparse.Namespace]:
    """Parse `--date` (unless not `dated`), `--profile` and any `extra` flags for a spark-submit entry point."""
    parser = argparse.ArgumentParser(description=description)
    if dated:
        parser.add_argument("--date", required=True, type=date.fromisoformat, help="logical date, YYYY-MM-DD")
    parser.add_argument("--profile", default=None, help="config profile: tiny, demo or prod")
    for flag, options in (extra or {}).items():
        parser.add_argument(flag, **options)
    args = parser.parse_args(argv)
    configure_logging()
    return load_settings(args.profile), getattr(args, "date", None), args
