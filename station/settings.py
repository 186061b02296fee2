"""Station settings: shipped defaults < user TOML file < command-line overrides. No Qt.

Every problem found (unknown key, bad value, TOML syntax) is collected and reported in one ``SettingsError``
naming the file (or "command line") and the key, so the operator can fix the file in one go.
"""

from __future__ import annotations

import difflib
import math
import sys
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

import platformdirs

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

APP_NAME = "sorting-station"
RESOURCES_DIR = Path(__file__).resolve().parent.parent / "resources"
DEFAULTS_FILE = RESOURCES_DIR / "station.toml"
MODELS_DIR = RESOURCES_DIR / "models"
DEMO_DIR = RESOURCES_DIR / "demo"
CLI_ORIGIN = "command line"
INFERENCE_BACKENDS = ("auto", "litert", "keras")  # what may run the backbone (station.inference)
SORTING_MODES = ("manual", "assist", "auto")  # hands-free sorting (station.handsfree)
TRUST_WINDOW = 50  # auto mode's trust counts the most recent checks of a class, at most this many (station.trust)


class SettingsError(Exception):
    """Invalid settings; ``problems`` lists each one, the message shows them all."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        if len(self.problems) == 1:
            message = self.problems[0]
        else:
            message = f"{len(self.problems)} problems in the settings:\n" + "\n".join(f"- {p}" for p in self.problems)
        super().__init__(message)


@dataclass(frozen=True)
class Settings:
    source: str  # camera index ("0"), video file, URL or image folder
    interval: float  # seconds between classifications, >= 0
    threshold: float  # confidence below which a prediction is flagged, 0..1
    data_dir: Path  # absolute, ~ expanded
    station_name: str
    model: str  # model bundle folder; "" = the bundled default (resolved by the app)
    base_data: Path | None  # the running model's training images, for full retraining; None = where its bundle says
    auto_retrain_every: int  # learn in the background after this many new decisions; 0 = only on request
    max_base_drop: float  # the promotion gate's allowed fall of base test accuracy, 0..1
    inference_backend: str = "auto"  # what runs the backbone: "auto" (LiteRT if it agrees), "litert", "keras"
    # Hands-free sorting (README "Hands-free sorting"); the defaults keep today's key-per-item station.
    mode: str = "manual"  # "manual" (a key per item), "assist" (held until the operator decides), "auto"
    auto_threshold: float = 0.9  # auto mode: confirmed by the station at or above this confidence
    auto_delay: float = 1.0  # auto mode: seconds the operator has to step in before it confirms
    # Auto mode confirms a class by itself only once at least this many of the operator's checks of the running
    # model's answers naming it (at or above auto_threshold) make it 95 % sure that at least auto_trust_precision
    # of them are right (station.trust); 0 = off.
    auto_trust_checks: int = 10
    auto_trust_precision: float = 0.8
    learn_from_auto: bool = False  # retraining learns from auto-confirmed decisions too (its own unchecked guesses)
    bins: Mapping[str, str] = field(default_factory=dict)  # class -> bin; a class not named is its own bin
    mqtt_url: str = ""  # mqtt://host[:port]; "" = no broker: events as JSON lines to events_file
    events_file: str = ""  # "" = events.jsonl in the data folder, "-" = stdout, else a file
    arrival_min_area: float = 0.02  # share of the view an item covers at least
    arrival_settle_s: float = 0.4  # seconds an item holds still before it is classified
    arrival_threshold: float = 30.0  # per-channel difference from the empty scene (0-255) that is foreground
    arrival_crop: bool = True  # classify and store the square around a settled item, not the whole view
    # A database several stations share (postgresql+psycopg://user@host/sorting); "" = station.db in data_dir.
    # It may hold a password: show it only through station.storage.engine.describe (masked).
    database_url: str = ""


def bundled_model_dir() -> Path:
    """The model bundle shipped under ``resources/models/``: the one sub-folder with a ``model.keras``."""
    candidates = sorted(p.parent for p in MODELS_DIR.glob("*/model.keras"))
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise SettingsError([f"no bundled model: no sub-folder of {MODELS_DIR} has a model.keras; set 'model'"])
    names = ", ".join(p.name for p in candidates)
    raise SettingsError([f"several bundles under {MODELS_DIR} ({names}); set 'model' to the one to use"])


def model_folder(settings: Settings) -> Path:
    """The bundle the settings name, or the bundled one ("" = default)."""
    return Path(settings.model).expanduser() if settings.model else bundled_model_dir()


def user_config_file() -> Path:
    return platformdirs.user_config_path(APP_NAME) / "station.toml"


def default_data_dir() -> Path:
    return platformdirs.user_data_path(APP_NAME)


# ------------------------------------------------------------------------------------------------ validation


class _InvalidValueError(ValueError):
    pass


def _number(value: Any, from_cli: bool) -> float | None:
    # bool is an int subclass; "interval = true" is a mistake, not 1 second.
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if from_cli and isinstance(value, str):  # argparse without type= hands over strings
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _check_source(value: Any, from_cli: bool) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)  # `source = 0` in TOML means camera 0
    if isinstance(value, str) and value.strip():
        return value.strip()
    raise _InvalidValueError(f"source must be a camera index, video file, URL or image folder, got {value!r}")


def _check_interval(value: Any, from_cli: bool) -> float:
    n = _number(value, from_cli)
    if n is None or not math.isfinite(n) or n < 0:
        raise _InvalidValueError(f"interval must be a number of seconds >= 0, got {value!r}")
    return n


def _check_threshold(value: Any, from_cli: bool) -> float:
    n = _number(value, from_cli)
    if n is None or not 0.0 <= n <= 1.0:  # NaN fails the comparison too
        raise _InvalidValueError(f"threshold must be a number between 0 and 1, got {value!r}")
    return n


def _check_count(name: str, high: int | None = None) -> Callable[[Any, bool], int]:
    def check(value: Any, from_cli: bool) -> int:
        n = _number(value, from_cli)
        if n is None or not n.is_integer() or n < 0 or (high is not None and n > high):
            limit = f"between 0 and {high}" if high is not None else ">= 0"
            raise _InvalidValueError(f"{name} must be a whole number of decisions {limit}, got {value!r}")
        return int(n)

    return check


def _check_base_drop(value: Any, from_cli: bool) -> float:
    n = _number(value, from_cli)
    if n is None or not 0.0 <= n <= 1.0:
        raise _InvalidValueError(f"max_base_drop must be a number between 0 and 1, got {value!r}")
    return n


def _check_range(name: str, low: float, high: float, what: str, open_low: bool = False
                 ) -> Callable[[Any, bool], float]:
    def check(value: Any, from_cli: bool) -> float:
        n = _number(value, from_cli)
        if n is None or not (low < n if open_low else low <= n) or not n <= high:  # NaN fails too
            raise _InvalidValueError(f"{name} must be {what}, got {value!r}")
        return n

    return check


def _check_flag(name: str) -> Callable[[Any, bool], bool]:
    def check(value: Any, from_cli: bool) -> bool:
        if isinstance(value, bool):
            return value
        if from_cli and isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise _InvalidValueError(f"{name} must be true or false, got {value!r}")

    return check


def _check_bins(value: Any, from_cli: bool) -> dict[str, str]:
    """A table class -> bin name (which classes exist is checked against the model once it is loaded)."""
    if not isinstance(value, Mapping):
        raise _InvalidValueError(f"bins must be a table of class = \"bin\", got {value!r}")
    bad = [f"{k} = {v!r}" for k, v in value.items() if not (isinstance(v, str) and v.strip())]
    if bad:
        raise _InvalidValueError(f"bins: each class needs a non-empty bin name, got {', '.join(bad)}")
    return {str(k): v.strip() for k, v in value.items()}


def _check_string(name: str, what: str, allow_empty: bool) -> Callable[[Any, bool], str]:
    def check(value: Any, from_cli: bool) -> str:
        if isinstance(value, str) and (allow_empty or value.strip()):
            return value.strip()
        raise _InvalidValueError(f"{name} must be {what}, got {value!r}")

    return check


def _check_choice(name: str, choices: tuple[str, ...]) -> Callable[[Any, bool], str]:
    def check(value: Any, from_cli: bool) -> str:
        if isinstance(value, str) and value.strip().lower() in choices:
            return value.strip().lower()
        raise _InvalidValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")

    return check


_CHECKS: dict[str, Callable[[Any, bool], Any]] = {
    "source": _check_source,
    "interval": _check_interval,
    "threshold": _check_threshold,
    "data_dir": _check_string("data_dir", "a folder path ('' for the default data folder)", allow_empty=True),
    "station_name": _check_string("station_name", "a non-empty name", allow_empty=False),
    "model": _check_string("model", "a model bundle folder ('' for the bundled model)", allow_empty=True),
    "base_data": _check_string(
        "base_data", "a dataset folder ('' for the one the model's bundle records)", allow_empty=True),
    "auto_retrain_every": _check_count("auto_retrain_every"),
    "max_base_drop": _check_base_drop,
    "inference_backend": _check_choice("inference_backend", INFERENCE_BACKENDS),
    "mode": _check_choice("mode", SORTING_MODES),
    "auto_threshold": _check_range("auto_threshold", 0.0, 1.0, "a confidence between 0 and 1"),
    "auto_delay": _check_range("auto_delay", 0.0, 60.0, "a number of seconds between 0 and 60"),
    "auto_trust_checks": _check_count("auto_trust_checks", TRUST_WINDOW),
    "auto_trust_precision": _check_range("auto_trust_precision", 0.0, 1.0, "a share between 0 and 1"),
    "learn_from_auto": _check_flag("learn_from_auto"),
    "bins": _check_bins,
    "mqtt_url": _check_string("mqtt_url", "a broker URL like mqtt://host:1883 ('' for none)", allow_empty=True),
    "events_file": _check_string("events_file", "a file path ('' for the data folder, '-' for stdout)",
                                 allow_empty=True),
    "arrival_min_area": _check_range("arrival_min_area", 0.0, 0.9, "a share of the view in (0, 0.9]", open_low=True),
    "arrival_settle_s": _check_range("arrival_settle_s", 0.0, 10.0, "a number of seconds in (0, 10]", open_low=True),
    "arrival_threshold": _check_range("arrival_threshold", 0.0, 255.0, "a difference in (0, 255]", open_low=True),
    "arrival_crop": _check_flag("arrival_crop"),
    "database_url": _check_string(
        "database_url", "a database URL like postgresql+psycopg://user@host/sorting ('' for the data folder's)",
        allow_empty=True),
}
assert set(_CHECKS) == {f.name for f in fields(Settings)}


def _display(path: Path) -> str:
    """The path as the operator would type it: ~/.config/... rather than /home/name/.config/..."""
    try:
        return "~/" + path.relative_to(Path.home()).as_posix()
    except (ValueError, RuntimeError):
        return str(path)


def _read_toml(path: Path, problems: list[str]) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:  # its message carries "(at line N, column M)"
        problems.append(f"{_display(path)}: invalid TOML: {exc}")
    except UnicodeDecodeError:
        problems.append(f"{_display(path)}: not UTF-8 text")
    except OSError as exc:
        problems.append(f"{_display(path)}: cannot read: {exc.strerror or exc}")
    return {}


def _relative_to(value: str, base: Path) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path  # relative to the file that says it (CLI: the cwd)


def _data_dir(value: str, base: Path) -> Path:
    return _relative_to(value, base) if value else default_data_dir()


# ------------------------------------------------------------------------------------------------ loading


def load_settings(
    overrides: Mapping[str, Any] | None = None,
    user_file: Path | None = None,
    defaults_file: Path | None = None,
) -> Settings:
    """Merge defaults file < user file (if it exists) < overrides (None values ignored) into ``Settings``.

    ``user_file=None`` means the per-user config location (``user_config_file()``); a missing user file is fine.
    Raises ``SettingsError`` listing every problem.
    """
    problems: list[str] = []
    defaults_file = Path(defaults_file) if defaults_file is not None else DEFAULTS_FILE
    user_file = Path(user_file) if user_file is not None else user_config_file()

    # (origin shown in messages, raw values, base folder for relative paths, values may be strings)
    layers: list[tuple[str, Mapping[str, Any], Path, bool]] = []
    if defaults_file.is_file():
        layers.append((_display(defaults_file), _read_toml(defaults_file, problems), defaults_file.parent, False))
    else:
        problems.append(f"{_display(defaults_file)}: default settings file is missing (reinstall the station)")
    if user_file.is_file():
        layers.append((_display(user_file), _read_toml(user_file, problems), user_file.parent, False))
    cli = {k: v for k, v in (overrides or {}).items() if v is not None}
    layers.append((CLI_ORIGIN, cli, Path.cwd(), True))

    values: dict[str, Any] = {}
    bad_keys: set[str] = set()
    for origin, raw, base, from_cli in layers:
        for key, value in raw.items():
            check = _CHECKS.get(key)
            if check is None:
                close = difflib.get_close_matches(key, _CHECKS, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                problems.append(f"{origin}: unknown key {key!r}{hint}")
                continue
            try:
                checked = check(value, from_cli)
            except _InvalidValueError as exc:
                problems.append(f"{origin}: {exc}")
                bad_keys.add(key)
                continue
            if key == "data_dir":
                checked = _data_dir(checked, base)
            elif key == "base_data":
                checked = _relative_to(checked, base) if checked else None
            values[key] = checked

    # Keys with a built-in default (the newer ones) may be left out of an older defaults file.
    required = [f.name for f in fields(Settings) if f.default is MISSING and f.default_factory is MISSING]
    missing = [k for k in required if k not in values and k not in bad_keys]
    problems += [f"{_display(defaults_file)}: missing key {k!r}" for k in missing]
    if problems:
        raise SettingsError(problems)
    return Settings(**values)
