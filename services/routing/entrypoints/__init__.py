"""How work reaches routing: HTTP (`http.py`), Kafka (`kafka.py`) and the clocks (`timers.py`)."""
