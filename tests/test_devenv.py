"""The test services' own helpers (devenv/): what `make test` relies on before any test runs."""

from __future__ import annotations

from devenv.kafka import _cluster_id, answers
from devenv.ports import free_port


def test_a_cluster_id_never_starts_with_a_dash_which_the_storage_tool_reads_as_an_option():
    ids = [_cluster_id() for _ in range(5000)]  # one in 64 would start with "-" unless refused
    assert not [i for i in ids if i.startswith("-")]
    assert len(set(ids)) == len(ids) and {len(i) for i in ids} == {22}


def test_nothing_listening_is_not_a_ready_broker():
    assert answers(f"127.0.0.1:{free_port()}", timeout=1) is False


def test_the_shared_kafka_answers_a_metadata_request(shared_kafka):
    assert answers(shared_kafka) is True
