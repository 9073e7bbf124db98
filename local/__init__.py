"""The local runtime: embedded PostgreSQL and Redis, the API gateway and Lambda emulation."""
