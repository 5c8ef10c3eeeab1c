"""Process lifecycle: embedded broker, topics, producer, metadata, listener, graceful stop."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import signal
import socket
from typing import TYPE_CHECKING, Any

from gateway.config import Config
from gateway.consume.instances import InstanceRegistry
from gateway.consume.owners import InstanceOwners
from gateway.consume.pool import ConsumerPool
from gateway.consume.stream import StreamRegistry
from gateway.errors import ConfigError, StartError
from gateway.http.tls_listener import bind_sockets
from gateway.kafka.health import ClusterHealth
from gateway.kafka.metadata import ClusterInfo, MetadataCache
from gateway.kafka.producer import DEFAULT_PRODUCER_CONFIG, KafkaProducer
from gateway.log import flush_access_log
from gateway.produce.edge import Spooler
from gateway.produce.spool import Spool, SpoolError
from gateway.server import Server
from gateway.workers import PARENT_DEATH_SIGNAL, Lifeline, Supervisor

if TYPE_CHECKING:
    from gateway.kafka.keeper import BrokerKeeper

log = logging.getLogger("gateway")

# The ClusterHealth source of the embedded broker's keeper (gateway.kafka.health).
EMBEDDED_BROKER = "embedded-broker"


# librdkafka's consumer properties: given with -X (or in [kafka]) they configure the consumer
# instances (gateway.consume.instances, e.g. a shorter session.timeout.ms), not the producer
# (which would only warn that it ignores them). What an instance needs itself (group.id, its
# offset handling) is set by the instance and cannot be changed.
CONSUMER_PROPERTIES = frozenset({
    "session.timeout.ms", "heartbeat.interval.ms", "max.poll.interval.ms",
    "partition.assignment.strategy", "group.protocol", "group.remote.assignor",
    "coordinator.query.interval.ms", "auto.commit.interval.ms", "queued.min.messages",
    "queued.max.messages.kbytes", "fetch.wait.max.ms", "fetch.queue.backoff.ms",
    "fetch.message.max.bytes", "max.partition.fetch.bytes", "fetch.max.bytes", "fetch.min.bytes",
    "fetch.error.backoff.ms", "isolation.level", "check.crcs",
})


def producer_config(cfg: Config, bootstrap: str) -> dict[str, Any]:
    conf: dict[str, Any] = dict(DEFAULT_PRODUCER_CONFIG)
    conf["bootstrap.servers"] = bootstrap
    if cfg.kafka_stats_interval > 0:
        # Broker states for /metrics (gateway.kafka.producer); -X statistics.interval.ms wins.
        conf["statistics.interval.ms"] = max(1, round(cfg.kafka_stats_interval * 1000))
    # A produce never creates a topic (docs/api.md section 5). Without this, librdkafka's metadata
    # requests for the topics it produces to ask the broker to create them: an embedded broker
    # restarted empty would get its --topic topics auto-created (by Tansu: 4 partitions) before
    # its keeper creates them as configured. -X allow.auto.create.topics wins.
    conf["allow.auto.create.topics"] = False
    if cfg.spool_dir is not None:
        # With the disk spool, a record handed to librdkafka waits there until Kafka takes it
        # (in order, idempotently), never timing out into a 50003: new records go to the spool
        # meanwhile (gateway.produce.edge). -X message.timeout.ms wins.
        conf["message.timeout.ms"] = 0
    conf.update((k, v) for k, v in cfg.producer_properties.items() if k not in CONSUMER_PROPERTIES)
    return conf


def spool_directory(cfg: Config) -> str | None:
    """This process's spool directory: --spool-dir, or its worker-N subdirectory in a
    --workers worker (each process has its own spool; a directory is locked by its user)."""
    if cfg.spool_dir is None:
        return None
    if cfg.worker_slot is None:
        return cfg.spool_dir
    return os.path.join(cfg.spool_dir, f"worker-{cfg.worker_slot}")


async def _open_spooler(cfg: Config, producer: KafkaProducer) -> Spooler | None:
    directory = spool_directory(cfg)
    if directory is None:
        return None
    loop = asyncio.get_running_loop()
    spool = await loop.run_in_executor(None, functools.partial(
        Spool.open, directory, max_bytes=cfg.spool_max_bytes, fsync=cfg.spool_fsync))
    high = int(cfg.producer_properties.get("queue.buffering.max.messages", 100000))
    return Spooler(spool, producer, spool_after=cfg.spool_after, high_mark=max(1, high // 2))


def check_producer_config(cfg: Config) -> None:
    """librdkafka checks property names and values only when a client is made: make one (with
    no bootstrap servers it connects nowhere) so that a bad -X or [kafka] property stops the
    start with a message, before a broker or a listener is started."""
    from confluent_kafka import KafkaException, Producer

    conf = producer_config(cfg, "")
    del conf["bootstrap.servers"]
    conf.setdefault("log_level", 0)  # not the "no bootstrap.servers" warning
    try:
        Producer(conf)
    except KafkaException as exc:
        err = exc.args[0] if exc.args else exc
        text = err.str() if hasattr(err, "str") else str(err)
        raise ConfigError(f"Kafka producer properties (-X, GATEWAY_X, [kafka]): {text}") from None
    consumer = {k: v for k, v in cfg.producer_properties.items() if k in CONSUMER_PROPERTIES}
    if consumer:
        from confluent_kafka import Consumer

        try:
            Consumer({**consumer, "group.id": "kafka-gateway-check", "log_level": 0}).close()
        except KafkaException as exc:
            err = exc.args[0] if exc.args else exc
            text = err.str() if hasattr(err, "str") else str(err)
            raise ConfigError(f"Kafka consumer properties (-X, GATEWAY_X, [kafka]): {text}") from None


# librdkafka logging of the metadata AdminClient and the consumer pool's consumers: errors only
# when critical. While Kafka cannot be reached, each idle consumer's group machinery reconnects
# every reconnect.backoff.ms (10 "Connect ... failed" lines a second per consumer, 40 from the
# default pool) and the AdminClient adds its own; what these clients fail at reaches the log and
# the clients through the gateway (the embedded broker's exit, "metadata refresh failed", a
# consume's 503 message), and the producer, which has the same connection settings, still logs
# librdkafka's errors (security, addresses).
QUIET_CLIENT_CONFIG: dict[str, Any] = {"log_level": 2, "log.connection.close": False}


def admin_config(cfg: Config, bootstrap: str) -> dict[str, Any]:
    """Connection settings shared with the producer (security, addresses, reconnects), nothing
    else, and quiet librdkafka logging (``QUIET_CLIENT_CONFIG``); for the metadata cache, the
    consumer pool and topic creation. Reconnects back off to a second at most, as the
    producer's: the metadata listing is what notices that an unreachable Kafka is back."""
    conf: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "reconnect.backoff.max.ms": DEFAULT_PRODUCER_CONFIG["reconnect.backoff.max.ms"],
        **QUIET_CLIENT_CONFIG,
    }
    for key, value in cfg.producer_properties.items():
        if key.startswith(
            ("security.", "sasl.", "ssl.", "client.", "socket.", "broker.", "reconnect.")
        ):
            conf[key] = value
    return conf


def instance_config(cfg: Config, bootstrap: str) -> dict[str, Any]:
    """The client properties of every consumer instance, and of every consume stream's
    consumer: the connection settings shared with the producer (``admin_config``) and the
    consumer properties given with -X."""
    conf = admin_config(cfg, bootstrap)
    conf.update((k, v) for k, v in cfg.producer_properties.items() if k in CONSUMER_PROPERTIES)
    return conf


def create_topics(admin: Any, topics: list[tuple[str, int]], timeout: float = 15.0) -> None:
    """Create missing topics (blocking; runs on a worker thread at start-up)."""
    from confluent_kafka import KafkaError
    from confluent_kafka.admin import NewTopic

    existing = admin.list_topics(timeout=timeout).topics
    missing = [NewTopic(name, parts, replication_factor=-1) for name, parts in topics if name not in existing]
    for name, parts in topics:
        if name in existing and len(existing[name].partitions) != parts:
            log.warning(
                "topic %s exists with %d partitions (asked for %d): left as it is",
                name,
                len(existing[name].partitions),
                parts,
            )
    if not missing:
        return
    for name, fut in admin.create_topics(missing, request_timeout=timeout).items():
        try:
            fut.result(timeout)
            log.info("created topic %s", name)
        except Exception as exc:
            err = exc.args[0] if exc.args else None
            if getattr(err, "code", lambda: None)() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue
            raise RuntimeError(f"could not create topic {name}: {exc}") from exc


def create_topics_at(cfg: Config, bootstrap: str) -> None:
    """Create the ``--topic`` topics that are missing at ``bootstrap``; StartError if the cluster
    is unreachable or refuses one."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(admin_config(cfg, bootstrap))
    try:
        create_topics(admin, list(cfg.topics.items()))
    except Exception as exc:  # the cluster is unreachable, or refused a topic
        raise StartError(f"cannot create the topics at {bootstrap}: {exc}") from None
    finally:
        del admin  # destroyed now, not at exit: no client outlives the broker


def main(cfg: Config) -> int:
    """Start the embedded broker (unless a cluster is given) and create topics, once; then
    serve in this process, or supervise ``--workers`` processes that do. StartError when an
    address is taken (checked before anything is started) or the broker cannot start.

    The embedded broker is kept running by a ``BrokerKeeper`` (gateway.kafka.keeper) in this
    process, the supervisor's with ``--workers``: restarted with its topics when it dies."""
    # A --workers worker's supervisor: its parent now. (Had the supervisor died already, the
    # parent-death signal it set for us would have ended this process: see gateway.workers.)
    supervisor = os.getppid() if cfg.worker_slot is not None else None
    if cfg.worker_slot is None:
        # Before the broker: a listener port in use stops the start with nothing to undo.
        check_listen_address(cfg.listen, reuse_port=cfg.workers > 1)
    keeper = None
    bootstrap = cfg.bootstrap_servers
    if bootstrap is None:
        keeper = _start_embedded_broker(cfg)
        bootstrap = keeper.broker.bootstrap
    try:
        if cfg.topics and cfg.worker_slot is None and keeper is None:
            create_topics_at(cfg, bootstrap)  # the keeper creates them on the embedded broker
        if cfg.workers > 1:
            return Supervisor(cfg, bootstrap, keeper).run()
        import uvloop

        return uvloop.run(_serve(cfg, bootstrap, keeper, supervisor))
    finally:
        if keeper is not None:
            keeper.stop()
            log.info("embedded broker stopped")


def _start_embedded_broker(cfg: Config) -> BrokerKeeper:
    """The embedded broker started, its topics created, and kept running from now on."""
    from gateway.kafka.embedded import MEMORY_MB_PER_MILLION_RECORDS, AddressInUse, EmbeddedBroker
    from gateway.kafka.keeper import BrokerKeeper

    host, port = cfg.embedded_broker
    broker = EmbeddedBroker(host, port, storage=cfg.embedded_storage)
    setup = (lambda bootstrap: create_topics_at(cfg, bootstrap)) if cfg.topics else None
    keeper = BrokerKeeper(broker, setup)
    try:
        keeper.start()
    except AddressInUse:
        raise StartError(
            f"cannot start the embedded broker on {broker.bootstrap} (--embedded-broker): "
            "address already in use"
        ) from None
    except RuntimeError as exc:  # it exited or did not answer: its last lines say why
        raise StartError(f"cannot start the embedded broker: {exc}") from None
    except BaseException:  # e.g. Ctrl-C while it starts
        keeper.stop()
        raise
    if cfg.embedded_storage == "null":
        log.info(
            "embedded broker started on %s with null storage: it acknowledges every record and "
            "keeps none (its memory stays flat; fetches find no record, and the offsets in "
            "produce answers repeat); its topics are kept, in memory",
            broker.bootstrap,
        )
    else:
        log.info(
            "embedded broker started on %s; it keeps data in memory only, every record with no "
            "retention: its memory grows with every record (about %d MB per million 100-byte "
            "records) until the gateway stops, and everything is lost then (or when the broker "
            "dies: it is then started again, empty, with its topics); with --embedded-storage "
            "null it discards records instead",
            broker.bootstrap, MEMORY_MB_PER_MILLION_RECORDS,
        )
    return keeper


def _cannot_listen(host: str, port: int, exc: OSError) -> StartError:
    reason = os.strerror(exc.errno).lower() if exc.errno else str(exc)
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return StartError(f"cannot listen on {where} (--listen): {reason}")


def check_listen_address(address: tuple[str, int], *, reuse_port: bool) -> None:
    """StartError unless every address ``--listen`` names can be bound now, the way the
    listener binds it (SO_REUSEADDR; SO_REUSEPORT with --workers)."""
    host, port = address
    try:
        sockets = bind_sockets(host, port, reuse_port=reuse_port)
    except socket.gaierror as exc:
        raise StartError(f"cannot listen on {host}:{port} (--listen): {exc.strerror}") from None
    except OSError as exc:
        raise _cannot_listen(host, port, exc) from None
    for sock in sockets:
        sock.close()


FIRST_LISTING_WAIT = 1.0  # seconds the listener waits for the first metadata listing


async def _serve(
    cfg: Config, bootstrap: str, keeper: BrokerKeeper | None = None, supervisor: int | None = None
) -> int:
    """Serve until SIGTERM/SIGINT (or, in a --workers worker, until its supervisor is gone),
    then stop gracefully. ``keeper``: the embedded broker of this process; ``supervisor``: the
    pid of the --workers supervisor this worker serves for (its word on the embedded broker
    comes on the worker's lifeline, gateway.workers)."""
    loop = asyncio.get_running_loop()
    owners = _instance_owners(cfg)
    cluster = ClusterHealth()  # whether Kafka is reachable: what every source says
    metadata = MetadataCache(admin_config(cfg, bootstrap), loop, health=cluster)
    try:
        producer = KafkaProducer(producer_config(cfg, bootstrap), loop, health=cluster)
    except (ValueError, TypeError) as exc:
        # librdkafka refused a property (a -X setting): say which, exit 2 like a bad flag.
        log.error("invalid Kafka producer configuration: %s", exc)
        await _close_metadata(metadata)
        return 2
    try:
        spooler = await _open_spooler(cfg, producer)
    except (OSError, SpoolError, ValueError) as exc:
        producer.close()
        await _close_metadata(metadata)
        raise StartError(f"cannot open the spool (--spool-dir): {exc}") from None
    if spooler is not None:
        producer.attach_spooler(spooler)
        metadata.keep_stale = True
    consumers = ConsumerPool(admin_config(cfg, bootstrap), loop, size=cfg.consumer_pool_size)
    instances = InstanceRegistry(
        loop, instance_config(cfg, bootstrap),
        max_instances=cfg.max_consumer_instances, idle_timeout=cfg.consumer_instance_timeout,
        owners=owners,
    )
    server = Server(cfg, loop, producer, metadata, consumers, cluster, spooler, instances)
    streams = StreamRegistry(loop, instance_config(cfg, bootstrap), max_streams=cfg.max_consume_streams)
    server.ctx.streams = streams
    stop = asyncio.Event()
    broker = _BrokerNews(loop, cluster, metadata, consumers, stop, instances, streams, producer)
    lifeline = None
    orphaned = False

    def supervisor_gone(why: str) -> None:
        """A worker without its supervisor stops: the port is let go of at once (so nothing
        keeps serving it alone, or beside a new gateway), in-flight records finish."""
        nonlocal orphaned
        if orphaned:
            return
        orphaned = True
        log.error(
            "the supervisor (pid %s) is gone (%s): the listener is closed; finishing in-flight "
            "records (up to %gs), then stopping",
            supervisor, why, cfg.shutdown_timeout,
        )
        server.stop_listening()
        stop.set()

    def on_stop_signal() -> None:
        if supervisor is not None and os.getppid() != supervisor:
            supervisor_gone("this worker was left to another parent")
        stop.set()

    if keeper is not None:
        keeper.watch(broker.from_thread)
    try:
        # The first listing, for at most a second: a cluster that does not answer by then does
        # not hold the listener back (requests get 503 at once while Kafka is unreachable).
        try:
            info = await asyncio.wait_for(asyncio.shield(metadata.refresh()), FIRST_LISTING_WAIT)
        except TimeoutError:
            info = None
        if info is None:
            log.warning(
                "Kafka at %s is not reachable yet: produce requests %s until it is", bootstrap,
                "answer 503" if spooler is None else "are spooled",
            )
        metadata.start()
        producer.start()
        if spooler is not None:
            spooler.start(loop, metadata.partitions)
        if supervisor is not None:
            lifeline = Lifeline(loop, broker.changed, supervisor_gone)
            lifeline.start()  # what the supervisor said so far is known before we listen
        if not orphaned:
            try:
                addresses = await server.start()
            except OSError as exc:
                raise _cannot_listen(*cfg.listen, exc) from None
            scheme = "https" if cfg.tls_cert is not None else "http"
            for host, port in addresses:
                where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
                log.info("listening on %s://%s (Kafka %s)", scheme, where, bootstrap)

        loop.add_signal_handler(signal.SIGUSR1, server.dump_state)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_stop_signal)
        if supervisor is not None:
            # The parent-death signal gateway.workers gives each worker: sent when the thread
            # of the supervisor that started it ends (the supervisor's death, however it dies).
            loop.add_signal_handler(
                PARENT_DEATH_SIGNAL, supervisor_gone, "its parent-death signal came"
            )
        await stop.wait()
        if not orphaned:  # else said already (and nothing listens any more)
            log.info(
                "stopping: /readyz answers 503, no new work, finishing in-flight records (up to %gs)",
                cfg.shutdown_timeout,
            )
        # The handlers stay: a second SIGTERM (a supervisor and a process-group kill both
        # sending one) must not cut the drain short.
        if spooler is not None:
            # The drain is for the clients' records: the batch being forwarded gets half of it.
            await spooler.stop_forwarding(cfg.shutdown_timeout / 2)
        await server.shutdown(loop.time() + cfg.shutdown_timeout)
    finally:
        if keeper is not None:
            keeper.unwatch(broker.from_thread)
        if lifeline is not None:
            lifeline.close()
        if spooler is not None:
            # What was appended is made durable; forwarding stops (what it had handed to Kafka
            # and was not acknowledged is forwarded again at the next start: at least once).
            await spooler.stop()
        # Every Kafka client is closed before we return, and so before an embedded broker is
        # stopped: a client still connected would log each connection it then loses.
        producer.close()
        await consumers.close()
        await instances.close(0.0)  # (closed by the server's stop already, unless it failed)
        await streams.close(cfg.shutdown_timeout)
        # Waiting for a listing in progress (up to its timeout) matters only when an embedded
        # broker is stopped after us (its lost connections would be logged); against an
        # external cluster the stop does not wait for it.
        await _close_metadata(metadata, wait=keeper is not None or supervisor is not None)
    log.info("stopped: %s", server.summary())
    flush_access_log()
    return 0


def _instance_owners(cfg: Config) -> InstanceOwners | None:
    """A --workers worker's ownership records of consumer instances (gateway.consume.owners),
    after removing those a process that had its slot before left (their instances died with
    it); None in a gateway of one process."""
    if cfg.worker_run_dir is None or cfg.worker_slot is None:
        return None
    owners = InstanceOwners(cfg.worker_run_dir, cfg.worker_slot)
    try:
        removed = owners.clear()
    except OSError as exc:
        raise StartError(f"cannot read the run directory {cfg.worker_run_dir}: {exc}") from None
    if removed:
        log.info("%d consumer instances of the previous worker %d are gone", removed, cfg.worker_slot)
    return owners


class _BrokerNews:
    """What the embedded broker's keeper says (or, in a --workers worker, the supervisor's):
    while it is down, ClusterHealth has it down (503/50003 for what needs Kafka, /readyz 503),
    the consumer pool is renewed, the consumer instances closed and the consume streams ended
    (their consumers must not carry topic ids of the old broker into the new one:
    gateway.consume.pool); once it is up again, the producer is replaced (the new broker knows
    nothing of it) and the metadata cache learns the new broker's state at once."""

    RELEARN_INTERVAL = 0.5  # between metadata refreshes until one reaches the new broker
    RELEARN_ATTEMPTS = 20

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        cluster: ClusterHealth,
        metadata: MetadataCache,
        consumers: ConsumerPool,
        stop: asyncio.Event,
        instances: InstanceRegistry | None = None,
        streams: StreamRegistry | None = None,
        producer: KafkaProducer | None = None,
    ) -> None:
        self.loop = loop
        self.producer = producer
        self.cluster = cluster
        self.metadata = metadata
        self.consumers = consumers
        self.instances = instances
        self.stop = stop
        self.streams = streams
        self.was_down = False

    def from_thread(self, down: str | None) -> None:
        """The keeper's watcher: called on its thread; hands the news to the loop."""
        try:
            self.loop.call_soon_threadsafe(self.changed, down)
        except RuntimeError:  # the loop is closed: nobody serves any more
            pass

    def changed(self, down: str | None) -> None:
        if down is not None:
            if not self.was_down:
                self.was_down = True
                self.consumers.renew()
                if self.instances is not None:
                    self.instances.renew()
                if self.streams is not None:
                    # Their consumers know the old broker's topic ids too: they end (50003).
                    self.streams.end_all(f"Kafka is unreachable: {down}")
            self.cluster.mark_down(EMBEDDED_BROKER, down)
            return
        self.cluster.mark_up(EMBEDDED_BROKER)
        if self.was_down:
            self.was_down = False
            if self.producer is not None:
                # The new broker has no state of the idempotent producer: its records would
                # wait out message.timeout.ms (UNKNOWN_PRODUCER_ID) before a replacement.
                self.producer.renew("the embedded broker was restarted without its data")
            self._relearn(0)

    def _relearn(self, attempt: int) -> None:
        if self.stop.is_set() or self.was_down:
            return

        def done(fut: asyncio.Future[ClusterInfo | None]) -> None:
            if fut.result() is None and attempt < self.RELEARN_ATTEMPTS:
                self.loop.call_later(self.RELEARN_INTERVAL, self._relearn, attempt + 1)

        self.metadata.refresh().add_done_callback(done)


async def _close_metadata(metadata: MetadataCache, wait: bool = True) -> None:
    metadata.close()
    if wait:
        await metadata.wait_closed()
