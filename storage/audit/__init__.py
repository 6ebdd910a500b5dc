"""The audit log: append-only, hash-chained rows (:mod:`storage.audit.chain`) with typed events
(:mod:`storage.audit.events`), the head anchored outside the database (:mod:`storage.audit.anchor`),
verification, retention and export; :mod:`storage.audit.log` is the facade the bot uses."""
