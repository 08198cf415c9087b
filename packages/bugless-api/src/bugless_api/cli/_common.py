"""What every client command shares: connection settings, output, exit codes.

Connection settings come from flags, then ``BUGLESS_API``/``BUGLESS_CERT``/
``BUGLESS_KEY``/``BUGLESS_CA``/``BUGLESS_TIME_ZONE``, then the config file
(``~/.config/bugless/client.toml``, or ``BUGLESS_CLIENT_CONFIG``), then the
defaults: the order is :mod:`bugless_api._connection_settings`'s, which
:meth:`BuglessClient.from_config` follows too.

Exit codes scripts can rely on: 0 success, 1 an error reported by the server
(message on stderr), 2 bad usage or configuration, 3 not found, 4 conflict
(a stale version or a name that is taken).
"""

from __future__ import annotations

import contextlib
import datetime
import enum
import functools
import inspect
import json
import sys
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar, overload

import click

from bugless_api._connection_settings import SETTINGS, ConnectionSettings, connection_settings
from bugless_core import ids
from bugless_core.cli import EXIT_USAGE, exit_status_of
from bugless_core.errors import InvalidArgument

if TYPE_CHECKING:
    from bugless_api.cli._option_names import OptionNames, OptionNamesOf

F = TypeVar("F", bound=Callable[..., Any])


class IdParamType(click.ParamType[int]):
    """A command-line id, read by the one id parser (:func:`bugless_core.ids.parse_id`).

    ``click``'s ``int`` would take ``+301``, ``3_01`` and ``2**64 + 301``, and
    the last becomes issue 301 once encoded into an ``int64`` field; here
    each of them is a usage error (exit 2) that states the accepted range.
    """

    name = "id"

    def __init__(self, *, allow_zero: bool = False) -> None:
        """Accept 0 too when it means "none" (a top-level component's parent)."""
        self.allow_zero = allow_zero

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        """The id in ``value`` (already an int when it is a default)."""
        field = param.human_readable_name if param is not None else "id"
        try:
            if isinstance(value, int) and not isinstance(value, bool):
                return ids.check_id(value, field, allow_zero=self.allow_zero)
            return ids.parse_id(str(value).strip(), field, allow_zero=self.allow_zero)
        except InvalidArgument as exc:
            self.fail(exc.message.removeprefix(f"{field}: "), param, ctx)


def id_or_path(text: str) -> int | str:
    """A component reference: digits are an id (checked like :data:`ID`), else a path.

    Raises:
        click.BadParameter: digits that are no id (a usage error, exit 2).
    """
    if text.isascii() and text.isdigit():
        return ID.convert(text, None, None)
    return text


#: An id argument or option (1..2**63-1).
ID = IdParamType()
#: An id where 0 means "none".
ID_OR_ZERO = IdParamType(allow_zero=True)

#: Success. The other statuses the client commands exit with are
#: :data:`bugless_core.cli.EXIT_STATUSES`' (``EXIT_ERROR``, ``EXIT_USAGE``, ...):
#: commands import them from there, and choose one for an error with
#: :func:`bugless_core.cli.exit_status_of`.
EXIT_OK = 0


def resolve_config(options: dict[str, Any]) -> ConnectionSettings:
    """The connection settings, with ``options`` as the flags given; exit 2 if incomplete.

    Only values typed on the command line count as flags: click also fills
    an option from its variable (so ``--help`` and docs/cli.md name it), but
    which of a variable and the config file wins is decided in one place,
    :func:`bugless_api._connection_settings.connection_settings`.
    """
    context = click.get_current_context(silent=True)
    if context is not None:
        options = {
            name: value
            for name, value in options.items()
            if context.get_parameter_source(name) is click.ParameterSource.COMMANDLINE
        }
    try:
        return connection_settings(options, flags_are_options=True)
    except InvalidArgument as exc:
        fail(exc.message, EXIT_USAGE)


def client_options(fn: F) -> F:
    """Add --api/--cert/--key/--ca, --time-zone (as declared in SETTINGS) and --json."""
    fn = click.option(
        "--json", "as_json", is_flag=True, help="Print JSON (for scripts) instead of a table."
    )(fn)
    for setting in reversed(SETTINGS):
        if setting.name == "time_zone":
            text = (
                f"{setting.help} [env {setting.env}; default: time_zone in the config "
                "file, else this machine's zone, else UTC]."
            )
        else:
            text = f"{setting.help} [env {setting.env}]."
        fn = click.option(
            setting.flag,
            setting.name,
            envvar=setting.env,
            default=None,
            metavar="ZONE" if setting.name == "time_zone" else None,
            help=text,
        )(fn)
    return fn


def fail(message: str, code: int) -> NoReturn:
    """Print ``error: message`` to stderr and exit with ``code``."""
    click.secho(f"error: {message}", fg="red", err=True)
    sys.exit(code)


def run_with_client(
    options: dict[str, Any],
    work: Callable[[Any], Coroutine[Any, Any, object]],
    *,
    option_names: OptionNames | None = None,
) -> object:
    """Connect with the configured certificate, run ``work(client)``, map errors to exits.

    ``option_names`` (see :mod:`bugless_api.cli._option_names`) lets the
    error printed name the option that set a refused field rather than the
    field's wire path.
    """
    from bugless_api.cli._option_names import in_option_terms  # noqa: PLC0415
    from bugless_api.client import BuglessClient  # noqa: PLC0415
    from bugless_core import eventloop  # noqa: PLC0415
    from bugless_core.errors import BuglessError  # noqa: PLC0415

    config = resolve_config(options)

    async def main() -> object:
        try:
            client = BuglessClient(
                config.api,
                cert=config.cert,
                key=config.key,
                ca=config.ca,
                time_zone=config.time_zone,
            )
        except ValueError as exc:
            fail(f"--api: {exc}", EXIT_USAGE)
        except OSError as exc:
            fail(f"cannot read the TLS files: {exc}", EXIT_USAGE)
        async with client:
            return await work(client)

    try:
        return eventloop.run(main())
    except BuglessError as exc:
        message = in_option_terms(exc.message, exc.metadata.get("field"), option_names or {})
        fail(message, exit_status_of(exc, answered_by_service=True))


#: An ``async def fn(client, **params)`` client command.
AsyncCommand = Callable[..., Coroutine[Any, Any, object]]


@overload
def command(fn: AsyncCommand, /) -> Callable[..., None]: ...


@overload
def command(
    *, option_names: OptionNames | OptionNamesOf
) -> Callable[[AsyncCommand], Callable[..., None]]: ...


def command(
    fn: AsyncCommand | None = None,
    /,
    *,
    option_names: OptionNames | OptionNamesOf | None = None,
) -> Callable[..., None] | Callable[[AsyncCommand], Callable[..., None]]:
    """Turn ``async def fn(client, **params)`` into a click callback with client options.

    ``fn`` is told whether the output is JSON when it takes an ``as_json``
    parameter: a table of a few columns can ask the server for only those.
    ``@command(option_names=...)``: errors name the options (see
    :func:`run_with_client`); a function of the command's parameters gives
    the table when which option set a field depends on those given.
    """
    if fn is None:
        return functools.partial(_command, option_names=option_names)
    return _command(fn, option_names=option_names)


def _command(
    fn: AsyncCommand, *, option_names: OptionNames | OptionNamesOf | None
) -> Callable[..., None]:
    wants_json = "as_json" in inspect.signature(fn).parameters

    @functools.wraps(fn)
    def callback(**params: Any) -> None:
        options = {name: params.pop(name) for name in ("api", "cert", "key", "ca", "time_zone")}
        as_json = params.pop("as_json")
        if wants_json:
            params["as_json"] = as_json
        names = option_names(params) if callable(option_names) else option_names
        result = run_with_client(options, lambda client: fn(client, **params), option_names=names)
        emit(result, as_json=as_json)

    return callback


# ---- output ----


def is_id_field(name: str) -> bool:
    """Whether a JSON field holds ids: ``id``, ``*_id`` or ``*_ids``."""
    return name == "id" or name.endswith(("_id", "_ids"))


def to_plain(value: object, *, as_id: bool = False) -> object:
    """A message (or anything inside one) as JSON-ready Python values.

    Enum values are their short names (``P1``, ``FIXED``), times ISO 8601.
    Ids (fields named ``id``, ``*_id``, ``*_ids``) are strings: Snowflake ids
    exceed 2**53, so JavaScript and ``jq`` would round them as numbers. Other
    numbers (versions, counts) stay numbers.
    """
    import betterproto2  # noqa: PLC0415

    if isinstance(value, betterproto2.Message):
        raw = value.to_dict(
            output_format=betterproto2.OutputFormat.PYTHON,
            casing=betterproto2.Casing.SNAKE,
            include_default_values=True,
        )
        return to_plain(raw)
    if isinstance(value, dict):
        return {str(k): to_plain(v, as_id=is_id_field(str(k))) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_plain(v, as_id=as_id) for v in value]
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if as_id and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


@dataclass
class Table:
    """Rows for people, and the data for scripts (``--json``)."""

    headers: Sequence[str]
    rows: Sequence[Sequence[object]]
    data: object
    footer: str = ""


@dataclass
class Detail:
    """One record shown as ``field: value`` lines, and its data for ``--json``."""

    lines: Sequence[tuple[str, object]]
    data: object


@dataclass
class Text:
    """Free-form text for people (a history, say), and its data for ``--json``."""

    text: str
    data: object


def _cell(value: object) -> str:
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, list | tuple):
        return ",".join(_cell(v) for v in value)
    if value is None:
        return ""
    return str(value)


def emit(result: object, *, as_json: bool) -> None:
    """Print a command's result as a table/detail, or as JSON."""
    if as_json:
        data = result.data if isinstance(result, Table | Detail | Text) else result
        click.echo(json.dumps(to_plain(data), indent=2, sort_keys=True))
        return
    if isinstance(result, Table):
        cells = [[_cell(v) for v in row] for row in result.rows]
        widths = [
            max([len(h), *(len(row[i]) for row in cells)]) for i, h in enumerate(result.headers)
        ]
        click.echo(
            "  ".join(
                h.upper().ljust(w) for h, w in zip(result.headers, widths, strict=True)
            ).rstrip()
        )
        for row in cells:
            click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if result.footer:
            click.echo(result.footer)
    elif isinstance(result, Detail):
        width = max((len(name) for name, _ in result.lines), default=0)
        # A value's further lines (a description, a comment) stay in the value
        # column, so the names down the left still read as a list; an empty
        # value shows as "-", as a table's empty cell does.
        for name, value in result.lines:
            first, *rest = (_cell(value).rstrip("\n") or "-").splitlines() or ["-"]
            click.echo(f"{name.ljust(width)}  {first}".rstrip())
            for line in rest:
                click.echo(f"{'':{width}}  {line}".rstrip())
    elif isinstance(result, Text):
        if result.text:
            click.echo(result.text)
    elif result is not None:
        click.echo(_cell(result))


@contextlib.contextmanager
def server_usage_mistakes(*fields: str) -> Iterator[None]:
    """Report the server's InvalidArgument as bad usage (exit 2), like a bad flag.

    For what only the server can check but only the command line gets wrong:
    a query it cannot parse (the search language lives there), a hotlist
    rank's position (``-N`` is counted there). Scripts tell such a mistake
    from a failure of the service by the exit code.

    Args:
        fields: Only a refusal of these request fields (its ``field``
            metadata) is bad usage, for a request that also carries values
            the service may refuse (a saved search's readers: 1, as any
            refused value); none, every InvalidArgument of the block.
    """
    from bugless_core.errors import InvalidArgument as Invalid  # noqa: PLC0415

    try:
        yield
    except Invalid as exc:
        if fields and exc.metadata.get("field") not in fields:
            raise
        raise Invalid(exc.message, metadata={**exc.metadata, "origin": "client"}) from None
