"""The ``station`` command's one parser: every command in --help, the window's data folder by default."""

from __future__ import annotations

from pathlib import Path

import pytest

from station.cli import build_parser, entry, gui_overrides
from station.settings import load_settings


@pytest.fixture
def settings_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Per-user folders inside the test: no station.toml of the machine, data under tmp_path."""
    data = tmp_path / "per-user-data"
    monkeypatch.setattr("station.settings.default_data_dir", lambda: data)
    monkeypatch.setattr("station.settings.user_config_file", lambda: tmp_path / "no-such" / "station.toml")
    monkeypatch.setenv("COLUMNS", "1000")  # help on one line per option: paths are not wrapped at hyphens
    return data


def test_help_lists_every_command_and_the_window_options_with_defaults(
    settings_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        entry(["--help"])
    assert exit_info.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    for command in ("retrain", "export", "import"):
        assert command in out
    assert "--source SOURCE camera index" in out and "(default: 0)" in out
    assert f"(default: {settings_home})" in out and "--verbose" in out


@pytest.mark.parametrize("command", ["retrain", "export", "import"])
def test_command_help_shows_the_data_folder_default(
    settings_home: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    with pytest.raises(SystemExit):
        entry([command, "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert f"the station's data folder (default: the window's, {settings_home})" in out


def test_commands_use_the_window_s_data_folder_without_data_dir(
    settings_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert entry(["export", "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.strip() == f"error: no station database (station.db) in {settings_home}"
    # given before the command, --data-dir counts too
    other = tmp_path / "other"
    assert entry(["--data-dir", str(other), "export", "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.strip() == f"error: no station database (station.db) in {other}"


def test_the_database_url_is_a_setting_and_an_option_whose_password_is_never_shown(
    settings_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    user_file = tmp_path / "station.toml"
    user_file.write_text('database_url = "postgresql+psycopg://sorter:s3cret-pw@db-host/sorting"\n')
    monkeypatch.setattr("station.settings.user_config_file", lambda: user_file)
    assert load_settings().database_url == "postgresql+psycopg://sorter:s3cret-pw@db-host/sorting"
    with pytest.raises(SystemExit):
        entry(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "(default: postgresql+psycopg://sorter:***@db-host/sorting)" in out and "s3cret-pw" not in out
    given = gui_overrides(build_parser().parse_args(["--database-url", "postgresql+psycopg://a@b/c"]))
    assert given == {"database_url": "postgresql+psycopg://a@b/c"}
    assert load_settings(given).database_url == "postgresql+psycopg://a@b/c"
