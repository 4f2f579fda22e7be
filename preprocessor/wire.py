"""What arrives on the wire before any servicer sees it: undecodable bytes, missing credentials.

grpcio answers a request it cannot deserialize with INTERNAL ("Exception
deserializing request!"), which tells a camera integrator that the server is
broken when it is the request that is. The interceptor below swaps every
method's deserializer for one that never raises: bytes that are not the
method's message become an ``Undecodable`` marker, and the call is answered
INVALID_ARGUMENT with what was wrong, before any handler code runs. It applies
to every service on the server (Inspection, health, reflection), unary and
streamed requests alike.

The same interceptor checks the bearer token when one is configured
(``authorization: Bearer <token>`` metadata, compared in constant time): a
call without it is UNAUTHENTICATED and never reaches a handler.
"""
from __future__ import annotations

import hmac
from collections.abc import Callable, Iterator
from typing import Any

import grpc

AUTH_METADATA = "authorization"
MAX_SHOWN_ERROR = 200


class Undecodable:
    """Stands for a request message that could not be parsed."""

    def __init__(self, error: BaseException, size: int) -> None:
        self.error = error
        self.size = size

    def message(self, method: str) -> str:
        reason = str(self.error)[:MAX_SHOWN_ERROR] or type(self.error).__name__
        return (f"the {self.size}-byte request to {method} is not a valid protobuf message of that method "
                f"({reason}); check that the client uses the vialguard.v1 protos of this server")


def lenient(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None

    def parse(raw: bytes) -> Any:
        try:
            return deserializer(raw)
        except Exception as exc:  # DecodeError, invalid UTF-8 in a string field, recursion limit...
            return Undecodable(exc, len(raw))
    return parse


def _checked_stream(requests: Iterator[Any], context: grpc.ServicerContext, method: str) -> Iterator[Any]:
    for request in requests:
        if isinstance(request, Undecodable):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.message(method))
        yield request


class WireGuard(grpc.ServerInterceptor):
    """Undecodable requests -> INVALID_ARGUMENT; a configured token required on every call."""

    def __init__(self, token: str = "", exempt: tuple[str, ...] = ()) -> None:
        self._token = f"Bearer {token}".encode() if token else b""
        self._exempt = exempt  # full method names callable without a token (the health check of a probe)

    def _authorised(self, details: grpc.HandlerCallDetails) -> bool:
        if not self._token or details.method in self._exempt:
            return True
        given = next((v for k, v in (details.invocation_metadata or ()) if k == AUTH_METADATA), "")
        given = given.encode() if isinstance(given, str) else bytes(given)
        return hmac.compare_digest(given, self._token)

    def intercept_service(self, continuation: Callable[[grpc.HandlerCallDetails], Any],
                          details: grpc.HandlerCallDetails) -> Any:
        handler = continuation(details)
        if handler is None:
            return None  # unknown method: gRPC answers UNIMPLEMENTED
        method = details.method
        authorised = self._authorised(details)

        def guard(request: Any, context: grpc.ServicerContext) -> None:
            if not authorised:
                context.abort(grpc.StatusCode.UNAUTHENTICATED,
                              f"{method} needs the '{AUTH_METADATA}: Bearer <token>' metadata of this line; "
                              "the call was refused before anything was read")
            if isinstance(request, Undecodable):
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.message(method))

        if handler.unary_unary is not None:
            inner = handler.unary_unary

            def unary_unary(request: Any, context: grpc.ServicerContext) -> Any:
                guard(request, context)
                return inner(request, context)
            return handler._replace(unary_unary=unary_unary, request_deserializer=lenient(handler.request_deserializer))
        if handler.unary_stream is not None:
            inner_us = handler.unary_stream

            def unary_stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                guard(request, context)
                yield from inner_us(request, context)
            return handler._replace(unary_stream=unary_stream, request_deserializer=lenient(handler.request_deserializer))
        if handler.stream_unary is not None:
            inner_su = handler.stream_unary

            def stream_unary(requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
                guard(None, context)
                return inner_su(_checked_stream(requests, context, method), context)
            return handler._replace(stream_unary=stream_unary, request_deserializer=lenient(handler.request_deserializer))
        inner_ss = handler.stream_stream

        def stream_stream(requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
            guard(None, context)
            yield from inner_ss(_checked_stream(requests, context, method), context)
        return handler._replace(stream_stream=stream_stream, request_deserializer=lenient(handler.request_deserializer))
