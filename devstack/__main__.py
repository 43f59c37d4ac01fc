"""`python -m devstack up|down|status|reset|env`: the same as `ocsea stack …`."""

from devstack.cli import app

app(prog_name="python -m devstack")
