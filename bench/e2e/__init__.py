"""`ocsea bench`: the whole system measured from outside, end to end.

See `bench/README.md` ("End to end: `ocsea bench`") for what is measured and how. The modules:
`reports` (the load: varied, valid partner reports), `stats` (percentiles and the summary),
`http` (a minimal keep-alive HTTP/1.1 client), `kafka` (the task watcher and the bare-aiokafka
relay baseline), `procs` (CPU and memory per service process from /proc), `system` (the
benchmark's private Kafka and Redis and the `ocsea run` under test), `phases` (the
measurements), `profile` (py-spy per service) and `main` (the command).
"""
