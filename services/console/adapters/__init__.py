"""The console's ports made real: httpx clients of the services, sessions in Redis, the
principals file."""
