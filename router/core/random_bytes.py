"""Random bytes from the kernel's generator, fetched 4 KiB at a time instead of a call each.

`os.urandom` is a system call, and CPython lets go of the GIL around it. On the gateway, whose
intake journal thread wants the GIL whenever a commit ends, the main thread then often waited
for it back: py-spy found 7.8% of the gateway's main thread in making one id (0.3 µs alone).
The bytes are the same (the kernel's CSPRNG, as `secrets` uses); no byte is handed out twice,
and a forked child starts with an empty pool, never its parent's.
"""

from __future__ import annotations

import os
import threading

_CHUNK = 4096

_lock = threading.Lock()
_pool = b""
_at = 0


def random_bytes(n: int) -> bytes:
    """n bytes from the kernel's CSPRNG, like `os.urandom(n)`."""
    global _pool, _at
    with _lock:
        if _at + n > len(_pool):
            _pool, _at = os.urandom(max(_CHUNK, n)), 0
        start = _at
        _at += n
        return _pool[start:_at]


def _forget() -> None:
    global _lock, _pool, _at
    _lock, _pool, _at = threading.Lock(), b"", 0


os.register_at_fork(after_in_child=_forget)
