// Smoke: one user walks through everything once a second for DURATION
// (default 10s): sign up, orders created, read, cancelled, notifications
// listed and streamed live. Any failure fails the run. CI runs it.
import { createOrder, cancelOrder, getOrder, listNotifications, listOrders, signUp, streamNotifications, thresholds } from '../lib.js';
import { sleep } from 'k6';

export const options = {
  scenarios: {
    walk: { executor: 'constant-vus', vus: 1, duration: __ENV.DURATION || '10s', exec: 'walk' },
    stream: { executor: 'per-vu-iterations', vus: 1, iterations: 1, exec: 'stream', maxDuration: '30s' },
  },
  thresholds: { ...thresholds(500, 1000, 0), 'checks{scenario:stream}': ['rate==1'] },
};

export function setup() {
  return { token: signUp('smoke') };
}

export function walk(data) {
  const created = createOrder(data.token);
  if (created.status === 200) {
    getOrder(data.token, created.json('id'));
    cancelOrder(data.token, created.json('id'));
  }
  listOrders(data.token);
  listNotifications(data.token);
  sleep(1);
}

export function stream(data) {
  streamNotifications(data.token, 3);
}
