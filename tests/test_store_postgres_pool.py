"""The Postgres store's pool: a release costs no reset round trip, yet a connection handed back
with a transaction still open is rolled back before anyone else gets it."""

from __future__ import annotations

from alerthooks.store.postgres import PostgresStore

from .stores import postgres_schema


async def test_a_connection_left_in_a_transaction_is_rolled_back_before_reuse() -> None:
    async with postgres_schema() as url:
        store = PostgresStore(url + "&pool_size=1")
        await store.open()
        try:
            async with store._conn() as conn:
                await conn.execute("BEGIN")
                await conn.execute("CREATE TEMP TABLE left_behind (x int)")
                assert conn.is_in_transaction()
            async with store._conn() as again:
                assert not again.is_in_transaction()
                # The abandoned transaction's work is gone: it was rolled back, not committed.
                found = await again.fetchval("SELECT to_regclass('pg_temp.left_behind')")
                assert found is None
        finally:
            await store.close()


async def test_a_clean_release_keeps_the_session() -> None:
    async with postgres_schema() as url:
        store = PostgresStore(url + "&pool_size=1")
        await store.open()
        try:
            async with store._conn() as conn:
                pid = await conn.fetchval("SELECT pg_backend_pid()")
                await conn.execute("SET application_name = 'kept'")
            async with store._conn() as again:
                # The same connection, not reset: no RESET ALL round trip was spent on it.
                assert await again.fetchval("SELECT pg_backend_pid()") == pid
                assert await again.fetchval("SHOW application_name") == "kept"
        finally:
            await store.close()
