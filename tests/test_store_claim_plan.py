"""The claim query's plan: an index gives the oldest due pairs in order, so a claim reads only the
rows it takes (no sort of the whole backlog, no multi-index OR), on SQLite and PostgreSQL.

The plans are checked rather than timed; ``benchmarks/claim.py`` times them."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import asyncpg

from alerthooks.store import open_store
from alerthooks.store.postgres import CLAIM_SQL as POSTGRES_CLAIM_SQL
from alerthooks.store.postgres import PostgresStore
from alerthooks.store.sqlite import CLAIM_SQL, NEXT_DUE_SQL, SQLiteStore

from .stores import POSTGRES_URL, postgres_schema


async def test_sqlite_claim_and_next_due_walk_the_due_index(tmp_path: Path) -> None:
    store = SQLiteStore(f"sqlite:///{tmp_path}/plan.db")
    await store.open()
    try:

        def plans(conn: sqlite3.Connection) -> tuple[list[str], list[str]]:
            claim = conn.execute(f"EXPLAIN QUERY PLAN {CLAIM_SQL}", (time.time(), 10))
            due = conn.execute(f"EXPLAIN QUERY PLAN {NEXT_DUE_SQL}")
            return [row[3] for row in claim], [row[3] for row in due]

        claim, due = await store._submit(plans)
    finally:
        await store.close()
    assert claim[0].startswith("SEARCH o USING INDEX alerthooks_outcomes_due"), claim
    assert claim[1] == "SEARCH e USING INTEGER PRIMARY KEY (rowid=?)", claim
    assert not any("TEMP B-TREE" in step or "MULTI-INDEX" in step for step in claim), claim
    assert due == ["SCAN alerthooks_outcomes USING INDEX alerthooks_outcomes_due"], due


def _nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    found = [plan]
    for child in plan.get("Plans", []):
        found += _nodes(child)
    return found


async def test_postgres_claim_walks_the_due_index_and_reads_only_claimed_bodies() -> None:
    async with postgres_schema() as url:
        store = open_store(url)
        assert isinstance(store, PostgresStore) and POSTGRES_URL and store.schema
        await store.open()
        await store.close()
        conn = await asyncpg.connect(POSTGRES_URL, server_settings={"search_path": store.schema})
        try:
            # A backlog big enough for the planner to prefer an index: 5,000 events, half done.
            await conn.execute(
                "INSERT INTO alerthooks_events (provider, event_id, event_type, body, received_at)"
                " SELECT 'p', 'evt_' || i, 't', convert_to(repeat('x', 600), 'UTF8'), now()"
                " FROM generate_series(1, 5000) AS i"
            )
            await conn.execute(
                "INSERT INTO alerthooks_outcomes (provider, event_id, handler, status, due_at)"
                " SELECT 'p', 'evt_' || i, 'h', CASE WHEN i % 2 = 0 THEN 'done'"
                " ELSE 'pending' END, now() - i * interval '1 second'"
                " FROM generate_series(1, 5000) AS i"
            )
            await conn.execute("ANALYZE")
            raw = await conn.fetchval(
                f"EXPLAIN (FORMAT JSON) {POSTGRES_CLAIM_SQL}", "w", 60.0, 10, 8, "died"
            )
        finally:
            await conn.close()
    nodes = _nodes(json.loads(raw)[0]["Plan"])
    kinds = [(n["Node Type"], n.get("Relation Name"), n.get("Index Name")) for n in nodes]
    assert ("Index Scan", "alerthooks_outcomes", "alerthooks_outcomes_due") in kinds, kinds
    assert not any(kind == "Sort" for kind, _, _ in kinds), kinds
    assert not any(kind == "BitmapOr" for kind, _, _ in kinds), kinds
    assert not any(
        kind == "Seq Scan" and table == "alerthooks_events" for kind, table, _ in kinds
    ), kinds
