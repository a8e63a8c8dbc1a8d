"""A strict stand-in for Notion's File Upload API (see emulator/README.md).

Run it with `python -m emulator --port 0 --data-dir DIR`; embed it with `make_app(Emulator(config))`.
"""
from __future__ import annotations

from .app import make_app
from .config import EmulatorConfig, RateLimit, parse_args
from .state import Emulator

__all__ = ["Emulator", "EmulatorConfig", "RateLimit", "make_app", "parse_args"]
