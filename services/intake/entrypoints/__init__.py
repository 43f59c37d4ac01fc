"""Intake's entry points: the partner HTTP API (`http.py`) and the status projection's
subscribers (`kafka.py`)."""
