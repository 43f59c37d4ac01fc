"""`ocsea dlq list|show|redrive`: look at the records parked on the `.dlq` twins, and send them
back to their source topic once what parked them is fixed.

ocsea dlq list [--topic T] [--json]          every parked record: where it came from, which
                                             event, why it was parked, whether re-driven
ocsea dlq show DLQ_TOPIC REF [--json]        one record's metadata and headers
ocsea dlq redrive DLQ_TOPIC (--offset REF … | --all) [--dry-run] [--json]
                                             publish parked records back to their source topic

A record is named by `partition:offset` on its `.dlq` topic (`2:17`); a bare offset will do
when only one partition holds it. A source topic's name stands for its `.dlq` twin.

**Applied exactly once.** A re-drive publishes the dead letter's own key, value and event
headers (so the same `event_id`, and the original trace context) to the topic it came from,
where the partitioner puts it on the case's partition again. Every consumer group of that topic
sees it: a group that already applied the event finds its processed marker
(`ocsea:processed:<group>:<event_id>`) and skips it, and the group that parked it applies it
now. However often a record is re-driven, each group applies it once (within the markers'
lifetime, `OCSEA_PROCESSED_MARKER_TTL_S`, 14 days; after that the handlers' own idempotence
keeps a second application from adding anything). Re-drive a case's records in order: `--all`
goes through each partition in offset order, which is the order its cases' records were parked.

**The re-drive log.** Each re-drive is recorded on `<dlq topic>.redriven`, a compacted topic
with one partition, keyed by the dead letter's `partition:offset`, whose value says when it was
re-driven, where the copy went, and the digest of the bytes it re-drove. Why there:

- Kafka records are immutable, so the dead letter itself cannot be marked; a log beside it,
  in the same cluster, is as durable as the dead letters (`acks=all`, replicated) and needs no
  other store to be up, or to be kept in step with it.
- Compaction keeps the latest mark of every dead letter for good, where a time-retained topic
  would forget it, and Redis keys expire (processed markers do, on purpose) or vanish with a
  flushed database: either would make a later `redrive --all` publish everything again.
- One small record per re-drive: reading the log to its end is cheap.

The copy is published before its mark, so a crash between the two means the next run publishes
it again (as do two operators re-driving at once), which the processed markers absorb; the
other order could lose a re-drive. A mark
counts only for the record whose bytes it names, so a `.dlq` topic deleted and created again
(offsets start at 0) does not inherit the old marks. Two dead letters of one source record (two
groups parked it, or a dead-letter publish was repeated) are re-driven with one copy.

**No personal data on the terminal.** A payload may carry sealed personal data, and an error
message may quote its input, so neither is ever shown: a payload appears as its size and
SHA-256, the error as its type, the fields a contract violation names (their paths, never their
values) and a digest that groups records which failed alike (the consumer's
`event.handler_failed` log line, found by `event_id`, has the message). Of the envelope only
ids, type, version, producer and time are shown, and a header only when its value is a plain
token (no spaces: no free text).
"""
