"""Bitbucket Cloud + Data Center emulator (see README.md). ``from infra.emulator import Emulator``."""

from .server import Emulator

__all__ = ["Emulator"]
