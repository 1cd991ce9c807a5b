// Shared steps of the load scenarios: sign up, log in, and calls that say
// which color served them. BASE_URL names the gateway (default
// http://127.0.0.1:8080).
import http from 'k6/http';
import { check, fail } from 'k6';

export const BASE_URL = __ENV.BASE_URL || 'http://127.0.0.1:8080';

const JSON_HEADERS = { 'content-type': 'application/json' };

// A fresh account and its bearer token.
export function signUp(prefix) {
  const email = `${prefix}-${Date.now()}-${Math.floor(Math.random() * 1e9)}@example.com`;
  const credentials = JSON.stringify({ email, password: 'correct horse battery' });
  const registered = http.post(`${BASE_URL}/v1/auth/register`, credentials, { headers: JSON_HEADERS });
  if (registered.status !== 200) fail(`register: ${registered.status} ${registered.body}`);
  const login = http.post(`${BASE_URL}/v1/auth/login`, credentials, { headers: JSON_HEADERS });
  if (login.status !== 200) fail(`login: ${login.status} ${login.body}`);
  return login.json('accessToken');
}

export function authed(token) {
  return { headers: { ...JSON_HEADERS, authorization: `Bearer ${token}` } };
}

export function listOrders(token) {
  const res = http.get(`${BASE_URL}/v1/orders?pageSize=5`, authed(token));
  check(res, { 'list orders 200': (r) => r.status === 200 });
  return res;
}

export function createOrder(token) {
  const body = JSON.stringify({
    items: [{ sku: 'load-1', quantity: 1, unitPriceMinor: 1999 }],
    currency: 'EUR',
    paymentMethod: 'pm_card_visa',
    requestId: `k6-${__VU}-${__ITER}-${Date.now()}`,
  });
  const res = http.post(`${BASE_URL}/v1/orders`, body, authed(token));
  check(res, { 'create order 200': (r) => r.status === 200 });
  return res;
}
