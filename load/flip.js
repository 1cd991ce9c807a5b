// Steady load while the blue/green weights flip: a constant arrival rate of
// reads through the gateway; every request must succeed, and the colors that
// served them are counted so the share can be compared with the weights.
// RATE (req/s, default 200) and DURATION (default 8s) from the environment.
import { Counter } from 'k6/metrics';
import { listOrders, signUp } from './lib.js';

const servedBlue = new Counter('served_blue');
const servedGreen = new Counter('served_green');

export const options = {
  scenarios: {
    flip: {
      executor: 'constant-arrival-rate',
      rate: Number(__ENV.RATE || 200),
      timeUnit: '1s',
      duration: __ENV.DURATION || '8s',
      preAllocatedVUs: 20,
      maxVUs: 50,
    },
  },
  thresholds: {
    http_req_failed: ['rate==0'],
    http_req_duration: ['p(99)<2000'],
    checks: ['rate==1'],
  },
};

export function setup() {
  return { token: signUp('flip') };
}

export default function (data) {
  const res = listOrders(data.token);
  const color = res.headers['X-Served-By'];
  if (color === 'blue') servedBlue.add(1);
  if (color === 'green') servedGreen.add(1);
}
