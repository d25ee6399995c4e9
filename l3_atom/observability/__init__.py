"""Prometheus metrics, liveness and readiness for every long-running role (ARCHITECTURE.md, principle 10).

``metrics.py`` holds the vocabulary (names, bounded labels) and the collectors that read, at scrape
time, the counts the connector, processor and local runtime already keep; ``server.py`` serves
``/metrics``, ``/health`` and ``/ready`` on one port.
"""
