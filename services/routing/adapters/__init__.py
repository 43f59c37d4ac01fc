"""Routing's ports implemented: Redis (`redis.py`), Kafka (`kafka.py`), the agencies' dispatch
topics and webhooks (`webhooks.py`), Prometheus (`metrics.py`). The key store and the access
record are the runtime's own (`ocsea.runtime.crypto.CaseKeys`, `ocsea.runtime.access.AccessLog`).
"""
