"""kafka-gateway: a high-throughput HTTP gateway into Apache Kafka."""

__version__ = "0.1.0"
