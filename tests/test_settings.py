from pathlib import Path

import pytest

from router.app import Router
from router.core.settings import Settings, store_url
from router.services.workers import plan_for
from tests.conftest import make_settings, supportrouter


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


def test_the_channels_sections_keep_the_variable_names_operators_use(monkeypatch):
    environment = {
        "TWILIO_AUTH_TOKEN": "twilio-secret",
        "SUPPORTROUTER_TWILIO_SEND_ATTEMPTS": "5",
        "TELEGRAM_BOT_TOKEN": "123:abc",
        "SUPPORTROUTER_TELEGRAM_POLL_TIMEOUT_SECONDS": "7",
        "SUPPORTROUTER_SUPPORT_ADDRESS": "Help@Wallet.example",
        "SUPPORTROUTER_IMAP_MAILBOXES": "INBOX, Support",
        "SUPPORTROUTER_CONFIG_POLL_SECONDS": "0",
    }
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    s = Settings()
    assert s.twilio.auth_token.get_secret_value() == "twilio-secret"
    assert s.twilio.send_attempts == 5
    assert s.telegram.bot_token.get_secret_value() == "123:abc"
    assert s.telegram.poll_timeout_seconds == 7
    assert s.email.support_address == "help@wallet.example"
    assert s.email.imap_mailboxes == ["INBOX", "Support"]
    assert s.config_poll_seconds == 0
    assert "twilio-secret" not in repr(s) and "123:abc" not in repr(s)


def test_only_the_root_settings_model_reads_the_environment():
    root = Path(__file__).resolve().parent.parent
    # Handing the whole environment on to a child process (`dict(os.environ)`) reads no setting.
    reads = ("os.environ[", "os.environ.get", "environ.items", "getenv(", "environ.copy")
    readers = {
        str(path.relative_to(root))
        for package in ("router", "channels")
        for path in (root / package).rglob("*.py")
        if any(word in path.read_text(encoding="utf-8") for word in reads)
        or "(BaseSettings)" in path.read_text(encoding="utf-8")
    }
    # native.py reads Settings.native's variable itself: the compiled modules are chosen at
    # import, before any Settings exist.
    assert readers == {"router/core/settings.py", "router/classify/native.py"}
    passed_on = {
        str(path.relative_to(root))
        for package in ("router", "channels")
        for path in (root / package).rglob("*.py")
        if "os.environ" in path.read_text(encoding="utf-8")
    }
    assert passed_on <= {"router/services/workers.py", "router/classify/native.py"}, passed_on


@pytest.mark.parametrize(
    ("given", "opened"),
    [
        (
            "postgresql://router:pw@db:5432/support",
            "postgresql+asyncpg://router:pw@db:5432/support",
        ),
        ("postgres://router@db/support", "postgresql+asyncpg://router@db/support"),
        ("postgresql+asyncpg://router@db/support", "postgresql+asyncpg://router@db/support"),
        ("sqlite:///var/x.db", "sqlite+aiosqlite:///var/x.db"),
        ("sqlite+aiosqlite:///var/x.db", "sqlite+aiosqlite:///var/x.db"),
    ],
)
def test_a_database_url_that_names_only_the_database_gets_the_stores_driver(
    monkeypatch, given, opened
):
    monkeypatch.setenv("SUPPORTROUTER_DATABASE_URL", given)
    assert Settings().database_url == opened
    assert store_url(opened) == opened  # once is enough: the workers read it again


@pytest.mark.parametrize(
    ("given", "reason"),
    [
        ("mysql://router@db/support", "the store runs on SQLite or PostgreSQL, not 'mysql'"),
        ("postgresql+psycopg2://db/support", "reaches postgresql through asyncpg, not 'psycopg2'"),
        ("var/supportrouter.db", "not a database URL"),
    ],
)
def test_a_database_url_the_store_cannot_open_is_refused_with_what_it_takes(given, reason):
    with pytest.raises(ValueError, match=reason):
        store_url(given)


@pytest.mark.parametrize(
    ("variable", "value", "said"),
    [
        (
            "SUPPORTROUTER_PARTITIONS",
            "three",
            "SUPPORTROUTER_PARTITIONS: Input should be a valid integer, unable to parse string as"
            " an integer (given: 'three')",
        ),
        (
            "SUPPORTROUTER_TWILIO_SEND_ATTEMPTS",
            "-",
            "SUPPORTROUTER_TWILIO_SEND_ATTEMPTS: Input should be a valid integer",
        ),
        (
            "SUPPORTROUTER_DATABASE_URL",
            "mysql://router:hunter2@db/support",
            "SUPPORTROUTER_DATABASE_URL: Value error, the store runs on SQLite or PostgreSQL",
        ),
    ],
)
def test_a_setting_the_environment_got_wrong_is_named_with_its_reason_and_exit_2(
    tmp_path, variable, value, said
):
    """`supportrouter run` (and every command) says which variable is wrong and why, without a
    traceback, and never echoes a URL's password."""
    result = supportrouter("run", cwd=tmp_path, **{variable: value})
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("settings refused:\n"), result.stderr
    assert said in result.stderr
    assert "Traceback" not in result.stderr
    assert "hunter2" not in result.stderr


def test_a_database_url_option_the_store_cannot_open_is_refused_by_the_command_line(tmp_path):
    result = supportrouter("db", "current", "--database-url", "mysql://db/x", cwd=tmp_path)
    assert result.returncode == 2
    assert "argument --database-url: the store runs on SQLite or PostgreSQL" in result.stderr


@pytest.mark.parametrize(
    ("classify_in", "servers", "workers_of_run", "stage"),
    [
        ("auto", None, False, False),  # `supportrouter run`: the embedded broker
        ("auto", "127.0.0.1:9092", True, False),  # its worker processes, on that broker
        ("auto", "127.0.0.1:9092", False, True),  # a Kafka cluster
        ("classifier", None, False, True),
        ("gateway", "127.0.0.1:9092", False, False),
    ],
)
def test_the_classifier_stage_runs_on_a_cluster_and_where_it_is_asked_for(
    classify_in, servers, workers_of_run, stage
):
    settings = Settings(
        classify_in=classify_in,
        kafka_bootstrap_servers=servers,
        kafka_is_embedded=workers_of_run,
        processes="4",
    )
    assert settings.classifier_stage is stage
    plan = plan_for(settings)
    assert plan is not None
    assert (plan.classifier, plan.dispatcher) == ((2, 2) if stage else (0, 2))
    assert ("classifier" in plan.roles()) is stage


async def test_the_classifier_alone_is_refused_where_the_gateway_classifies(tmp_path, rules):
    settings = make_settings(
        f"sqlite+aiosqlite:///{tmp_path}/s.db",
        kafka_bootstrap_servers="127.0.0.1:1",  # never reached: refused before
        classify_in="gateway",
    )
    router = Router(settings, rules=rules, role="classifier")
    with pytest.raises(RuntimeError, match="SUPPORTROUTER_CLASSIFY_IN=gateway"):
        await router.start()
