"""The CLI's security parts: TLS options shared by the commands that connect, and
`asyncflow token create`, which makes a token for the server's tokens file.

The token itself is never an option (command lines are visible to every user of
the machine): the commands read it from $ASYNCFLOW_TOKEN, as the SDK does.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from asyncflow.errors import ConfigError

TLS_OPTIONS = {
    "tls_ca_file": ("--tls-ca", "PEM CA that signed the server's certificate"),
    "tls_cert_file": ("--tls-cert", "PEM client certificate (mutual TLS)"),
    "tls_key_file": ("--tls-key", "PEM key of --tls-cert"),
    "tls_server_name": ("--tls-server-name", "name in the server's certificate"),
}


def add_tls_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "security", "TLS and token (also $ASYNCFLOW_TLS_*; the token only from $ASYNCFLOW_TOKEN)"
    )
    for setting, (option, text) in TLS_OPTIONS.items():
        group.add_argument(option, dest=setting, metavar="PATH", help=text)
    group.add_argument("--tls", action="store_true", default=None,
                       help="TLS with the system's CA certificates")  # fmt: skip


def tls_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The ChannelSettings fields the options set (the others come from the environment)."""
    names = [*TLS_OPTIONS, "tls"]
    given = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
    if given:  # a TLS option means TLS, whatever the settings in the code say
        given.setdefault("tls", True)
    return given


def add_token_command(commands: Any) -> None:
    tokens = commands.add_parser("token", help="make tokens for the server's tokens file")
    action = tokens.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = action.add_parser("create", help="print a new token and its tokens-file entry")
    create.add_argument("--name", required=True, help="who uses it (in logs and limits)")
    create.add_argument("--role", action="append", required=True, dest="roles",
                        help="producer, worker, reader or admin (repeat for several)")  # fmt: skip
    create.add_argument("--types", default="", help="worker: only these task types (a,b)")


def create_token(args: argparse.Namespace) -> int:
    # The server's modules check entries the same way when they load the file.
    from asyncflow.server.auth.tokens import check_entry, new_token, token_entry

    roles = list(dict.fromkeys(r.strip() for arg in args.roles for r in arg.split(",")))
    types = [t.strip() for t in args.types.split(",") if t.strip()]
    try:
        check_entry(args.name, roles, types, "token create")
    except ConfigError as exc:
        print(f"asyncflow: {exc}", file=sys.stderr)
        return 2
    token = new_token()
    print(f"token (shown once; give it to the client as ASYNCFLOW_TOKEN):\n\n  {token}\n")
    print("add to the tokens file (auth.tokens_file), then send SIGHUP to the server:\n")
    print(token_entry(args.name, token, roles, types))
    return 0
