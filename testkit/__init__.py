"""Helpers shared by the tests and the benchmarks (`bench/`): waiting on conditions, reading
Kafka, running the system or one service on its own, and builders of reports, events and ledger
entries.

A development package of the checkout, like `devstack/`: not in the wheel or the image. Test
modules, benchmarks and drills import from here, never from one another
(`tests/test_architecture.py` checks it).
"""
