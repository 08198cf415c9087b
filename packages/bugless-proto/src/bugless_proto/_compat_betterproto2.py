"""Everything bugless does with betterproto2's private surface, in one place.

betterproto2 is pinned (``==0.10.*``) because bugless relies on a few of its
internals that no public API offers:

* ``Message._get_field_default``, replaced by a faster look-up
  (:mod:`bugless_proto._speedups`);
* ``Message._betterproto`` (the per-class ``ProtoClassMetadata``) and its
  ``FieldMetadata``, read once per class by :mod:`bugless_proto.wire` to plan
  the conversion to and from upb messages;
* ``Message._unknown_fields``, the raw bytes of fields the schema lacks;
* the instance layout: a message's ``__dict__`` holds exactly its fields and
  ``_unknown_fields`` (so :mod:`bugless_proto.wire` can build one without
  running ``__init__``);
* ``ServiceStub._unary_unary``, the one method every unary call of a generated
  stub goes through (:class:`UnaryUnaryInterceptor`);
* the module global ``betterproto2.pydantic``: betterproto2 imports pydantic
  when it is installed, only to support messages generated as pydantic
  dataclasses, which bugless' are not. pydantic and pydantic-core cost every
  bugless process ~5 MiB of resident memory (bench/JOURNAL.md, "Attachments:
  memory"), so betterproto2 is imported here with pydantic hidden
  (:func:`_import_without_pydantic`), and the global is ``None``, as on an
  install without pydantic. pydantic itself stays importable afterwards.

Other modules use the names below instead of spelling the private ones.
:func:`verify` checks every item against the installed betterproto2 and raises
:class:`BetterprotoSurfaceChanged` naming the attribute and the version; it
runs on import, so an upgrade that moves one stops a process at start-up with
that message rather than failing requests later, and
``tests/test_compat_betterproto2.py`` runs it in CI.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import inspect
import sys
from collections.abc import Awaitable, Callable
from types import ModuleType
from typing import Any, NamedTuple, TypeVar

#: What betterproto2 imports, optionally, to support pydantic dataclass messages.
_PYDANTIC_MODULES = ("pydantic", "pydantic_core")


def _import_without_pydantic() -> ModuleType:
    """Import betterproto2 as on an install without pydantic, unless it is already imported.

    A ``None`` in ``sys.modules`` makes ``import pydantic`` raise ImportError,
    which betterproto2 catches; the entries are removed at once, so code that
    imports pydantic later gets it. When pydantic is already imported, or
    betterproto2 is, there is nothing to save and nothing is hidden.
    """
    if "betterproto2" in sys.modules or any(name in sys.modules for name in _PYDANTIC_MODULES):
        return importlib.import_module("betterproto2")
    for name in _PYDANTIC_MODULES:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        return importlib.import_module("betterproto2")
    finally:
        for name in _PYDANTIC_MODULES:
            del sys.modules[name]


_import_without_pydantic()

import betterproto2  # noqa: E402 - imported above, without pydantic
from betterproto2.grpclib.grpclib_client import ServiceStub  # noqa: E402

#: The installed betterproto2, named in every error of this module.
BETTERPROTO2_VERSION = importlib.metadata.version("betterproto2")

#: The instance attribute holding the raw bytes of unknown fields.
UNKNOWN_FIELDS_ATTRIBUTE = "_unknown_fields"

T = TypeVar("T")
FieldDefaultLookup = Callable[[betterproto2.Message, str], Any]


class BetterprotoSurfaceChanged(RuntimeError):
    """The installed betterproto2 no longer has something bugless relies on."""

    def __init__(self, attribute: str, problem: str) -> None:
        """Name the attribute, what is wrong with it, and the installed version."""
        super().__init__(
            f"betterproto2 {BETTERPROTO2_VERSION}: {attribute} {problem}; bugless_proto "
            "relies on it (see bugless_proto._compat_betterproto2), so adapt that module "
            "or pin betterproto2 back to the version bugless-proto declares"
        )
        self.attribute = attribute


class FieldInfo(NamedTuple):
    """What the wire converter needs to know of one field of a message class.

    Attributes:
        name: The Python attribute (``type``, ``from_`` ...).
        number: The field number.
        proto_type: betterproto2's type name (``int64``, ``message``, ``map`` ...).
        repeated: A repeated (not map) field.
        presence: The field is ``None`` when unset (``optional``, a oneof
            member, a message field); otherwise it holds its zero value.
        group: The oneof it belongs to, or ``None``.
        value_class: The field's enum or message class (the element class for
            a repeated field, the value class for a map), or ``None``.
        unwrapped: For a well-known type betterproto2 replaces by a Python
            value (Timestamp -> datetime, wrappers -> scalars): its message class.
        map_types: For a map: the key's and the value's proto type.
    """

    name: str
    number: int
    proto_type: str
    repeated: bool
    presence: bool
    group: str | None
    value_class: type | None
    unwrapped: type | None
    map_types: tuple[str, str] | None


def fields_of(cls: type[betterproto2.Message]) -> tuple[FieldInfo, ...]:
    """The fields of ``cls`` in declaration order, from betterproto2's own metadata."""
    meta = cls._betterproto  # type: ignore[arg-type]  # betterproto2's classproperty typing
    infos = []
    for name, field in meta.meta_by_field_name.items():
        value_class: type | None
        map_types: tuple[str, str] | None = None
        unwrap = field.unwrap
        if field.map_meta is not None:
            key_meta, value_meta = field.map_meta
            map_types = (key_meta.proto_type, value_meta.proto_type)
            value_class = meta.cls_by_field[f"{name}.value"]
            unwrap = value_meta.unwrap
        else:
            value_class = meta.cls_by_field.get(name)
        infos.append(
            FieldInfo(
                name=name,
                number=field.number,
                proto_type=field.proto_type,
                repeated=bool(field.repeated),
                presence=meta.default_gen[name] is type(None),
                group=field.group,
                value_class=value_class,
                unwrapped=None if unwrap is None else unwrap(),
                map_types=map_types,
            )
        )
    return tuple(infos)


def unknown_fields(message: betterproto2.Message) -> bytes:
    """The raw bytes of the fields ``message`` was decoded with but has no attribute for."""
    raw: bytes = getattr(message, UNKNOWN_FIELDS_ATTRIBUTE)
    return raw


def set_unknown_fields(message: betterproto2.Message, raw: bytes) -> None:
    """Give ``message`` unknown fields (appended to its wire form, as if decoded)."""
    setattr(message, UNKNOWN_FIELDS_ATTRIBUTE, raw)


#: betterproto2's own default look-up, kept to restore it.
ORIGINAL_FIELD_DEFAULT_LOOKUP: FieldDefaultLookup = betterproto2.Message._get_field_default


def unguarded_field_default(message: betterproto2.Message, field_name: str) -> Any:
    """A field's default, by its factory, without betterproto2's warnings guard."""
    return message._betterproto.default_gen[field_name]()  # type: ignore[arg-type]


def set_field_default_lookup(lookup: FieldDefaultLookup) -> None:
    """Make every betterproto2 message look its defaults up with ``lookup``."""
    betterproto2.Message._get_field_default = lookup  # type: ignore[method-assign,assignment]


def field_default_lookup() -> FieldDefaultLookup:
    """The default look-up in force now."""
    lookup: FieldDefaultLookup = betterproto2.Message._get_field_default
    return lookup


class UnaryUnaryInterceptor:
    """Mix into a generated stub to route every unary call through one method.

    betterproto2's stubs send each unary call through
    ``ServiceStub._unary_unary(route, request, response_type, **options)``;
    a subclass that lists this mixin first gets
    :meth:`intercept_unary_unary` called with the original sender instead.
    """

    async def intercept_unary_unary(
        self,
        send: Callable[..., Awaitable[T]],
        route: str,
        request: Any,
        response_type: type[T],
        **options: Any,
    ) -> T:
        """Send the call (override to retry, trace ...); the default just sends it."""
        return await send(route, request, response_type, **options)

    async def _unary_unary(
        self, route: str, request: Any, response_type: type[T], **options: Any
    ) -> T:
        send: Callable[..., Awaitable[T]] = super()._unary_unary  # type: ignore[misc]
        return await self.intercept_unary_unary(send, route, request, response_type, **options)


_FIELD_METADATA_ATTRIBUTES = (
    "number",
    "proto_type",
    "map_meta",
    "group",
    "unwrap",
    "optional",
    "repeated",
)
_CLASS_METADATA_ATTRIBUTES = ("meta_by_field_name", "cls_by_field", "default_gen")
_UNARY_UNARY_PARAMETERS = ("self", "route", "request", "response_type")


def verify() -> None:
    """Check every private item this module uses against the installed betterproto2.

    Raises:
        BetterprotoSurfaceChanged: One is missing or has changed shape; the
            message names it and the installed version.
    """
    if "_get_field_default" not in betterproto2.Message.__dict__:
        raise BetterprotoSurfaceChanged("Message._get_field_default", "is gone")
    # betterproto2's own, even when bugless_proto._speedups has replaced it.
    if list(inspect.signature(ORIGINAL_FIELD_DEFAULT_LOOKUP).parameters) != ["self", "field_name"]:
        raise BetterprotoSurfaceChanged(
            "Message._get_field_default", "no longer takes (self, field_name)"
        )

    @dataclasses.dataclass(eq=False, repr=False)
    class Probe(betterproto2.Message):
        number: int = betterproto2.field(1, betterproto2.TYPE_INT64)

    try:
        meta = Probe._betterproto  # type: ignore[arg-type]
    except AttributeError:
        raise BetterprotoSurfaceChanged("Message._betterproto", "is gone") from None
    for name in _CLASS_METADATA_ATTRIBUTES:
        if not isinstance(getattr(meta, name, None), dict):
            raise BetterprotoSurfaceChanged(
                f"ProtoClassMetadata.{name}", "is gone or no longer a dict"
            )
    field = meta.meta_by_field_name.get("number")
    for name in _FIELD_METADATA_ATTRIBUTES:
        if not hasattr(field, name):
            raise BetterprotoSurfaceChanged(f"FieldMetadata.{name}", "is gone")
    probe = Probe(number=1)
    if set(vars(probe)) != {"number", UNKNOWN_FIELDS_ATTRIBUTE}:
        raise BetterprotoSurfaceChanged(
            "Message.__dict__",
            f"holds {sorted(vars(probe))}, not only the fields and {UNKNOWN_FIELDS_ATTRIBUTE}",
        )
    if getattr(probe, UNKNOWN_FIELDS_ATTRIBUTE, None) != b"":
        raise BetterprotoSurfaceChanged(f"Message.{UNKNOWN_FIELDS_ATTRIBUTE}", "is gone")
    if type(probe).__setattr__ is not object.__setattr__:
        raise BetterprotoSurfaceChanged("Message.__setattr__", "is overridden now")

    send = ServiceStub.__dict__.get("_unary_unary")
    if send is None:
        raise BetterprotoSurfaceChanged("ServiceStub._unary_unary", "is gone")
    parameters = list(inspect.signature(send).parameters)
    if parameters[: len(_UNARY_UNARY_PARAMETERS)] != list(_UNARY_UNARY_PARAMETERS):
        raise BetterprotoSurfaceChanged(
            "ServiceStub._unary_unary",
            f"takes {parameters}, not (self, route, request, response_type, ...)",
        )


verify()
