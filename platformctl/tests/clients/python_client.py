"""A client in a second language, generated from proto/ by protoc
(grpcio-tools), calling the platform through the gateway's gRPC listener.

Usage: python3 python_client.py GENERATED_DIR GATEWAY_ADDR
Prints one JSON line with what it saw; exits non-zero on the first
surprise, with a line that says what it was.
"""

import json
import sys
import uuid

sys.path.insert(0, sys.argv[1])
gateway = sys.argv[2]

import grpc  # noqa: E402

from platform_protos.auth.v1 import auth_pb2, auth_pb2_grpc  # noqa: E402
from platform_protos.orders.v1 import orders_pb2, orders_pb2_grpc  # noqa: E402


def fail(what):
    print(f"python client: {what}", file=sys.stderr)
    sys.exit(1)


channel = grpc.insecure_channel(gateway)
seen = {}

# Health, through the gateway, as a generic call (no stubs needed).
check = channel.unary_unary(
    "/grpc.health.v1.Health/Check",
    request_serializer=lambda _: b"",
    response_deserializer=lambda raw: raw,
)
seen["health"] = check(None, timeout=10).hex()

# Server reflection, both versions, asked to list services (field 7,
# list_services, empty): health must be among them for grpcurl to call it.
for version in ("v1", "v1alpha"):
    reflect = channel.stream_stream(
        f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo",
        request_serializer=lambda raw: raw,
        response_deserializer=lambda raw: raw,
    )
    answer = b"".join(reflect(iter([b"\x3a\x00"]), timeout=10))
    for service in (b"grpc.health.v1.Health", b"platform.orders.v1.OrderService"):
        if service not in answer:
            fail(f"reflection {version} does not list {service.decode()}: {answer!r}")
    seen[f"reflection_{version}"] = True

auth = auth_pb2_grpc.AuthServiceStub(channel)
email = f"py-{uuid.uuid4().hex[:12]}@example.com"
credentials = dict(email=email, password="correct horse battery")
auth.Register(auth_pb2.RegisterRequest(**credentials), timeout=10)
login = auth.Login(auth_pb2.LoginRequest(**credentials), timeout=10)
if login.token_type != "Bearer" or not login.access_token:
    fail(f"login answered {login!r}")
metadata = [("authorization", f"Bearer {login.access_token}")]

orders = orders_pb2_grpc.OrderServiceStub(channel)
created = orders.CreateOrder(
    orders_pb2.CreateOrderRequest(
        items=[orders_pb2.OrderItem(sku="book-1", quantity=2, unit_price_minor=1250)],
        currency="EUR",
        payment_method="pm_card_visa",
        request_id=str(uuid.uuid4()),
    ),
    metadata=metadata,
    timeout=30,
)
seen["created_status"] = orders_pb2.OrderStatus.Name(created.status)
seen["total_minor"] = created.total_minor
fetched = orders.GetOrder(
    orders_pb2.GetOrderRequest(order_id=created.id), metadata=metadata, timeout=10
)
if fetched.id != created.id or fetched.status != created.status:
    fail(f"GetOrder answered {fetched!r} for {created!r}")

# Errors arrive as gRPC status codes a generated client can branch on.
try:
    orders.GetOrder(
        orders_pb2.GetOrderRequest(order_id=str(uuid.uuid4())),
        metadata=metadata,
        timeout=10,
    )
    fail("GetOrder of an unknown order succeeded")
except grpc.RpcError as error:
    seen["unknown_order"] = error.code().name
try:
    orders.GetOrder(orders_pb2.GetOrderRequest(order_id=created.id), timeout=10)
    fail("GetOrder without a token succeeded")
except grpc.RpcError as error:
    seen["no_token"] = error.code().name

print(json.dumps(seen))
