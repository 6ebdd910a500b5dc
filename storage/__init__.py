"""Persistence: SQLite through sqlite-utils, schema only through migrations.

Nothing here knows about Slack or HTTP. Each module owns its tables and declares them in its
own ``migrations = Migrations("tsbot.<module>")`` set; :mod:`storage.schema` lists every set and
:func:`storage.schema.open_database` applies them. :mod:`storage.db` holds the connection
primitives (pragmas, write transactions), :mod:`storage.pool` one connection per thread, and
:mod:`storage.audit` the hash-chained audit log.
"""
