"""crmcore's tables, first version.

Revision ID: 0001
Revises:
Create Date: 2026-12-03

Creates the tables of :func:`crmcore.storage.schema.tables` (with their indexes, partial
ones included) for the configured schema and prefix, and the ``routing`` lock row.

While 0001 is the only revision it builds the tables from ``schema.py``. The day a 0002
changes ``schema.py``, this file must stop doing so: freeze the 0001 definitions here
first (copy them), so that 0001 then 0002 still gives exactly the new tables.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

from crmcore.storage.schema import Tables, tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _tables() -> Tables:
    attributes = context.config.attributes
    return tables(sa.MetaData(schema=attributes.get("crmcore_schema")), prefix=attributes.get("crmcore_prefix", "crm_"))


def upgrade() -> None:
    t = _tables()
    bind = op.get_bind()
    t.metadata.create_all(bind=bind, checkfirst=False)  # a clash is an error, not a silent skip
    bind.execute(t.locks.insert(), [{"name": "routing"}])


def downgrade() -> None:
    _tables().metadata.drop_all(bind=op.get_bind())
