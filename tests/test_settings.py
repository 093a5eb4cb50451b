from pathlib import Path

from router.core.settings import Settings


def test_defaults_are_the_embedded_default(monkeypatch):
    for key in list(__import__("os").environ):
        if key.startswith("SUPPORTROUTER_"):
            monkeypatch.delenv(key)
    s = Settings()
    assert s.http_port == 8080
    assert s.smtp_port == 2525
    assert s.embedded is True
    assert s.config_dir == Path("config")
    assert s.database_url.startswith("sqlite+aiosqlite:///var/")
    assert s.topics.inbound_urgent == "support.inbound.urgent"
    assert s.topics.classified_urgent == "support.classified.urgent"


def test_environment_variables_override(monkeypatch):
    monkeypatch.setenv("SUPPORTROUTER_HTTP_PORT", "9090")
    monkeypatch.setenv("SUPPORTROUTER_KAFKA_BOOTSTRAP_SERVERS", "kafka:9092")
    monkeypatch.setenv("SUPPORTROUTER_ADMIN_PASSWORD", "s3cret-pass")
    monkeypatch.setenv("SUPPORTROUTER_TOPICS__DLQ", "ops.dlq")
    monkeypatch.setenv("SUPPORTROUTER_TOPICS__CLASSIFIED_URGENT", "ops.classified.fast")
    s = Settings()
    assert s.http_port == 9090
    assert s.embedded is False
    assert s.topics.dlq == "ops.dlq"
    assert "ops.classified.fast" in s.topics.all()  # created with the others, and named in settings
    assert "s3cret-pass" not in repr(s)  # a secret never shows in a log of the settings
    assert s.admin_password.get_secret_value() == "s3cret-pass"
