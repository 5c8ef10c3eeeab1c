"""Helpers shared by the test suites: Kafka round trips and Kafka's key partitioner."""
