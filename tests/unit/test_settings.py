from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import platformdirs
import pytest

from station import settings as settings_mod
from station.settings import RESOURCES_DIR, Settings, SettingsError, load_settings


@pytest.fixture
def no_user_file(tmp_path: Path) -> Path:
    return tmp_path / "absent" / "station.toml"  # never the real ~/.config file in tests


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_shipped_defaults(no_user_file: Path) -> None:
    shipped = settings_mod.tomllib.loads(  # tomllib, or tomli on 3.10
        (RESOURCES_DIR / "station.toml").read_text(encoding="utf-8")
    )
    assert set(shipped) == {f.name for f in fields(Settings)}  # the file is the single source of defaults
    s = load_settings(user_file=no_user_file)
    assert s == Settings(
        source="0",
        interval=2.0,
        threshold=0.6,
        data_dir=platformdirs.user_data_path("sorting-station"),
        station_name="station-1",
        model="",
        base_data=None,
        auto_retrain_every=50,
        max_base_drop=0.05,
        inference_backend="auto",
    )


def test_resources_dir_is_repo_root_resources() -> None:
    expected = Path(settings_mod.__file__).resolve().parent.parent / "resources"
    assert expected == RESOURCES_DIR
    assert (RESOURCES_DIR / "station.toml").is_file()


def test_user_file_overrides_defaults(tmp_path: Path) -> None:
    user = write(tmp_path / "cfg" / "station.toml", 'threshold = 0.8\nsource = "demo/images"\ndata_dir = "~/sorting"\n')
    s = load_settings(user_file=user)
    assert (s.threshold, s.source, s.interval, s.station_name) == (0.8, "demo/images", 2.0, "station-1")
    assert s.data_dir == Path("~/sorting").expanduser()


def test_relative_data_dir_is_relative_to_its_file(tmp_path: Path) -> None:
    user = write(tmp_path / "cfg" / "station.toml", 'data_dir = "data"\n')
    assert load_settings(user_file=user).data_dir == tmp_path / "cfg" / "data"


def test_base_data_is_relative_to_its_file_and_empty_means_the_bundles(tmp_path: Path, no_user_file: Path) -> None:
    user = write(tmp_path / "cfg" / "station.toml", 'base_data = "../datasets/trashnet"\n')
    assert load_settings(user_file=user).base_data == tmp_path / "cfg" / "../datasets/trashnet"
    assert load_settings(user_file=no_user_file).base_data is None
    assert load_settings({"base_data": "/srv/trashnet"}, user_file=no_user_file).base_data == Path("/srv/trashnet")


def test_cli_overrides_beat_both(tmp_path: Path) -> None:
    user = write(tmp_path / "station.toml", 'threshold = 0.8\nstation_name = "from-file"\ninterval = 5\n')
    s = load_settings(
        overrides={"threshold": 0.3, "station_name": "from-cli", "interval": None, "source": "1"},
        user_file=user,
    )
    assert (s.threshold, s.station_name, s.source) == (0.3, "from-cli", "1")
    assert s.interval == 5.0  # None means "not given on the command line"
    assert isinstance(s.interval, float)


def test_cli_numbers_may_be_strings(no_user_file: Path) -> None:
    s = load_settings(overrides={"interval": "0.5", "threshold": "1"}, user_file=no_user_file)
    assert (s.interval, s.threshold) == (0.5, 1.0)


def test_default_user_file_location_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settings_mod.platformdirs, "user_config_path", lambda *a, **k: tmp_path / "config")
    write(tmp_path / "config" / "station.toml", 'station_name = "bench-2"\n')
    assert load_settings().station_name == "bench-2"


def test_empty_data_dir_means_platformdirs(no_user_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def fake_user_data_path(appname: str, *args: object, **kwargs: object) -> Path:
        calls.append(appname)
        return tmp_path / "userdata"

    monkeypatch.setattr(settings_mod.platformdirs, "user_data_path", fake_user_data_path)
    assert load_settings(user_file=no_user_file).data_dir == tmp_path / "userdata"
    assert calls == ["sorting-station"]


def test_unknown_key_names_file_and_key(tmp_path: Path) -> None:
    user = write(tmp_path / "station.toml", "treshold = 0.7\n")
    with pytest.raises(SettingsError) as err:
        load_settings(user_file=user)
    assert str(err.value) == f"{user}: unknown key 'treshold' (did you mean 'threshold'?)"


def test_home_paths_shown_with_tilde(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    user = write(tmp_path / ".config" / "sorting-station" / "station.toml", "colour = 1\n")
    with pytest.raises(SettingsError, match=r"^~/\.config/sorting-station/station\.toml: unknown key 'colour'$"):
        load_settings(user_file=user)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("threshold = 1.5", "threshold must be a number between 0 and 1, got 1.5"),
        ('threshold = "high"', "threshold must be a number between 0 and 1, got 'high'"),
        ("threshold = nan", "threshold must be a number between 0 and 1, got nan"),
        ("interval = -1", "interval must be a number of seconds >= 0, got -1"),
        ("interval = true", "interval must be a number of seconds >= 0, got True"),
        ('station_name = "  "', "station_name must be a non-empty name, got '  '"),
        ("data_dir = 3", "data_dir must be a folder path ('' for the default data folder), got 3"),
        ('source = ""', "source must be a camera index, video file, URL or image folder, got ''"),
        ("auto_retrain_every = 2.5", "auto_retrain_every must be a whole number of decisions >= 0, got 2.5"),
        ("auto_retrain_every = -1", "auto_retrain_every must be a whole number of decisions >= 0, got -1"),
        ("max_base_drop = 2", "max_base_drop must be a number between 0 and 1, got 2"),
        ("auto_trust_checks = 51", "auto_trust_checks must be a whole number of decisions between 0 and 50, got 51"),
        ("auto_trust_checks = 1.5", "auto_trust_checks must be a whole number of decisions between 0 and 50, got 1.5"),
        ("auto_trust_precision = 1.2", "auto_trust_precision must be a share between 0 and 1, got 1.2"),
        ('inference_backend = "tpu"', "inference_backend must be one of 'auto', 'litert', 'keras', got 'tpu'"),
        ("inference_backend = 1", "inference_backend must be one of 'auto', 'litert', 'keras', got 1"),
    ],
)
def test_bad_value_names_file_and_key(tmp_path: Path, line: str, expected: str) -> None:
    user = write(tmp_path / "station.toml", line + "\n")
    with pytest.raises(SettingsError) as err:
        load_settings(user_file=user)
    assert str(err.value) == f"{user}: {expected}"


def test_inference_backend_is_read_case_insensitively(tmp_path: Path) -> None:
    user = write(tmp_path / "station.toml", 'inference_backend = " Keras "\n')
    assert load_settings(user_file=user).inference_backend == "keras"
    assert load_settings({"inference_backend": "litert"}, user_file=user).inference_backend == "litert"


def test_source_may_be_a_toml_integer(tmp_path: Path) -> None:
    assert load_settings(user_file=write(tmp_path / "station.toml", "source = 2\n")).source == "2"


def test_all_problems_reported_together(tmp_path: Path) -> None:
    user = write(tmp_path / "station.toml", 'treshold = 0.7\nthreshold = 1.5\nstation_name = ""\n')
    with pytest.raises(SettingsError) as err:
        load_settings(overrides={"interval": "soon", "camera": 1}, user_file=user)
    assert err.value.problems == [
        f"{user}: unknown key 'treshold' (did you mean 'threshold'?)",
        f"{user}: threshold must be a number between 0 and 1, got 1.5",
        f"{user}: station_name must be a non-empty name, got ''",
        "command line: interval must be a number of seconds >= 0, got 'soon'",
        "command line: unknown key 'camera'",
    ]
    message = str(err.value)
    assert message.startswith("5 problems in the settings:\n")
    assert all(p in message for p in err.value.problems)


def test_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    user = write(tmp_path / "station.toml", 'source = "0"\nthreshold = = 0.5\n')
    with pytest.raises(SettingsError) as err:
        load_settings(user_file=user)
    message = str(err.value)
    assert message.startswith(f"{user}: invalid TOML")
    assert "line 2" in message


def test_syntax_error_and_cli_problem_both_reported(tmp_path: Path) -> None:
    user = write(tmp_path / "station.toml", "threshold = \n")
    with pytest.raises(SettingsError) as err:
        load_settings(overrides={"threshold": 2}, user_file=user)
    assert len(err.value.problems) == 2 and "line 1" in err.value.problems[0]
    assert err.value.problems[1] == "command line: threshold must be a number between 0 and 1, got 2"


def test_defaults_file_missing_or_incomplete(tmp_path: Path, no_user_file: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(SettingsError, match="default settings file is missing"):
        load_settings(user_file=no_user_file, defaults_file=missing)
    partial = write(
        tmp_path / "defaults.toml",
        'source = "0"\ninterval = 1\nthreshold = 0.5\ndata_dir = ""\nmodel = ""\nbase_data = ""\n'
        "auto_retrain_every = 50\nmax_base_drop = 0.05\ninference_backend = \"auto\"\n",
    )
    with pytest.raises(SettingsError) as err:
        load_settings(user_file=no_user_file, defaults_file=partial)
    assert str(err.value) == f"{partial}: missing key 'station_name'"
    # ... unless something else provides it
    assert load_settings({"station_name": "x"}, user_file=no_user_file, defaults_file=partial).station_name == "x"
