"""``python -m rtmpserver.handlers.auth sign|passwd``: signed links and password hashes."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any

from rtmpserver.handlers.auth._common import (
    _USER,
    MIN_SECRET_LENGTH,
)
from rtmpserver.handlers.auth.passwords import (
    hash_password,
)
from rtmpserver.handlers.auth.signing import (
    sign_url,
)


def main(argv: list[str] | None = None, out: Any = None, stdin: Any = None, now: Callable[[], float] = time.time) -> int:
    out = out or sys.stdout
    stdin = stdin or sys.stdin
    parser = argparse.ArgumentParser(prog="python -m rtmpserver.handlers.auth", description="Helpers for the auth handler.")
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("sign", help="print the query string of a signed URL")
    g = s.add_mutually_exclusive_group(required=True)
    g.add_argument("--secret", help="the shared secret (visible in the process list: prefer --secret-file)")
    g.add_argument("--secret-file", help="file holding the secret (as auth.secret_file)")
    s.add_argument("--app", required=True)
    s.add_argument("--name", required=True, help="stream name, without ?query")
    t = s.add_mutually_exclusive_group(required=True)
    t.add_argument("--ttl", type=int, help="seconds from now until the link expires")
    t.add_argument("--expires", type=int, help="UNIX time at which the link expires")
    s.add_argument("--action", choices=("publish", "play"), default="publish")
    s.add_argument("--ip", help="bind to this client address (for auth.bind_ip = yes)")
    p = sub.add_parser("passwd", help="read a password from stdin, print a users-file line")
    p.add_argument("user")
    args = parser.parse_args(argv)

    if args.command == "sign":
        if args.secret_file:
            with open(args.secret_file, encoding="utf-8") as f:
                secret = f.read().strip()
        else:
            secret = args.secret
        if len(secret) < MIN_SECRET_LENGTH:
            parser.error(f"the secret must have at least {MIN_SECRET_LENGTH} characters")
        expires = args.expires if args.expires is not None else int(now()) + args.ttl
        try:
            out.write(sign_url(secret, args.app, args.name, expires, args.ip, action=args.action) + "\n")
        except ValueError as e:
            parser.error(str(e))
        return 0

    if not _USER.fullmatch(args.user):
        parser.error("user names are 1-64 letters, digits or ._@-")
    password = stdin.readline().rstrip("\r\n")
    if not password:
        parser.error("no password on stdin")
    out.write(f"{args.user}:{hash_password(password)}\n")
    return 0
