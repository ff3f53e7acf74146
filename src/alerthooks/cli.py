"""The ``alerthooks`` command line. Errors are one line on stderr and a non-zero exit code."""

from __future__ import annotations

import click

from alerthooks import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="alerthooks")
def cli() -> None:
    """Usage-alert webhooks from Stripe and Chargebee: receive, store, dispatch, and sync."""


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="alerthooks")
