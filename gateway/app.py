"""Process lifecycle: embedded broker, topics, producer, metadata, listener, graceful stop."""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any

from gateway.config import Config
from gateway.consume.pool import ConsumerPool
from gateway.errors import ConfigError
from gateway.kafka.metadata import MetadataCache
from gateway.kafka.producer import DEFAULT_PRODUCER_CONFIG, KafkaProducer
from gateway.log import flush_access_log
from gateway.server import Server

log = logging.getLogger("gateway")


def producer_config(cfg: Config, bootstrap: str) -> dict[str, Any]:
    conf: dict[str, Any] = dict(DEFAULT_PRODUCER_CONFIG)
    conf["bootstrap.servers"] = bootstrap
    if cfg.kafka_stats_interval > 0:
        # Broker states for /metrics (gateway.kafka.producer); -X statistics.interval.ms wins.
        conf["statistics.interval.ms"] = max(1, round(cfg.kafka_stats_interval * 1000))
    conf.update(cfg.producer_properties)
    return conf


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


def admin_config(cfg: Config, bootstrap: str) -> dict[str, Any]:
    """Connection settings shared with the producer (security, addresses), nothing else."""
    conf: dict[str, Any] = {"bootstrap.servers": bootstrap}
    for key, value in cfg.producer_properties.items():
        if key.startswith(("security.", "sasl.", "ssl.", "client.", "socket.", "broker.")):
            conf[key] = value
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


def main(cfg: Config) -> int:
    """Start the embedded broker (unless a cluster is given) and create topics, once; then
    serve in this process, or supervise ``--workers`` processes that do."""
    broker = None
    bootstrap = cfg.bootstrap_servers
    if bootstrap is None:
        from gateway.kafka.embedded import EmbeddedBroker

        host, port = cfg.embedded_broker
        broker = EmbeddedBroker(host, port)
        log.info(
            "starting the embedded broker on %s:%d; it keeps data in memory only: "
            "everything is lost when the gateway stops",
            host,
            port,
        )
        # On this thread: the broker is tied to the lifetime of the thread that starts it
        # (parent-death signal), and nothing is being served yet.
        broker.start()
        bootstrap = broker.bootstrap
    try:
        if cfg.topics and cfg.worker_slot is None:
            from confluent_kafka.admin import AdminClient

            create_topics(AdminClient(admin_config(cfg, bootstrap)), list(cfg.topics.items()))
        if cfg.workers > 1:
            from gateway.workers import Supervisor

            return Supervisor(cfg, bootstrap).run()
        import uvloop

        return uvloop.run(_serve(cfg, bootstrap))
    finally:
        if broker is not None:
            broker.stop()
            log.info("embedded broker stopped")


async def _serve(cfg: Config, bootstrap: str) -> int:
    loop = asyncio.get_running_loop()
    metadata = MetadataCache(admin_config(cfg, bootstrap), loop)
    try:
        producer = KafkaProducer(producer_config(cfg, bootstrap), loop)
    except (ValueError, TypeError) as exc:
        # librdkafka refused a property (a -X setting): say which, exit 2 like a bad flag.
        log.error("invalid Kafka producer configuration: %s", exc)
        metadata.close()
        return 2
    consumers = ConsumerPool(admin_config(cfg, bootstrap), loop, size=cfg.consumer_pool_size)
    server = Server(cfg, loop, producer, metadata)
    server.consumers = consumers
    info = await metadata.refresh()
    if info is None:
        log.warning("Kafka at %s is not reachable yet: produce requests answer 503 until it is", bootstrap)
    metadata.start()
    producer.start()
    addresses = await server.start()
    for host, port in addresses:
        log.info("listening on http://%s:%d (Kafka %s)", host, port, bootstrap)

    loop.add_signal_handler(signal.SIGUSR1, server.dump_state)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info(
        "stopping: /readyz answers 503, no new work, finishing in-flight records (up to %gs)",
        cfg.shutdown_timeout,
    )
    # The handlers stay: a second SIGTERM (a supervisor and a process-group kill both sending
    # one) must not cut the drain short.
    await server.shutdown(loop.time() + cfg.shutdown_timeout)
    producer.close()
    await consumers.close()
    metadata.close()
    log.info("stopped: %s", server.summary())
    flush_access_log()
    return 0
