// Times a consumer from outside, the same way for every consumer bench/worker.sh runs.
//
// Usage: node watch.js <redis-url> <prefix> <jobs>
//
// Polls <prefix>:workflow-queue every 5 ms (one pipelined round trip: waiting, prioritized, active,
// failed). Prints `ready` on stdout once it has seen the <jobs> jobs waiting; start the consumer
// then. The clock starts at the first poll that finds a job gone from the waiting ones and stops
// at the first that finds none waiting or active; then it prints one JSON line:
// {"jobs": …, "seconds": …, "jobs_per_second": …, "failed": …}. Gives up (exit 1) when nothing
// moves for BENCH_STALL_SECONDS (default 120).
'use strict';

const IORedis = require('ioredis');

const POLL_MS = 5;

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function main() {
  const [redisUrl, prefix, jobsText] = process.argv.slice(2);
  const jobs = Number.parseInt(jobsText, 10);
  if (!redisUrl || !prefix || !(jobs > 0)) {
    throw new Error('usage: node watch.js <redis-url> <prefix> <jobs>');
  }
  const stallMs = 1000 * Number.parseFloat(process.env.BENCH_STALL_SECONDS || '120');
  const key = (suffix) => `${prefix}:workflow-queue:${suffix}`;
  const redis = new IORedis(redisUrl);
  const poll = async () => {
    const replies = await redis
      .pipeline()
      .llen(key('wait'))
      .zcard(key('prioritized'))
      .llen(key('active'))
      .zcard(key('failed'))
      .exec();
    const [wait, prioritized, active, failed] = replies.map(([error, value]) => {
      if (error) throw error;
      return value;
    });
    return { waiting: wait + prioritized, active, failed };
  };

  const first = await poll();
  if (first.waiting !== jobs || first.active !== 0) {
    throw new Error(`expected ${jobs} waiting jobs and none active, found ${first.waiting} and ${first.active}`);
  }
  process.stdout.write('ready\n');

  let started = null;
  let lastChange = Date.now();
  let previous = first;
  for (;;) {
    await sleep(POLL_MS);
    const now = process.hrtime.bigint();
    const state = await poll();
    if (started === null && state.waiting < jobs) started = now;
    if (started !== null && state.waiting === 0 && state.active === 0) {
      const seconds = Number(now - started) / 1e9;
      await redis.quit();
      const result = { jobs, seconds, jobs_per_second: jobs / seconds, failed: state.failed };
      process.stdout.write(`${JSON.stringify(result)}\n`);
      return;
    }
    if (state.waiting !== previous.waiting || state.active !== previous.active) {
      lastChange = Date.now();
      previous = state;
    } else if (Date.now() - lastChange > stallMs) {
      throw new Error(`nothing moved for ${stallMs / 1000} s: ${state.waiting} waiting, ${state.active} active`);
    }
  }
}

main().catch((error) => {
  process.stderr.write(`error: ${error.message}\n`);
  process.exit(1);
});
