"""Lambda SnapStart hooks for the API functions.

With SnapStart, Lambda runs a function version's initialisation once, snapshots the memory of
the execution environment, and starts later environments by restoring that snapshot instead of
initialising again. Whatever the init phase created is then shared by every environment restored
from the same snapshot. Most of it should be (the loaded ONNX model, imported modules, settings);
some must not be:

* open sockets -- the database pool and the rate limiter's Redis client: their peers closed them
  long ago, and two environments must never share one server session;
* the ``random`` module's state: every restored environment would draw the same sequence
  (``uuid4`` and ``secrets`` read the OS and are safe);
* caches whose entries expire by ``time.monotonic()`` (the authenticator's API key cache, the
  rate limiter's local buckets, the secrets cache of Powertools): the monotonic clock of a
  restored environment does not continue the snapshot's.

:func:`register` installs :func:`before_snapshot` and :func:`after_restore` with the runtime's
``snapshot_restore_py`` module (part of Lambda's Python 3.12+ managed runtime); where it is not
importable (local runs, tests without it) nothing happens. The hooks ask :mod:`.runtime` to drop
the resources; the next request opens new ones lazily.
"""

from __future__ import annotations

import random

from . import runtime

_registered = False


def before_snapshot() -> None:
    """Let the background prewarm finish (the model goes into the snapshot loaded), then close
    the connections it opened: a snapshot must not contain a live server session."""
    runtime.wait_prewarm()
    runtime.drop_connections()


def after_restore() -> None:
    """Make this restored environment its own: new connections on first use, a fresh random
    state, no cache entries timed by the snapshot's clock."""
    runtime.drop_connections()
    random.seed()  # from os.urandom
    try:
        from aws_lambda_powertools.utilities import parameters
    except ImportError:  # pragma: no cover - Powertools is in the shared layer
        return
    parameters.clear_caches()


def register() -> bool:
    """Register the hooks with SnapStart when the runtime provides ``snapshot_restore_py``.
    Idempotent (both API functions' modules call it; a process may import both); returns
    whether the hooks are registered."""
    global _registered
    if _registered:
        return True
    try:
        from snapshot_restore_py import register_after_restore, register_before_snapshot
    except ImportError:
        return False
    register_before_snapshot(before_snapshot)
    register_after_restore(after_restore)
    _registered = True
    return True
