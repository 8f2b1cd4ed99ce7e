"""The ``ringfence`` command group and the one place errors become exit codes.

Exit codes: 0 success / allow; 1 a check failed (tests failed, log does not verify, lint
warnings under --strict); 2 bad usage or input (coded message, no traceback);
``ringfence check`` uses 3 for deny and 4 for require_approval.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import click

from ringfence import __version__
from ringfence.errors import RingfenceError

EXIT_USAGE = 2


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except RingfenceError as exc:
            click.echo(exc.diagnostics(), err=True)
            sys.exit(EXIT_USAGE)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ringfence")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def cli(verbose: int) -> None:
    """Ringfence: check every agent action against a policy before it runs, and keep a
    tamper-evident record of it."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


def _register() -> None:
    from ringfence.cli import audit, check, demo, gateway, testcmd, validate

    cli.add_command(check.check)
    cli.add_command(validate.validate)
    cli.add_command(testcmd.test)
    cli.add_command(audit.audit)
    cli.add_command(demo.demo)
    cli.add_command(gateway.gateway)
    cli.add_command(gateway.inventory)
    from ringfence.cli import owasp

    cli.add_command(owasp.owasp)
    from ringfence.cli import eval as eval_cmd

    cli.add_command(eval_cmd.eval_)
    from ringfence.cli import init

    cli.add_command(init.init)
    from ringfence.cli import approvals

    cli.add_command(approvals.approvals)
    from ringfence.cli import identity

    cli.add_command(identity.identity)
    from ringfence.cli import secrets

    cli.add_command(secrets.secrets)
    from ringfence.cli import controls

    for command in (controls.kill, controls.unkill, controls.kills):
        cli.add_command(command)


_register()


def main() -> None:
    """Console entry point."""
    cli(prog_name="ringfence")
