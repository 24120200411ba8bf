"""Settings from FILESTREAM_* environment variables (app/settings.py)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from app.settings import ENV_PREFIX, Settings, SettingsError

SECRET = "s3cr3t-Pa55w0rd!"


def test_defaults() -> None:
    s = Settings()
    assert s.broker == "kafka://127.0.0.1:9092"
    assert s.app_id == "filestream"
    assert s.chunk_topic == "filestream.chunks"
    assert s.files_topic == "filestream.files"
    assert s.dead_letter_topic == "filestream.dead-letter"
    assert s.partitions == 4
    assert s.replication_factor == 1
    assert s.chunk_size == 512 * 1024
    assert s.output_dir == Path("output")
    assert s.datadir == Path("filestream-data")
    assert s.max_fetch_bytes == 4 * 1024 * 1024
    assert s.max_fetch_bytes >= s.chunk_size + 4096
    assert s.upload_inflight_bytes == 64 * 1024 * 1024
    assert s.security_protocol == "PLAINTEXT"
    assert s.sasl_password == ""
    assert s.abandon_after == 86400.0
    assert Settings.from_env({}) == s


def test_every_field_has_an_env_name_and_a_doc() -> None:
    rows = Settings().describe()
    names = [name for name, _, _ in rows]
    assert names == [ENV_PREFIX + f.name.upper() for f in dataclasses.fields(Settings)]
    assert all(doc for _, _, doc in rows)


def test_env_parsing_of_ints_floats_and_paths() -> None:
    s = Settings.from_env(
        {
            "FILESTREAM_CHUNK_SIZE": "1_048_576",
            "FILESTREAM_MAX_FETCH_BYTES": "8_388_608",
            "FILESTREAM_PARTITIONS": " 12 ",
            "FILESTREAM_SESSION_TIMEOUT": "12.5",
            "FILESTREAM_ABANDON_AFTER": "3600",
            "FILESTREAM_COMMIT_INTERVAL": "1e-1",
            "FILESTREAM_OUTPUT_DIR": "/data/out put",
            "FILESTREAM_DATADIR": "relative/state",
            "FILESTREAM_BROKER": "h1:9092",
            "FILESTREAM_SASL_USERNAME": "alice",
            "OTHER_CHUNK_SIZE": "not read",
            "FILESTREAM_UNKNOWN": "ignored",
        }
    )
    assert s.chunk_size == 1_048_576 and type(s.chunk_size) is int
    assert s.max_fetch_bytes == 8_388_608
    assert s.partitions == 12
    assert s.session_timeout == 12.5 and type(s.session_timeout) is float
    assert s.abandon_after == 3600.0 and type(s.abandon_after) is float
    assert s.commit_interval == pytest.approx(0.1)
    assert s.output_dir == Path("/data/out put") and isinstance(s.output_dir, Path)
    assert s.datadir == Path("relative/state")
    assert s.broker == "h1:9092"
    assert s.sasl_username == "alice"


def test_from_env_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FILESTREAM_WEB_PORT", "7077")
    monkeypatch.setenv("FILESTREAM_APP_ID", "from-env")
    s = Settings.from_env()
    assert s.web_port == 7077
    assert s.app_id == "from-env"


def test_overrides_win_over_the_environment() -> None:
    s = Settings.from_env({"FILESTREAM_PARTITIONS": "8", "FILESTREAM_APP_ID": "env"}, partitions=2)
    assert s.partitions == 2
    assert s.app_id == "env"


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("FILESTREAM_CHUNK_SIZE", "abc"),
        ("FILESTREAM_PARTITIONS", "4.0"),
        ("FILESTREAM_WEB_PORT", ""),
        ("FILESTREAM_IO_THREADS", "_"),
        ("FILESTREAM_SESSION_TIMEOUT", "soon"),
        ("FILESTREAM_ABANDON_AFTER", "1,5"),
    ],
)
def test_invalid_number_names_the_variable(name: str, raw: str) -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env({name: raw})
    assert name in str(info.value)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"chunk_size": 4 * 1024 * 1024},  # default max_fetch_bytes is not larger
        {"chunk_size": 1024, "max_fetch_bytes": 1024},
        {"chunk_size": 1024, "max_fetch_bytes": 1024 + 4095},
        {"partitions": 0},
        {"chunk_size": 0},
        {"io_threads": 0},
        {"security_protocol": "TLS"},
        {"security_protocol": "plaintext"},
        {"security_protocol": ""},
    ],
    ids=repr,
)
def test_validation_errors(kwargs: dict[str, object]) -> None:
    with pytest.raises(SettingsError):
        Settings(**kwargs)  # type: ignore[arg-type]


def test_validation_also_applies_to_the_environment() -> None:
    with pytest.raises(SettingsError, match="security_protocol"):
        Settings.from_env({"FILESTREAM_SECURITY_PROTOCOL": "SASL"})
    with pytest.raises(SettingsError, match="max_fetch_bytes"):
        Settings.from_env({"FILESTREAM_CHUNK_SIZE": "4194304"})


@pytest.mark.parametrize("protocol", ["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"])
def test_known_security_protocols(protocol: str) -> None:
    assert Settings(security_protocol=protocol).security_protocol == protocol


def test_smallest_valid_fetch_size() -> None:
    assert Settings(chunk_size=1024, max_fetch_bytes=1024 + 4096).max_fetch_bytes == 5120


def test_broker_urls_and_bootstrap_servers() -> None:
    s = Settings(broker="h1:9092,kafka://h2:9093")
    assert s.broker_urls == ["kafka://h1:9092", "kafka://h2:9093"]
    assert s.bootstrap_servers == ["h1:9092", "h2:9093"]


def test_broker_list_tolerates_spaces_and_empty_items() -> None:
    s = Settings(broker=" h1:9092 , ,kafka://h2:9093,")
    assert s.broker_urls == ["kafka://h1:9092", "kafka://h2:9093"]
    assert s.bootstrap_servers == ["h1:9092", "h2:9093"]
    assert Settings().bootstrap_servers == ["127.0.0.1:9092"]


def test_settings_are_immutable() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Settings().partitions = 9  # type: ignore[misc]


def test_describe_and_repr_mask_the_password() -> None:
    s = Settings(security_protocol="SASL_SSL", sasl_username="alice", sasl_password=SECRET)
    rows = {name: value for name, value, _ in s.describe()}
    assert rows["FILESTREAM_SASL_PASSWORD"] == "****"
    assert rows["FILESTREAM_SASL_USERNAME"] == "alice"
    for text in (repr(s), str(s), str(s.describe()), f"{s}", f"{s!r}"):
        assert SECRET not in text
        assert "****" in text
    assert s.sasl_password == SECRET  # the value itself is still there for the client


def test_secret_from_the_environment_is_masked_too() -> None:
    s = Settings.from_env({"FILESTREAM_SASL_PASSWORD": SECRET})
    assert s.sasl_password == SECRET
    assert SECRET not in repr(s)


def test_empty_password_is_shown_empty_not_masked() -> None:
    rows = {name: value for name, value, _ in Settings().describe()}
    assert rows["FILESTREAM_SASL_PASSWORD"] == ""
    assert rows["FILESTREAM_PARTITIONS"] == "4"
