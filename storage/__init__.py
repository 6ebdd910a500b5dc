"""Persistence: SQLite through sqlite-utils, schema only through migrations.

Nothing here knows about Slack or HTTP. Each module owns its tables and declares them in its
own ``migrations = Migrations("tsbot.<module>")`` set; :func:`storage.db.open_database` finds and
applies every set.
"""
