"""Ending the persistent MQTT sessions a test created.

Our consumers keep persistent sessions (days of expiry) so nothing is lost while they are down.
A test that runs a pipeline or bridge under a unique id would leave a session behind that the
broker keeps filling with every event published afterwards; this ends it.
"""

from __future__ import annotations

import threading

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from control.settings import MqttEndpoint


def end_sessions(endpoint: MqttEndpoint, client_ids: list[str]) -> None:
    """Connect as each client with a clean start and no session expiry, then leave."""
    for client_id in client_ids:
        connected = threading.Event()
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        if endpoint.username:
            client.username_pw_set(endpoint.username, endpoint.password.reveal() or None)
        client.on_connect = lambda c, u, f, rc, p, done=connected: done.set()
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 0
        client.connect(endpoint.host, endpoint.port, keepalive=10, clean_start=True, properties=props)
        client.loop_start()
        connected.wait(10)
        client.disconnect()
        client.loop_stop()


def pipeline_client_ids(pipeline_id: str, partitions: int = 1) -> list[str]:
    return [f"flowbank-{pipeline_id}-{n}" for n in range(partitions)]


def bridge_client_ids(bridge_id: str) -> list[str]:
    return [f"flowbank-bridge-{bridge_id}", f"flowbank-bridge-{bridge_id}-cmd"]
