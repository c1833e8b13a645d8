"""The OCPP bridge process: ``ws(s)://HOST:PORT/ocpp/{charge_point_id}``, OCPP 1.6J and 2.0.1.

Entry points for the ``flowbank`` CLI:

- :func:`serve_bridge` ``(settings, *, stop, reuse_port=False)``: run until ``stop`` is set;
- :func:`run_bridge` ``(settings, *, reuse_port=False) -> int``: the same with SIGINT/SIGTERM.

Several processes may serve one port (``reuse_port=True``, SO_REUSEPORT: the kernel spreads
connections); each needs its own ``FLOWBANK_BRIDGE_ID`` (it names the MQTT clients, the spool
and the claims in PG). Nothing here assumes a single instance: commands go through the shared
PG queue (see :mod:`ingest.command_channel`).

Subprotocols: ``ocpp2.0.1`` is preferred when offered, then ``ocpp1.6``. A charger that offers
none is taken as 1.6 (many 1.6 firmwares omit the header); one that offers only others gets the
handshake without a subprotocol and is then closed with 1002, as OCPP 2.0.1 asks.

Stopping: the listening socket closes, open connections get close code 1001 (going away), the
sessions publish their ``disconnected`` events, the command channel stops, and the publisher
flushes to the broker (or its spool) before the process exits.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import ssl
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Final

import psycopg
from psycopg_pool import AsyncConnectionPool
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.protocol import State
from websockets.typing import Subprotocol

from control.contract import OcppVersion
from control.settings import Settings
from ingest.auth import Authenticator
from ingest.capability_session import CapabilityPolicy
from ingest.command_channel import SESSION_EXPIRY_S, CommandChannel
from ingest.csms import BridgeContext, ChargerSession, TransactionIds, utc_now
from ingest.frame_log import FrameLog
from ingest.latency import STATS_FILE_ENV, StatsFile
from ingest.publisher import EventPublisher
from ingest.replies import AcceptAnyToken, AuthorizationPolicy
from ingest.validation import MAX_FRAME_BYTES
from warehouse.capability_store import CapabilityStore
from warehouse.command_queue import CommandQueue
from warehouse.registry import ChargerRegistry

log = logging.getLogger(__name__)

SUBPROTOCOLS: Final = {Subprotocol("ocpp2.0.1"): OcppVersion.V201, Subprotocol("ocpp1.6"): OcppVersion.V16}


@dataclass(frozen=True, slots=True)
class BridgeOptions:
    """Knobs that are not settings: defaults fit production; tests shorten the timers."""

    reuse_port: bool = False
    max_frame_bytes: int = MAX_FRAME_BYTES  # our limit: larger frames get a CALLERROR
    ws_max_size: int = 4 * MAX_FRAME_BYTES  # websockets closes the connection (1009) beyond this
    # permessage-deflate costs ~140 µs of CPU per 1 KB MeterValues round trip (measured, see
    # docs/benchmarks.md) to save bytes on a LAN-sized frame; a charger that offers it gets the
    # handshake without it (RFC 7692 lets the server decline). "deflate" turns it back on.
    compression: str | None = None
    ping_interval_s: float | None = 30.0
    ping_timeout_s: float | None = 30.0
    close_timeout_s: float = 5.0
    open_timeout_s: float = 20.0  # handshake incl. TLS and password check (scrypt queues in a storm)
    sweep_interval_s: float = 5.0
    transaction_id_block: int = 20
    pool_max_size: int = 8
    spool_dir: Path | None = None  # default: {data_dir}/spool/bridge-{bridge_id}
    command_session_expiry_s: int = SESSION_EXPIRY_S  # how long the broker keeps commands for us
    publisher_stop_timeout_s: float = 10.0
    # Benchmarks: frame-to-PUBACK latency histogram, dumped as JSON here at start, on SIGUSR1
    # and at stop (see ingest.latency; ``flowbank bridge`` reads FLOWBANK_BRIDGE_STATS_FILE).
    stats_file: Path | None = None
    # Raw OCPP frames kept per charger for the support console's timeline (0: none kept).
    frame_log_keep: int = 200
    # Charger capabilities (ingest/capability_session.py): asked once per boot, again when older
    # than max age; a charger that connects without booting is asked after the grace if need be.
    # False: never asked; profiles go out as commanded.
    learn_capabilities: bool = True
    capabilities: CapabilityPolicy = field(default_factory=CapabilityPolicy)


def select_subprotocol(connection: ServerConnection, offered: Sequence[Subprotocol]) -> Subprotocol | None:
    for name in SUBPROTOCOLS:
        if name in offered:
            return name
    return None


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """OCPP security profile 2: TLS with a server certificate (and Basic auth inside)."""
    if settings.bridge_tls_cert is None or settings.bridge_tls_key is None:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2  # OCPP security: TLS 1.2 or newer
    context.load_cert_chain(settings.bridge_tls_cert, settings.bridge_tls_key)
    return context


class Bridge:
    """One bridge process's server, sessions, command channel and publisher."""

    def __init__(self, settings: Settings, *, options: BridgeOptions | None = None,
                 clock: Callable[[], datetime] = utc_now, authorization: AuthorizationPolicy | None = None,
                 new_message_id: Callable[[], str] = lambda: str(uuid.uuid4())) -> None:
        self.settings = settings
        self.options = options or BridgeOptions()
        self._clock = clock
        self._authorization = authorization or AcceptAnyToken()
        self._new_message_id = new_message_id
        self.sessions: dict[str, ChargerSession] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._server: Server | None = None
        self._pool: AsyncConnectionPool | None = None
        self._publisher: EventPublisher | None = None
        self._channel: CommandChannel | None = None
        self._queue: CommandQueue | None = None
        self._ctx: BridgeContext | None = None
        self._frame_log: FrameLog | None = None
        self._stats = StatsFile(self.options.stats_file) if self.options.stats_file else None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the bridge is not started")
        port: int = next(iter(self._server.sockets)).getsockname()[1]
        return port

    def _spawn(self, work: Awaitable[None], what: str) -> None:
        async def guarded() -> None:
            try:
                await work
            except Exception:
                log.exception("background work failed: %s", what)

        task = asyncio.create_task(guarded())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def start(self) -> None:
        s, o = self.settings, self.options
        if o.ws_max_size <= o.max_frame_bytes:
            raise ValueError("ws_max_size must exceed max_frame_bytes, or oversize frames close the socket")
        self._pool = AsyncConnectionPool(s.pg_dsn.reveal(), min_size=1, max_size=o.pool_max_size, open=False,
                                         kwargs={"autocommit": True}, name=f"bridge-{s.bridge_id}")
        await self._pool.open(wait=True, timeout=15.0)
        registry = ChargerRegistry(self._pool)
        queue = self._queue = CommandQueue(self._pool, s.bridge_id)
        await queue.forget_presence()  # rows a crashed predecessor with our id left behind
        spool = o.spool_dir or s.data_dir / "spool" / f"bridge-{s.bridge_id}"
        self._publisher = EventPublisher(s.mqtt, client_id=f"flowbank-bridge-{s.bridge_id}", spool_dir=spool,
                                         on_acked=self._stats.on_acked if self._stats else None)
        self._publisher.start()
        if o.frame_log_keep > 0:
            self._frame_log = FrameLog(self._pool, bridge_id=s.bridge_id, keep=o.frame_log_keep)
            self._frame_log.start()
        self._ctx = BridgeContext(
            bridge_id=s.bridge_id, publisher=self._publisher, registry=registry, queue=queue,
            tx_ids=TransactionIds(registry.allocate_transaction_ids, o.transaction_id_block), clock=self._clock,
            new_message_id=self._new_message_id, heartbeat_interval_s=s.heartbeat_interval_s,
            response_timeout_s=s.ocpp_response_timeout_s, authorization=self._authorization, spawn=self._spawn,
            max_frame_bytes=o.max_frame_bytes, publish_at=self._publisher.publish, frame_log=self._frame_log,
            capability_keeper=CapabilityStore(self._pool, s.bridge_id) if o.learn_capabilities else None,
            capability_policy=o.capabilities,
        )
        self._channel = CommandChannel(
            s.mqtt, bridge_id=s.bridge_id, queue=queue, publisher=self._publisher, sessions=self.sessions,
            clock=self._clock, sweep_interval_s=o.sweep_interval_s,
            abandoned_after_s=2 * s.ocpp_response_timeout_s + 60.0,
            session_expiry_s=min(o.command_session_expiry_s, s.mqtt_session_expiry_s),
        )
        await self._channel.start()
        authenticator = Authenticator(registry, auto_register=s.bridge_auto_register)
        self._server = await serve(
            self._handle, s.bridge_host, s.bridge_port, subprotocols=list(SUBPROTOCOLS),
            select_subprotocol=select_subprotocol, process_request=authenticator, ssl=ssl_context(s),
            max_size=o.ws_max_size, compression=o.compression, ping_interval=o.ping_interval_s,
            ping_timeout=o.ping_timeout_s, close_timeout=o.close_timeout_s, open_timeout=o.open_timeout_s,
            reuse_port=o.reuse_port,
        )
        if self._stats is not None:
            asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, self.write_stats)
            self.write_stats()
        scheme = "wss" if s.bridge_tls_cert else "ws"
        log.info("bridge %s listening on %s://%s:%d/ocpp/{charge_point_id}", s.bridge_id, scheme,
                 s.bridge_host, self.port)

    async def stop(self) -> None:
        if self._server is not None:
            for session in self.sessions.values():
                if session.ws.state is State.OPEN:
                    session.close_reason = "bridge shutting down"
            self._server.close(close_connections=True)  # close code 1001 to every charger
            await self._server.wait_closed()
        if self._channel is not None:
            await self._channel.stop()
        if self._background:
            await asyncio.wait(set(self._background), timeout=5.0)
        if self._queue is not None:
            try:
                await self._queue.forget_presence()
            except Exception:
                log.exception("could not clear this bridge's presence rows")
        if self._publisher is not None:
            await asyncio.to_thread(self._publisher.stop, self.options.publisher_stop_timeout_s)
        if self._frame_log is not None:
            await self._frame_log.stop()
        if self._pool is not None:
            await self._pool.close()
        if self._stats is not None:
            asyncio.get_running_loop().remove_signal_handler(signal.SIGUSR1)
            self.write_stats()
        log.info("bridge %s stopped", self.settings.bridge_id)

    def write_stats(self) -> None:
        """Dump the latency histogram and the publisher's counters (bridge option ``stats_file``)."""
        if self._stats is None:
            return
        publisher = self._publisher.stats() if self._publisher is not None else None
        try:
            self._stats.write(bridge_id=self.settings.bridge_id, sessions=len(self.sessions),
                              published_acked=publisher.published_acked if publisher else 0,
                              pending=publisher.pending if publisher else 0)
        except OSError:
            log.exception("cannot write the stats file %s", self._stats.path)

    async def _handle(self, ws: ServerConnection) -> None:
        if self._ctx is None or self._queue is None:  # pragma: no cover - serve() starts after both
            raise RuntimeError("bridge not started")
        queue = self._queue
        charger_id = ws.username  # set by the Authenticator
        offered = ws.request.headers.get_all("Sec-WebSocket-Protocol") if ws.request else []
        if ws.subprotocol is None and offered:
            log.warning("%s offered only unsupported subprotocols %s; closing", charger_id, offered)
            await ws.close(1002, "no supported OCPP version offered")
            return
        version = SUBPROTOCOLS[ws.subprotocol] if ws.subprotocol else OcppVersion.V16
        session = ChargerSession(self._ctx, ws, charger_id, version)
        previous = self.sessions.get(charger_id)
        self.sessions[charger_id] = session
        if previous is not None:  # the charger reconnected before we noticed the old socket died
            previous.retire("replaced by a newer connection")
            self._spawn(previous.ws.close(1000, "replaced by a newer connection"), "close a stale socket")
        try:  # before the session runs, so a quick hang-up cannot delete it first
            await queue.mark_connected(charger_id, session.connected_at)
        except Exception:
            log.exception("%s: could not record presence (results may say expired instead of offline)",
                          charger_id)
        log.info("%s connected (OCPP %s) from %s", charger_id, version.value, ws.remote_address)
        try:
            await session.run()
        finally:
            if self.sessions.get(charger_id) is session:
                del self.sessions[charger_id]
                self._spawn(queue.mark_disconnected(charger_id, session.connected_at), "clear presence")
            log.info("%s disconnected", charger_id)


async def serve_bridge(settings: Settings, *, stop: asyncio.Event, reuse_port: bool = False,
                       options: BridgeOptions | None = None) -> None:
    """Run the bridge until ``stop`` is set, then shut it down cleanly."""
    opts = options or BridgeOptions()
    if reuse_port != opts.reuse_port:
        from dataclasses import replace

        opts = replace(opts, reuse_port=reuse_port)
    bridge = Bridge(settings, options=opts)
    try:
        await bridge.start()
        await stop.wait()
    finally:
        await bridge.stop()


def run_bridge(settings: Settings, *, reuse_port: bool = False) -> int:
    """Blocking: serve until SIGINT or SIGTERM. Returns the process exit code.

    ``FLOWBANK_BRIDGE_STATS_FILE`` (a benchmark knob, not a setting) turns on the latency stats
    file, see :class:`BridgeOptions`.
    """
    stats_file = os.environ.get(STATS_FILE_ENV)
    options = BridgeOptions(reuse_port=reuse_port, stats_file=Path(stats_file) if stats_file else None)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await serve_bridge(settings, stop=stop, reuse_port=reuse_port, options=options)

    try:
        asyncio.run(main())
    except OSError as exc:  # the port is taken, the TLS files are missing, ...
        log.error("bridge stopped: %s", exc)
        return 1
    except psycopg.Error as exc:
        log.error("bridge stopped: PostgreSQL at %s: %s", settings.pg_dsn_display, str(exc).strip()[:300])
        return 1
    return 0
