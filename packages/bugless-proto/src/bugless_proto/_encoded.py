"""Messages that are their own wire form until read (:class:`Encoded`).

A service that already holds a reply's bytes (the Model's search page
encoded straight from its rows; the API's issues, people renamed in upb
messages) sends them as they are rather than making betterproto2 objects to
encode again: most of a 50-issue page's CPU in both (bench/JOURNAL.md).
grpclib's codec checks ``isinstance(reply, reply_type)``, so such a reply
must still be a message of its type: :func:`encoded_type` makes, once per
message class, a subclass that holds the bytes instead of fields and
defines ``SerializeToString``, which by :mod:`bugless_proto.wire`'s rule
makes it own its wire form.

Code in the same process may still read one (tests, a caller that wraps a
handler): the first read of anything but its wire form decodes the bytes,
and the message *becomes* an ordinary message of its class (its
``__class__`` is set to it), so from then on it reads, compares, changes
and encodes like any other, at the usual cost. Until then it compares equal
to a message of its class with the same fields.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

import betterproto2

M = TypeVar("M", bound=betterproto2.Message)

#: What an encoded message answers without decoding itself.
_OWN = frozenset({"SerializeToString", "__bytes__", "__class__", "__dict__", "_encoded"})
#: Encoded's methods, copied into each class :func:`encoded_type` makes.
_METHODS = (
    "of",
    "FromString",
    "SerializeToString",
    "__bytes__",
    "__getattribute__",
    "__setattr__",
    "__delattr__",
    "__eq__",
    "__ne__",
    "__hash__",
)


class Encoded:
    """Mixin of the classes :func:`encoded_type` makes: a message that is its bytes.

    ``isinstance(message, Encoded)`` is true while it has not been read.
    """

    __slots__ = ()
    _message_class: ClassVar[type[betterproto2.Message]]
    _decode: ClassVar[Callable[[bytes], betterproto2.Message]]

    @classmethod
    def of(cls, data: bytes) -> Any:
        """The message whose wire form is ``data`` (made without ``__init__``)."""
        message = object.__new__(cls)
        object.__setattr__(message, "_encoded", data)
        return message

    @classmethod
    def FromString(cls, data: bytes) -> Any:  # noqa: N802 - protobuf's name, called by codecs
        """Read lazily: a client expecting this type keeps the bytes until it reads a field."""
        return cls.of(data)

    def SerializeToString(self) -> bytes:  # noqa: N802 - protobuf's name, called by the codec
        """The bytes this message was made of."""
        data: bytes = object.__getattribute__(self, "_encoded")
        return data

    __bytes__ = SerializeToString

    def __getattribute__(self, name: str) -> Any:
        """Anything but the wire form: decode, then read it from the ordinary message."""
        if name in _OWN:
            return object.__getattribute__(self, name)
        _decode_in_place(self)
        return getattr(self, name)

    def __setattr__(self, name: str, value: Any) -> None:
        """A change is made to the decoded message (the bytes would not show it)."""
        _decode_in_place(self)
        setattr(self, name, value)

    def __delattr__(self, name: str) -> None:
        """As :meth:`__setattr__`."""
        _decode_in_place(self)
        delattr(self, name)

    def __eq__(self, other: object) -> bool:
        """Equal to a message of the same class with the same fields (decoding both)."""
        _decode_in_place(self)
        return bool(self == other)

    def __ne__(self, other: object) -> bool:
        """Not :meth:`__eq__`."""
        return not self == other

    __hash__ = None  # type: ignore[assignment]  # messages are mutable, as betterproto2's


def _decode_in_place(message: object) -> None:
    """Turn ``message`` into an ordinary message of its class, its fields read from its bytes."""
    cls = type(message)
    if not issubclass(cls, Encoded):  # read already (a method of Encoded called on it directly)
        return
    data: bytes = object.__getattribute__(message, "_encoded")
    fields = cls._decode(data).__dict__
    object.__setattr__(message, "__class__", cls._message_class)
    object.__setattr__(message, "__dict__", fields)


_CLASSES: dict[type, type[Encoded]] = {}
_MAKERS: dict[type, Callable[[bytes], Any]] = {}
_MAKING = threading.Lock()


def encoded_type(
    message_class: type[M], decode: Callable[[bytes], betterproto2.Message]
) -> type[M]:
    """The subclass of ``message_class`` whose messages are their bytes (made once per class).

    ``decode`` reads bytes into a ``message_class`` message, on first read (the
    one given when the class is first asked for is kept).
    """
    made = _CLASSES.get(message_class)
    if made is None:
        with _MAKING:
            made = _CLASSES.get(message_class)
            if made is None:
                # The message class comes first: its layout is the one the
                # decoded message takes on (``__class__`` assignment demands
                # it). Encoded's methods are then put in the class itself,
                # ahead of the message's own.
                namespace = {
                    **{name: vars(Encoded)[name] for name in _METHODS},
                    "__slots__": (),
                    "__module__": message_class.__module__,
                    "__qualname__": f"Encoded{message_class.__qualname__}",
                    "__doc__": f"A ``{message_class.__qualname__}`` that is its bytes until read.",
                    "_message_class": message_class,
                    "_decode": staticmethod(decode),
                }
                name = f"Encoded{message_class.__name__}"
                made = _CLASSES[message_class] = type(name, (message_class, Encoded), namespace)
    return made  # type: ignore[return-value]  # a subclass of message_class


def maker(
    message_class: type[betterproto2.Message], decode: Callable[[bytes], betterproto2.Message]
) -> Callable[[bytes], Any]:
    """``encoded_type(message_class, decode).of``, looked up once per class."""
    made = _MAKERS.get(message_class)
    if made is None:
        made_class: Any = encoded_type(message_class, decode)
        made = _MAKERS[message_class] = made_class.of
    return made
