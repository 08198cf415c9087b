"""What each viewer may see of the Model's components, custom fields and hotlists, cached.

Every page shows some of these (the component picker and paths, the custom
fields of an issue's component, the viewer's hotlists in the menus), and the
Model's answer depends only on the viewer's principals (user id, groups,
admin: what its ACL filtering reads), so each is kept per principals for a
short, configured time, least recently used forgotten first, and filled with
one call however many requests miss it at once
(:mod:`bugless_web.single_flight`). Changes made through this replica drop
what they affect at once (the ``forget_*`` methods); other replicas catch up
within the TTL. :class:`bugless_web.backends.Backends` is one of these.
"""

from __future__ import annotations

import functools
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar, cast

from bugless_core.clients import call, every_page
from bugless_core.errors import NotFound
from bugless_core.limits import MAX_COMPONENT_PAGE_SIZE, MAX_PAGE_SIZE
from bugless_proto import v1
from bugless_web.settings import WebSettings
from bugless_web.single_flight import SingleFlight

if TYPE_CHECKING:
    from bugless_web.backends import Viewer

#: Most callers whose component tree is remembered at once (oldest forgotten first).
COMPONENT_CACHE_SIZE = 1_000

#: Most (caller principals, component) pairs whose custom fields are remembered at once.
FIELD_CACHE_SIZE = 4_000

#: Most viewers whose own hotlists are remembered at once (oldest forgotten first).
HOTLIST_CACHE_SIZE = 1_000

#: The most hotlists the bulk-edit and "add to hotlist" menus offer.
MENU_HOTLISTS = 200

#: Most values kept with one cached component tree (:meth:`ViewerCaches.from_components`).
TREE_DERIVED_SIZE = 256


T = TypeVar("T")

#: What the Model's component ACLs depend on: user id, sorted groups, admin.
_PrincipalsKey = tuple[str, tuple[str, ...], bool]
#: A cached field list: whose view, of which component.
_FieldsKey = tuple[_PrincipalsKey, int]


@dataclass(frozen=True)
class _ComponentTree:
    expires: float
    components: tuple[v1.Component, ...]
    paths: dict[int, str]
    #: Values made from this tree (:meth:`ViewerCaches.from_components`), gone with it.
    derived: dict[Hashable, object] = field(default_factory=dict)


class ViewerCaches:
    """The component tree, custom fields and hotlists of each viewer, read from ``model``."""

    def __init__(
        self,
        model: v1.ModelStub,
        settings: WebSettings,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Cache what ``model`` answers for ``settings``' TTLs, timed by ``clock``."""
        self._caches_model = model
        self._settings = settings
        self._clock = clock
        self._trees: OrderedDict[_PrincipalsKey, _ComponentTree] = OrderedDict()
        self._hotlists: OrderedDict[_PrincipalsKey, tuple[float, tuple[v1.Hotlist, ...]]] = (
            OrderedDict()
        )
        self._fields: OrderedDict[_FieldsKey, tuple[float, tuple[v1.CustomField, ...]]] = (
            OrderedDict()
        )
        self._all_fields: OrderedDict[_PrincipalsKey, tuple[float, tuple[v1.CustomField, ...]]] = (
            OrderedDict()
        )
        self._tree_loads: SingleFlight[_PrincipalsKey, _ComponentTree] = SingleFlight()
        self._hotlist_loads: SingleFlight[_PrincipalsKey, tuple[v1.Hotlist, ...]] = SingleFlight()
        self._field_loads: SingleFlight[_FieldsKey, tuple[v1.CustomField, ...]] = SingleFlight()
        self._all_field_loads: SingleFlight[_PrincipalsKey, tuple[v1.CustomField, ...]] = (
            SingleFlight()
        )

    async def components(self, viewer: Viewer) -> list[v1.Component]:
        """The whole component tree ``viewer`` may see, in path order, archived ones included.

        Archived components are listed (the tree page shows them, so their
        admins can find and unarchive them, and their paths need no extra
        call); pickers of components to put issues in leave them out.

        One paged ``ListComponents`` per caller principals (user id, groups,
        admin: what the Model's ACL filtering depends on), then reused for
        ``component_cache_seconds``; at most :data:`COMPONENT_CACHE_SIZE`
        principal sets are kept, least recently used forgotten first.

        Staleness is accepted: for up to ``component_cache_seconds`` a page may
        show a component's old path, template or archived state, and an ACL
        change may take that long to add or remove a component from someone's
        picker (the Model still checks every write against the ACL as it is
        now). Component changes made through this replica drop the cache at
        once (:meth:`forget_components`); other replicas catch up within the TTL.

        The returned list is the caller's own, but the messages in it are
        shared between requests: do not modify them.
        """
        return list((await self._component_tree(viewer)).components)

    async def from_components(
        self,
        viewer: Viewer,
        key: Hashable,
        make: Callable[[tuple[v1.Component, ...]], T],
    ) -> T:
        """``make(tree)`` of the tree :meth:`components` gives, made once per cached tree.

        For what a page derives from the whole tree on every view, such as the
        issue page's component picker (hundreds of options, ~4 % of the page's
        CPU when written per view): the value is kept with the cached tree, so
        it is never staler than the tree and is made again when the tree is
        fetched again. ``key`` names it among the values of one tree (at most
        :data:`TREE_DERIVED_SIZE`); do not modify what is returned.
        """
        tree = await self._component_tree(viewer)
        if key in tree.derived:
            return cast("T", tree.derived[key])
        value = make(tree.components)
        if len(tree.derived) >= TREE_DERIVED_SIZE:
            tree.derived.clear()
        tree.derived[key] = value
        return value

    async def component_paths(self, viewer: Viewer, component_ids: Iterable[int]) -> dict[int, str]:
        """``Platform>Storage`` for each component id (0 ignored), from :meth:`components`.

        An id missing from the cached tree (created since, or not visible to
        ``viewer``) costs one ``GetComponent``; one the Model does not show the
        viewer reads ``component N``.
        """
        wanted = sorted({c for c in component_ids if c})
        if not wanted:
            return {}
        known = (await self._component_tree(viewer)).paths
        found = {c: known[c] for c in wanted if c in known}
        for component_id in wanted:
            if component_id not in found:
                found[component_id] = await self._component_path(viewer, component_id)
        return found

    async def my_hotlists(self, viewer: Viewer) -> list[v1.Hotlist]:
        """The hotlists ``viewer`` is a member of (the menus of list and issue pages).

        Every search and issue page offers them, so they are kept per viewer
        (user id, groups, admin) for ``hotlist_cache_seconds``, at most
        :data:`HOTLIST_CACHE_SIZE` viewers, least recently used forgotten
        first. The viewer's own hotlist writes through this replica drop their
        entry at once (:meth:`forget_hotlists`), so someone who just created or
        renamed a hotlist sees it in the next page's menu; a hotlist someone
        else shares with them appears within the TTL. The messages are shared
        between requests: do not modify them.
        """
        key = _principals(viewer)
        cached = self._hotlists.get(key)
        if cached is not None and cached[0] > self._clock():
            self._hotlists.move_to_end(key)
            return list(cached[1])
        loaded = self._hotlist_loads.load(key, functools.partial(self._load_hotlists, viewer, key))
        return list(await loaded)

    async def _load_hotlists(self, viewer: Viewer, key: _PrincipalsKey) -> tuple[v1.Hotlist, ...]:
        generation = self._hotlist_loads.generation
        response = await call(
            self._caches_model.list_hotlists,
            v1.ListHotlistsRequest(
                caller=viewer.caller,
                member=viewer.caller.user_id,
                page=v1.PageRequest(page_size=MENU_HOTLISTS),
            ),
        )
        found = tuple(response.hotlists)
        keep = self._settings.hotlist_cache_seconds
        if keep > 0 and generation == self._hotlist_loads.generation:
            self._hotlists[key] = (self._clock() + keep, found)
            self._hotlists.move_to_end(key)
            while len(self._hotlists) > HOTLIST_CACHE_SIZE:
                self._hotlists.popitem(last=False)
        return found

    def forget_hotlists(self, viewer: Viewer) -> None:
        """Drop ``viewer``'s cached hotlists (after they created, edited or deleted one).

        A look-up already under way is not reused afterwards, and its answer,
        which may predate the change, is not kept.
        """
        key = _principals(viewer)
        self._hotlists.pop(key, None)
        self._hotlist_loads.forget(key)

    def forget_components(self) -> None:
        """Drop every cached component tree and field list (after a component changed here)."""
        self._trees.clear()
        self._tree_loads.forget()
        self.forget_custom_fields()

    async def custom_fields(self, viewer: Viewer, component_id: int) -> list[v1.CustomField]:
        """The custom fields that apply to ``component_id``'s issues (root's first; none for 0).

        Pages that only show fields (the issue page's form, the search page's
        bulk-edit menu) read them from the viewer's all-visible list filtered
        by the component's ancestry in the cached tree
        (:func:`bugless_web.custom_fields.fields_of_component`); a component
        whose ancestry the tree cannot give (under one the viewer cannot view,
        or created since the tree was read) is asked here, cached per (caller
        principals, component) for
        ``component_cache_seconds``, as the component tree is: a field defined
        or changed on another replica shows that late; one changed through
        this replica shows at once (:meth:`forget_custom_fields`). Writes and
        the fields' own admin page ask the Model every time
        (:func:`bugless_web.custom_fields.applicable_fields`), and the Model
        checks every value against the fields as they are now. The messages
        are shared between requests: do not modify them.
        """
        if not component_id:
            return []
        key = (_principals(viewer), component_id)
        cached = self._cached_fields(key)
        if cached is not None:
            return list(cached)
        # A list page asks for up to 20 components at once: one call per key.
        load = functools.partial(self._load_custom_fields, viewer, component_id, key)
        return list(await self._field_loads.load(key, load))

    def cached_custom_fields(
        self, viewer: Viewer, component_id: int
    ) -> tuple[v1.CustomField, ...] | None:
        """:meth:`custom_fields` when the cache holds them fresh, without awaiting; else None.

        A list page asks for up to 20 components, nearly always cached: one
        task each (what ``asyncio.gather`` makes of coroutines) cost more
        than the look-ups.
        """
        if not component_id:
            return ()
        return self._cached_fields((_principals(viewer), component_id))

    def _cached_fields(self, key: _FieldsKey) -> tuple[v1.CustomField, ...] | None:
        cached = self._fields.get(key)
        if cached is None or cached[0] <= self._clock():
            return None
        self._fields.move_to_end(key)
        return cached[1]

    async def _load_custom_fields(
        self, viewer: Viewer, component_id: int, key: _FieldsKey
    ) -> tuple[v1.CustomField, ...]:
        generation = self._field_loads.generation
        response = await call(
            self._caches_model.list_custom_fields,
            v1.ListCustomFieldsRequest(caller=viewer.caller, component_id=component_id),
        )
        found = tuple(response.custom_fields)
        keep = self._settings.component_cache_seconds
        if keep > 0 and generation == self._field_loads.generation:
            self._fields[key] = (self._clock() + keep, found)
            self._fields.move_to_end(key)
            while len(self._fields) > FIELD_CACHE_SIZE:
                self._fields.popitem(last=False)
        return found

    async def visible_custom_fields(self, viewer: Viewer) -> list[v1.CustomField]:
        """Every custom field that applies to a component ``viewer`` sees, each once, by id.

        Archived components count, as in :meth:`components`. One
        ``ListCustomFields`` with ``all_visible`` a page of
        :data:`~bugless_core.limits.MAX_PAGE_SIZE` fields, however large the
        tree (asking each leaf of the tree made thousands of calls on a large
        one), kept per caller principals for ``component_cache_seconds`` like
        the tree, and dropped with it. The messages are shared between
        requests: do not modify them.
        """
        key = _principals(viewer)
        cached = self._all_fields.get(key)
        if cached is not None and cached[0] > self._clock():
            self._all_fields.move_to_end(key)
            return list(cached[1])
        load = functools.partial(self._load_visible_fields, viewer, key)
        return list(await self._all_field_loads.load(key, load))

    async def _load_visible_fields(
        self, viewer: Viewer, key: _PrincipalsKey
    ) -> tuple[v1.CustomField, ...]:
        generation = self._all_field_loads.generation
        found: list[v1.CustomField] = []
        async for response in every_page(
            self._caches_model.list_custom_fields,
            v1.ListCustomFieldsRequest(caller=viewer.caller, all_visible=True),
            page_size=MAX_PAGE_SIZE,
        ):
            found.extend(response.custom_fields)
        keep = self._settings.component_cache_seconds
        if keep > 0 and generation == self._all_field_loads.generation:
            self._all_fields[key] = (self._clock() + keep, tuple(found))
            self._all_fields.move_to_end(key)
            while len(self._all_fields) > COMPONENT_CACHE_SIZE:
                self._all_fields.popitem(last=False)
        return tuple(found)

    def forget_custom_fields(self) -> None:
        """Drop every cached field list (after this replica defined, changed or deleted one).

        A look-up already under way is not reused afterwards, and its answer,
        which may predate the change, is not kept.
        """
        self._fields.clear()
        self._field_loads.forget()
        self._all_fields.clear()
        self._all_field_loads.forget()

    async def _component_path(self, viewer: Viewer, component_id: int) -> str:
        try:
            component = await call(
                self._caches_model.get_component,
                v1.GetComponentRequest(caller=viewer.caller, component_id=component_id),
            )
        except NotFound:
            return f"component {component_id}"
        return component.path

    async def _component_tree(self, viewer: Viewer) -> _ComponentTree:
        key = _principals(viewer)
        cached = self._trees.get(key)
        if cached is not None and cached.expires > self._clock():
            self._trees.move_to_end(key)
            return cached
        return await self._tree_loads.load(key, functools.partial(self._load_tree, viewer, key))

    async def _load_tree(self, viewer: Viewer, key: _PrincipalsKey) -> _ComponentTree:
        generation = self._tree_loads.generation
        found: list[v1.Component] = []
        async for response in every_page(
            self._caches_model.list_components,
            v1.ListComponentsRequest(caller=viewer.caller, parent_id=0, include_archived=True),
            page_size=MAX_COMPONENT_PAGE_SIZE,
        ):
            found.extend(response.components)
        tree = _ComponentTree(
            expires=self._clock() + self._settings.component_cache_seconds,
            components=tuple(found),
            paths={c.id: c.path for c in found},
        )
        if generation != self._tree_loads.generation:  # a component changed meanwhile
            return tree
        self._trees[key] = tree
        self._trees.move_to_end(key)
        while len(self._trees) > COMPONENT_CACHE_SIZE:
            self._trees.popitem(last=False)
        return tree


def _principals(viewer: Viewer) -> _PrincipalsKey:
    """What the Model's ACL filtering depends on: user id, sorted groups, admin."""
    caller = viewer.caller
    return (caller.user_id, tuple(sorted(caller.groups)), caller.admin)
