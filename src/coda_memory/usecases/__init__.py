"""Use cases: what the API and the event path do, in plain Python over the data-access
package :mod:`coda_memory.db` (which holds every SQL statement). No SQL here."""
