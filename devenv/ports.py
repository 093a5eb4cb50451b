"""Free loopback ports and waiting for a process to listen."""

from __future__ import annotations

import socket


def free_port(preferred: int | None = None) -> int:
    """`preferred` when nothing listens there, otherwise a port the kernel picks."""
    if preferred is not None:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", preferred))
                return preferred
            except OSError:
                pass
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
