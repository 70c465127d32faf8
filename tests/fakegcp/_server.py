from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import grpc
from google.longrunning import operations_pb2

__all__ = ["Call", "FakeGrpc", "done_operation"]


@dataclass(frozen=True)
class Call:
    service: str
    method: str
    request: Any  # the decoded proto-plus (or protobuf) request


def _codec(message_type: Any) -> tuple[Callable[[bytes], Any], Callable[[Any], bytes]]:
    """(deserialize, serialize) for a proto-plus class or a raw protobuf class."""
    if hasattr(message_type, "deserialize"):  # proto-plus
        return message_type.deserialize, message_type.serialize
    return message_type.FromString, lambda m: m.SerializeToString()


class FakeGrpc:
    def __init__(self) -> None:
        self._methods: dict[str, dict[str, grpc.RpcMethodHandler]] = {}
        self._server: grpc.Server | None = None
        self._channels: list[grpc.Channel] = []
        self._lock = threading.Lock()
        self.calls: list[Call] = []
        self.address: str | None = None

    def unary(
        self,
        service: str,
        method: str,
        request_type: Any,
        response_type: Any,
        handler: Callable[[Any, grpc.ServicerContext], Any],
    ) -> None:
        """Serve ``/service/method``: ``handler(request, context)`` returns the response."""
        deserialize, _ = _codec(request_type)
        _, serialize = _codec(response_type)

        def serve(request: Any, context: grpc.ServicerContext) -> Any:
            with self._lock:
                self.calls.append(Call(service, method, request))
            return handler(request, context)

        self._methods.setdefault(service, {})[method] = grpc.unary_unary_rpc_method_handler(
            serve, request_deserializer=deserialize, response_serializer=serialize
        )

    def requests(self, method: str) -> list[Any]:
        with self._lock:
            return [c.request for c in self.calls if c.method == method]

    def start(self) -> str:
        server = grpc.server(ThreadPoolExecutor(max_workers=4))
        for service, methods in self._methods.items():
            server.add_generic_rpc_handlers(
                (grpc.method_handlers_generic_handler(service, methods),)
            )
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        self._server, self.address = server, f"127.0.0.1:{port}"
        return self.address

    def channel(self) -> grpc.Channel:
        if self.address is None:
            raise RuntimeError("start the server first")
        channel = grpc.insecure_channel(self.address)
        self._channels.append(channel)
        return channel

    def stop(self) -> None:
        for channel in self._channels:
            channel.close()
        if self._server is not None:
            self._server.stop(grace=None)
            self._server = None

    def __enter__(self) -> FakeGrpc:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def done_operation(name: str, response: Any) -> operations_pb2.Operation:
    """A finished long-running operation holding ``response`` (proto-plus or protobuf)."""
    op = operations_pb2.Operation(name=name, done=True)
    pb = type(response).pb(response) if hasattr(type(response), "pb") else response
    op.response.Pack(pb)
    return op
