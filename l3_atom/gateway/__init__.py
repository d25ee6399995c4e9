"""``runner.py gateway``: the normalised topics as a websocket stream and a live viewer page.

Defaults live here, light to import for the CLI; the service is ``service.py``.
"""

DEFAULT_PORT = 8090
# Messages queued per client before its records are dropped (counted, reported to it).
DEFAULT_CLIENT_QUEUE = 10_000
