"""The services the tests (and a developer by hand) run beside the router: PostgreSQL and Apache
Kafka installed from Debian's packages and Maven Central, started on loopback under `var/`.

`python -m devenv` is the command line (`make test` and `make kafka` call it); tests import
`devenv.kafka.KafkaServer` when they need a broker of their own to stop and restart.
"""
