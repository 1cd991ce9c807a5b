// Steady load: a constant arrival rate of user journeys (RATE per second,
// default 50, for DURATION, default 2m) by USERS users (default 20), plus
// STREAMS users (default 2) holding live notification streams. Thresholds: p95 < 250 ms,
// p99 < 500 ms, at most 0.1% failed (P95_MS, P99_MS, MAX_ERROR_RATE).
import { journey, signUpMany, streamNotifications, thresholds } from '../lib.js';

const USERS = Number(__ENV.USERS || 20);
const STREAMS = Number(__ENV.STREAMS === undefined ? 2 : __ENV.STREAMS);

export const options = {
  scenarios: {
    users: {
      executor: 'constant-arrival-rate',
      rate: Number(__ENV.RATE || 50),
      timeUnit: '1s',
      duration: __ENV.DURATION || '2m',
      preAllocatedVUs: 20,
      maxVUs: 200,
      exec: 'users',
    },
    ...(STREAMS > 0
      ? { streams: { executor: 'constant-vus', vus: STREAMS, duration: __ENV.DURATION || '2m', exec: 'streams' } }
      : {}),
  },
  thresholds: thresholds(250, 500, 0.001),
  setupTimeout: '300s',
};

export function setup() {
  return { tokens: signUpMany('steady', USERS) };
}

export function users(data) {
  journey(data.tokens[Math.floor(Math.random() * data.tokens.length)]);
}

export function streams(data) {
  streamNotifications(data.tokens[__VU % data.tokens.length], 10);
}
