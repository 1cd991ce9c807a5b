// Stress: the arrival rate ramps from START_RATE (default 20/s) to
// MAX_RATE (default 1000/s) over RAMP (default 5m), until the knee: the run
// stops itself (abortOnFail) once p99 passes KNEE_P99_MS (default 1000) or
// more than 1% fail, and k6's summary shows the rate reached
// (iterations/s). `bash load/capacity.sh` measures the knee step by step.
import { journey, signUpMany } from '../lib.js';

const USERS = Number(__ENV.USERS || 50);

export const options = {
  scenarios: {
    ramp: {
      executor: 'ramping-arrival-rate',
      startRate: Number(__ENV.START_RATE || 20),
      timeUnit: '1s',
      stages: [{ target: Number(__ENV.MAX_RATE || 1000), duration: __ENV.RAMP || '5m' }],
      preAllocatedVUs: 50,
      maxVUs: 500,
    },
  },
  thresholds: {
    http_req_duration: [{ threshold: `p(99)<${Number(__ENV.KNEE_P99_MS || 1000)}`, abortOnFail: true, delayAbortEval: '10s' }],
    http_req_failed: [{ threshold: 'rate<0.01', abortOnFail: true, delayAbortEval: '10s' }],
  },
  setupTimeout: '300s',
};

export function setup() {
  return { tokens: signUpMany('stress', USERS) };
}

export default function (data) {
  journey(data.tokens[Math.floor(Math.random() * data.tokens.length)]);
}
