// Spike: BASE_RATE (default 20/s), then SPIKE_RATE (default 300/s) within
// 5 s, held for HOLD (default 30s), then back. The platform must absorb it:
// at most 1% failed (shedding answers fast 503/429 rather than queueing),
// p99 < 1500 ms, and the base rate served normally afterwards.
import { journey, signUpMany, thresholds } from '../lib.js';

const USERS = Number(__ENV.USERS || 30);
const BASE = Number(__ENV.BASE_RATE || 20);
const SPIKE = Number(__ENV.SPIKE_RATE || 300);

export const options = {
  scenarios: {
    spike: {
      executor: 'ramping-arrival-rate',
      startRate: BASE,
      timeUnit: '1s',
      stages: [
        { target: BASE, duration: '20s' },
        { target: SPIKE, duration: '5s' },
        { target: SPIKE, duration: __ENV.HOLD || '30s' },
        { target: BASE, duration: '5s' },
        { target: BASE, duration: '20s' },
      ],
      preAllocatedVUs: 50,
      maxVUs: 400,
    },
  },
  thresholds: thresholds(800, 1500, 0.01),
  setupTimeout: '300s',
};

export function setup() {
  return { tokens: signUpMany('spike', USERS) };
}

export default function (data) {
  journey(data.tokens[Math.floor(Math.random() * data.tokens.length)]);
}
