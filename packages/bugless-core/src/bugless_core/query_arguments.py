"""Commands whose arguments are search queries, which may start with ``-``.

A query's first term is often a negation: ``bugless issue list "-a:none
is:open"``. Click reads any argument that starts with ``-`` as options, so
that was "No such option '-a'", and ``--`` (the usual way out) also ends the
options, so ``bugless issue list -- -a:none --limit 5`` failed on ``--limit``.
:class:`QueryCommand` reads such an argument as the query it is: one that
starts with a single ``-`` and is no option of the command (an option's value,
a known short option with its value, ``-h`` or a cluster of known flags, stays
what it was).
"""

from __future__ import annotations

import click

#: Characters no option name has and many query terms do (``-a:none``, ``-(a OR b)``).
_QUERY_CHARACTERS = frozenset(':<>=()"') | frozenset(" \t\n")


class QueryCommand(click.Command):
    """A command whose positional arguments may be queries starting with ``-`` (see the module)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """Move queries that look like options after a ``--``, keeping every other argument."""
        if "--" in args:
            return super().parse_args(ctx, args)
        options = [p for p in self.get_params(ctx) if isinstance(p, click.Option)]
        names = {name for o in options for name in (*o.opts, *o.secondary_opts)}
        takes_value = {name for o in options if not o.is_flag and not o.count for name in o.opts}
        shorts = {name for name in names if len(name) == 2 and not name.startswith("--")}
        value_shorts = shorts & takes_value
        flag_shorts = shorts - takes_value
        kept: list[str] = []
        queries: list[str] = []
        index = 0
        while index < len(args):
            arg = args[index]
            if arg in takes_value:
                kept += args[index : index + 2]
                index += 2
                continue
            if _is_query(arg, names, value_shorts, flag_shorts):
                queries.append(arg)
            elif queries and not arg.startswith("-"):
                # A positional after a moved query keeps its place after it.
                queries.append(arg)
            else:
                kept.append(arg)
            index += 1
        moved: list[str] = [*kept, "--", *queries] if queries else kept
        return super().parse_args(ctx, moved)


def _is_query(arg: str, names: set[str], value_shorts: set[str], flag_shorts: set[str]) -> bool:
    """Whether ``arg`` is a query starting with ``-`` rather than an option of the command.

    Click reads ``-xyz`` as short options: ``-x`` and its value ``yz`` when
    ``-x`` takes one, else the flags ``-x``, ``-y`` and ``-z``. Only then is
    it options; a negated word whose first letter alone is a flag (``-hotfix``
    beside ``-h``) is a query.
    """
    if not arg.startswith("-") or arg.startswith("--") or arg == "-":
        return False
    if arg.split("=", 1)[0] in names:
        return False
    if any(ch in _QUERY_CHARACTERS for ch in arg):
        return True
    if arg[:2] in value_shorts:
        return False
    return not all(f"-{ch}" in flag_shorts for ch in arg[1:])
