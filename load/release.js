// Steady user traffic for the release experiment (load/experiment.sh): a
// constant arrival rate of order reads with some order creations, by users
// signed up in setup(). No thresholds: failed requests are what the
// experiment measures, from k6's CSV output.
// RATE (req/s, default 60), DURATION (default 70s), USERS (default 10) and
// WRITE_EVERY (every Nth request creates an order, default 10; 0: reads
// only) from the environment.
import exec from 'k6/execution';
import { createOrder, listOrders, signUp } from './lib.js';

const USERS = Number(__ENV.USERS || 10);
const WRITE_EVERY = Number(__ENV.WRITE_EVERY || 10);

export const options = {
  scenarios: {
    release: {
      executor: 'constant-arrival-rate',
      rate: Number(__ENV.RATE || 60),
      timeUnit: '1s',
      duration: __ENV.DURATION || '70s',
      preAllocatedVUs: 20,
      maxVUs: 100,
    },
  },
  // One setup per run signs up every user, at about 2 argon2 hashes each.
  setupTimeout: '120s',
};

export function setup() {
  const tokens = [];
  for (let i = 0; i < USERS; i++) tokens.push(signUp('release'));
  return { tokens };
}

export default function (data) {
  // A fixed mix, not a random one: the same requests in every run.
  const n = exec.scenario.iterationInTest;
  const token = data.tokens[n % data.tokens.length];
  if (WRITE_EVERY > 0 && n % WRITE_EVERY === WRITE_EVERY - 1) {
    createOrder(token);
  } else {
    listOrders(token);
  }
}
