"""Alembic environment of crmcore's migrations.

Run them through :mod:`crmcore.storage.migrate` (or ``crmcore db upgrade``), which passes
the connection, the schema and the table prefix in ``config.attributes``; there is no
``alembic.ini``. The revision table is ``{prefix}alembic_version`` in the same schema as the
tables, so a host application's own ``alembic_version`` is never touched.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from crmcore.storage.schema import tables

config = context.config
connection = config.attributes.get("connection")
if connection is None or context.is_offline_mode():
    raise RuntimeError(
        "crmcore's migrations run through crmcore.storage.migrate.upgrade() or "
        "`crmcore db upgrade --db URL`, on a live connection"
    )
schema: str | None = config.attributes.get("crmcore_schema")
prefix: str = config.attributes.get("crmcore_prefix", "crm_")

context.configure(
    connection=connection,
    target_metadata=tables(sa.MetaData(schema=schema), prefix=prefix).metadata,
    version_table=f"{prefix}alembic_version",
    version_table_schema=schema,
)
with context.begin_transaction():
    context.run_migrations()
