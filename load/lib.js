// The shared library of the load scenarios: what a user does through the
// gateway (sign up, log in, create, list, get and cancel orders, list and
// stream notifications), each call checked. BASE_URL names the gateway's
// REST listener (default http://127.0.0.1:8080), GRPC_ADDR its gRPC side
// (default: BASE_URL's host and port).
import http from 'k6/http';
import grpc from 'k6/net/grpc';
import { check, fail } from 'k6';
import { setTimeout } from 'k6/timers';

export const BASE_URL = __ENV.BASE_URL || 'http://127.0.0.1:8080';
export const GRPC_ADDR = __ENV.GRPC_ADDR || BASE_URL.replace(/^https?:\/\//, '');

const JSON_HEADERS = { 'content-type': 'application/json' };
const PASSWORD = 'correct horse battery';

// A fresh account and its bearer token.
export function signUp(prefix) {
  const email = `${prefix}-${Date.now()}-${Math.floor(Math.random() * 1e9)}@example.com`;
  const credentials = JSON.stringify({ email, password: PASSWORD });
  const registered = http.post(`${BASE_URL}/v1/auth/register`, credentials, { headers: JSON_HEADERS });
  if (registered.status !== 200) fail(`register: ${registered.status} ${registered.body}`);
  const login = http.post(`${BASE_URL}/v1/auth/login`, credentials, { headers: JSON_HEADERS });
  if (login.status !== 200) fail(`login: ${login.status} ${login.body}`);
  return login.json('accessToken');
}

// `count` accounts for setup(); each sign-up costs two password hashes.
export function signUpMany(prefix, count) {
  const tokens = [];
  for (let i = 0; i < count; i++) tokens.push(signUp(`${prefix}${i}`));
  return tokens;
}

export function authed(token, tags) {
  return { headers: { ...JSON_HEADERS, authorization: `Bearer ${token}` }, tags };
}

export function listOrders(token) {
  const res = http.get(`${BASE_URL}/v1/orders?pageSize=5`, authed(token, { name: 'list orders' }));
  check(res, { 'list orders 200': (r) => r.status === 200 });
  return res;
}

export function createOrder(token) {
  const body = JSON.stringify({
    items: [{ sku: 'lamp-5', quantity: 1, unitPriceMinor: 1999 }],
    currency: 'EUR',
    paymentMethod: 'pm_card_visa',
    requestId: `k6-${__VU}-${__ITER}-${Date.now()}`,
  });
  const res = http.post(`${BASE_URL}/v1/orders`, body, authed(token, { name: 'create order' }));
  check(res, { 'create order 200': (r) => r.status === 200 });
  return res;
}

export function getOrder(token, id) {
  const res = http.get(`${BASE_URL}/v1/orders/${id}`, authed(token, { name: 'get order' }));
  check(res, { 'get order 200': (r) => r.status === 200 });
  return res;
}

// Cancelling a paid order refunds it: CANCELLED either way.
export function cancelOrder(token, id) {
  const res = http.post(`${BASE_URL}/v1/orders/${id}:cancel`, '{}', authed(token, { name: 'cancel order' }));
  check(res, {
    'cancel order 200': (r) => r.status === 200,
    'cancelled': (r) => r.status === 200 && r.json('status') === 'ORDER_STATUS_CANCELLED',
  });
  return res;
}

export function listNotifications(token) {
  const res = http.get(`${BASE_URL}/v1/notifications?pageSize=5`, authed(token, { name: 'list notifications' }));
  check(res, { 'list notifications 200': (r) => r.status === 200 });
  return res;
}

// One iteration of a user, by weight: mostly reads, some orders, a few
// cancellations and notification lists.
export function journey(token) {
  const dice = Math.random();
  if (dice < 0.55) return listOrders(token);
  if (dice < 0.75) {
    const created = createOrder(token);
    if (created.status === 200 && Math.random() < 0.5) getOrder(token, created.json('id'));
    return created;
  }
  if (dice < 0.85) {
    const created = createOrder(token);
    // An order still being charged (its payment is retried, e.g. while
    // payments restarts) cannot be cancelled yet: the API says so with a
    // 400 and the client waits; a polite client cancels only a settled one.
    if (created.status === 200 && created.json('status') !== 'ORDER_STATUS_PENDING') {
      cancelOrder(token, created.json('id'));
    }
    return created;
  }
  return listNotifications(token);
}

// Opens the live notification stream over gRPC (through the gateway, with
// reflection), creates an order, and checks that its notification arrives
// on the stream within `seconds`.
export function streamNotifications(token, seconds) {
  const client = new grpc.Client();
  client.connect(GRPC_ADDR, { plaintext: true, reflect: true, timeout: '5s' });
  const stream = new grpc.Stream(client, 'platform.notifications.v1.NotificationService/StreamNotifications', {
    metadata: { authorization: `Bearer ${token}` },
  });
  let received = 0;
  stream.on('data', () => { received += 1; });
  stream.on('error', (e) => {
    // Closing the client at the end cancels the stream: that is expected.
    if (!String(e && e.message).includes('canceled')) check(null, { 'stream without error': () => false });
  });
  stream.write({});
  stream.end();
  setTimeout(() => createOrder(token), 300);
  setTimeout(() => {
    check(received, { 'notification streamed': (n) => n > 0 });
    client.close();
  }, seconds * 1000);
}

// Thresholds every scenario shares, from the environment: P95_MS, P99_MS
// and MAX_ERROR_RATE (a fraction), with the scenario's defaults.
export function thresholds(p95, p99, errors) {
  return {
    http_req_duration: [
      `p(95)<${Number(__ENV.P95_MS || p95)}`,
      `p(99)<${Number(__ENV.P99_MS || p99)}`,
    ],
    http_req_failed: [`rate<=${Number(__ENV.MAX_ERROR_RATE || errors)}`],
    checks: [`rate>=${1 - Number(__ENV.MAX_ERROR_RATE || errors)}`],
  };
}
