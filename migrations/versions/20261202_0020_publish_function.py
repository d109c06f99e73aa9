"""the feed's publishing at commit in one PostgreSQL function

Publishing at commit (backend/changes.py) takes the site's advisory lock, writes the transaction's feed entries
and numbers its records, then commits. Done as three statements from the app, the lock was held across three
round trips and the event loop's turns between them (a drain measured 35-39 ms per hold, the lock held over half
the time, syncs waiting 100-150 ms for it). `outage_publish` does all three in one call, with a fresh snapshot
after the lock (a VOLATILE function's statements each take one), so the records' top seq is read under it.
SQLite has one writer and keeps doing it from the app.

Revision ID: 20261202_0020
Revises: 20261202_0019
Create Date: 2026-12-02
"""

from collections.abc import Sequence

from alembic import op

revision: str = "20261202_0020"
down_revision: str | Sequence[str] | None = "20261202_0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# p_feed: a JSON array of this site's {user_id, min_role, kind, ref, payload}, written in array order (ids ascend);
# p_records: this site's records to give the next seq values, in id order.
PUBLISH = """
CREATE FUNCTION outage_publish(p_site integer, p_feed json, p_records uuid[]) RETURNS void
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(4004, p_site);
    IF p_feed IS NOT NULL THEN
        INSERT INTO changes (site_id, user_id, min_role, kind, ref, payload, created_at)
        SELECT p_site, (e->>'user_id')::integer, e->>'min_role', e->>'kind', e->>'ref',
               e->'payload', now()
        FROM json_array_elements(p_feed) WITH ORDINALITY AS f(e, n)
        ORDER BY n;
    END IF;
    IF p_records IS NOT NULL THEN
        UPDATE records r SET seq = ranked.n + (SELECT coalesce(max(seq), 0) FROM records WHERE site_id = p_site)
        FROM (SELECT id, row_number() OVER (ORDER BY id) AS n FROM records WHERE id = ANY(p_records)) ranked
        WHERE r.id = ranked.id;
    END IF;
END
$$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PUBLISH)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION outage_publish(integer, json, uuid[])")
