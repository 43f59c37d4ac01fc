"""Failure drills (`ocsea drill`): the whole system on a private stack, a stream of reports,
one fault injected mid-stream, then the end state checked against every `202`.

The code lives here, beside `bench/`, and is imported only when the command runs, so the
services never load it. See `drills/main.py` for the run, `drills/check.py` for what counts
as lost, doubled, a lost or doubled timer.
"""
