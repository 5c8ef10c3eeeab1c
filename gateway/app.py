"""Process lifecycle: embedded broker, topics, producer, metadata, listener, graceful stop."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
from typing import Any

from gateway.config import Config
from gateway.consume.pool import ConsumerPool
from gateway.errors import ConfigError, StartError
from gateway.http.tls_listener import bind_sockets
from gateway.kafka.health import ClusterHealth
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
    """Connection settings shared with the producer (security, addresses, reconnects), nothing
    else. Reconnects back off to a second at most, as the producer's: the metadata listing is
    what notices that an unreachable Kafka is back."""
    conf: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "reconnect.backoff.max.ms": DEFAULT_PRODUCER_CONFIG["reconnect.backoff.max.ms"],
    }
    for key, value in cfg.producer_properties.items():
        if key.startswith(
            ("security.", "sasl.", "ssl.", "client.", "socket.", "broker.", "reconnect.")
        ):
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
    serve in this process, or supervise ``--workers`` processes that do. StartError when an
    address is taken (checked before anything is started) or the broker cannot start."""
    if cfg.worker_slot is None:
        # Before the broker: a listener port in use stops the start with nothing to undo.
        check_listen_address(cfg.listen, reuse_port=cfg.workers > 1)
    broker = None
    bootstrap = cfg.bootstrap_servers
    if bootstrap is None:
        from gateway.kafka.embedded import AddressInUse, EmbeddedBroker

        host, port = cfg.embedded_broker
        broker = EmbeddedBroker(host, port)
        # On this thread: the broker is tied to the lifetime of the thread that starts it
        # (parent-death signal), and nothing is being served yet.
        try:
            broker.start()
        except AddressInUse:
            raise StartError(
                f"cannot start the embedded broker on {broker.bootstrap} (--embedded-broker): "
                "address already in use"
            ) from None
        except RuntimeError as exc:  # it exited or did not answer: its last lines say why
            raise StartError(f"cannot start the embedded broker: {exc}") from None
        bootstrap = broker.bootstrap
        log.info(
            "embedded broker started on %s; it keeps data in memory only: everything is lost "
            "when the gateway stops",
            bootstrap,
        )
    try:
        if cfg.topics and cfg.worker_slot is None:
            from confluent_kafka.admin import AdminClient

            admin = AdminClient(admin_config(cfg, bootstrap))
            try:
                create_topics(admin, list(cfg.topics.items()))
            except Exception as exc:  # the cluster is unreachable, or refused a topic
                raise StartError(f"cannot create the topics at {bootstrap}: {exc}") from None
            finally:
                del admin  # destroyed now, not at exit: no client outlives the broker
        if cfg.workers > 1:
            from gateway.workers import Supervisor

            return Supervisor(cfg, bootstrap).run()
        import uvloop

        return uvloop.run(_serve(cfg, bootstrap))
    finally:
        if broker is not None:
            broker.stop()
            log.info("embedded broker stopped")


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


async def _serve(cfg: Config, bootstrap: str) -> int:
    loop = asyncio.get_running_loop()
    cluster = ClusterHealth()  # whether Kafka is reachable: what every source says
    metadata = MetadataCache(admin_config(cfg, bootstrap), loop, health=cluster)
    try:
        producer = KafkaProducer(producer_config(cfg, bootstrap), loop, health=cluster)
    except (ValueError, TypeError) as exc:
        # librdkafka refused a property (a -X setting): say which, exit 2 like a bad flag.
        log.error("invalid Kafka producer configuration: %s", exc)
        await _close_metadata(metadata)
        return 2
    consumers = ConsumerPool(admin_config(cfg, bootstrap), loop, size=cfg.consumer_pool_size)
    server = Server(cfg, loop, producer, metadata, consumers, cluster)
    try:
        info = await metadata.refresh()
        if info is None:
            log.warning(
                "Kafka at %s is not reachable yet: produce requests answer 503 until it is", bootstrap
            )
        metadata.start()
        producer.start()
        try:
            addresses = await server.start()
        except OSError as exc:
            raise _cannot_listen(*cfg.listen, exc) from None
        scheme = "https" if cfg.tls_cert is not None else "http"
        for host, port in addresses:
            where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            log.info("listening on %s://%s (Kafka %s)", scheme, where, bootstrap)

        loop.add_signal_handler(signal.SIGUSR1, server.dump_state)
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info(
            "stopping: /readyz answers 503, no new work, finishing in-flight records (up to %gs)",
            cfg.shutdown_timeout,
        )
        # The handlers stay: a second SIGTERM (a supervisor and a process-group kill both
        # sending one) must not cut the drain short.
        await server.shutdown(loop.time() + cfg.shutdown_timeout)
    finally:
        # Every Kafka client is closed before we return, and so before an embedded broker is
        # stopped: a client still connected would log each connection it then loses.
        producer.close()
        await consumers.close()
        await _close_metadata(metadata)
    log.info("stopped: %s", server.summary())
    flush_access_log()
    return 0


async def _close_metadata(metadata: MetadataCache) -> None:
    metadata.close()
    await metadata.wait_closed()
