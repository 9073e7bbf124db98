"""Data access: every SQL statement of the service lives in this package.

``pool`` (the one :class:`~coda_memory.db.pool.Database` and its per-user transactions under
row-level security), one module per table or concern (``memories``, ``quotas``, ``audit``,
``keys``, ``search``, ``jobs``, ``health``), and the schema: ``baseline.sql``, numbered
``migrations/`` and one file per SQL function in ``functions/`` (see ``migrate``)."""
