"""hyperframe's frame ``repr`` without hex-encoding a whole payload.

h2 logs every frame it receives with ``logger.trace("Received frame: %s",
repr(frame))`` (``h2/connection.py``, ``_receive_frame``); the ``repr`` is
built before the logger is asked, so it is paid with logging off. hyperframe
(6.1) renders a payload with ``_raw_data_repr``, which hex-encodes **all** of
it and then keeps the first 20 characters, and a DATA frame's payload is
first copied whole by ``serialize_body`` to be rendered. For a 512 KiB
attachment chunk that is a 512 KiB copy and a 1 MiB string per frame, thrown
away: a third of the web tier's CPU while it streams a download, and 13 % of
the Model's while it takes an upload (py-spy, bench/JOURNAL.md "Attachments:
the frame repr").

:func:`raw_data_repr` returns the same text from the first 11 bytes (20 hex
characters plus one byte to know whether to add ``...``), and
:func:`data_body_repr` renders a DATA frame's body from its first 11 bytes.
:func:`install` puts them in hyperframe only after checking, on sample
payloads and frames, that they render exactly what the installed hyperframe
renders; a hyperframe whose rendering changed keeps its own (slower, still
correct) code.
"""

from __future__ import annotations

import binascii
from collections.abc import Callable

from hyperframe import frame as _frame
from hyperframe.frame import DataFrame

__all__ = ["data_body_repr", "install", "installed", "raw_data_repr"]

#: Bytes of a payload the representation shows (20 hex characters).
SHOWN_BYTES = 10

#: Payloads the replacement is checked against before it is installed.
_SAMPLES = (b"", b"\x00", bytes(range(10)), bytes(range(11)), bytes(range(256)) * 3)


def raw_data_repr(data: bytes | bytearray | memoryview | None) -> str:
    """The text hyperframe renders for ``data``, from its first :data:`SHOWN_BYTES` + 1 bytes."""
    if not data:
        return "None"
    shown = binascii.hexlify(data[: SHOWN_BYTES + 1]).decode("ascii")
    if len(shown) > 2 * SHOWN_BYTES:
        shown = shown[: 2 * SHOWN_BYTES] + "..."
    return "<hex:" + shown + ">"


def data_body_repr(frame: DataFrame) -> str:
    """What hyperframe shows of a DATA frame: its serialized body, from the first bytes.

    The body is the pad length byte (when ``PADDED``), the data, then the
    padding's zero bytes; only its first :data:`SHOWN_BYTES` + 1 are built.
    """
    wanted = SHOWN_BYTES + 1
    head = frame.serialize_padding_data() + bytes(frame.data[:wanted])
    if len(head) < wanted:
        head += b"\0" * min(frame.pad_length, wanted - len(head))
    return raw_data_repr(head[:wanted])


def _sample_frames() -> list[DataFrame]:
    frames = [DataFrame(1, data=data) for data in _SAMPLES]
    for pad_length in (0, 3, 40):
        for data in (b"", b"ab", bytes(range(30))):
            padded = DataFrame(1, data=data, pad_length=pad_length)
            padded.flags.add("PADDED")
            frames.append(padded)
    return frames


def _original() -> Callable[[bytes | None], str] | None:
    found = getattr(_frame, "_raw_data_repr", None)
    return found if callable(found) else None


def install() -> bool:
    """Use :func:`raw_data_repr` in hyperframe if it renders what hyperframe does.

    Returns:
        Whether it is installed (also when it already was).
    """
    if installed():
        return True
    original = _original()
    if original is None or getattr(DataFrame, "_body_repr", None) is None:
        return False
    if any(original(sample) != raw_data_repr(sample) for sample in _SAMPLES):
        return False
    if any(frame._body_repr() != data_body_repr(frame) for frame in _sample_frames()):
        return False
    _frame._raw_data_repr = raw_data_repr
    DataFrame._body_repr = data_body_repr  # type: ignore[assignment]
    return True


def installed() -> bool:
    """Whether hyperframe renders payloads and DATA frames with this module's functions."""
    return _original() is raw_data_repr and DataFrame._body_repr is data_body_repr
