"""The test services' own helpers (devenv/): what `make test` relies on before any test runs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from devenv.kafka import _cluster_id, answers
from devenv.ports import free_port
from devenv.postgres import PostgresCluster

ROOT = Path(__file__).resolve().parent.parent


def test_a_cluster_id_never_starts_with_a_dash_which_the_storage_tool_reads_as_an_option():
    ids = [_cluster_id() for _ in range(5000)]  # one in 64 would start with "-" unless refused
    assert not [i for i in ids if i.startswith("-")]
    assert len(set(ids)) == len(ids) and {len(i) for i in ids} == {22}


def test_nothing_listening_is_not_a_ready_broker():
    assert answers(f"127.0.0.1:{free_port()}", timeout=1) is False


def test_the_shared_kafka_answers_a_metadata_request(shared_kafka):
    assert answers(shared_kafka) is True


def test_a_checkout_the_postgres_user_cannot_reach_keeps_its_cluster_under_var_tmp(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("only root hands the cluster to Debian's postgres user")
    hidden = tmp_path / "private"  # pytest's tmp_path is 0700, as /root is
    hidden.mkdir(mode=0o700)
    moved = PostgresCluster(hidden / "var" / "postgres").root
    assert moved.parent.parent == Path("/var/tmp") and moved.name == "postgres"
    assert PostgresCluster(hidden / "var" / "postgres").root == moved  # `down` finds `up`'s
    assert PostgresCluster(ROOT / "var" / "postgres").root == ROOT / "var" / "postgres"
