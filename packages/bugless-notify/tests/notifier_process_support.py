"""What the tests of ``bugless notify serve`` as a process share: people, and the mail they get.

The fixtures that make them (``people``, module-scoped, and ``notify_process``)
are in conftest.py; these are the types and helpers the test modules name.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

from notify_support import until_seeded

from bugless_proto import v1

if TYPE_CHECKING:
    from bugless_dev.stack import LocalStack
    from bugless_testing.smtp import ReceivedMail, SmtpSink


@dataclass
class People:
    """User ids by name, and their addresses."""

    ids: dict[str, str]

    def caller(self, name: str) -> v1.Caller:
        return v1.Caller(user_id=self.ids[name])

    @staticmethod
    def address(name: str) -> str:
        return f"{name}@example.test"


def addr(people: People, name: str) -> str:
    return f"{name}{people.ids['_tag']}@example.test"


def recipients(mails: list[ReceivedMail]) -> Counter[str]:
    return Counter(r for m in mails for r in m.recipients)


async def settle(sink: SmtpSink, count: int, seconds: float = 60.0) -> list[ReceivedMail]:
    """Wait for ``count`` mails, then a little longer for any that should not come."""
    mails = await sink.wait_for_async(count, seconds)
    await asyncio.sleep(2.0)
    return sink.mails if sink.mails else mails


async def until_notifier_seeded(
    stack: LocalStack, flags: list[str], search_id: int, user_id: str
) -> None:
    """Until ``notify_process`` (started with ``flags``) has seeded the subscription.

    See :func:`notify_support.until_seeded`: a change made before the seed
    is part of what it finds, not a new match.
    """
    schema = flags[flags.index("--schema") + 1]
    await until_seeded(stack.model_database_url, schema, search_id, user_id)
