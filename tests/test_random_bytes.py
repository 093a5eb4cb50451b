"""Ids and tickets draw their randomness from a pool of the kernel's bytes (router.core.random_bytes):
no byte is handed out twice, not across threads, not across a pool's refill, and a forked child
never repeats what its parent draws next."""

from __future__ import annotations

import os
import threading

from router.core import random_bytes as pool
from router.core.envelope import ordered_id, random_id
from router.store.rows import new_ticket


def test_draws_across_refills_are_the_requested_length_and_never_repeat():
    draws = [pool.random_bytes(16) for _ in range(3 * pool._CHUNK // 16 + 7)]  # three refills
    assert {len(d) for d in draws} == {16}
    assert len(set(draws)) == len(draws)
    big = pool.random_bytes(pool._CHUNK + 1)  # more than a pool holds at once
    assert len(big) == pool._CHUNK + 1
    assert big not in b"".join(draws)


def test_threads_drawing_at_once_never_get_the_same_bytes():
    per_thread: list[list[bytes]] = [[] for _ in range(8)]
    start = threading.Barrier(len(per_thread))

    def draw(into: list[bytes]) -> None:
        start.wait()
        into.extend(pool.random_bytes(10) for _ in range(2_000))

    threads = [threading.Thread(target=draw, args=(into,)) for into in per_thread]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = [d for drawn in per_thread for d in drawn]
    assert len(every) == 16_000
    assert len(set(every)) == len(every)


def test_a_forked_child_draws_bytes_its_parent_never_hands_out():
    pool.random_bytes(1)  # the parent holds a pool with bytes left in it
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next 64 draws, to the parent
        os.close(read)
        os.write(write, b"".join(pool.random_bytes(16) for _ in range(64)))
        os._exit(0)
    os.close(write)
    child = b""
    while chunk := os.read(read, 4096):
        child += chunk
    os.close(read)
    os.waitpid(pid, 0)
    parent = b"".join(pool.random_bytes(16) for _ in range(64))
    assert len(child) == len(parent) == 1024
    child_draws = {child[i : i + 16] for i in range(0, 1024, 16)}
    parent_draws = {parent[i : i + 16] for i in range(0, 1024, 16)}
    assert not child_draws & parent_draws


def test_ids_and_tickets_keep_their_shapes():
    assert all(len(random_id()) == 32 and int(random_id(), 16) >= 0 for _ in range(100))
    assert len({random_id() for _ in range(10_000)}) == 10_000
    assert len({ordered_id()[12:] for _ in range(10_000)}) == 10_000
    ticket = new_ticket()
    assert ticket.startswith("T") and len(ticket) == 9 and int(ticket[1:], 16) >= 0
