"""Downloads to one destination at once: one of them ends up there, whole.

Through the real API over mutual TLS, on the real Model. Each download
writes a temporary file of its own beside the destination, so two at once
never write into one file (they once shared ``.NAME.part``: a mix, or a
rename that found its file already renamed away).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import stat
from pathlib import Path

from api_support import ConnectAs, signed_in

#: Each file: many chunks, so the two downloads interleave.
SIZE = 4 * 1024 * 1024


async def test_two_downloads_to_one_destination_leave_one_of_them_whole(
    connect_as: ConnectAs, tmp_path: Path
) -> None:
    (robot,) = await signed_in(connect_as, "robot")
    component = await robot.create_component(f"Raced-{secrets.token_hex(3)}")
    issue = await robot.create_issue("two files, one destination", component.id)
    contents: dict[int, bytes] = {}
    for name in ("a.bin", "b.bin"):
        source = tmp_path / name
        source.write_bytes(secrets.token_bytes(SIZE))
        done = await robot.attach(issue.id, source)
        assert done.attachment is not None
        contents[done.attachment.id] = source.read_bytes()
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    target = downloads / "out.bin"
    umask = os.umask(0o027)
    try:
        for _ in range(3):
            await asyncio.gather(
                *(robot.download_attachment(attachment_id, target) for attachment_id in contents)
            )
            assert target.read_bytes() in contents.values()
            assert list(downloads.iterdir()) == [target]  # no temporary file left
    finally:
        os.umask(umask)
    # The mode any new file there gets (0o666 less the umask), not mkstemp's 0o600.
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
