"""Routing's rules, pure: functions of their inputs, no transport, no storage.

- `policy.py`: who gets a case (which kinds of actor it needs, which unit takes each);
- `tasks.py`: a task's life (the commands that fit each status, the fold of its events), its
  deadlines, SLA timers and escalation chain;
- `inbox.py`: which of a caller's tasks to list, in which order, a page at a time;
- `figures.py`: where a task stands, for the gauges of tasks by state.

The agencies, units, coverage and response times these rules read are the actor directory
(`contracts/directory.py`, `contracts/sample_directory.toml`).
"""
