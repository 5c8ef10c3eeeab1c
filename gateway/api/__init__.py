"""The endpoints: one module per endpoint family, and ``dispatch`` (routing, authentication and
the ACL) in front of them.

``gateway.server`` builds one ``ApiContext`` (gateway.api.context: what the endpoints need, and
nothing else) and one ``Api`` (gateway.api.dispatch) whose ``dispatch`` the HTTP protocol calls
with each request head. The endpoints know HTTP (through the connection's request interface) and
the cores below them: the produce path (gateway.produce), the consume path (gateway.consume),
Kafka (gateway.kafka). Nothing below imports this package.
"""
