// Soak: a moderate constant rate (RATE, default 30/s) for a long time
// (DURATION, default 1h): leaks and slow drifts show as latency creeping up
// or errors late in the run. p95 < 250 ms, p99 < 500 ms, at most 0.1% failed.
import { journey, signUpMany, thresholds } from '../lib.js';

const USERS = Number(__ENV.USERS || 20);

export const options = {
  scenarios: {
    soak: {
      executor: 'constant-arrival-rate',
      rate: Number(__ENV.RATE || 30),
      timeUnit: '1s',
      duration: __ENV.DURATION || '1h',
      preAllocatedVUs: 20,
      maxVUs: 200,
    },
  },
  thresholds: thresholds(250, 500, 0.001),
  setupTimeout: '300s',
};

export function setup() {
  return { tokens: signUpMany('soak', USERS) };
}

export default function (data) {
  journey(data.tokens[Math.floor(Math.random() * data.tokens.length)]);
}
