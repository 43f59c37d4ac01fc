"""Intake's ports on real infrastructure: Redis (`redis.py`), Kafka (`kafka.py`), Prometheus
(`metrics.py`) and the system clock (`clock.py`); the sealer is the runtime's `CaseKeys`."""
