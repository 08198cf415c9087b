"""Labels mapped to custom fields find the field by name as the Model compares names."""

from __future__ import annotations

import uuid

from import_support import ADMIN

from bugless_core.clients import call
from bugless_import.mapping import LabelTarget, Mapping
from bugless_import.targets import Labels
from bugless_proto import v1


async def test_a_label_names_its_field_by_case_folding(model: v1.ModelStub) -> None:
    """``field:ÄPFEL-STRASSE=…`` sets the field named "Äpfel-Straße" (``.lower()`` missed it)."""
    component = await call(
        model.create_component,
        v1.CreateComponentRequest(caller=ADMIN, name=f"Labels-{uuid.uuid4().hex[:8]}"),
    )
    field = await call(
        model.create_custom_field,
        v1.CreateCustomFieldRequest(
            caller=ADMIN,
            component_id=component.id,
            name="Äpfel-Straße",
            type=v1.CustomFieldType.ENUM,
            options=["Hoch", "Tief"],
        ),
    )
    mapping = Mapping(labels={"fruit": LabelTarget(field="ÄPFEL-STRASSE", value="Hoch")})
    labels = Labels(model, ADMIN, mapping)
    await labels.prepare([component.id])
    assert labels(component.id, ["fruit"], "labels:1") == (
        [],
        [v1.CustomFieldValue(field_id=field.id, values=["Hoch"])],
    )
    assert not mapping.unmapped
