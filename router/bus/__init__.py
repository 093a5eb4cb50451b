"""Kafka: the acks=all producer and topics, the consumer loop that commits after the effect, the fan-out outside any group, and the embedded Tansu broker."""
