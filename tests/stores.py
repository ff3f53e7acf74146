"""Store URLs for tests: a fresh SQLite file, or a fresh Postgres schema dropped afterwards."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

POSTGRES_URL = os.environ.get("ALERTHOOKS_TEST_POSTGRES_URL")
BACKENDS = ["memory", "sqlite", "postgres"]
DURABLE = ["sqlite", "postgres"]


def with_schema(url: str, schema: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}schema={schema}"


@contextlib.asynccontextmanager
async def postgres_schema() -> AsyncIterator[str]:
    """A store URL for a schema nobody else uses; the schema is dropped on exit."""
    if not POSTGRES_URL:
        pytest.skip("ALERTHOOKS_TEST_POSTGRES_URL is not set")
    name = f"alerthooks_test_{uuid.uuid4().hex[:12]}"
    try:
        yield with_schema(POSTGRES_URL, name)
    finally:
        conn = await asyncpg.connect(POSTGRES_URL)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        finally:
            await conn.close()


@contextlib.asynccontextmanager
async def store_url(backend: str, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh, empty store URL for ``backend``."""
    if backend == "memory":
        yield "memory://"
    elif backend == "sqlite":
        yield f"sqlite:///{tmp_path}/inbox.db"
    else:
        async with postgres_schema() as url:
            yield url
