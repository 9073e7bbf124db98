"""The Redis subscriber: forwards events from the ``memory.ingest`` pub/sub channel and the
``memory.ingest.stream`` stream to the ingest function (``python -m functions.subscriber``)."""
