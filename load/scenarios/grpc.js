// gRPC straight to the services, no gateway: log in at auth (AUTH_ADDR,
// default 127.0.0.1:50051), then create, get and list orders at orders
// (ORDERS_ADDR, default 127.0.0.1:50052) at RATE per second (default 50)
// for DURATION (default 30s), with reflection (no proto files). Orders
// still calls payments and notifications through the gateway's internal
// listener. Thresholds: p95 < 250 ms, p99 < 500 ms, every call OK.
import grpc from 'k6/net/grpc';
import { check, fail } from 'k6';

const AUTH_ADDR = __ENV.AUTH_ADDR || '127.0.0.1:50051';
const ORDERS_ADDR = __ENV.ORDERS_ADDR || '127.0.0.1:50052';

export const options = {
  scenarios: {
    grpc: {
      executor: 'constant-arrival-rate',
      rate: Number(__ENV.RATE || 50),
      timeUnit: '1s',
      duration: __ENV.DURATION || '30s',
      preAllocatedVUs: 10,
      maxVUs: 100,
    },
  },
  thresholds: {
    grpc_req_duration: [`p(95)<${Number(__ENV.P95_MS || 250)}`, `p(99)<${Number(__ENV.P99_MS || 500)}`],
    checks: ['rate==1'],
  },
};

export function setup() {
  const client = new grpc.Client();
  client.connect(AUTH_ADDR, { plaintext: true, reflect: true });
  const email = `grpc-${Date.now()}@example.com`;
  const credentials = { email, password: 'correct horse battery' };
  const registered = client.invoke('platform.auth.v1.AuthService/Register', credentials);
  if (registered.status !== grpc.StatusOK) fail(`register: ${registered.error && registered.error.message}`);
  const login = client.invoke('platform.auth.v1.AuthService/Login', credentials);
  if (login.status !== grpc.StatusOK) fail(`login: ${login.error && login.error.message}`);
  client.close();
  return { token: login.message.accessToken };
}

const orders = new grpc.Client();
let connected = false;

export default function (data) {
  if (!connected) {
    orders.connect(ORDERS_ADDR, { plaintext: true, reflect: true });
    connected = true;
  }
  const params = { metadata: { authorization: `Bearer ${data.token}` } };
  const created = orders.invoke('platform.orders.v1.OrderService/CreateOrder', {
    items: [{ sku: 'mug-3', quantity: 1, unitPriceMinor: 700 }],
    currency: 'EUR',
    paymentMethod: 'pm_card_visa',
    requestId: `grpc-${__VU}-${__ITER}-${Date.now()}`,
  }, params);
  check(created, {
    'create OK': (r) => r.status === grpc.StatusOK,
    'paid': (r) => r.status === grpc.StatusOK && r.message.status === 'ORDER_STATUS_PAID',
  });
  if (created.status === grpc.StatusOK) {
    const got = orders.invoke('platform.orders.v1.OrderService/GetOrder', { orderId: created.message.id }, params);
    check(got, { 'get OK': (r) => r.status === grpc.StatusOK });
  }
  const listed = orders.invoke('platform.orders.v1.OrderService/ListOrders', { pageSize: 5 }, params);
  check(listed, { 'list OK': (r) => r.status === grpc.StatusOK });
}
