"""Settings declared once: options, variables and defaults generated from dataclass fields.

Each test builds a small settings class and a real click command from it, and
runs the command with click's CliRunner (argv and environment as an operator
gives them); the command prints the object it received.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result

from bugless_core.settings import (
    build_settings,
    declared_env_vars,
    group,
    setting,
    settings_command,
    settings_from_environ,
)

PREFIX = "BUGLESS_T_"


class Colour(enum.Enum):
    RED = 1
    GREEN = 2


def _pair(text: str) -> tuple[str, int]:
    """``name:number``, the shape a ``parse`` setting reads."""
    name, sep, number = text.partition(":")
    if not sep or not number.isdigit():
        raise ValueError(f"{text!r} is not name:number")
    return name, int(number)


@dataclass(frozen=True, kw_only=True)
class Inner:
    depth: int = setting(3, help="How deep.")
    label: str = setting("in", flag="--inner-label", help="A label.")


@dataclass(frozen=True, kw_only=True)
class Other:
    breadth: int = setting(3, help="How broad.")


@dataclass(frozen=True, kw_only=True)
class Demo:
    name: str = setting(help="Required text.")
    count: int = setting(2, help="A number.")
    ratio: float = setting(0.5, help="A fraction.")
    verbose: bool = setting(False, help="A switch.")
    loud: bool = setting(False, flag="--loud/--quiet", help="A switch with its own off name.")
    colour: Colour = setting(Colour.RED, help="An enum.")
    tags: tuple[str, ...] = setting(("a", "b"), help="Comma-separated.")
    pair: tuple[str, int] | None = setting(None, parse=_pair, help="Parsed text.")
    url: str = setting("u", env=("BUGLESS_T_URL", "BUGLESS_OTHER_URL"), help="Two variables.")
    files: tuple[Path, ...] = setting((), flag="--file", multiple=True, help="Repeatable paths.")
    words: tuple[str, ...] = setting((), flag="--word", multiple=True, help="Repeatable words.")
    wait_seconds: float = setting(
        1.0,
        deprecated_flags=("--wait",),
        deprecated_env=("BUGLESS_T_WAIT",),
        help="A renamed duration.",
    )
    hidden: int = setting(7, cli=False, help="Set by code only.")
    inner: Inner = group(Inner)
    other: Other = group(Other, env_prefix="BUGLESS_P_")

    def __post_init__(self) -> None:
        if self.count < 0:
            raise ValueError(f"count must be 0 or more, not {self.count}")


@dataclass(frozen=True, kw_only=True)
class Small:
    """Demo without the nested group whose flags would clash with ``inner``."""

    name: str = setting(help="Required text.")
    count: int = setting(2, help="A number.")
    wait_seconds: float = setting(
        1.0,
        deprecated_flags=("--wait",),
        deprecated_env=("BUGLESS_T_WAIT",),
        help="A renamed duration.",
    )
    inner: Inner = group(Inner)


@dataclass(frozen=True, kw_only=True)
class Keyed:
    keys: tuple[str, ...] = setting(flag="--key", multiple=True, help="Required, repeatable.")


def _command(
    cls: type[Any],
    *,
    only: Sequence[str] | None = None,
    defaults: Mapping[str, Any] | None = None,
) -> tuple[click.Command, list[Any]]:
    """A click command of ``cls`` and the list each run appends its settings to."""
    received: list[Any] = []

    @click.command()
    @settings_command(cls, env_prefix=PREFIX, only=only, defaults=defaults)
    def command(settings: Any) -> None:
        received.append(settings)

    return command, received


def _run(
    command: click.Command, args: Sequence[str] = (), env: Mapping[str, str] | None = None
) -> Result:
    return CliRunner().invoke(command, list(args), env=dict(env or {}), catch_exceptions=False)


def _small(*args: str, env: Mapping[str, str] | None = None) -> tuple[Result, Small | None]:
    command, received = _command(Small, only=("name", "count", "wait_seconds", "inner.depth"))
    result = _run(command, ["--name", "n", *args], env)
    return result, (received[0] if received else None)


def test_each_field_becomes_an_option_named_after_it_with_its_variable_in_the_help() -> None:
    command, _ = _command(Demo)
    text = _run(command, ["--help"]).output
    for flag, variable in [
        ("--name", "BUGLESS_T_NAME"),
        ("--count", "BUGLESS_T_COUNT"),
        ("--wait-seconds", "BUGLESS_T_WAIT_SECONDS"),
        ("--inner-label", "BUGLESS_T_LABEL"),
        ("--url", "BUGLESS_T_URL"),
    ]:
        assert flag in text
        assert f"[env {variable}]" in text
    assert "[required]" in text  # --name
    assert "--hidden" not in text  # cli=False
    assert "--wait " not in text  # the deprecated flag works but is not advertised


def test_nothing_given_yields_the_dataclass_defaults() -> None:
    command, received = _command(Demo)
    result = _run(command, ["--name", "n"])
    assert result.exit_code == 0, result.output
    assert received == [Demo(name="n")]
    assert received[0].tags == ("a", "b")  # a tuple default survives the round trip through click
    assert received[0].colour is Colour.RED


def test_flags_and_variables_fill_every_kind_of_field() -> None:
    command, received = _command(Demo)
    result = _run(
        command,
        ["--name", "n", "--ratio", "0.25", "--colour", "green", "--tags", "x, y,,z", "--verbose"],
        {"BUGLESS_T_COUNT": "9", "BUGLESS_T_DEPTH": "4", "BUGLESS_P_BREADTH": "5"},
    )
    assert result.exit_code == 0, result.output
    (got,) = received
    assert (got.count, got.ratio, got.colour, got.tags, got.verbose) == (
        9,
        0.25,
        Colour.GREEN,
        ("x", "y", "z"),
        True,
    )
    assert got.inner.depth == 4  # the enclosing prefix
    assert got.other.breadth == 5  # the group's own prefix


def test_a_flag_wins_over_its_variable() -> None:
    result, got = _small("--count", "3", env={"BUGLESS_T_COUNT": "8"})
    assert result.exit_code == 0, result.output
    assert got is not None
    assert got.count == 3


def test_a_second_variable_name_is_accepted_and_the_first_wins() -> None:
    command, received = _command(Demo)
    _run(command, ["--name", "n"], {"BUGLESS_OTHER_URL": "other"})
    _run(command, ["--name", "n"], {"BUGLESS_OTHER_URL": "other", "BUGLESS_T_URL": "first"})
    assert [got.url for got in received] == ["other", "first"]


def test_a_missing_required_setting_is_a_usage_error_naming_flag_and_variable() -> None:
    command, received = _command(Demo)
    result = _run(command)
    assert result.exit_code == 2
    assert "--name is required (or set BUGLESS_T_NAME)" in result.output
    assert received == []


def test_only_exposes_the_named_settings_and_the_others_keep_their_defaults() -> None:
    command, received = _command(Demo, only=("name", "inner.depth"))
    assert _run(command, ["--name", "n", "--count", "4"]).exit_code == 2  # no such option
    result = _run(command, ["--name", "n", "--depth", "6"], {"BUGLESS_T_COUNT": "4"})
    assert result.exit_code == 0, result.output
    (got,) = received
    assert (got.count, got.inner.depth, got.other.breadth) == (2, 6, 3)


def test_per_command_defaults_replace_the_dataclass_ones_and_show_in_help() -> None:
    command, received = _command(Small, only=("name", "inner.depth"), defaults={"inner.depth": 42})
    assert "[default: 42]" in _run(command, ["--help"]).output
    _run(command, ["--name", "n"])
    _run(command, ["--name", "n", "--depth", "1"])
    assert [got.inner.depth for got in received] == [42, 1]


def test_a_repeatable_flag_collects_every_value_and_its_variable_splits_by_type(
    tmp_path: Path,
) -> None:
    command, received = _command(Demo)
    _run(command, ["--name", "n", "--file", "a", "--file", "b", "--word", "x"])
    _run(command, ["--name", "n"], {"BUGLESS_T_FILES": "/p:/q", "BUGLESS_T_WORDS": "one two"})
    first, second = received
    assert (first.files, first.words) == ((Path("a"), Path("b")), ("x",))
    assert (second.files, second.words) == ((Path("/p"), Path("/q")), ("one", "two"))


def test_settings_from_environ_splits_a_repeatable_variable_as_a_command_does() -> None:
    environ = {"BUGLESS_T_NAME": "n", "BUGLESS_T_FILES": "/p:/q", "BUGLESS_T_WORDS": "one  two"}
    built = settings_from_environ(Demo, environ, env_prefix=PREFIX)
    assert (built.files, built.words) == ((Path("/p"), Path("/q")), ("one", "two"))


def test_a_required_repeatable_setting_given_no_value_is_a_usage_error() -> None:
    command, received = _command(Keyed)
    result = _run(command)
    assert result.exit_code == 2
    assert "--key is required (or set BUGLESS_T_KEYS)" in result.output
    assert _run(command, ["--key", "k"]).exit_code == 0
    assert [got.keys for got in received] == [("k",)]


def test_parse_converts_the_text_and_its_error_is_a_usage_error_naming_the_flag() -> None:
    command, received = _command(Demo)
    assert _run(command, ["--name", "n", "--pair", "a:1"]).exit_code == 0
    assert received[0].pair == ("a", 1)
    result = _run(command, ["--name", "n"], {"BUGLESS_T_PAIR": "nonsense"})
    assert result.exit_code == 2
    assert "--pair: 'nonsense' is not valid: 'nonsense' is not name:number" in result.output


def test_a_parsed_repeatable_setting_gets_every_value_at_once() -> None:
    @dataclass(frozen=True, kw_only=True)
    class Options:
        pairs: dict[str, int] = setting(
            default_factory=dict,
            flag="--pair",
            multiple=True,
            parse=lambda texts: dict(_pair(text) for text in texts),
            help="Repeatable name:number.",
        )

    command, received = _command(Options)
    assert _run(command).exit_code == 0
    assert _run(command, ["--pair", "a:1", "--pair", "b:2"]).exit_code == 0
    result = _run(command, ["--pair", "a:1", "--pair", "bad"])
    assert result.exit_code == 2
    assert "--pair: 'bad' is not name:number" in result.output
    assert [got.pairs for got in received] == [{}, {"a": 1, "b": 2}]


def test_a_bool_flag_has_an_off_name_generated_or_declared_and_reads_its_variable() -> None:
    command, received = _command(Demo)
    _run(command, ["--name", "n", "--verbose", "--loud"])
    _run(command, ["--name", "n", "--no-verbose", "--quiet"], {"BUGLESS_T_VERBOSE": "1"})
    _run(command, ["--name", "n"], {"BUGLESS_T_VERBOSE": "true", "BUGLESS_T_LOUD": "1"})
    assert [(got.verbose, got.loud) for got in received] == [
        (True, True),
        (False, False),
        (True, True),
    ]
    assert "--loud / --quiet" in _run(command, ["--help"]).output


def test_a_deprecated_flag_still_works_and_warns_with_the_new_name() -> None:
    result, got = _small("--wait", "4")
    assert result.exit_code == 0, result.output
    assert got is not None
    assert got.wait_seconds == 4.0
    assert "warning: --wait is deprecated" in result.stderr
    assert "use --wait-seconds [env BUGLESS_T_WAIT_SECONDS]" in result.stderr


def test_a_deprecated_variable_still_works_and_warns_naming_it() -> None:
    result, got = _small(env={"BUGLESS_T_WAIT": "6"})
    assert result.exit_code == 0, result.output
    assert got is not None
    assert got.wait_seconds == 6.0
    assert "warning: BUGLESS_T_WAIT is deprecated" in result.stderr


def test_the_new_name_wins_over_a_deprecated_one() -> None:
    by_flag, got_flag = _small("--wait", "4", "--wait-seconds", "2")
    _, got_env = _small("--wait", "4", env={"BUGLESS_T_WAIT_SECONDS": "3"})
    assert got_flag is not None
    assert got_flag.wait_seconds == 2.0
    assert got_env is not None
    assert got_env.wait_seconds == 3.0
    assert "--wait is deprecated" in by_flag.stderr  # still told to stop using it


def test_no_warning_without_a_deprecated_name() -> None:
    result, got = _small("--wait-seconds", "2")
    assert got is not None
    assert got.wait_seconds == 2.0
    assert result.stderr == ""


def test_a_refusal_of_the_settings_object_becomes_a_usage_error() -> None:
    command, received = _command(Demo)
    result = _run(command, ["--name", "n", "--count", "-1"])
    assert result.exit_code == 2
    assert "Error: count must be 0 or more, not -1" in result.output
    assert received == []


def test_a_value_click_cannot_convert_is_a_usage_error_naming_the_option() -> None:
    command, _ = _command(Demo)
    result = _run(command, ["--name", "n"], {"BUGLESS_T_COUNT": "many"})
    assert result.exit_code == 2
    assert "--count" in result.output


def test_other_parameters_of_the_command_reach_it_by_keyword() -> None:
    received: list[tuple[Small, str, bool]] = []

    @click.command()
    @click.argument("target")
    @click.option("--dry-run", is_flag=True)
    @settings_command(Small, env_prefix=PREFIX, only=("name",))
    def command(settings: Small, *, target: str, dry_run: bool) -> None:
        received.append((settings, target, dry_run))

    result = _run(command, ["there", "--name", "n", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert received == [(Small(name="n"), "there", True)]


def test_declared_env_vars_lists_every_current_alternative_and_deprecated_name() -> None:
    names = declared_env_vars(Demo, env_prefix=PREFIX)
    assert {
        "BUGLESS_T_NAME",
        "BUGLESS_T_URL",
        "BUGLESS_OTHER_URL",
        "BUGLESS_T_WAIT_SECONDS",
        "BUGLESS_T_WAIT",
        "BUGLESS_T_DEPTH",
        "BUGLESS_P_BREADTH",
    } <= names
    assert "BUGLESS_T_HIDDEN" not in names  # cli=False: nothing reads a variable for it


def test_build_settings_outside_a_command_uses_the_values_given() -> None:
    built = build_settings(Small, {"name": "n", "count": 5}, env_prefix=PREFIX, only=("name",))
    assert built == Small(name="n")  # count is not selected, so it keeps its default
    with pytest.raises(click.UsageError, match="--name is required"):
        build_settings(Small, {}, env_prefix=PREFIX)


def test_a_command_that_could_never_build_its_settings_is_refused_at_import() -> None:
    with pytest.raises(TypeError, match=r"required settings \['name'\]"):
        _command(Small, only=("count",))

    @dataclass(frozen=True, kw_only=True)
    class Twice:
        first: Inner = group(Inner)
        second: Inner = group(Inner, env_prefix="BUGLESS_2_")

    with pytest.raises(TypeError, match="--depth is the flag of both"):
        _command(Twice)
