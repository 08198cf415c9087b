"""The real Model's GetIssue and SearchIssues over grpclib and over grpcio (``--model``).

    python -m bench._transport_model {grpclib|grpclib-bare|grpcio} READY DATABASE_URL CERT KEY CA

Both servers are one process holding one open ``PostgresBackend`` and the
product's ``ModelServicer`` over it (callers believed from the request, as
without an Authenticator: no identity assertion is verified on either side),
with mutual TLS and the ``web`` service identity required of the client, and
the garbage collector settled once listening, as ``bugless model serve`` does:

* ``grpclib``: :class:`~bugless_core.grpc.GrpcServiceRunner`, exactly what
  ``bugless model serve`` runs (corked transport, upb codec, the call tracker
  with its context variable, metrics and the ACCESS check; health and
  reflection registered);
* ``grpclib-bare``: the servicer's two methods on a bare ``CorkedServer`` doing
  what the grpcio adapter does (context variable, ACCESS check) and no more,
  so that the runner's own cost per call and the transport's can be told apart;
* ``grpcio``: a **bench-only adapter**, not a product design: ``grpc.aio``
  generic handlers for the two methods that decode with the upb codec, set
  the same :data:`~bugless_core.grpc._peer.CURRENT_CALL` context (the
  connection described once per ``context.peer()``, its identity from the
  certificate's URI SAN), check the method's ACCESS row, and await the
  servicer's own ``get_issue``/``search_issues``. No metrics, no health, no
  drain: what it saves is an upper bound of what a product switch would.

The client scenarios (``model_grpclib``, ``model_grpcio``) call the same
requests as the web tier: GetIssue of a random visible issue, or a 50-issue
summary page of ``is:open``, as ``user0042`` (group ``eng``).
"""

from __future__ import annotations

import asyncio
import random
import signal
import ssl
import sys
from pathlib import Path
from typing import Any

from bench import _dataset as data
from bench._load import Call, Close
from bench._transport_serve import ServerTls, run_corked_server, run_grpcio_server
from bugless_core import eventloop
from bugless_core.garbage_collector import settle_garbage_collector
from bugless_core.grpc import UpbCodec
from bugless_core.ready_file import write_ready_file
from bugless_proto import v1

#: Method name -> (request type, reply type, servicer attribute).
METHODS: dict[str, tuple[type[Any], type[Any], str]] = {
    "GetIssue": (v1.GetIssueRequest, v1.Issue, "get_issue"),
    "SearchIssues": (v1.SearchIssuesRequest, v1.SearchIssuesResponse, "search_issues"),
}
SEARCH = "is:open"
#: The Model servers compared: the product's runner, a bare grpclib server, grpcio.
KINDS = ("grpclib", "grpclib-bare", "grpcio")


def search_request() -> v1.SearchIssuesRequest:
    """The search page the web tier asks for: 50 summaries of ``is:open``."""
    import datetime  # noqa: PLC0415

    from bugless_core.search import parse_query, to_structured  # noqa: PLC0415

    caller = data.BENCH_CALLER
    return v1.SearchIssuesRequest(
        caller=caller,
        query=to_structured(
            parse_query(SEARCH), me=caller.user_id, users={}, today=datetime.date.today()
        ),
        page=v1.PageRequest(page_size=50),
        summary=True,
    )


def _request(method: str, ids: list[int], rng: random.Random) -> Any:
    if method == "GetIssue":
        return v1.GetIssueRequest(caller=data.BENCH_CALLER, issue_id=rng.choice(ids))
    return search_request()


# ---- clients ----


async def model_grpclib(params: dict[str, Any]) -> tuple[Call, Close]:
    """The Model called as the web tier calls it (``CorkedChannel``, ``v1.ModelStub``)."""
    from bugless_core.grpc import CorkedChannel, build_client_ssl_context  # noqa: PLC0415

    context = build_client_ssl_context(params["ca"], params["cert"], params["key"])
    channel = CorkedChannel("127.0.0.1", params["port"], ssl=context)
    stub = v1.ModelStub(channel)
    method, ids = params["method"], params["issue_ids"]
    rng = random.Random(params["client"])
    attribute = METHODS[method][2]

    async def call() -> Any:
        return await getattr(stub, attribute)(_request(method, ids, rng), timeout=30)

    async def close() -> None:
        channel.close()

    return call, close


async def model_grpcio(params: dict[str, Any]) -> tuple[Call, Close]:
    """The same calls through a grpc.aio channel, encoded and decoded with upb."""
    import grpc  # noqa: PLC0415

    codec = UpbCodec()
    method, ids = params["method"], params["issue_ids"]
    request_type, reply_type, _ = METHODS[method]
    pem: dict[str, bytes] = params["pem"]
    credentials = grpc.ssl_channel_credentials(pem["ca"], pem["key"], pem["cert"])
    channel = grpc.aio.secure_channel(
        f"127.0.0.1:{params['port']}", credentials, options=[("grpc.use_local_subchannel_pool", 1)]
    )

    def encode(message: Any) -> bytes:
        return codec.encode(message, request_type)

    def decode(data: bytes) -> Any:
        return codec.decode(data, reply_type)

    callable_ = channel.unary_unary(
        f"/bugless.v1.Model/{method}", request_serializer=encode, response_deserializer=decode
    )
    rng = random.Random(params["client"])

    async def call() -> Any:
        return await callable_(_request(method, ids, rng), timeout=30)

    async def close() -> None:
        await channel.close()

    return call, close


# ---- servers ----


async def _serve_grpclib(servicer: Any, tls: ServerTls, ready: Path, stop: Any) -> None:
    from bugless_core.grpc import GrpcServerSettings, GrpcServiceRunner  # noqa: PLC0415

    settings = GrpcServerSettings(
        host="127.0.0.1",
        port=0,
        tls_cert=tls.cert,
        tls_key=tls.key,
        client_ca=tls.ca,
        metrics_port=None,
        drain_seconds=0,
        grace_seconds=1,
    )
    runner = GrpcServiceRunner([servicer], settings, name="model")
    await runner.start()
    settle_garbage_collector()
    write_ready_file(ready, port=runner.port)
    await stop.wait()
    await runner.close()


async def _serve_grpclib_bare(servicer: Any, tls: ServerTls, ready: Path, stop: Any) -> None:
    """The servicer on a bare ``CorkedServer``: the adapter's work, without the runner."""
    from grpclib.const import Cardinality, Handler  # noqa: PLC0415
    from multidict import MultiDictProxy  # noqa: PLC0415

    from bugless_core.grpc._peer import CURRENT_CALL, CallContext, ConnectionRegistry  # noqa: PLC0415

    registry = ConnectionRegistry()

    def handler(name: str) -> Handler:
        request_type, reply_type, attribute = METHODS[name]
        allowed = type(servicer).ACCESS[name]
        full_name = f"/bugless.v1.Model/{name}"
        implementation = getattr(servicer, attribute)

        async def handle(stream: Any) -> None:
            connection = registry.connection_of(stream.peer)
            CURRENT_CALL.set(CallContext(full_name, connection, MultiDictProxy(stream.metadata)))
            if connection.identity not in allowed:
                raise RuntimeError("not allowed")
            request = await stream.recv_message()
            await stream.send_message(await implementation(request))

        return Handler(handle, Cardinality.UNARY_UNARY, request_type, reply_type)

    class Bare:
        def __mapping__(self) -> dict[str, Handler]:
            return {f"/bugless.v1.Model/{name}": handler(name) for name in METHODS}

    await run_corked_server([Bare()], tls, ready, stop)


class _GrpcioAdapter:
    """grpc.aio handlers calling the servicer's own methods (bench only)."""

    def __init__(self, servicer: Any) -> None:
        self.servicer = servicer
        self.codec = UpbCodec()
        self.connections: dict[str, Any] = {}

    def connection(self, context: Any) -> Any:
        from bugless_core.grpc import PeerConnection  # noqa: PLC0415

        peer = context.peer()
        known = self.connections.get(peer)
        if known is None:
            auth = context.auth_context()
            pem = next(iter(auth.get("x509_pem_cert", ())), b"").decode()
            uris = [
                name.decode()
                for name in auth.get("x509_subject_alternative_name", ())
                if name.startswith(b"spiffe://bugless/")
            ]
            identity = uris[0].removeprefix("spiffe://bugless/") if len(uris) == 1 else None
            known = self.connections[peer] = PeerConnection(
                id=len(self.connections) + 1,
                address=None,
                certificate=ssl.PEM_cert_to_DER_cert(pem) if pem else None,
                certificate_fields=None,
                identity=identity,
            )
        return known

    def handler(self, name: str) -> Any:
        import grpc  # noqa: PLC0415
        from grpclib.exceptions import GRPCError  # noqa: PLC0415
        from multidict import MultiDict, MultiDictProxy  # noqa: PLC0415

        from bugless_core.grpc._peer import CURRENT_CALL, CallContext  # noqa: PLC0415

        request_type, _, attribute = METHODS[name]
        allowed = type(self.servicer).ACCESS[name]
        full_name = f"/bugless.v1.Model/{name}"
        implementation = getattr(self.servicer, attribute)

        async def handle(request: Any, context: Any) -> Any:
            connection = self.connection(context)
            metadata = MultiDictProxy(MultiDict(context.invocation_metadata() or ()))
            CURRENT_CALL.set(CallContext(full_name, connection, metadata))
            if connection.identity not in allowed:
                await context.abort(grpc.StatusCode.PERMISSION_DENIED, "not allowed")
            try:
                return await implementation(request)
            except GRPCError as error:
                code = next(c for c in grpc.StatusCode if c.value[0] == error.status.value)
                await context.abort(code, error.message or "")

        return grpc.unary_unary_rpc_method_handler(
            handle,
            request_deserializer=lambda data: self.codec.decode(data, request_type),
            response_serializer=lambda message: self.codec.encode(message, type(message)),
        )


async def _serve_grpcio(servicer: Any, tls: ServerTls, ready: Path, stop: Any) -> None:
    adapter = _GrpcioAdapter(servicer)
    handlers = {name: adapter.handler(name) for name in METHODS}
    await run_grpcio_server("bugless.v1.Model", handlers, tls, ready, stop)


async def _main(kind: str, ready: Path, database_url: str, tls: ServerTls) -> None:
    from bench.seed import model_settings  # noqa: PLC0415
    from bugless_core.model.servicer import ModelServicer  # noqa: PLC0415
    from bugless_model_postgres import PostgresBackend  # noqa: PLC0415

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    backend = await PostgresBackend.open(model_settings(database_url, "bugless", pool=4))
    try:
        servicer = ModelServicer(backend)
        serve = {
            "grpclib": _serve_grpclib,
            "grpclib-bare": _serve_grpclib_bare,
            "grpcio": _serve_grpcio,
        }[kind]
        await serve(servicer, tls, ready, stop)
    finally:
        await backend.close()


def main() -> None:
    kind, ready, database_url, cert, key, ca = sys.argv[1:7]
    if kind not in KINDS:
        raise SystemExit(f"unknown server kind {kind!r}: one of {', '.join(KINDS)}")
    tls = ServerTls(Path(cert), Path(key), Path(ca))
    eventloop.run(_main(kind, Path(ready), database_url, tls))


if __name__ == "__main__":
    main()


# ---- the run (in the parent) ----


def run_model_rows(levels: list[int], seconds: float, repeat: int, issues: int) -> None:
    """Seed a throwaway PostgreSQL, serve it both ways, print CPU per call for each.

    Rows are interleaved (GetIssue and SearchIssues at each concurrency, grpclib
    then grpcio) and repeated; the table keeps the round with the least Model
    CPU per call.
    """
    import itertools  # noqa: PLC0415
    import tempfile  # noqa: PLC0415

    from bench._load import default_processes, run_load  # noqa: PLC0415
    from bench._services import CpuMeter, _postmaster_pid, load_average  # noqa: PLC0415
    from bench.seed import SeedOptions, seed_and_verify  # noqa: PLC0415
    from bench.transport import start_server_process  # noqa: PLC0415
    from bugless_dev.pki import LocalPki  # noqa: PLC0415
    from bugless_dev.postgres import start_postgres  # noqa: PLC0415
    from bugless_dev.processes import ServiceProcess  # noqa: PLC0415

    postgres = start_postgres()
    servers: dict[str, tuple[ServiceProcess, int]] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="bench-transport-model-") as temporary:
            directory = Path(temporary)
            url = postgres.create_database("transport_model")
            asyncio.run(seed_and_verify(url, "bugless", SeedOptions(issues=issues), check=False))
            issue_ids = asyncio.run(_visible_ids(url))
            pki = LocalPki.open(directory / "pki")
            server, client = pki.server_certificate(), pki.service_certificate("web")
            for kind in KINDS:
                tls = [str(server.cert), str(server.key), str(pki.ca_file)]
                servers[kind] = start_server_process(
                    "bench._transport_model", kind, [url, *tls], directory, name=f"model-{kind}"
                )
            postmaster = _postmaster_pid(url)
            pem = {
                "ca": pki.ca_file.read_bytes(),
                "cert": client.cert.read_bytes(),
                "key": client.key.read_bytes(),
            }
            base = {"issue_ids": issue_ids, "ca": str(pki.ca_file), "pem": pem}
            base |= {"cert": str(client.cert), "key": str(client.key)}
            ports = {kind: port for kind, (_, port) in servers.items()}
            print(eventloop.run(_same_answers(base, ports)), flush=True)
            rows: list[tuple[str, int, str, float, float, float, float, str]] = []
            for round_number in range(1, repeat + 1):
                print(f"model round {round_number}", flush=True)
                for method, concurrency, kind in itertools.product(METHODS, levels, KINDS):
                    process, port = servers[kind]
                    meter = CpuMeter({"model": process.pid, "postgres": postmaster})
                    params = {**base, "port": port, "method": method}
                    result = run_load(
                        f"bench._transport_model:model_{_client_of(kind)}",
                        params,
                        concurrency=concurrency,
                        processes=default_processes(concurrency),
                        seconds=seconds,
                        on_start=meter.start,
                    )
                    cpu = meter.stop()
                    calls = max(1, len(result.latencies))
                    if result.errors:
                        print(f"  {result.errors} failed calls, first: {result.first_error}")
                    row = (
                        method,
                        concurrency,
                        kind,
                        result.rate,
                        cpu["model"] / calls * 1e6,
                        cpu["postgres"] / calls * 1e6,
                        result.client_cpu / calls * 1e6,
                        load_average(),
                    )
                    rows.append(row)
                    print(
                        f"  {method} {kind} c={concurrency}: {row[3]:,.0f}/s, model {row[4]:.0f} "
                        f"µs, postgres {row[5]:.0f} µs, client {row[6]:.0f} µs, load {row[7]}",
                        flush=True,
                    )
            _print_model_table(rows)
    finally:
        for process, _ in servers.values():
            process.stop()
        postgres.stop()


async def _same_answers(base: dict[str, Any], ports: dict[str, int]) -> str:
    """Check that every server gives the same answers (the same issue, the same page)."""
    answers: dict[str, list[Any]] = {}
    for kind, port in ports.items():
        scenario = model_grpcio if _client_of(kind) == "grpcio" else model_grpclib
        for method in METHODS:
            call, close = await scenario({**base, "port": port, "method": method, "client": 0})
            answers.setdefault(method, []).append(await call())
            await close()
    for method, (first, *others) in answers.items():
        if any(other != first for other in others):
            raise RuntimeError(f"{method}: the servers gave different answers")
    page = answers["SearchIssues"][0]
    return f"same answers from every server; a page holds {len(page.issues)} issues"


def _client_of(kind: str) -> str:
    """Each server is called by its own kind of client (grpclib for both grpclib servers)."""
    return "grpcio" if kind == "grpcio" else "grpclib"


async def _visible_ids(url: str) -> list[int]:
    import asyncpg  # noqa: PLC0415

    conn = await asyncpg.connect(url, server_settings={"search_path": "bugless"})
    try:
        records = await conn.fetch(
            "SELECT i.id FROM issues i JOIN components c ON c.id = i.component_id "
            "WHERE c.viewers = '{}' ORDER BY random() LIMIT 2000"
        )
    finally:
        await conn.close()
    return [r["id"] for r in records]


def _print_model_table(rows: list[tuple[str, int, str, float, float, float, float, str]]) -> None:
    best: dict[tuple[str, int, str], tuple[str, int, str, float, float, float, float, str]] = {}
    for row in rows:
        key = row[:3]
        if key not in best or row[4] < best[key][4]:
            best[key] = row
    print(
        "| call | server | c | calls/s | CPU µs/call: model · postgres · client "
        "| model vs grpclib | load |"
    )
    print("|---|---|---|---|---|---|---|")
    for (method, concurrency, kind), row in best.items():
        base = best[(method, concurrency, "grpclib")][4]
        print(
            f"| {method} | {kind} | {concurrency} | {row[3]:,.0f} "
            f"| {row[4]:.0f} · {row[5]:.0f} · {row[6]:.0f} | {row[4] / base:.2f}x | {row[7]} |"
        )
