"""Data access: connection pool, per-user transactions (RLS), migrations."""
