"""The local infrastructure stack: real Kafka (KRaft), Redis and PostgreSQL on loopback.

A development tool of the checkout, not part of the product: it is not in the wheel nor the
image (pyproject.toml packages only ocsea, services and contracts), and `ocsea stack` imports it
only when run, from a checkout (`uv run ocsea stack …`).

Everything runs as detached processes of its own (not system services), with its data under
`var/stack/` of the repository (git-ignored) and its logs under `var/stack/logs/`. One module per
component, each behind the one interface of `devstack/component.py`:

* `kafka.py` — a single-node Kafka 4.x on the machine's Java 17, from the jars Maven fetches
  into `var/cache/kafka-<version>/` (`java.py`; first run only; see `deploy/kafka/pom.xml`);
* `redis.py` — the Debian `redis-server`, daemonized, append-only, a password required;
* `postgres.py` — the newest Debian `postgresql`, with a database and role `ocsea`;

with the Debian packages installed by `packages.py` when missing, and the process utilities
(launching, pid files, ports, stopping) in `processes.py`.

`up` (`stack.py`) is idempotent (a component whose pid file names a live process is left alone),
`down` stops gracefully (Kafka: SIGTERM, a controlled shutdown; Redis: SIGTERM, which flushes
the AOF; PostgreSQL: SIGINT, its "fast" shutdown) and only escalates after a deadline. Every wait
polls a real readiness condition with a deadline: a Kafka metadata answer listing our broker, a
Redis `PING`, `pg_isready`.

Mounted as `ocsea stack up|down|status|reset|env` (`cli.py`); `python -m devstack ...` works too.
"""

from devstack.redis import redis_password, use_local_redis
from devstack.settings import DEFAULT_KAFKA_VERSION, StackError, StackSettings, find_repo_root
from devstack.stack import COMPONENTS, components, down, reset, service_env, status, up

__all__ = [
    "COMPONENTS",
    "DEFAULT_KAFKA_VERSION",
    "StackError",
    "StackSettings",
    "components",
    "down",
    "find_repo_root",
    "redis_password",
    "reset",
    "service_env",
    "status",
    "up",
    "use_local_redis",
]
