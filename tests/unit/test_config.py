"""Configuration: flags, GATEWAY_<NAME> variables and a TOML file (gateway/options.py: the
table, gateway/config_sources.py: the sources).

What an operator observes: which value wins (flags > environment > file > defaults), the
message and exit status 2 of every kind of invalid configuration, ``--help`` and
``--print-config``, and that ``--workers`` processes run with the configuration the supervisor
resolved.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from gateway import cli, config_sources, options
from gateway.config import Config
from gateway.config_sources import resolve, to_toml, worker_environ
from gateway.errors import ConfigError
from gateway.options import OPTIONS

pytestmark = pytest.mark.timeout(60)


def write(tmp_path: Path, text: str, name: str = "gateway.toml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def cfg_of(argv: list[str], env: dict[str, str] | None = None) -> Config:
    return resolve(argv, env or {})[0]


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """cli.main reads os.environ: no GATEWAY_ setting of the test runner's may leak in."""
    import os

    for name in list(os.environ):
        if name.startswith("GATEWAY_"):
            monkeypatch.delenv(name)
    return monkeypatch


# -- precedence -----------------------------------------------------------------------------
FILE = """
listen = "127.0.0.1:7001"
max-in-flight = 100
idle-timeout = 5
header-timeout = 2.5
access-log = false
log-level = "warning"
bootstrap-servers = "file-kafka:9092"

[kafka]
linger.ms = 50
compression.type = "lz4"
"client.id" = "from-file"
enable.idempotence = true

[topics]
orders = 6
audit.events = 2
plain = 1
"""


def test_defaults_without_any_source() -> None:
    assert cfg_of([]) == Config()


def test_file_values_over_defaults(tmp_path: Path) -> None:
    cfg = cfg_of(["--config", write(tmp_path, FILE)])
    assert cfg.listen == ("127.0.0.1", 7001)
    assert (cfg.max_in_flight, cfg.idle_timeout, cfg.header_timeout) == (100, 5.0, 2.5)
    assert isinstance(cfg.idle_timeout, float)
    assert (cfg.access_log, cfg.log_level, cfg.bootstrap_servers) == (False, "warning", "file-kafka:9092")
    # Dotted names are librdkafka's property names (TOML would nest them: they are joined back).
    assert cfg.producer_properties == {
        "linger.ms": "50",
        "compression.type": "lz4",
        "client.id": "from-file",
        "enable.idempotence": "true",
    }
    assert cfg.topics == {"orders": 6, "audit.events": 2, "plain": 1}
    # What the file did not set keeps its default.
    assert cfg.max_record_bytes == Config().max_record_bytes


def test_environment_over_file_and_flags_over_both(tmp_path: Path) -> None:
    path = write(tmp_path, FILE)
    env = {
        "GATEWAY_CONFIG": path,
        "GATEWAY_LISTEN": "127.0.0.1:7002",
        "GATEWAY_MAX_IN_FLIGHT": "200",
        "GATEWAY_ACCESS_LOG": "on",
        "GATEWAY_X": "linger.ms=60;acks=all",
        "GATEWAY_TOPIC": "orders:7,extra",
    }
    cfg = cfg_of([], env)
    assert cfg.listen == ("127.0.0.1", 7002)
    assert cfg.max_in_flight == 200
    assert cfg.access_log is True
    assert cfg.idle_timeout == 5.0  # only in the file
    cfg = cfg_of(
        ["--listen", "127.0.0.1:7003", "--no-access-log", "-X", "linger.ms=70", "--topic", "plain:4"],
        env,
    )
    assert cfg.listen == ("127.0.0.1", 7003)
    assert cfg.max_in_flight == 200  # environment, no flag
    assert cfg.access_log is False
    # Per property and per topic: the three sources merge, the higher one winning each name.
    assert cfg.producer_properties == {
        "linger.ms": "70",
        "compression.type": "lz4",
        "client.id": "from-file",
        "enable.idempotence": "true",
        "acks": "all",
    }
    assert cfg.topics == {"orders": 7, "audit.events": 2, "plain": 4, "extra": 1}


def test_config_flag_over_config_variable(tmp_path: Path) -> None:
    a = write(tmp_path, "max-in-flight = 1\n", "a.toml")
    b = write(tmp_path, "max-in-flight = 2\n", "b.toml")
    assert cfg_of(["--config", b], {"GATEWAY_CONFIG": a}).max_in_flight == 2
    assert cfg_of([], {"GATEWAY_CONFIG": a}).max_in_flight == 1


def test_a_later_flag_wins_and_an_empty_variable_is_unset() -> None:
    cfg = cfg_of(["--max-in-flight", "5", "--max-in-flight", "6", "-X", "a.b=1", "-X", "a.b=2"])
    assert (cfg.max_in_flight, cfg.producer_properties) == (6, {"a.b": "2"})
    assert cfg_of([], {"GATEWAY_MAX_IN_FLIGHT": ""}).max_in_flight == Config().max_in_flight


@pytest.mark.parametrize(
    "text,value",
    [("1", True), ("TRUE", True), ("yes", True), ("on", True), ("0", False), ("False", False),
     ("no", False), ("off", False)],
)
def test_switches_from_the_environment(text: str, value: bool) -> None:
    assert cfg_of([], {"GATEWAY_VALIDATE_CLUSTER_ID": text}).validate_cluster_id is value


def test_switch_flags_set_both_ways_over_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "validate-cluster-id = true\naccess-log = false\n")
    assert cfg_of(["--config", path]).validate_cluster_id is True
    cfg = cfg_of(["--config", path, "--no-validate-cluster-id", "--access-log"])
    assert (cfg.validate_cluster_id, cfg.access_log) == (False, True)


def test_every_setting_has_one_option_and_every_option_reads_from_all_three_sources(
    tmp_path: Path,
) -> None:
    fields = {f.name for f in dataclasses.fields(Config)} - {"worker_slot", "worker_run_dir"}  # (set by the supervisor)
    assert {o.dest for o in OPTIONS} == fields
    # A value that is not the default, for each option, in its three spellings.
    samples = {
        "listen": ("127.0.0.1:1234", '"127.0.0.1:1234"', ("127.0.0.1", 1234)),
        "validate_cluster_id": ("true", "true", True),
        "bootstrap_servers": ("k:1", '"k:1"', "k:1"),
        "embedded_broker": ("[::1]:9", '"[::1]:9"', ("::1", 9)),
        "embedded_storage": ("NULL", '"null"', "null"),
        "topics": ("t:2", None, {"t": 2}),
        "producer_properties": ("linger.ms=1", None, {"linger.ms": "1"}),
        "kafka_stats_interval": ("0", "0", 0.0),
        "max_in_flight": ("7", "7", 7),
        "max_record_bytes": ("300", "300", 300),
        "max_request_bytes": ("1000", "1000", 1000),
        "max_batch_entries": ("50", "50", 50),
        "max_batch_bytes": ("4096", "4096", 4096),
        "consumer_pool_size": ("2", "2", 2),
        "max_consume_streams": ("3", "3", 3),
        "max_consumer_instances": ("0", "0", 0),
        "consumer_instance_timeout": ("2.5", "2.5", 2.5),
        "advertised_url": ("https://gw.example:8443/kafka/", '"https://gw.example:8443/kafka"',
                           "https://gw.example:8443/kafka"),
        "header_timeout": ("1.5", "1.5", 1.5),
        "idle_timeout": ("3", "3", 3.0),
        "stream_idle_timeout": ("0", "0", 0.0),
        "shutdown_timeout": ("9", "9.0", 9.0),
        "workers": ("3", "3", 3),
        "log_level": ("DEBUG", '"debug"', "debug"),
        "access_log": ("no", "false", False),
        "max_concurrent": ("4", "4", 4),
        "stream_max_duration_ms": ("1500", "1500", 1500),
        "rate_limit_enabled": ("yes", "true", True),
        "rate_limit_records": ("5", "5", 5),
        "rate_limit_records_global": ("6", "6", 6),
        "rate_limit_bytes": ("700", "700", 700),
        "rate_limit_bytes_global": ("800", "800", 800),
        "spool_dir": ("/var/spool/g", '"/var/spool/g"', "/var/spool/g"),
        "spool_fsync": ("ALWAYS", '"always"', "always"),
        "spool_max_bytes": ("2097152", "2097152", 2097152),
        "spool_after": ("0.5", "0.5", 0.5),
    }
    # The security files are read and checked together: test_security_files_from_all_sources.
    assert set(samples) | SECURITY == fields
    for o in OPTIONS:
        if o.dest in SECURITY:
            continue
        text, toml, want = samples[o.dest]
        argv = [o.flag, text] if o.kind.__class__.__name__ != "Bool" else [
            o.flag if want else "--no-" + o.flag[2:]
        ]
        assert getattr(cfg_of(argv), o.dest) == want, o.flag
        assert getattr(cfg_of([], {o.env: text}), o.dest) == want, o.env
        if toml is None:
            body = f"[{o.file_key}]\n" + ("t = 2\n" if o.dest == "topics" else "linger.ms = 1\n")
        else:
            body = f"{o.file_key} = {toml}\n"
        path = write(tmp_path, body)
        assert getattr(cfg_of(["--config", path]), o.dest) == want, body


SECURITY = {"users_file", "acl_file", "tls_cert", "tls_key", "tls_client_ca", "tls_require_client_cert"}


def test_security_files_from_all_sources(tmp_path: Path) -> None:
    from gateway.auth.users import hash_password

    users = tmp_path / "users"
    users.write_text(f"alice:{hash_password('pw')}\n")
    users.chmod(0o600)
    acl = tmp_path / "acl"
    acl.write_text("alice produce *\n")
    want = (str(users), str(acl))
    cfg = cfg_of(["--users-file", str(users), "--acl-file", str(acl)])
    assert (cfg.users_file, cfg.acl_file) == want
    cfg = cfg_of([], {"GATEWAY_USERS_FILE": str(users), "GATEWAY_ACL_FILE": str(acl)})
    assert (cfg.users_file, cfg.acl_file) == want
    path = write(tmp_path, f'users-file = "{users}"\nacl-file = "{acl}"\n')
    cfg = cfg_of(["--config", path])
    assert (cfg.users_file, cfg.acl_file) == want
    with pytest.raises(ConfigError, match="acl"):
        cfg_of(["--acl-file", str(acl)])  # an ACL without authentication names nobody


# -- errors: message and exit status 2, from every source ------------------------------------
def run_main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = cli.main(argv)
    err = capsys.readouterr().err
    return code, err


@pytest.mark.parametrize(
    "text,message",
    [
        # unknown keys and tables, with a suggestion where one is close
        ("max_in_flight = 10\n", "max_in_flight' (did you mean 'max-in-flight'?)"),
        ("listne = \"1:2\"\n", "unknown key 'listne' (did you mean 'listen'?)"),
        ("whatever = 1\n", "unknown key 'whatever'"),
        ("[kafak]\nacks = 1\n", "unknown table [kafak] (did you mean 'kafka'?)"),
        ("topic = [\"a:3\"]\n", "unknown key 'topic' (use the [topics] table)"),
        ("X = 1\n", "unknown key 'X' (use the [kafka] table)"),
        # wrong types
        ("max-in-flight = \"10\"\n", "max-in-flight: expected an integer, got a string '10'"),
        ("max-in-flight = 1.5\n", "max-in-flight: expected an integer, got a float 1.5"),
        ("idle-timeout = \"5s\"\n", "idle-timeout: expected a number of seconds, got a string '5s'"),
        ("access-log = 1\n", "access-log: expected true or false, got an integer 1"),
        ("listen = 8082\n", "listen: expected a \"HOST:PORT\" string, got an integer 8082"),
        ("log-level = [\"info\"]\n", "log-level: expected a string, got an array"),
        ("kafka = \"acks=1\"\n", "kafka: expected a table of librdkafka properties, got a string"),
        ("[kafka]\nlinger.ms = [1]\n", "kafka: linger.ms: expected a string, number or boolean, got an array"),
        ("[topics]\nt = \"3\"\n", "topics: topic 't': expected a number of partitions, got a string '3'"),
        ("header-timeout = 1979-05-27\n", "header-timeout: expected a number of seconds, got a date"),
        # out of range
        ("max-in-flight = 0\n", "max-in-flight: must be between 1 and 1048576, got 0"),
        ("max-batch-entries = 51\n", "max-batch-entries: must be between 1 and 50, got 51"),
        ("workers = 0\n", "workers: must be between 1 and 256, got 0"),
        ("idle-timeout = -1\n", "idle-timeout: must be between 0 and 2592000 seconds, got -1"),
        ("shutdown-timeout = inf\n", "shutdown-timeout: must be between 0 and 2592000 seconds, got inf"),
        ("kafka-stats-interval = 0.01\n", "must be 0 (off) or between 0.1 and 86400 seconds, got 0.01"),
        ("listen = \"h:99999\"\n", "listen: port 99999 is out of range (0 to 65535)"),
        ("listen = \"nohost\"\n", "listen: expected HOST:PORT, got 'nohost'"),
        ("log-level = \"loud\"\n", "log-level: expected one of debug, info, warning, error, got 'loud'"),
        ("embedded-storage = \"disk\"\n", "embedded-storage: expected one of memory, null, got 'disk'"),
        ("embedded-storage = false\n", "embedded-storage: expected a string, got a boolean False"),
        ("[topics]\nt = 0\n", "topics: topic 't': partitions must be between 1 and 100000, got 0"),
        ("[topics]\n\"a b\" = 1\n", "topics: invalid topic name 'a b'"),
        # across settings
        ("workers = 2\nlisten = \"127.0.0.1:0\"\n", "workers: 2 workers need a fixed listen port"),
        # not TOML at all
        ("max-in-flight = \n", "invalid TOML: Invalid value (at line 1, column 17)"),
        ("max-in-flight = 1\nmax-in-flight = 2\n", "invalid TOML: Cannot overwrite a value"),
    ],
)
def test_invalid_file_exits_2_naming_file_and_key(
    tmp_path: Path, clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    path = write(tmp_path, text)
    code, err = run_main(["--config", path], capsys)
    assert code == 2
    assert err.startswith(f"kafka-gateway: configuration error: config file {path}: "), err
    assert message in err, err
    assert err.count("\n") == 1  # one line, no traceback


def test_missing_file_exits_2(
    tmp_path: Path, clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(tmp_path / "nowhere.toml")
    clean_env.setenv("GATEWAY_CONFIG", path)
    code, err = run_main([], capsys)
    assert (code, err) == (
        2,
        f"kafka-gateway: configuration error: config file {path}: cannot read it: No such file or directory\n",
    )


@pytest.mark.parametrize(
    "argv,env,message",
    [
        (["--max-in-flight", "ten"], {}, "--max-in-flight: expected an integer, got 'ten'"),
        (["--max-in-flight", "0"], {}, "--max-in-flight: must be between 1 and 1048576, got 0"),
        (["--shutdown-timeout", "nan"], {}, "--shutdown-timeout: must be between 0 and 2592000 seconds, got nan"),
        (["--listen", "localhost"], {}, "--listen: expected HOST:PORT, got 'localhost'"),
        (["--topic", "a:x"], {}, "--topic: topic 'a': partitions must be an integer between 1 and 100000, got 'x'"),
        (["--topic", ":3"], {}, "--topic: empty topic name"),
        (["-X", "novalue"], {}, "-X: expected key=value, got 'novalue'"),
        (["--advertised-url", "gw:8082"], {},
         "--advertised-url: expected an http:// or https:// URL with a host, got 'gw:8082'"),
        (["--advertised-url", "http://gw/?a=1"], {},
         "--advertised-url: expected a URL without query, fragment or spaces"),
        (["--consumer-instance-timeout", "0"], {},
         "--consumer-instance-timeout: must be between 0.1 and 2592000 seconds, got 0"),
        (["--embedded-storage", "disk"], {},
         "--embedded-storage: expected one of memory, null, got 'disk'"),
        ([], {"GATEWAY_EMBEDDED_STORAGE": "s3"},
         "GATEWAY_EMBEDDED_STORAGE: expected one of memory, null, got 's3'"),
        ([], {"GATEWAY_MAX_BATCH_ENTRIES": "0"}, "GATEWAY_MAX_BATCH_ENTRIES: must be between 1 and 50, got 0"),
        ([], {"GATEWAY_ACCESS_LOG": "maybe"}, "GATEWAY_ACCESS_LOG: expected true or false"),
        ([], {"GATEWAY_X": "a=1;oops"}, "GATEWAY_X: expected key=value, got 'oops'"),
        ([], {"GATEWAY_TOPIC": "a,b:0"}, "GATEWAY_TOPIC: topic 'b': partitions must be"),
        (
            ["--workers", "2", "--listen", "127.0.0.1:0"],
            {},
            "--workers: 2 workers need a fixed listen port (port 0 from --listen would give each its own)",
        ),
    ],
)
def test_invalid_flag_or_variable_exits_2_naming_it(
    clean_env: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    env: dict[str, str],
    message: str,
) -> None:
    for k, v in env.items():
        clean_env.setenv(k, v)
    code, err = run_main(argv, capsys)
    assert code == 2
    assert err.startswith("kafka-gateway: configuration error: " + message), err


def test_an_invalid_file_fails_even_where_a_flag_overrides_it(
    tmp_path: Path, clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "max-in-flight = 0\n")
    code, err = run_main(["--config", path, "--max-in-flight", "5"], capsys)
    assert code == 2 and f"config file {path}: max-in-flight" in err


@pytest.mark.parametrize(
    "text,message",
    [
        ('[kafka]\n"no.such.property" = 1\n', 'No such configuration property: "no.such.property"'),
        ('[kafka]\nsecurity.protocol = "carrier-pigeon"\n', 'Invalid value "carrier-pigeon"'),
        ('[kafka]\nacks = 1\n', "`acks` must be set to `all` when `enable.idempotence` is true"),
    ],
)
def test_librdkafka_refusing_a_property_exits_2(
    tmp_path: Path,
    clean_env: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    text: str,
    message: str,
) -> None:
    """librdkafka is the judge of its own properties: asked before anything starts."""
    code, err = run_main(["--config", write(tmp_path, text)], capsys)
    assert code == 2
    assert err.startswith("kafka-gateway: configuration error: Kafka producer properties"), err
    assert message in err


@pytest.mark.parametrize(
    "argv",
    [
        ["-X", "linger.msec=5"],
        ["-X", "acks=1"],  # librdkafka refuses it with the idempotent producer's defaults
    ],
)
def test_print_config_refuses_what_a_start_refuses(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    """--print-config prints a file only for a configuration the gateway would start with."""
    code = cli.main([*argv, "--print-config"])
    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    assert err.startswith("kafka-gateway: configuration error: Kafka producer properties"), err
    assert err.count("\n") == 1


def test_the_command_exits_2_without_a_traceback(tmp_path: Path) -> None:
    path = write(tmp_path, "[limits]\nmax = 1\n")
    env = {"PATH": "/usr/bin:/bin"}
    p = subprocess.run(
        [sys.executable, "-m", "gateway", "--config", path],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )
    assert p.returncode == 2
    assert p.stderr == f"kafka-gateway: configuration error: config file {path}: unknown table [limits]\n"
    assert p.stdout == ""


def test_unknown_gateway_variable_is_a_warning(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    clean_env.setenv("GATEWAY_MAX_INFLIGHT", "5")
    assert cli.main(["--print-config"]) == 0
    err = capsys.readouterr().err
    assert err == (
        "kafka-gateway: warning: GATEWAY_MAX_INFLIGHT is not a setting; it is ignored "
        "(did you mean 'GATEWAY_MAX_IN_FLIGHT'?)\n"
    )


# -- --help and --print-config --------------------------------------------------------------
def test_help_lists_every_setting_the_file_and_the_precedence(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for o in OPTIONS:
        assert o.flag in text, o.flag
    for flag in ("--config FILE", "--print-config", "--no-access-log", "--no-validate-cluster-id"):
        assert flag in text
    assert "--worker-slot" not in text
    assert "GATEWAY_CONFIG" in text and "GATEWAY_<NAME>" in text
    assert "flags > environment > configuration file > defaults" in text
    assert "[kafka]" in text and "[topics]" in text
    # Defaults come from Config itself.
    assert "(default 16384)" in text and "(default 0.0.0.0:8082)" in text
    # The example in the help is a valid configuration file.
    example = text.split("configuration file (--config FILE", 1)[1].split("environment:", 1)[0]
    toml_text = "\n".join(line[4:] for line in example.splitlines() if line.startswith("    "))
    data = tomllib.loads(toml_text)
    assert config_sources.file_layer(data, "help").values["max_in_flight"] == 8192


def test_print_config_reads_back_to_the_same_settings(
    tmp_path: Path, clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, FILE + '\n[kafka.sasl]\nusername = "quote\\" and \\\\ and \\u00e9"\n')
    clean_env.setenv("GATEWAY_IDLE_TIMEOUT", "7")
    argv = ["--config", path, "--listen", "[::1]:0", "-X", "client.rack=r;1"]
    assert cli.main([*argv, "--print-config"]) == 0
    printed = capsys.readouterr().out
    again = write(tmp_path, printed, "printed.toml")
    clean_env.delenv("GATEWAY_IDLE_TIMEOUT")
    want = cfg_of(argv, {"GATEWAY_IDLE_TIMEOUT": "7"})
    assert want.producer_properties["sasl.username"] == 'quote" and \\ and \u00e9'
    assert cfg_of(["--config", again]) == want
    assert to_toml(want) == printed


# -- --workers ---------------------------------------------------------------------------------
def test_workers_get_the_resolved_configuration_not_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, FILE + "workers = 3\n")
    environ = {"GATEWAY_CONFIG": path, "GATEWAY_MAX_RECORD_BYTES": "999", "HOME": "/h"}
    supervisor = cfg_of(["--max-batch-entries", "3"], environ)
    env = worker_environ(supervisor, "127.0.0.1:9999", environ)
    assert "GATEWAY_CONFIG" not in env and env["HOME"] == "/h"
    Path(path).write_text("this is not TOML any more")  # the file changes under a running gateway
    worker = cfg_of(["--worker-slot", "2"], env)
    assert worker == dataclasses.replace(
        supervisor, workers=1, bootstrap_servers="127.0.0.1:9999", worker_slot=2
    )
    assert (worker.max_record_bytes, worker.max_batch_entries, worker.max_in_flight) == (999, 3, 100)
    # The hand-over is only honoured by a worker; a plain start ignores it.
    assert cfg_of([], {config_sources.ENV_WORKER_CONFIG: env[config_sources.ENV_WORKER_CONFIG]}) == Config()
    # The supervisor's run directory goes with it (a worker's own, inherited, does not).
    env = worker_environ(supervisor, "127.0.0.1:9999", {**environ, "GATEWAY_WORKER_RUN_DIR": "/old"}, "/run/d")
    assert env["GATEWAY_WORKER_RUN_DIR"] == "/run/d"
    assert cfg_of(["--worker-slot", "0"], env).worker_run_dir == "/run/d"
    assert cfg_of([], env).worker_run_dir is None
    assert "GATEWAY_WORKER_RUN_DIR" not in worker_environ(supervisor, "b:1", {"GATEWAY_WORKER_RUN_DIR": "/old"})


def test_worker_command_line_carries_no_settings() -> None:
    from gateway.workers import worker_argv

    assert worker_argv(1) == [sys.executable, "-m", "gateway", "--worker-slot", "1"]


def test_invalid_hand_over_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match="GATEWAY_WORKER_CONFIG: invalid JSON"):
        cfg_of(["--worker-slot", "0"], {config_sources.ENV_WORKER_CONFIG: "{"})
    with pytest.raises(ConfigError, match="GATEWAY_WORKER_CONFIG: max-in-flight: must be between"):
        cfg_of(["--worker-slot", "0"], {config_sources.ENV_WORKER_CONFIG: json.dumps({"max-in-flight": 0})})


def test_file_kind_for_settings_that_name_a_file(tmp_path: Path) -> None:
    """The kind for paths (certificates, keys, users files) checks the file at start."""
    kind = options.File()
    good = write(tmp_path, "x", "cert.pem")
    assert kind.from_text(f" {good} ") == good
    assert kind.from_file(good) == good
    with pytest.raises(ValueError, match=r"cannot read .*missing.pem: No such file or directory"):
        kind.from_text(str(tmp_path / "missing.pem"))
    with pytest.raises(ValueError, match="expected a file path, got an integer 1"):
        kind.from_file(1)
    with pytest.raises(ValueError, match="must not be empty"):
        kind.from_text(" ")


def test_embedded_storage_memory_by_default_null_on_request(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cfg_of([]).embedded_storage == "memory"
    assert cli.main(["--print-config"]) == 0
    assert 'embedded-storage = "memory"\n' in capsys.readouterr().out
    clean_env.setenv("GATEWAY_EMBEDDED_STORAGE", "null")
    assert cli.main(["--print-config"]) == 0
    assert 'embedded-storage = "null"\n' in capsys.readouterr().out
    assert cli.main(["--print-config", "--embedded-storage", "memory"]) == 0  # the flag wins
    assert 'embedded-storage = "memory"\n' in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    assert "--embedded-storage memory|null" in capsys.readouterr().out
