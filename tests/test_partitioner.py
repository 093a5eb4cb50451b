"""The partition a keyed record goes to is Kafka's own choice, the one the Java client makes:
a conversation's records stay on one partition whichever client wrote them."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from hypothesis import given
from hypothesis import strategies as st

from router.bus.partitioner import KeyPartitioner, murmur2

# Apache Kafka's own test vectors (clients' UtilsTest.testMurmur2), as signed 32-bit integers.
JAVA = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


def signed(h: int) -> int:
    return h - (1 << 32) if h >= 1 << 31 else h


def test_murmur2_is_the_java_clients():
    assert {key: signed(murmur2(key)) for key in JAVA} == JAVA


@given(st.binary(max_size=600))
def test_murmur2_agrees_with_aiokafkas_for_any_key_length(key: bytes):
    # Past 255 bytes the words are read with a format built for that length.
    assert murmur2(key) == aiokafka_murmur2(key)


@given(st.binary(min_size=1, max_size=80), st.integers(min_value=1, max_value=64))
def test_a_keyed_record_goes_where_aiokafkas_default_partitioner_puts_it(key: bytes, count: int):
    partitions = list(range(count))
    assert KeyPartitioner()(key, partitions, partitions[:1]) == DefaultPartitioner()(
        key, partitions, partitions[:1]
    )


def test_a_record_without_a_key_goes_to_an_available_partition_or_else_any():
    partitioner = KeyPartitioner()
    assert {partitioner(None, [0, 1, 2, 3], [2]) for _ in range(20)} == {2}
    assert {partitioner(None, [0, 1, 2], []) for _ in range(200)} == {0, 1, 2}
