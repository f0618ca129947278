"""Argument parsing shared by every job's spark-submit `main()`."""

from __future__ import annotations

import argparse
import logging
from datetime import date

from pipeline.config import Settings, load_settings


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
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return load_settings(args.profile), getattr(args, "date", None), args
