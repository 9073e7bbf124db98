"""Command-line tools run by an operator or a user (``python -m coda_memory.cli.<tool>``); the
service itself never imports them.

- ``keys``: create, list and revoke API keys (as the schema owner).
- ``transfer``: export a user's memories to NDJSON and import them, over the HTTP API.
"""
