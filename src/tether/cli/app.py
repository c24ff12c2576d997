"""The root of ``tether``: the store option, ``serve`` and ``demo``, and the command groups.

Each group lives in the module named after the domain package it faces (``registry``, ``gate``, ``rollout``,
``monitor``, ``llm``, ``audit``, ``keys``), as do the API's route modules (``tether.api``) and the dashboard's
pages (``tether.ui``): ``rollout promote`` is ``tether/cli/rollout.py``, ``tether/api/rollout.py`` and
``tether/ui/rollout.py``. Each command is one call into a domain package plus rendering; errors become one line
and exit 2.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from tether.cli import audit, catalog, gate, keys, llm, llm_evals, monitor, registry, rollout
from tether.cli.common import State, settings
from tether.cli.output import console, err_console
from tether.core import InvalidInputError, TetherError

app = typer.Typer(
    name="tether",
    help="Lifecycle governance for ML and LLM systems: lock every model to its code, data and weights.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
for command in (*registry.COMMANDS, *catalog.COMMANDS, *rollout.COMMANDS):
    app.command()(command)
app.add_typer(registry.alias_app, name="alias")
app.add_typer(gate.gate_app, name="gate")
app.add_typer(registry.data_app, name="data")
app.add_typer(rollout.rollout_app, name="rollout")
app.add_typer(rollout.endpoint_app, name="endpoint")
app.add_typer(monitor.monitor_app, name="monitor")
app.add_typer(audit.audit_app, name="audit")
app.add_typer(keys.keys_app, name="keys")
app.add_typer(llm.llm_app, name="llm")
assert llm_evals.graders_app is not None  # its commands hang on llm_app


@app.callback()
def _root(
    home: Annotated[
        Path | None,
        typer.Option("--home", help="Store root (default: $TETHER_HOME or ./.tether).", show_default=False),
    ] = None,
) -> None:
    State.home = home


@app.command()
def serve(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1 (0: any free port).")] = 8080,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    no_auth: Annotated[bool, typer.Option("--no-auth", help="Accept requests without API keys (development).")] = False,
    tick: Annotated[float, typer.Option(help="Seconds between rollout controller evaluations.")] = 5.0,
    role: Annotated[
        str,
        typer.Option(
            help="all: everything in this process (the default). gateway: the data plane and its instances, "
            "publishing metric windows. controller: the leader-elected rollout controller, drift watch and "
            "LLM evaluation loop. Several processes share PostgreSQL (TETHER_DATABASE_URL)."
        ),
    ] = "all",
    replica: Annotated[
        str | None, typer.Option(help="This process's name among replicas (default HOST-PID); keep it across restarts.")
    ] = None,
    lease_ttl: Annotated[
        float,
        typer.Option(min=0.5, help="Seconds the leader's lease lasts: a standby takes over within about this long."),
    ] = 6.0,
) -> None:
    """Run the gateway, one instance process per routed version, the rollout controller and the drift watch.

    Example: tether serve --port 8080

    Scaled out (see docs/scale.md): TETHER_DATABASE_URL=postgresql://... tether serve --role gateway --replica gw-a
    """
    import asyncio

    from tether.api.replica import ROLES
    from tether.api.server import Server
    from tether.core import loop as event_loop

    if role not in ROLES:
        raise InvalidInputError(f"--role must be one of {', '.join(ROLES)}, got {role!r}", hint="tether serve --help")
    server = Server(
        settings(),
        host=host,
        port=port,
        auth=not no_auth,
        tick_seconds=tick,
        role=role,
        replica=replica,
        lease_ttl=lease_ttl,
    )

    async def run() -> None:
        import signal

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):  # systemd and Kubernetes stop with SIGTERM
            loop.add_signal_handler(sig, stop.set)
        await server.start()
        console.print(
            f"tether serving on {server.url} (role {role}, replica {server.replica.name}, "
            f"auth {'off' if no_auth else 'on'}); Ctrl-C stops"
        )
        try:
            await stop.wait()
        finally:
            await server.stop()  # stops the instances, writes the last profile slices

    try:
        event_loop.run(run(), server.settings.event_loop)
    except KeyboardInterrupt:
        console.print("stopped")


@app.command()
def demo(
    home: Annotated[Path | None, typer.Option(help="Keep the demo store here (default: a fresh temp folder).")] = None,
    rows: Annotated[int, typer.Option(help="Transactions to generate.")] = 50_000,
    serve: Annotated[bool, typer.Option("--serve", help="Then leave the dashboard up on the demo's data.")] = False,
    port: Annotated[int, typer.Option(help="The dashboard's port with --serve (0: any free port).")] = 8080,
) -> None:
    """The tour: generate fraud data, train, register, gate, serve, roll out, watch drift, run LLM traffic and its
    evaluation loop, and check the audit trail; with --serve, then the dashboard on that data.

    Example: tether demo --serve
    """
    from tether.cli.demo import run_demo

    store = run_demo(home=home, rows=rows)
    if serve:
        from tether.cli.demo_serve import serve_dashboard
        from tether.core.settings import Settings

        serve_dashboard(Settings(home=store, database_url="", blob_url=""), port=port)


def main() -> None:
    """Console entry point: a TetherError becomes one line on stderr and exit status 2.

    Usage errors are click's own (also exit status 2); anything else is a bug and keeps its traceback.
    """
    try:
        app()
    except TetherError as e:
        err_console.print(f"[red]error:[/red] {e}", highlight=False, soft_wrap=True)
        sys.exit(e.exit_code)
