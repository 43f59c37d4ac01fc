"""Intake's use cases, over the ports of `ports.py`: `submissions.Intake` takes reports on
every channel and answers partners; `acceptance.Acceptor` decides, seals, holds, publishes and
remembers them; `reading.py` reads bodies beside the event loop."""
