"""structlog set-up, done once at the entry point.

Console rendering on a TTY, JSON lines otherwise (or when a log file is given), so that a
process supervised by ``botc up`` writes machine-readable logs while a human at a terminal
reads friendly ones. Library code only ever calls ``structlog.get_logger()``.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TextIO, cast

import structlog

LEVELS = ("debug", "info", "warning", "error")


class _CurrentStderr:
    """Writes to whatever ``sys.stderr`` is at the time of writing, not at configuration:
    ``botc`` called in-process (tests, the supervisor) must not keep a stale stream."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


def configure_logging(
    level: str = "info",
    log_file: str | Path | None = None,
    *,
    json: bool | None = None,
    stream: TextIO | None = None,
) -> None:
    """Route structlog (and stdlib logging, e.g. nats-py's) to one sink at one level."""
    if level not in LEVELS:
        raise ValueError(f"log level must be one of {', '.join(LEVELS)}, not {level!r}")
    numeric = getattr(logging, level.upper())
    sink: TextIO | _CurrentStderr
    if log_file is not None:
        path = Path(log_file)
        path.parent.mkdir(parents=True, exist_ok=True)
        sink = path.open("a", encoding="utf-8", buffering=1)
    else:
        sink = stream or _CurrentStderr()
    use_json = json if json is not None else (log_file is not None or not sink.isatty())
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=sink.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=cast(TextIO, sink)),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(sink)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(numeric, logging.WARNING))
