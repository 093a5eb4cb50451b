"""`supportrouter agent password USERNAME`: set an agent's password (stored as a scrypt hash)."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys

from router.core.settings import Settings
from router.operator_files.config import load_config


def password(args: argparse.Namespace) -> int:
    from router.store.conversations import ConversationStore
    from router.store.revisions import SchemaNotReady

    settings = Settings()
    config = load_config(settings.config_dir)
    if config.agent(args.username) is None:
        print(f"{args.username!r} is not in {settings.config_dir}/agents.yaml", file=sys.stderr)
        return 1
    password = (
        sys.stdin.readline().rstrip("\n") if args.stdin else getpass.getpass("new password: ")
    )
    if len(password) < 8:
        print("a password needs at least 8 characters", file=sys.stderr)
        return 1

    async def main() -> None:
        async with ConversationStore(settings.database_url) as store:
            await store.set_password(args.username, password)

    try:
        asyncio.run(main())
    except SchemaNotReady as exc:
        print(f"cannot set the password: {exc}", file=sys.stderr)
        return 1
    print(f"password set for {args.username}")
    return 0
