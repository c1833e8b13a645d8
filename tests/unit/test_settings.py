"""Settings parsing: defaults, one-line errors naming the variable, TOML fallback, secrets kept secret."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from control.settings import (
    DEFAULT_MQTT_PORT,
    DEFAULT_PG_DSN,
    MqttEndpoint,
    Secret,
    Settings,
    SettingsError,
    describe,
    load_settings,
    parse_mqtt_url,
    redact_dsn,
)
from flowbank import config
from flowbank.config import read_settings

DATA_DIR = Path("/srv/flowbank-test-data")
PASSWORD = "s3cr3t-Pa55"


def load(environ: dict[str, str] | None = None, toml: dict[str, Any] | None = None) -> Settings:
    return load_settings(environ or {}, toml, default_data_dir=DATA_DIR)


# --------------------------------------------------------------------------- defaults


def test_defaults() -> None:
    s = load()
    assert s.pg_dsn.reveal() == DEFAULT_PG_DSN
    assert s.mqtt == MqttEndpoint("127.0.0.1", DEFAULT_MQTT_PORT, None, Secret(""), tls=False)
    assert s.data_dir == DATA_DIR
    assert s.log_level == "INFO"
    assert (s.bridge_host, s.bridge_port, s.bridge_id) == ("127.0.0.1", 9000, "bridge-1")
    assert (s.bridge_tls_cert, s.bridge_tls_key) == (None, None)
    assert s.bridge_auto_register is False
    assert s.heartbeat_interval_s == 60
    assert s.ocpp_response_timeout_s == 10.0
    assert (s.dashboard_host, s.dashboard_port) == ("127.0.0.1", 8501)
    assert s.provision_services is True


def test_settings_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        load().bridge_port = 1  # type: ignore[misc]


OWN_DSN = "postgresql://app:pw@db.internal:5432/flowbank"
OWN_MQTT = "mqtt://broker.internal:1883"


@pytest.mark.parametrize(("environ", "toml", "expected"), [
    ({}, None, True),
    ({"FLOWBANK_PG_DSN": OWN_DSN}, None, False),
    ({"FLOWBANK_MQTT_URL": OWN_MQTT}, None, False),
    ({"FLOWBANK_PG_DSN": OWN_DSN, "FLOWBANK_MQTT_URL": OWN_MQTT}, None, False),
    ({}, {"pg_dsn": OWN_DSN}, False),
    ({}, {"mqtt_url": OWN_MQTT}, False),
    ({"FLOWBANK_PG_DSN": OWN_DSN, "FLOWBANK_PROVISION_SERVICES": "yes"}, None, True),  # explicit wins
    ({"FLOWBANK_PROVISION_SERVICES": "off"}, None, False),
    ({"FLOWBANK_LOG_LEVEL": "debug", "FLOWBANK_BRIDGE_PORT": "9100"}, None, True),  # other vars don't count
], ids=["nothing", "pg", "mqtt", "both", "toml-pg", "toml-mqtt", "explicit-true", "explicit-false", "others"])
def test_provision_services_only_when_no_own_services(environ: dict[str, str], toml: dict[str, Any] | None,
                                                      expected: bool) -> None:
    assert load(environ, toml).provision_services is expected


# --------------------------------------------------------------------------- good values


@pytest.mark.parametrize(("environ", "attribute", "expected"), [
    ({"FLOWBANK_BRIDGE_PORT": "1"}, "bridge_port", 1),
    ({"FLOWBANK_BRIDGE_PORT": " 65535 "}, "bridge_port", 65535),
    ({"FLOWBANK_DASHBOARD_PORT": "8080"}, "dashboard_port", 8080),
    ({"FLOWBANK_HEARTBEAT_INTERVAL_S": "86400"}, "heartbeat_interval_s", 86_400),
    ({"FLOWBANK_PIPELINE_BATCH_MS": "0"}, "pipeline_batch_ms", 0),
    ({"FLOWBANK_PIPELINE_BATCH_MS": "250"}, "pipeline_batch_ms", 250),
    ({"FLOWBANK_OCPP_RESPONSE_TIMEOUT_S": "2.5"}, "ocpp_response_timeout_s", 2.5),
    ({"FLOWBANK_OCPP_RESPONSE_TIMEOUT_S": "0.1"}, "ocpp_response_timeout_s", 0.1),
    ({"FLOWBANK_LOG_LEVEL": "debug"}, "log_level", "DEBUG"),
    ({"FLOWBANK_LOG_LEVEL": "Warning"}, "log_level", "WARNING"),
    ({"FLOWBANK_BRIDGE_HOST": " 0.0.0.0 "}, "bridge_host", "0.0.0.0"),  # noqa: S104 - a value, not a bind
    ({"FLOWBANK_BRIDGE_ID": "bridge-7"}, "bridge_id", "bridge-7"),
    ({"FLOWBANK_DATA_DIR": "/var/lib/flowbank"}, "data_dir", Path("/var/lib/flowbank")),
    ({"FLOWBANK_DATA_DIR": ""}, "data_dir", DATA_DIR),
    ({"FLOWBANK_BRIDGE_AUTO_REGISTER": "TRUE"}, "bridge_auto_register", True),
    ({"FLOWBANK_BRIDGE_AUTO_REGISTER": "1"}, "bridge_auto_register", True),
    ({"FLOWBANK_BRIDGE_AUTO_REGISTER": " on "}, "bridge_auto_register", True),
    ({"FLOWBANK_BRIDGE_AUTO_REGISTER": "no"}, "bridge_auto_register", False),
    ({"FLOWBANK_BRIDGE_AUTO_REGISTER": "0"}, "bridge_auto_register", False),
    ({"FLOWBANK_BRIDGE_TLS_CERT": "/etc/c.pem", "FLOWBANK_BRIDGE_TLS_KEY": "/etc/k.pem"},
     "bridge_tls_cert", Path("/etc/c.pem")),
    ({"FLOWBANK_BRIDGE_TLS_CERT": "", "FLOWBANK_BRIDGE_TLS_KEY": ""}, "bridge_tls_key", None),
])
def test_good_values(environ: dict[str, str], attribute: str, expected: object) -> None:
    assert getattr(load(environ), attribute) == expected


@pytest.mark.parametrize(("url", "expected", "display"), [
    ("mqtt://broker:1883", MqttEndpoint("broker", 1883, None, Secret(""), False), "mqtt://broker:1883"),
    ("mqtt://broker", MqttEndpoint("broker", 1883, None, Secret(""), False), "mqtt://broker:1883"),
    ("mqtts://broker", MqttEndpoint("broker", 8883, None, Secret(""), True), "mqtts://broker:8883"),
    ("tcp://broker:1999", MqttEndpoint("broker", 1999, None, Secret(""), False), "mqtt://broker:1999"),
    ("ssl://broker", MqttEndpoint("broker", 8883, None, Secret(""), True), "mqtts://broker:8883"),
    (f"mqtt://bridge:{PASSWORD}@broker:1884", MqttEndpoint("broker", 1884, "bridge", Secret(PASSWORD), False),
     "mqtt://bridge@broker:1884"),
    ("mqtt://us%40er:p%40ss%3A@broker", MqttEndpoint("broker", 1883, "us@er", Secret("p@ss:"), False),
     "mqtt://us%40er@broker:1883"),
    ("mqtt://[::1]:1884", MqttEndpoint("::1", 1884, None, Secret(""), False), "mqtt://[::1]:1884"),
])
def test_parse_mqtt_url(url: str, expected: MqttEndpoint, display: str) -> None:
    endpoint = parse_mqtt_url("FLOWBANK_MQTT_URL", url)
    assert endpoint == expected
    assert endpoint.url == display
    assert PASSWORD not in endpoint.url
    assert parse_mqtt_url("X", endpoint.url) == dataclasses.replace(endpoint, password=Secret(""))


# --------------------------------------------------------------------------- bad values


BAD_VALUES: list[tuple[str, str, str]] = [
    ("FLOWBANK_BRIDGE_PORT", "abc", "expected an integer, got 'abc'"),
    ("FLOWBANK_BRIDGE_PORT", "", "expected an integer"),
    ("FLOWBANK_BRIDGE_PORT", "0", "must be between 1 and 65535, got 0"),
    ("FLOWBANK_BRIDGE_PORT", "65536", "must be between 1 and 65535"),
    ("FLOWBANK_BRIDGE_PORT", "-1", "must be between 1 and 65535"),
    ("FLOWBANK_BRIDGE_PORT", "80.5", "expected an integer"),
    ("FLOWBANK_BRIDGE_PORT", "9000\nFLOWBANK_X=1", "expected an integer"),  # stays on one line
    ("FLOWBANK_DASHBOARD_PORT", "http", "expected an integer"),
    ("FLOWBANK_DASHBOARD_PORT", "99999", "must be between 1 and 65535"),
    ("FLOWBANK_HEARTBEAT_INTERVAL_S", "0", "must be between 1 and 86400"),
    ("FLOWBANK_HEARTBEAT_INTERVAL_S", "86401", "must be between 1 and 86400"),
    ("FLOWBANK_HEARTBEAT_INTERVAL_S", "1m", "expected an integer"),
    ("FLOWBANK_OCPP_RESPONSE_TIMEOUT_S", "abc", "expected a number, got 'abc'"),
    ("FLOWBANK_OCPP_RESPONSE_TIMEOUT_S", "0", "at least 0.1"),
    ("FLOWBANK_OCPP_RESPONSE_TIMEOUT_S", "-5", "at least 0.1"),
    ("FLOWBANK_OCPP_RESPONSE_TIMEOUT_S", "nan", "finite number"),
    ("FLOWBANK_OCPP_RESPONSE_TIMEOUT_S", "inf", "finite number"),
    ("FLOWBANK_OCPP_RESPONSE_TIMEOUT_S", "10s", "expected a number"),
    ("FLOWBANK_BRIDGE_AUTO_REGISTER", "maybe", "expected true or false, got 'maybe'"),
    ("FLOWBANK_BRIDGE_AUTO_REGISTER", "2", "expected true or false"),
    ("FLOWBANK_PROVISION_SERVICES", "y", "expected true or false"),
    ("FLOWBANK_LOG_LEVEL", "verbose", "expected one of DEBUG, INFO, WARNING, ERROR, CRITICAL, got 'verbose'"),
    ("FLOWBANK_LOG_LEVEL", "", "expected one of"),
    ("FLOWBANK_LOG_LEVEL", "warn", "expected one of"),
    ("FLOWBANK_PIPELINE_BATCH_MS", "-1", "FLOWBANK_PIPELINE_BATCH_MS"),
    ("FLOWBANK_PIPELINE_BATCH_MS", "0.5", "FLOWBANK_PIPELINE_BATCH_MS"),
    ("FLOWBANK_BRIDGE_HOST", "   ", "must not be empty"),
    ("FLOWBANK_BRIDGE_ID", "", "must not be empty"),
    ("FLOWBANK_DASHBOARD_HOST", "\t", "must not be empty"),
    ("FLOWBANK_MQTT_URL", "http://broker:1883", "expected mqtt://host:port or mqtts://host:port, got scheme 'http'"),
    ("FLOWBANK_MQTT_URL", "broker:1883", "got scheme 'broker'"),
    ("FLOWBANK_MQTT_URL", "broker", "got scheme ''"),
    ("FLOWBANK_MQTT_URL", "mqtt://", "no host in the URL"),
    ("FLOWBANK_MQTT_URL", "mqtt://broker:abc", "the port must be a number between 1 and 65535"),
    ("FLOWBANK_MQTT_URL", "mqtt://broker:0", "the port must be a number between 1 and 65535"),
    ("FLOWBANK_MQTT_URL", "mqtt://broker:70000", "the port must be a number between 1 and 65535"),
    ("FLOWBANK_MQTT_URL", f"mqtt://u:{PASSWORD}@[::1", "not a valid URL"),
    ("FLOWBANK_PG_DSN", f"mysql://u:{PASSWORD}@db/flowbank", "expected postgresql://user:password@host:port/database"),
    ("FLOWBANK_PG_DSN", "postgresql://", "expected postgresql://"),
    ("FLOWBANK_PG_DSN", f"host=db password={PASSWORD}", "expected postgresql://"),
    ("FLOWBANK_PG_DSN", f"postgresql://u:{PASSWORD}@db:abc/flowbank", "the port must be a number"),
    ("FLOWBANK_PG_DSN", f"postgresql://u:{PASSWORD}@[::1/flowbank", "not a valid URL"),
    ("FLOWBANK_PG_DSN", f"postgresql://u:\uff03{PASSWORD}@db/flowbank", "not a valid URL"),
    ("FLOWBANK_MQTT_URL", f"mqtt://u:\uff03{PASSWORD}@broker", "not a valid URL"),
]


@pytest.mark.parametrize(("variable", "value", "message"), BAD_VALUES,
                         ids=[f"{v}={x!r}" for v, x, _ in BAD_VALUES])
def test_bad_value_gives_one_line_error_naming_the_variable(variable: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError) as info:
        load({variable: value})
    text = str(info.value)
    assert text.startswith(f"{variable}: ")
    assert message in text
    assert "\n" not in text
    assert PASSWORD not in text


@pytest.mark.parametrize(("environ", "missing"), [
    ({"FLOWBANK_BRIDGE_TLS_CERT": "/etc/c.pem"}, "FLOWBANK_BRIDGE_TLS_KEY"),
    ({"FLOWBANK_BRIDGE_TLS_KEY": "/etc/k.pem"}, "FLOWBANK_BRIDGE_TLS_CERT"),
    ({"FLOWBANK_BRIDGE_TLS_CERT": "/etc/c.pem", "FLOWBANK_BRIDGE_TLS_KEY": ""}, "FLOWBANK_BRIDGE_TLS_KEY"),
])
def test_tls_cert_and_key_go_together(environ: dict[str, str], missing: str) -> None:
    with pytest.raises(SettingsError) as info:
        load(environ)
    assert missing in str(info.value)
    assert "set together" in str(info.value)
    assert "\n" not in str(info.value)


# --------------------------------------------------------------------------- TOML fallback


def test_toml_fallback_and_environment_precedence() -> None:
    toml = {
        "bridge_port": 9100, "DASHBOARD_PORT": 8600, "log_level": "debug", "bridge_auto_register": True,
        "ocpp_response_timeout_s": 2.5, "pg_dsn": "postgresql://toml:pw@toml-db/flowbank",
        "mqtt_url": "mqtts://toml-broker", "data_dir": "/toml/data",
    }
    s = load({"FLOWBANK_BRIDGE_PORT": "9200", "FLOWBANK_MQTT_URL": OWN_MQTT}, toml)
    assert s.bridge_port == 9200  # the environment wins
    assert s.mqtt.host == "broker.internal"
    assert s.dashboard_port == 8600  # TOML keys are case-insensitive
    assert s.log_level == "DEBUG"
    assert s.bridge_auto_register is True  # a TOML boolean
    assert s.ocpp_response_timeout_s == 2.5
    assert s.pg_dsn.reveal() == "postgresql://toml:pw@toml-db/flowbank"
    assert s.data_dir == Path("/toml/data")
    assert s.provision_services is False


def test_an_empty_environment_value_overrides_toml() -> None:
    s = load({"FLOWBANK_BRIDGE_TLS_CERT": "", "FLOWBANK_BRIDGE_TLS_KEY": ""},
             {"bridge_tls_cert": "/c.pem", "bridge_tls_key": "/k.pem"})
    assert s.bridge_tls_cert is None


@pytest.mark.parametrize(("toml", "message"), [
    ({"bridge_port": "abc"}, "bridge_port (TOML): expected an integer, got 'abc'"),
    ({"bridge_port": True}, "bridge_port (TOML): expected an integer, got 'true'"),
    ({"bridge_port": 9000.5}, "bridge_port (TOML): expected an integer"),
    ({"bridge_port": [1, 2]}, "bridge_port (TOML): expected an integer"),
    ({"bridge_auto_register": 2}, "bridge_auto_register (TOML): expected true or false"),
    ({"log_level": "loud"}, "log_level (TOML): expected one of"),
    ({"mqtt_url": "ws://broker"}, "mqtt_url (TOML): expected mqtt://"),
    ({"ocpp_response_timeout_s": "nan"}, "ocpp_response_timeout_s (TOML): must be a finite number"),
])
def test_bad_toml_value_names_the_key(toml: dict[str, Any], message: str) -> None:
    with pytest.raises(SettingsError) as info:
        load({}, toml)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


# --------------------------------------------------------------------------- secrets


def test_secret_is_never_shown() -> None:
    secret = Secret(PASSWORD)
    shown = [
        repr(secret), str(secret), f"{secret}", f"{secret!r}", f"{secret:>30}",
        "%s" % secret,  # noqa: UP031 - every formatting route
        "{}".format(secret),  # noqa: UP032
        repr([secret]), repr({"k": secret}),
    ]
    for text in shown:
        assert PASSWORD not in text
        assert "********" in text
    assert secret.reveal() == PASSWORD
    assert repr(Secret("")) == "Secret('')"
    assert bool(secret) and not Secret("")
    assert secret == Secret(PASSWORD) and secret != Secret("other") and secret != PASSWORD
    assert hash(secret) == hash(Secret(PASSWORD))


def test_settings_repr_and_describe_never_show_passwords() -> None:
    other = "mqtt-Pa55word"
    s = load({"FLOWBANK_PG_DSN": f"postgresql://app:{PASSWORD}@db.internal:5432/flowbank?sslmode=require",
              "FLOWBANK_MQTT_URL": f"mqtts://bridge:{other}@broker.internal"})
    shown = describe(s)
    everything = "\n".join([repr(s), str(s), repr(s.mqtt), *shown.values()])
    assert PASSWORD not in everything
    assert other not in everything
    assert shown["pg_dsn"] == "postgresql://app:********@db.internal:5432/flowbank?sslmode=require"
    assert shown["mqtt_url"] == "mqtts://bridge@broker.internal:8883"
    assert s.pg_dsn_display == shown["pg_dsn"]
    assert s.pg_dsn.reveal().endswith("?sslmode=require")


def test_describe_lists_every_setting_as_text() -> None:
    shown = describe(load())
    expected = {f.name for f in dataclasses.fields(Settings)} - {"mqtt"} | {"mqtt_url"}
    assert set(shown) == expected
    assert all(isinstance(v, str) for v in shown.values())
    assert shown["bridge_port"] == "9000"
    assert shown["provision_services"] == "True"
    assert shown["pg_dsn"] == "postgresql://flowbank:********@127.0.0.1:5434/flowbank"


@pytest.mark.parametrize(("dsn", "redacted"), [
    ("postgresql://u:pw@h:5432/db", "postgresql://u:********@h:5432/db"),
    ("postgresql://flowbank:flowbank@127.0.0.1/flowbank", "postgresql://flowbank:********@127.0.0.1/flowbank"),
    ("postgresql://u@h/db", "postgresql://u@h/db"),
    ("postgresql://h/db", "postgresql://h/db"),
    ("postgresql://u:p%40ss@h/db", "postgresql://u:********@h/db"),
    ("postgresql://u:p@ss@h/db", "postgresql://u:********@h/db"),  # unencoded '@' in the password
    ("postgresql://u:@h/db", "postgresql://u:********@h/db"),
    ("postgresql://u@h/db?sslmode=require&password=pw&x=1",
     "postgresql://u@h/db?sslmode=require&password=********&x=1"),
    ("postgresql:///db?host=/run/pg&PASSWORD=pw", "postgresql:///db?host=/run/pg&PASSWORD=********"),
    ("host=db user=u password=pw dbname=x", "host=db user=u password=******** dbname=x"),
    ("host=db password = 'p w\\'x' dbname=x", "host=db password = ******** dbname=x"),
    ("postgresql://u:pw@[::1/db", "postgresql://u:********@[::1/db"),
    ("postgresql://u:pw@h/db#password=x", "postgresql://u:********@h/db#password=x"),
])
def test_redact_dsn(dsn: str, redacted: str) -> None:
    assert redact_dsn(dsn) == redacted


# --------------------------------------------------------------------------- flowbank.config.read_settings


def test_read_settings_from_a_toml_file(tmp_path: Path) -> None:
    path = tmp_path / "flowbank.toml"
    path.write_text('bridge_port = 9300\nlog_level = "error"\nmqtt_url = "mqtt://broker.internal:1999"\n', "utf-8")
    s = read_settings({"FLOWBANK_CONFIG": str(path), "FLOWBANK_LOG_LEVEL": "warning"})
    assert s.bridge_port == 9300
    assert s.log_level == "WARNING"  # the environment wins over the file
    assert (s.mqtt.host, s.mqtt.port) == ("broker.internal", 1999)
    assert s.provision_services is False
    assert s.data_dir == config.PROJECT_ROOT / "var"


def test_read_settings_without_a_file() -> None:
    assert read_settings({}) == read_settings({"FLOWBANK_CONFIG": ""}) == load_settings(
        {}, None, default_data_dir=config.PROJECT_ROOT / "var")


def test_read_settings_bad_value_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "flowbank.toml"
    path.write_text('dashboard_port = "web"\n', "utf-8")
    with pytest.raises(SettingsError, match=r"^dashboard_port \(TOML\): expected an integer, got 'web'$"):
        read_settings({"FLOWBANK_CONFIG": str(path)})


@pytest.mark.parametrize(("name", "content", "message"), [
    ("missing.toml", None, "FLOWBANK_CONFIG: cannot read"),
    ("a-directory", "<dir>", "FLOWBANK_CONFIG: cannot read"),
    ("invalid.toml", "bridge_port = \n[[[\n", "is not valid TOML"),
    ("unterminated.toml", 'log_level = "debug\n', "is not valid TOML"),
])
def test_read_settings_unreadable_or_invalid_file(tmp_path: Path, name: str, content: str | None,
                                                  message: str) -> None:
    path = tmp_path / name
    if content == "<dir>":
        path.mkdir()
    elif content is not None:
        path.write_text(content, "utf-8")
    with pytest.raises(SettingsError) as info:
        read_settings({"FLOWBANK_CONFIG": str(path)})
    text = str(info.value)
    assert message in text
    assert str(path) in text
    assert "\n" not in text


def test_read_settings_non_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes('bridge_id = "Zürich"\n'.encode("latin-1"))
    with pytest.raises(SettingsError, match="FLOWBANK_CONFIG"):
        read_settings({"FLOWBANK_CONFIG": str(path)})
