"""Contract: GetServerInfo."""

from __future__ import annotations

import pytest

from bugless_core.model.backend import Capability, ModelBackend
from bugless_proto import v1


def _backend_class(request: pytest.FixtureRequest) -> type[ModelBackend] | None:
    marker = request.node.get_closest_marker("bugless_backend")
    return None if marker is None else marker.args[0]


class ServerInfoContract:
    """GetServerInfo tells clients what they are talking to.

    Pins down: the backend's registered name, a version, a schema version of at
    least 1, and capabilities that are exactly the backend class's declared
    ones (clients enable features by them, the suite deselects by them).
    """

    async def test_server_info_names_backend_and_schema(
        self, model: v1.ModelStub, request: pytest.FixtureRequest
    ) -> None:
        info = await model.get_server_info(v1.GetServerInfoRequest())
        assert info.backend
        assert info.version
        assert info.schema_version >= 1
        backend = _backend_class(request)
        if backend is not None:
            assert info.backend == backend.name

    async def test_capabilities_are_exactly_the_declared_ones(
        self, model: v1.ModelStub, request: pytest.FixtureRequest
    ) -> None:
        info = await model.get_server_info(v1.GetServerInfoRequest())
        known = {c.value for c in Capability}
        assert set(info.capabilities) <= known, "only capability names the suite knows"
        assert len(info.capabilities) == len(set(info.capabilities))
        backend = _backend_class(request)
        if backend is not None:
            assert set(info.capabilities) == {c.value for c in backend.capabilities}

    async def test_server_info_is_stable_between_calls(self, model: v1.ModelStub) -> None:
        first = await model.get_server_info(v1.GetServerInfoRequest())
        second = await model.get_server_info(v1.GetServerInfoRequest())
        assert first == second
