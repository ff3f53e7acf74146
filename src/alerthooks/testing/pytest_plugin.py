"""pytest plugin (registered through the ``pytest11`` entry point): fixtures for users' tests."""

from __future__ import annotations
