"""The command group, and how it ends: an exit status, one line per error, never a traceback.

Exit statuses: 0 done; 1 the work failed (a database that cannot be reached,
a document that does not verify) — or, quietly, the reader of the output went
away (`conductor token mint | head -c 40`: Click stops on the broken pipe
without a word); 2 a bad command line or setting (one line naming the flag);
130 interrupted.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from importlib.metadata import version

import click

from servers.cli.credentials import keys, scopes, token
from servers.cli.evidence import acceptance, evidence
from servers.cli.records import audit, backup_store, billing, demo, rag, restore_store
from servers.cli.serving import migrate, serve
from servers.cli.switches import switch

#: `conductor completion SHELL` prints the script that completes commands and flags.
SHELLS = ("bash", "zsh", "fish")
#: The variable Click's completion reads.
COMPLETE_VAR = "_CONDUCTOR_COMPLETE"

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(context_settings=CONTEXT, no_args_is_help=True)
@click.version_option(version("intelgraph-conductor"), "--version", "-V", prog_name="conductor")
def cli() -> None:
    """IntelGraph Maestro Conductor: serve the gRPC platform and operate it.

    Every setting is a flag of the commands that use it and a CONDUCTOR_* variable
    (--grpc-port and CONDUCTOR_GRPC_PORT); a flag wins over its variable. Shell
    completion: eval "$(conductor completion bash)".
    """


@cli.command(context_settings=CONTEXT)
@click.argument("shell", type=click.Choice(SHELLS), metavar="SHELL")
def completion(shell: str) -> int:
    """Print the completion script of SHELL (for example: eval "$(conductor completion bash)")."""
    from click.shell_completion import get_completion_class  # noqa: PLC0415

    completer = get_completion_class(shell)
    assert completer is not None  # one of Click's shells
    click.echo(completer(cli, {}, "conductor", COMPLETE_VAR).source())
    return 0


for command in (
    serve,
    migrate,
    keys,
    token,
    scopes,
    audit,
    demo,
    billing,
    rag,
    backup_store,
    restore_store,
    switch,
    acceptance,
    evidence,
):
    cli.add_command(command)


def _error(context: click.Context | None, message: str) -> None:
    where = context.command_path if context is not None else "conductor"
    click.echo(f"{where}: {message}", err=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit status."""
    try:
        status = cli.main(
            args=list(sys.argv[1:] if argv is None else argv),
            prog_name="conductor",
            standalone_mode=False,
            complete_var=COMPLETE_VAR,
        )
    except click.exceptions.NoArgsIsHelpError as shown:
        click.echo(shown.ctx.get_help() if shown.ctx is not None else "", err=True)
        return 2
    except click.UsageError as error:
        hint = f" (see {error.ctx.command_path} --help)" if error.ctx is not None else ""
        _error(error.ctx, error.format_message().replace("\n", " ") + hint)
        return 2
    except click.ClickException as error:
        where = getattr(error, "command_path", "conductor")
        click.echo(f"{where}: {error.format_message()}", err=True)
        return error.exit_code
    except click.Abort:
        click.echo("conductor: interrupted", err=True)
        return 130
    return status if isinstance(status, int) else 0
