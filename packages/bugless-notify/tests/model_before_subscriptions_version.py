"""``bugless model serve`` as a release before the subscriptions' version answers.

The Model's own servicer, subclassed so that ListSavedSearchSubscriptions
answers as a Model before its ``version`` field (and the request's
``changed_after``) does: the request's ``changed_after`` is not read (a field
it does not know) and the reply carries no version (0); everything else is
the real server on the real database. Run as
``python model_before_subscriptions_version.py model serve ...``.
"""

from __future__ import annotations

from bugless_core.cli import main
from bugless_core.model import runner
from bugless_core.model.servicer import ModelServicer
from bugless_proto import v1


class ModelBeforeSubscriptionsVersion(ModelServicer):
    """The servicer whose subscription list knows no version."""

    async def list_saved_search_subscriptions(
        self, message: v1.ListSavedSearchSubscriptionsRequest
    ) -> v1.ListSavedSearchSubscriptionsResponse:
        """The whole page, whatever ``changed_after`` says, with no version."""
        message.changed_after = 0
        answer = await super().list_saved_search_subscriptions(message)
        answer.version = 0
        return answer


if __name__ == "__main__":
    runner.ModelServicer = ModelBeforeSubscriptionsVersion  # type: ignore[attr-defined]
    main()
