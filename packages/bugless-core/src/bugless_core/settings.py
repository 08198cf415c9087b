"""Settings declared once: a typed dataclass field carries its flag, variable, default and help.

Every service is configured by one frozen dataclass. Each field says, through
:func:`setting`, how an operator sets it: a command-line flag (``--name``,
derived from the field name), a ``BUGLESS_*`` environment variable (the
service's prefix plus the upper-cased field name, unless given), a default,
and help text. :func:`settings_command` turns the class into click options
and hands the command one typed object, so a command never reads
``params["…"]`` and a flag can never drift from the field it fills::

    @dataclass(frozen=True, kw_only=True)
    class ApiSettings:
        rate: float = setting(50.0, help="Calls per second each identity may sustain.")
        grpc: GrpcServerSettings = group(GrpcServerSettings)

    @api_group.command("serve")
    @settings_command(ApiSettings, env_prefix="BUGLESS_API_")
    def serve_command(settings: ApiSettings) -> None: ...

Nested settings (:func:`group`) add their fields' options to the same
command, under the same variable prefix unless the group names its own.
Renamed flags keep working for one release through ``deprecated_flags`` (and
the old variable through ``deprecated_env``), with a warning on standard
error. Durations are named ``*_seconds`` (flag ``--*-seconds``).

A ``ValueError`` raised while the settings object is built (its
``__post_init__`` validation) becomes a usage error naming the problem, so a
misconfigured pod fails at start-up with a readable message.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import click

from bugless_core._setting_fields import (
    GROUP_KEY,
    SETTING_KEY,
    Group,
    Leaf,
    Setting,
    click_type_of,
    convert,
    deprecated_count,
    deprecated_name,
    given,
    instantiate,
    leaves,
    options_of,
    selection_of,
    unsettable,
    warn_deprecated,
)
from bugless_core.errors import InvalidArgument
from bugless_core.setting_files import (
    FileContent,
    SettingFileError,
    SettingFileRefused,
    check_key_pair,
    check_setting_directory,
    check_setting_file,
)

S = TypeVar("S")
R = TypeVar("R")


def setting(
    default: Any = dataclasses.MISSING,
    *,
    help: str,
    default_factory: Callable[[], Any] | Any = dataclasses.MISSING,
    flag: str | None = None,
    env: str | Sequence[str] | None = None,
    deprecated_flags: Sequence[str] = (),
    deprecated_env: Sequence[str] = (),
    parse: Callable[[Any], Any] | None = None,
    choices: Sequence[str] | None = None,
    must_exist: bool = False,
    metavar: str | None = None,
    secret: bool = False,
    cli: bool = True,
    multiple: bool = False,
    content: FileContent | None = None,
    key_of: str | None = None,
    directory: bool = False,
) -> Any:
    """A dataclass field that is also a command-line option and an environment variable.

    Args:
        default: The value when neither flag nor variable is given; none
            makes the setting required.
        help: What it does and why one would change it (shown by ``--help``
            and in docs/cli.md).
        default_factory: Like :func:`dataclasses.field`'s.
        flag: The flag; ``--field-name`` by default.
        env: The variable; the command's prefix + ``FIELD_NAME`` by default.
            A sequence names the documented variable first, then accepted
            alternatives.
        deprecated_flags: Former flag names, accepted with a warning.
        deprecated_env: Former variable names, accepted with a warning.
        parse: Converts the text of a type click does not know (an address).
        choices: Allowed values of a string setting.
        must_exist: For a path: it must name an existing file.
        metavar: How ``--help`` names the value.
        secret: Never show the default in ``--help``.
        cli: False for a field only code sets (not an option).
        multiple: The flag may be repeated; the variable holds several
            values (separated as click separates them for the type: ``:``
            for paths, white space otherwise). ``parse`` then receives the
            tuple of texts.
        content: For a path: what the file must hold, checked when the
            command starts (:mod:`bugless_core.setting_files`, e.g.
            ``pem_certificates``); a file that cannot be read or holds
            something else is a usage error naming the option and the file.
        key_of: For a private key's path: the field (of the same class) of
            the certificate it must belong to, checked with ``content``.
        directory: For a path: it must name a directory the command can
            list, checked when the command starts as ``content`` is.
    """
    spec = Setting(
        help=help,
        flag=flag,
        env=env,
        deprecated_flags=tuple(deprecated_flags),
        deprecated_env=tuple(deprecated_env),
        parse=parse,
        choices=choices,
        must_exist=must_exist,
        metavar=metavar,
        secret=secret,
        cli=cli,
        multiple=multiple,
        content=content,
        key_of=key_of,
        directory=directory,
    )
    return dataclasses.field(
        default=default,
        default_factory=default_factory,
        metadata={SETTING_KEY: spec},
    )


def group(cls: type[Any], *, env_prefix: str | None = None) -> Any:
    """A nested settings object whose fields become options of the same command.

    Args:
        cls: The nested settings class (its fields are built from ``setting``).
        env_prefix: The variable prefix of its fields; the enclosing one by default.
    """
    return dataclasses.field(default_factory=cls, metadata={GROUP_KEY: Group(cls, env_prefix)})


def build_settings(
    cls: type[S],
    params: Mapping[str, Any],
    *,
    env_prefix: str,
    only: Sequence[str] | None = None,
    defaults: Mapping[str, Any] | None = None,
) -> S:
    """The settings object from a command's option values.

    ``only`` and ``defaults`` are those of :func:`settings_command`; settings
    left out keep their dataclass defaults.

    Raises:
        click.UsageError: a required setting is missing, a value does not
            parse, or the object refuses the combination (its ``ValueError``).
        SettingFileRefused: a file a setting with ``content`` names cannot
            be read, holds something else, or (``key_of``) is not the key of
            its certificate.
    """
    values: dict[tuple[str, ...], Any] = {}
    flags: dict[tuple[str, ...], str] = {}
    context = click.get_current_context(silent=True)
    found = list(leaves(cls, env_prefix, selection_of(only, defaults)))
    for leaf in found:
        value = params.get(leaf.dest)
        new_source = context.get_parameter_source(leaf.dest) if context is not None else None
        new_given = new_source not in (None, click.core.ParameterSource.DEFAULT) and given(value)
        for index in range(deprecated_count(leaf)):
            old_value = params.get(f"{leaf.dest}__deprecated{index}")
            if given(old_value):
                warn_deprecated(leaf, index, deprecated_name(leaf, index))
                if not new_given:
                    value = old_value
                    new_given = True
        if not given(value) and leaf.required:
            envs = ", ".join(leaf.envvars)
            raise click.UsageError(f"{leaf.flag} is required (or set {envs})")
        try:
            converted = convert(leaf, value)
        except (ValueError, KeyError) as exc:
            # A repeatable setting's parser names the bad one of its values itself.
            shown = "" if leaf.spec.multiple else f" {value!r} is not valid:"
            msg = f"{leaf.flag}:{shown} {exc}"
            raise click.UsageError(msg) from exc
        if converted is None and not leaf.required and leaf.default is not None:
            converted = leaf.default
        values[leaf.path] = converted
        flags[leaf.path] = _named(leaf, new_source)
    try:
        built = instantiate(cls, values, ())
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    try:  # after the combination is known good: no file is read for a refused one
        check_files(values, flags, found)
    except SettingFileError as exc:
        raise SettingFileRefused(exc) from exc
    return built


def _named(leaf: Leaf, source: click.core.ParameterSource | None) -> str:
    """How a refusal names the setting: its flag, and the variable that gave the value."""
    if source is not click.core.ParameterSource.ENVIRONMENT:
        return leaf.flag
    variable = next((name for name in leaf.envvars if os.environ.get(name)), None)
    return leaf.flag if variable is None else f"{leaf.flag} (from {variable})"


def check_files(
    values: Mapping[tuple[str, ...], Any], flags: Mapping[tuple[str, ...], str], found: list[Leaf]
) -> None:
    """Check every file a setting with ``content`` names, then every key against its certificate.

    Files are read here, when the command starts and before it connects
    anywhere, so that a wrong one is refused in one line naming its option
    rather than failing later inside a TLS or key library.

    Raises:
        SettingFileError: a file cannot be read, holds the wrong content, or
            a key does not belong to its certificate.
    """
    for leaf in found:
        value = values.get(leaf.path)
        if value is not None and leaf.spec.directory:
            check_setting_directory(flags[leaf.path], value)
        if leaf.spec.content is None or value is None:
            continue
        for path in value if isinstance(value, tuple) else (value,):
            check_setting_file(flags[leaf.path], path, leaf.spec.content)
        if leaf.spec.key_of is not None:
            cert_path = (*leaf.path[:-1], leaf.spec.key_of)
            cert = values.get(cert_path)
            if cert is not None:
                check_key_pair(flags[cert_path], cert, flags[leaf.path], value)


def settings_options(
    cls: type[Any],
    *,
    env_prefix: str,
    only: Sequence[str] | None = None,
    defaults: Mapping[str, Any] | None = None,
) -> list[click.Option]:
    """Every click option of ``cls`` (and of its nested groups), in field order.

    Raises:
        TypeError: the command could never build ``cls`` (a required field
            is not among its options), or two settings claim one flag;
            both are mistakes of the command's author, caught at import.
    """
    selection = selection_of(only, defaults)
    missing = unsettable(cls, selection)
    if missing:
        msg = f"{cls.__name__}: required settings {missing} are not options of this command"
        raise TypeError(msg)
    options: list[click.Option] = []
    for leaf in leaves(cls, env_prefix, selection):
        options.extend(options_of(leaf))
    seen: dict[str, str] = {}
    for option in options:
        for flag in [*option.opts, *option.secondary_opts]:
            if flag in seen:
                msg = f"{cls.__name__}: {flag} is the flag of both {seen[flag]} and {option.name}"
                raise TypeError(msg)
            seen[flag] = str(option.name)
    return options


def settings_command(
    cls: type[S],
    *,
    env_prefix: str,
    only: Sequence[str] | None = None,
    defaults: Mapping[str, Any] | None = None,
) -> Callable[[Callable[..., R]], Callable[..., R]]:
    """Decorate a click command so that it receives ``cls`` built from its options.

    The decorated function takes any positional arguments click passes
    (``pass_obj``), then the settings object, then, by keyword, the
    parameters declared by other decorators (a command's arguments and its
    per-call options, which are not settings); apply this decorator below
    ``@group.command(...)`` and ``@click.pass_obj``.

    Args:
        cls: The settings class.
        env_prefix: Prefix of the variables of fields that name none.
        only: Dotted field names (``"storage.schema"``) the command exposes;
            the others keep their defaults. All by default.
        defaults: Per-command defaults by dotted name (``{"grpc.port": 50051}``).
    """

    def decorate(fn: Callable[..., R]) -> Callable[..., R]:
        options = settings_options(cls, env_prefix=env_prefix, only=only, defaults=defaults)
        owned = {option.name for option in options}

        @functools.wraps(fn)
        def command(*args: Any, **params: Any) -> R:
            settings = build_settings(
                cls, params, env_prefix=env_prefix, only=only, defaults=defaults
            )
            rest = {name: value for name, value in params.items() if name not in owned}
            return fn(*args, settings, **rest)

        params = getattr(command, "__click_params__", [])
        params.extend(reversed(options))
        command.__click_params__ = params  # type: ignore[attr-defined]
        return command

    return decorate


def settings_from_environ(cls: type[S], environ: Mapping[str, str], *, env_prefix: str = "") -> S:
    """Build ``cls`` from ``BUGLESS_*`` variables alone (no command line).

    For settings chosen at run time by another setting (the blob store that
    ``BUGLESS_BLOB_STORE`` names): the same declarations, types and
    validation as a command's, read from ``environ``. An empty variable
    counts as unset.

    Raises:
        InvalidArgument: a required variable is unset, a value does not
            parse, or the object refuses the combination; the message names
            the variable.
    """
    values: dict[tuple[str, ...], Any] = {}
    flags: dict[tuple[str, ...], str] = {}
    for leaf in leaves(cls, env_prefix):
        name = next((e for e in leaf.envvars if environ.get(e, "")), None)
        if name is None:
            if leaf.required:
                msg = f"{leaf.envvars[0]} is not set; it is required: {leaf.spec.help}"
                raise InvalidArgument(msg)
            continue
        click_type, is_flag = click_type_of(leaf)
        raw = environ[name]
        try:
            if leaf.spec.multiple:  # split as click splits a repeatable option's variable
                parts = click_type.split_envvar_value(raw)
                value: Any = [click_type.convert(part, None, None) for part in parts]
            elif is_flag:
                value = click.BOOL.convert(raw, None, None)
            else:
                value = click_type.convert(raw, None, None)
            values[leaf.path] = convert(leaf, value)
            flags[leaf.path] = name
        except (click.BadParameter, ValueError, KeyError) as exc:
            detail = exc.format_message() if isinstance(exc, click.BadParameter) else exc
            raise InvalidArgument(f"{name}: {raw!r} is not valid: {detail}") from exc
    try:
        built = instantiate(cls, values, ())
        check_files(values, flags, list(leaves(cls, env_prefix)))
        return built
    except ValueError as exc:
        raise InvalidArgument(str(exc)) from exc


def declared_env_vars(cls: type[Any], *, env_prefix: str) -> set[str]:
    """Every variable ``cls`` reads (current and deprecated names).

    The chart test checks each ``BUGLESS_*`` variable it renders against the
    union of these over every service.
    """
    names: set[str] = set()
    for leaf in leaves(cls, env_prefix, None):
        names.update(leaf.envvars)
        names.update(leaf.spec.deprecated_env)
    return names


@dataclasses.dataclass(frozen=True)
class EnvironmentSetting:
    """One setting of a class read from the environment alone, as a reference lists it.

    Attributes:
        names: Its variables, the documented one first.
        required: Whether it has no default.
        default: Its default (None when required).
        help: What it does.
    """

    names: tuple[str, ...]
    required: bool
    default: Any
    help: str


def environment_settings(cls: type[Any], *, env_prefix: str = "") -> list[EnvironmentSetting]:
    """The settings of ``cls`` that :func:`settings_from_environ` reads, in field order.

    For the command reference: a blob store's settings are no command's
    options, so walking the commands does not find them.
    """
    return [
        EnvironmentSetting(
            names=tuple(leaf.envvars),
            required=leaf.required,
            default=None if leaf.required else leaf.default,
            help=leaf.spec.help,
        )
        for leaf in leaves(cls, env_prefix, None)
    ]


__all__ = [
    "EnvironmentSetting",
    "Group",
    "Setting",
    "build_settings",
    "declared_env_vars",
    "environment_settings",
    "group",
    "setting",
    "settings_command",
    "settings_from_environ",
    "settings_options",
]
