"""The Model calls of one uncached web list page, for ``bench.search --web-page N``."""

from __future__ import annotations

import asyncio
import os
import time

from bench._search_floor import CALLER, PAGE_SIZE
from bugless_proto import v1

#: The web tier's list page (``/search?q=is:open``) asks the Model for these:
#: the page of summaries, the custom fields of each of the page's first 20
#: components (``bugless_web.custom_fields.fields_of_components``; cached
#: per component since web23, so this is a cache miss) and the viewer's
#: hotlists for the bulk-edit menu (cached per viewer for 5 s).
WEB_QUERY = "is:open"
WEB_FIELD_COMPONENTS = 20
WEB_MENU_HOTLISTS = 200


async def web_page_calls(stub: v1.ModelStub, search: v1.SearchIssuesRequest) -> dict[str, float]:
    """The Model calls of one uncached web list page; CPU seconds (this process) per part."""
    spent: dict[str, float] = {}
    started = time.process_time()
    page = await stub.search_issues(search)
    spent["search"] = time.process_time() - started
    components = sorted({i.component_id for i in page.issues} - {0})[:WEB_FIELD_COMPONENTS]
    started = time.process_time()
    await asyncio.gather(
        *(
            stub.list_custom_fields(v1.ListCustomFieldsRequest(caller=CALLER, component_id=c))
            for c in components
        )
    )
    spent[f"custom fields x{len(components)}"] = time.process_time() - started
    started = time.process_time()
    await stub.list_hotlists(
        v1.ListHotlistsRequest(
            caller=CALLER,
            member=CALLER.user_id,
            page=v1.PageRequest(page_size=WEB_MENU_HOTLISTS),
        )
    )
    spent["hotlists"] = time.process_time() - started
    return spent


async def measure_web_page(stub: v1.ModelStub, query: v1.StructuredQuery, pages: int) -> None:
    """Print the CPU ms (client and in-process Model) of each part of an uncached web page.

    ``query`` is :data:`WEB_QUERY` as the web tier structures it.
    """
    request = v1.SearchIssuesRequest(
        caller=CALLER, query=query, page=v1.PageRequest(page_size=PAGE_SIZE), summary=True
    )
    for _ in range(5):
        await web_page_calls(stub, request)
    totals: dict[str, float] = {}
    started = time.perf_counter()
    for _ in range(pages):
        for part, cpu in (await web_page_calls(stub, request)).items():
            totals[part] = totals.get(part, 0.0) + cpu
    wall = time.perf_counter() - started
    parts = " · ".join(f"{part} {cpu * 1000 / pages:.2f}" for part, cpu in totals.items())
    print(
        f"\nweb list page {WEB_QUERY!r} through gRPC, {pages} pages one after another: "
        f"CPU ms/page (client + Model) {sum(totals.values()) * 1000 / pages:.2f} ({parts}); "
        f"{wall * 1000 / pages:.2f} ms/page; load {os.getloadavg()[0]:.1f}",
        flush=True,
    )
