"""Where an import's mapping points in bugless: components, hotlists, custom fields.

The mapping file names bugless components by path and maps labels to hotlists
or custom field values; these find (or create) them once per run, before any
issue is imported, so every ImportIssue carries ids.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from bugless_core.clients import call
from bugless_core.errors import NotFound
from bugless_import.mapping import Mapping
from bugless_proto import v1


class Components:
    """Source component -> component id, creating what is missing (not in a dry run)."""

    def __init__(self, model: v1.ModelStub, caller: v1.Caller, dry_run: bool) -> None:
        self.model, self.caller, self.dry_run = model, caller, dry_run
        self.created: list[str] = []
        self._ids: dict[str, int] = {}

    async def path_id(self, path: str) -> int:
        """The component at ``path`` (``A>B``), each missing level created (counted)."""
        if path in self._ids:
            return self._ids[path]
        parent = 0
        prefix: list[str] = []
        for name in [p.strip() for p in path.split(">") if p.strip()]:
            prefix.append(name)
            here = ">".join(prefix)
            if here in self._ids:
                parent = self._ids[here]
                continue
            try:
                found = await call(
                    self.model.get_component,
                    v1.GetComponentRequest(caller=self.caller, path=here),
                )
                parent = found.id
            except NotFound:
                self.created.append(here)
                if self.dry_run:
                    parent = -len(self.created)
                else:
                    made = await call(
                        self.model.create_component,
                        v1.CreateComponentRequest(caller=self.caller, parent_id=parent, name=name),
                    )
                    parent = made.id
            self._ids[here] = parent
        self._ids[path] = parent
        return parent

    def existing(self, path: str) -> int:
        """The component whose access list applies to ``path``'s issues (after :meth:`path_id`).

        The component itself; for one a dry run would create (it inherits
        its parent's access list), the nearest existing one above it; 0 when
        there is none, a component open to everyone signed in.
        """
        names = [p.strip() for p in path.split(">") if p.strip()]
        for end in range(len(names), 0, -1):
            found = self._ids.get(">".join(names[:end]), 0)
            if found > 0:
                return found
        return 0


class Labels:
    """Labels -> hotlists (found or created) and custom field values."""

    def __init__(self, model: v1.ModelStub, caller: v1.Caller, mapping: Mapping) -> None:
        self.model, self.caller, self.mapping = model, caller, mapping
        self.hotlists: dict[str, int] = {}
        self.fields: dict[int, dict[str, v1.CustomField]] = {}
        #: A label whose field a component lacks -> the issues it was met on.
        self._missing: dict[str, set[str]] = {}

    async def prepare(self, components: Iterable[int]) -> None:
        """Find or create the mapped hotlists; read the components' custom fields."""
        wanted = {t.hotlist for t in self.mapping.labels.values() if t.hotlist}
        if wanted:
            page = await call(
                self.model.list_hotlists,
                v1.ListHotlistsRequest(
                    caller=self.caller,
                    member=self.caller.user_id,
                    page=v1.PageRequest(page_size=500),
                ),
            )
            self.hotlists = {h.name: h.id for h in page.hotlists if h.name in wanted}
            for name in sorted(wanted - set(self.hotlists)):
                made = await call(
                    self.model.create_hotlist,
                    v1.CreateHotlistRequest(caller=self.caller, name=name),
                )
                self.hotlists[name] = made.id
        if any(t.field for t in self.mapping.labels.values()):
            for component_id in set(components):
                listed = await call(
                    self.model.list_custom_fields,
                    v1.ListCustomFieldsRequest(caller=self.caller, component_id=component_id),
                )
                self.fields[component_id] = {f.name.casefold(): f for f in listed.custom_fields}

    def __call__(
        self, component_id: int, labels: Sequence[str], external_id: str
    ) -> tuple[list[int], list[v1.CustomFieldValue]]:
        """The hotlists and custom field values ``labels`` of issue ``external_id`` map to.

        A label mapped to a field the component lacks is counted as unmapped
        once per issue, as the report says ("on N issues"): an issue's
        labels are looked up several times (at creation, now, at each change
        and move of its history), and counting each look-up overcounted.
        """
        hotlists: set[int] = set()
        values: dict[int, list[str]] = {}
        for label in labels:
            target = self.mapping.label(label, count=False)
            if target is None:
                continue
            if target.hotlist:
                hotlists.add(self.hotlists[target.hotlist])
                continue
            found = self.fields.get(component_id, {}).get(target.field.casefold())
            if found is None:
                self._count_missing(f"{label} (no field {target.field!r} here)", external_id)
                continue
            chosen = values.setdefault(found.id, [])
            if found.type is v1.CustomFieldType.ENUM_MULTI or not chosen:
                chosen.append(target.value)
        return sorted(hotlists), [
            v1.CustomFieldValue(field_id=fid, values=vals) for fid, vals in sorted(values.items())
        ]

    def _count_missing(self, unmapped: str, external_id: str) -> None:
        """Count ``unmapped`` on issue ``external_id``, the first time it is met there."""
        met = self._missing.setdefault(unmapped, set())
        if external_id not in met:
            met.add(external_id)
            self.mapping.unmapped[("labels", unmapped)] += 1
