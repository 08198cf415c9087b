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
import enum
import functools
import types
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, Union

import click

from bugless_core.errors import InvalidArgument

S = TypeVar("S")
R = TypeVar("R")

_META = "bugless_setting"
_GROUP = "bugless_group"


@dataclass(frozen=True)
class Setting:
    """How one field is set from the outside (see :func:`setting`)."""

    help: str
    flag: str | None = None
    env: str | Sequence[str] | None = None
    deprecated_flags: tuple[str, ...] = ()
    deprecated_env: tuple[str, ...] = ()
    parse: Callable[[Any], Any] | None = None
    choices: Sequence[str] | None = None
    must_exist: bool = False
    metavar: str | None = None
    secret: bool = False
    cli: bool = True
    multiple: bool = False


@dataclass(frozen=True)
class Group:
    """A nested settings class whose fields are options of the same command."""

    cls: type[Any]
    env_prefix: str | None = None


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
    )
    return dataclasses.field(
        default=default,
        default_factory=default_factory,
        metadata={_META: spec},
    )


def group(cls: type[Any], *, env_prefix: str | None = None) -> Any:
    """A nested settings object whose fields become options of the same command.

    Args:
        cls: The nested settings class (its fields are built from ``setting``).
        env_prefix: The variable prefix of its fields; the enclosing one by default.
    """
    return dataclasses.field(default_factory=cls, metadata={_GROUP: Group(cls, env_prefix)})


# ---- from dataclass fields to click options ----


@dataclass(frozen=True)
class _Leaf:
    path: tuple[str, ...]
    field: dataclasses.Field[Any]
    spec: Setting
    annotation: Any
    env_prefix: str
    override: Any = dataclasses.MISSING

    @property
    def dest(self) -> str:
        return "__".join(self.path)

    @property
    def flag(self) -> str:
        """The flag (for a boolean given as ``--on/--off``, the ``--on`` part)."""
        return self.declared_flag.split("/", 1)[0]

    @property
    def declared_flag(self) -> str:
        return self.spec.flag or "--" + self.path[-1].replace("_", "-")

    @property
    def envvars(self) -> list[str]:
        env = self.spec.env
        if env is None:
            return [self.env_prefix + self.path[-1].upper()]
        return [env] if isinstance(env, str) else list(env)

    @property
    def required(self) -> bool:
        return (
            self.override is dataclasses.MISSING
            and self.field.default is dataclasses.MISSING
            and self.field.default_factory is dataclasses.MISSING
        )

    @property
    def default(self) -> Any:
        if self.override is not dataclasses.MISSING:
            return self.override
        if self.field.default is not dataclasses.MISSING:
            return self.field.default
        factory: Any = self.field.default_factory
        if factory is not dataclasses.MISSING:
            return factory()
        return None


@dataclass(frozen=True)
class _Selection:
    """Which settings a command exposes, and with which defaults."""

    only: frozenset[str] | None = None
    defaults: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def wants(self, dotted: str) -> bool:
        return self.only is None or dotted in self.only


def _leaves(
    cls: type[Any],
    env_prefix: str,
    selection: _Selection | None = None,
    path: tuple[str, ...] = (),
) -> Iterator[_Leaf]:
    chosen = selection or _Selection()
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        nested = field.metadata.get(_GROUP)
        if isinstance(nested, Group):
            prefix = nested.env_prefix or env_prefix
            yield from _leaves(nested.cls, prefix, chosen, (*path, field.name))
            continue
        spec = field.metadata.get(_META)
        dotted = ".".join((*path, field.name))
        if isinstance(spec, Setting) and spec.cli and chosen.wants(dotted):
            override = chosen.defaults.get(dotted, dataclasses.MISSING)
            yield _Leaf((*path, field.name), field, spec, hints[field.name], env_prefix, override)


def _unwrap_optional(annotation: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return annotation, False


def _click_type(leaf: _Leaf) -> tuple[Any, bool]:
    """The click type of a leaf, and whether it is a boolean flag."""
    annotation, _ = _unwrap_optional(leaf.annotation)
    if leaf.spec.multiple:
        (annotation,) = typing.get_args(annotation)[:1] or (str,)
    if leaf.spec.parse is not None:
        return click.STRING, False
    if leaf.spec.choices is not None:
        return click.Choice(list(leaf.spec.choices), case_sensitive=False), False
    if annotation is bool:
        return click.BOOL, True
    if annotation is int:
        return click.INT, False
    if annotation is float:
        return click.FLOAT, False
    if annotation is Path:
        return click.Path(exists=leaf.spec.must_exist, dir_okay=not leaf.spec.must_exist,
                          path_type=Path), False  # fmt: skip
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return click.Choice([m.name.lower() for m in annotation], case_sensitive=False), False
    if typing.get_origin(annotation) is tuple or annotation is str:
        return click.STRING, False
    msg = f"setting {leaf.dest}: no click type for {annotation!r}; give parse="
    raise TypeError(msg)


def _help(leaf: _Leaf) -> str:
    envs = leaf.envvars
    text = leaf.spec.help.rstrip()
    if len(envs) > 0:
        text += f" [env {envs[0]}]"
    if leaf.required:
        text += "  [required]"
    return text


def _click_default(leaf: _Leaf, is_flag: bool) -> Any:
    """The default as click should see it: text click can parse back, or None.

    click converts a default like any given value, so a tuple default of a
    comma-separated setting must reach it as ``"a,b"`` (not ``"('a', 'b')"``),
    an enum as its choice name, and a default only ``parse`` understands not
    at all (:func:`build_settings` then fills in the dataclass default).
    """
    default = leaf.default
    if default is None or (leaf.spec.secret and not leaf.required):
        return None
    if is_flag:
        return default
    if leaf.spec.multiple:
        if isinstance(default, tuple | list) and all(isinstance(v, str | Path) for v in default):
            return tuple(default) or None
        return None
    if isinstance(default, enum.Enum):
        return default.name.lower()
    if isinstance(default, tuple):
        return ",".join(str(part) for part in default) or None
    if leaf.spec.parse is not None and not isinstance(default, str):
        return None
    return default


def _options(leaf: _Leaf) -> list[click.Option]:
    click_type, is_flag = _click_type(leaf)
    name = leaf.declared_flag
    if is_flag and "/" not in name:
        name = f"{name}/--no-{name[2:]}"
    decls = [name, leaf.dest]
    default = _click_default(leaf, is_flag)
    options = [
        click.Option(
            decls,
            type=None if is_flag else click_type,
            is_flag=is_flag or None,
            envvar=leaf.envvars,
            default=default,
            required=False,
            show_default=not leaf.spec.secret and not leaf.required and default not in (None, ""),
            metavar=leaf.spec.metavar,
            multiple=leaf.spec.multiple,
            help=_help(leaf),
        )
    ]
    for index in range(_deprecated_count(leaf)):
        old_flag = leaf.spec.deprecated_flags[index : index + 1]
        old_env = list(leaf.spec.deprecated_env[index : index + 1])
        hidden_flag = old_flag[0] if old_flag else f"--{leaf.dest.replace('_', '-')}-old-{index}"
        options.append(
            click.Option(
                [f"{hidden_flag}/--no-{hidden_flag[2:]}" if is_flag else hidden_flag,
                 f"{leaf.dest}__deprecated{index}"],
                type=None if is_flag else click_type,
                is_flag=is_flag or None,
                envvar=old_env or None,
                default=None,
                multiple=leaf.spec.multiple,
                hidden=True,
            )
        )  # fmt: skip
    return options


def _convert(leaf: _Leaf, value: Any) -> Any:
    if value is None:
        return None
    annotation, _ = _unwrap_optional(leaf.annotation)
    if leaf.spec.multiple:
        values = tuple(value)
        if leaf.spec.parse is not None:
            return leaf.spec.parse(values)
        return values if values or leaf.required else None
    if leaf.spec.parse is not None and isinstance(value, str):
        return leaf.spec.parse(value)
    if typing.get_origin(annotation) is tuple and isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return value if isinstance(value, annotation) else annotation[str(value).upper()]
    return value


def _deprecated_count(leaf: _Leaf) -> int:
    return max(len(leaf.spec.deprecated_flags), len(leaf.spec.deprecated_env))


def _given(value: Any) -> bool:
    """Whether an option value was given (a repeatable one given no time is ``()``)."""
    return value is not None and value != ()


def _warn_deprecated(leaf: _Leaf, index: int, old: str) -> None:
    instead = leaf.flag + (f" [env {leaf.envvars[0]}]" if leaf.envvars else "")
    click.echo(
        f"warning: {old} is deprecated and will be removed in the next release; use {instead}",
        err=True,
    )


def _deprecated_name(leaf: _Leaf, index: int) -> str:
    """Which former name supplied the deprecated option's value (flag or variable)."""
    context = click.get_current_context(silent=True)
    source = (
        context.get_parameter_source(f"{leaf.dest}__deprecated{index}")
        if context is not None
        else None
    )
    flags = leaf.spec.deprecated_flags[index : index + 1]
    envs = leaf.spec.deprecated_env[index : index + 1]
    if source is click.core.ParameterSource.ENVIRONMENT and envs:
        return envs[0]
    return (flags or envs)[0]


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
    """
    values: dict[tuple[str, ...], Any] = {}
    context = click.get_current_context(silent=True)
    for leaf in _leaves(cls, env_prefix, _selection(only, defaults)):
        value = params.get(leaf.dest)
        new_source = context.get_parameter_source(leaf.dest) if context is not None else None
        new_given = new_source not in (None, click.core.ParameterSource.DEFAULT) and _given(value)
        for index in range(_deprecated_count(leaf)):
            old_value = params.get(f"{leaf.dest}__deprecated{index}")
            if _given(old_value):
                _warn_deprecated(leaf, index, _deprecated_name(leaf, index))
                if not new_given:
                    value = old_value
                    new_given = True
        if not _given(value) and leaf.required:
            envs = ", ".join(leaf.envvars)
            raise click.UsageError(f"{leaf.flag} is required (or set {envs})")
        try:
            converted = _convert(leaf, value)
        except (ValueError, KeyError) as exc:
            # A repeatable setting's parser names the bad one of its values itself.
            shown = "" if leaf.spec.multiple else f" {value!r} is not valid:"
            msg = f"{leaf.flag}:{shown} {exc}"
            raise click.UsageError(msg) from exc
        if converted is None and not leaf.required and leaf.default is not None:
            converted = leaf.default
        values[leaf.path] = converted
    try:
        return _instantiate(cls, values, ())
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc


def _instantiate(cls: type[S], values: Mapping[tuple[str, ...], Any], path: tuple[str, ...]) -> S:
    kwargs: dict[str, Any] = {}
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        nested = field.metadata.get(_GROUP)
        key = (*path, field.name)
        if isinstance(nested, Group):
            kwargs[field.name] = _instantiate(nested.cls, values, key)
        elif key in values:
            kwargs[field.name] = values[key]
    return cls(**kwargs)


def _selection(only: Sequence[str] | None, defaults: Mapping[str, Any] | None) -> _Selection:
    return _Selection(None if only is None else frozenset(only), dict(defaults or {}))


def _unsettable(cls: type[Any], selection: _Selection, path: tuple[str, ...] = ()) -> list[str]:
    """Dotted names of required fields that no option of the command fills."""
    missing: list[str] = []
    for field in dataclasses.fields(cls):
        nested = field.metadata.get(_GROUP)
        dotted = ".".join((*path, field.name))
        if isinstance(nested, Group):
            missing += _unsettable(nested.cls, selection, (*path, field.name))
            continue
        spec = field.metadata.get(_META)
        exposed = isinstance(spec, Setting) and spec.cli and selection.wants(dotted)
        required = (
            field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
        )
        if required and not exposed:
            missing.append(dotted)
    return missing


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
    selection = _selection(only, defaults)
    missing = _unsettable(cls, selection)
    if missing:
        msg = f"{cls.__name__}: required settings {missing} are not options of this command"
        raise TypeError(msg)
    options: list[click.Option] = []
    for leaf in _leaves(cls, env_prefix, selection):
        options.extend(_options(leaf))
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
    for leaf in _leaves(cls, env_prefix):
        name = next((e for e in leaf.envvars if environ.get(e, "")), None)
        if name is None:
            if leaf.required:
                msg = f"{leaf.envvars[0]} is not set; it is required: {leaf.spec.help}"
                raise InvalidArgument(msg)
            continue
        click_type, is_flag = _click_type(leaf)
        raw = environ[name]
        try:
            if leaf.spec.multiple:  # split as click splits a repeatable option's variable
                parts = click_type.split_envvar_value(raw)
                value: Any = [click_type.convert(part, None, None) for part in parts]
            elif is_flag:
                value = click.BOOL.convert(raw, None, None)
            else:
                value = click_type.convert(raw, None, None)
            values[leaf.path] = _convert(leaf, value)
        except (click.BadParameter, ValueError, KeyError) as exc:
            detail = exc.format_message() if isinstance(exc, click.BadParameter) else exc
            raise InvalidArgument(f"{name}: {raw!r} is not valid: {detail}") from exc
    try:
        return _instantiate(cls, values, ())
    except ValueError as exc:
        raise InvalidArgument(str(exc)) from exc


def declared_env_vars(cls: type[Any], *, env_prefix: str) -> set[str]:
    """Every variable ``cls`` reads (current and deprecated names).

    The chart test checks each ``BUGLESS_*`` variable it renders against the
    union of these over every service.
    """
    names: set[str] = set()
    for leaf in _leaves(cls, env_prefix, None):
        names.update(leaf.envvars)
        names.update(leaf.spec.deprecated_env)
    return names


__all__ = [
    "Group",
    "Setting",
    "build_settings",
    "declared_env_vars",
    "group",
    "setting",
    "settings_command",
    "settings_from_environ",
    "settings_options",
]
