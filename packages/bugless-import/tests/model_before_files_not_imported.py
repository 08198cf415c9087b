"""``bugless model serve`` as a release before ``ImportedEntry.files_not_imported`` serves.

The Model's own servicer, subclassed to drop that field (and the later
``relations_not_imported``) from every entry it is sent before anything
reads it, as the protobuf decoder of an earlier
release does with a field it does not know; everything else is the real
server on the real database. Run as
``python model_before_files_not_imported.py model serve ...``.
"""

from __future__ import annotations

from bugless_core.cli import main
from bugless_core.model import runner
from bugless_core.model.servicer import ModelServicer
from bugless_proto import v1


def _unread(request: v1.ImportIssueRequest) -> None:
    for entry in request.history:
        entry.files_not_imported = []
        entry.relations_not_imported = ""


class ModelBeforeFilesNotImported(ModelServicer):
    """The servicer, blind to ImportedEntry.files_not_imported and relations_not_imported."""

    async def import_issue(self, message: v1.ImportIssueRequest) -> v1.ImportIssueResponse:
        """ImportIssue of the earlier release: the field is unknown, so never read."""
        _unread(message)
        return await super().import_issue(message)

    async def import_issues(self, message: v1.ImportIssuesRequest) -> v1.ImportIssuesResponse:
        """ImportIssues of the earlier release: the field is unknown, so never read."""
        for item in message.issues:
            _unread(item)
        return await super().import_issues(message)


if __name__ == "__main__":
    runner.ModelServicer = ModelBeforeFilesNotImported  # type: ignore[attr-defined]
    main()
