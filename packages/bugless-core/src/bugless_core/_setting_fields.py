"""The machinery behind :mod:`bugless_core.settings`: from declarations to click options and back.

:mod:`bugless_core.settings` is what a service author uses (:func:`~bugless_core.settings.setting`,
:func:`~bugless_core.settings.group`, :func:`~bugless_core.settings.settings_command`, ...). This
module is how it works: it walks a settings dataclass to its leaves (one per option, nested
groups flattened, with the variable prefix each inherits), derives each leaf's click type,
default and help, converts what click hands back, handles deprecated names, and builds the
frozen object. It is kept apart so the public module reads as the declaration API it is.
:class:`Setting` and :class:`Group` are defined here because the walk recognises them; they are
public as ``bugless_core.settings.Setting`` and ``bugless_core.settings.Group``.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, Union

import click

S = TypeVar("S")

#: The field metadata keys under which :class:`Setting` and :class:`Group` are kept.
SETTING_KEY = "bugless_setting"
GROUP_KEY = "bugless_group"


@dataclass(frozen=True)
class Setting:
    """How one field is set from the outside (see :func:`bugless_core.settings.setting`)."""

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
    content: Callable[[bytes], object] | None = None
    key_of: str | None = None
    directory: bool = False


@dataclass(frozen=True)
class Group:
    """A nested settings class whose fields are options of the same command."""

    cls: type[Any]
    env_prefix: str | None = None


@dataclass(frozen=True)
class Leaf:
    """One option of a command: a setting field, where it sits, and how it is named."""

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
class Selection:
    """Which settings a command exposes, and with which defaults."""

    only: frozenset[str] | None = None
    defaults: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def wants(self, dotted: str) -> bool:
        return self.only is None or dotted in self.only


def leaves(
    cls: type[Any],
    env_prefix: str,
    selection: Selection | None = None,
    path: tuple[str, ...] = (),
) -> Iterator[Leaf]:
    """Every option of ``cls``, nested groups flattened, in field order."""
    chosen = selection or Selection()
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        nested = field.metadata.get(GROUP_KEY)
        if isinstance(nested, Group):
            prefix = nested.env_prefix or env_prefix
            yield from leaves(nested.cls, prefix, chosen, (*path, field.name))
            continue
        spec = field.metadata.get(SETTING_KEY)
        dotted = ".".join((*path, field.name))
        if isinstance(spec, Setting) and spec.cli and chosen.wants(dotted):
            override = chosen.defaults.get(dotted, dataclasses.MISSING)
            yield Leaf((*path, field.name), field, spec, hints[field.name], env_prefix, override)


def unwrap_optional(annotation: Any) -> tuple[Any, bool]:
    """The type inside ``X | None``, and whether it was optional."""
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return annotation, False


def click_type_of(leaf: Leaf) -> tuple[Any, bool]:
    """The click type of a leaf, and whether it is a boolean flag."""
    annotation, _ = unwrap_optional(leaf.annotation)
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
    if annotation is Path and (leaf.spec.content is not None or leaf.spec.directory):
        # Read and checked by build_settings, which names the problem in one line.
        return click.Path(readable=False, path_type=Path), False
    if annotation is Path:
        return click.Path(exists=leaf.spec.must_exist, dir_okay=not leaf.spec.must_exist,
                          path_type=Path), False  # fmt: skip
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return click.Choice([m.name.lower() for m in annotation], case_sensitive=False), False
    if typing.get_origin(annotation) is tuple or annotation is str:
        return click.STRING, False
    msg = f"setting {leaf.dest}: no click type for {annotation!r}; give parse="
    raise TypeError(msg)


def help_text(leaf: Leaf) -> str:
    """The option's ``--help`` text: the setting's help, its variable, whether required."""
    envs = leaf.envvars
    text = leaf.spec.help.rstrip()
    if len(envs) > 0:
        text += f" [env {envs[0]}]"
    if leaf.required:
        text += "  [required]"
    return text


def click_default(leaf: Leaf, is_flag: bool) -> Any:
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


def options_of(leaf: Leaf) -> list[click.Option]:
    """The click option of a leaf, plus a hidden one per deprecated name."""
    click_type, is_flag = click_type_of(leaf)
    name = leaf.declared_flag
    if is_flag and "/" not in name:
        name = f"{name}/--no-{name[2:]}"
    decls = [name, leaf.dest]
    default = click_default(leaf, is_flag)
    options = [
        click.Option(
            decls,
            type=None if is_flag else click_type,
            is_flag=is_flag or None,
            envvar=leaf.envvars,
            default=default,
            required=False,
            show_default=not leaf.spec.secret and not leaf.required and default not in (None, ""),
            # A checked file is read by build_settings, not by click (whose type would say PATH).
            metavar=leaf.spec.metavar or ("FILE" if leaf.spec.content is not None else None),
            multiple=leaf.spec.multiple,
            help=help_text(leaf),
        )
    ]
    for index in range(deprecated_count(leaf)):
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


def convert(leaf: Leaf, value: Any) -> Any:
    """The field value of what click parsed (tuples, enums, ``parse``)."""
    if value is None:
        return None
    annotation, _ = unwrap_optional(leaf.annotation)
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


def deprecated_count(leaf: Leaf) -> int:
    """How many former names (flag or variable) a leaf accepts."""
    return max(len(leaf.spec.deprecated_flags), len(leaf.spec.deprecated_env))


def given(value: Any) -> bool:
    """Whether an option value was given (a repeatable one given no time is ``()``)."""
    return value is not None and value != ()


def warn_deprecated(leaf: Leaf, index: int, old: str) -> None:
    """Tell the operator on standard error that a former name was used."""
    instead = leaf.flag + (f" [env {leaf.envvars[0]}]" if leaf.envvars else "")
    click.echo(
        f"warning: {old} is deprecated and will be removed in the next release; use {instead}",
        err=True,
    )


def deprecated_name(leaf: Leaf, index: int) -> str:
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


def instantiate(cls: type[S], values: Mapping[tuple[str, ...], Any], path: tuple[str, ...]) -> S:
    """Build ``cls`` and its nested groups from values by field path."""
    kwargs: dict[str, Any] = {}
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        nested = field.metadata.get(GROUP_KEY)
        key = (*path, field.name)
        if isinstance(nested, Group):
            kwargs[field.name] = instantiate(nested.cls, values, key)
        elif key in values:
            kwargs[field.name] = values[key]
    return cls(**kwargs)


def selection_of(only: Sequence[str] | None, defaults: Mapping[str, Any] | None) -> Selection:
    """The selection :func:`bugless_core.settings.settings_command` was given."""
    return Selection(None if only is None else frozenset(only), dict(defaults or {}))


def unsettable(cls: type[Any], selection: Selection, path: tuple[str, ...] = ()) -> list[str]:
    """Dotted names of required fields that no option of the command fills."""
    missing: list[str] = []
    for field in dataclasses.fields(cls):
        nested = field.metadata.get(GROUP_KEY)
        dotted = ".".join((*path, field.name))
        if isinstance(nested, Group):
            missing += unsettable(nested.cls, selection, (*path, field.name))
            continue
        spec = field.metadata.get(SETTING_KEY)
        exposed = isinstance(spec, Setting) and spec.cli and selection.wants(dotted)
        required = (
            field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
        )
        if required and not exposed:
            missing.append(dotted)
    return missing
