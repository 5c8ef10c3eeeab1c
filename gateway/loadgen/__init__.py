"""``kafka-gateway loadgen``: a load generator for the gateway and any server of the same API."""
