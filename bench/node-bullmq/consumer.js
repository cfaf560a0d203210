// The reference: Node's BullMQ Worker with a processor that does nothing, for bench/worker.sh.
//
// Usage: node consumer.js <redis-url> <prefix> <concurrency> <jobs>
//
// Takes jobs off <prefix>:workflow-queue with a processor that answers {} at once, until <jobs>
// jobs have been completed, then prints one JSON line on stdout:
// {"jobs": …, "seconds": …, "jobs_per_second": …, "cpu_seconds": …}, timed from the first job
// taken to the last one moved to completed; cpu_seconds is the CPU time the process used over that
// span (every thread, user and system). The same line as services/queue/examples/noop_consumer.rs
// prints. Lock duration and stalled interval are MasStock's (30 s each), like its worker's.
'use strict';

const IORedis = require('ioredis');
const { Worker } = require('bullmq');

async function main() {
  const [redisUrl, prefix, concurrencyText, jobsText] = process.argv.slice(2);
  const concurrency = Number.parseInt(concurrencyText, 10);
  const jobs = Number.parseInt(jobsText, 10);
  if (!redisUrl || !prefix || !(concurrency > 0) || !(jobs > 0)) {
    throw new Error('usage: node consumer.js <redis-url> <prefix> <concurrency> <jobs>');
  }

  let started = null;
  let cpuStarted = null;
  let taken = 0;
  let completed = 0;
  const connection = new IORedis(redisUrl, { maxRetriesPerRequest: null });
  let finish;
  const done = new Promise((resolve) => {
    finish = resolve;
  });
  const worker = new Worker(
    'workflow-queue',
    async () => {
      if (started === null) {
        started = process.hrtime.bigint();
        cpuStarted = process.cpuUsage();
      }
      taken += 1;
      return {};
    },
    { connection, prefix, concurrency, name: 'bench-noop', lockDuration: 30_000, stalledInterval: 30_000 },
  );
  worker.on('completed', () => {
    completed += 1;
    if (completed === jobs) finish([process.hrtime.bigint(), process.cpuUsage(cpuStarted)]);
  });
  worker.on('failed', (job, error) => process.stderr.write(`job ${job && job.id} failed: ${error.message}\n`));
  worker.on('error', (error) => process.stderr.write(`worker error: ${error.message}\n`));

  const [finished, cpu] = await done;
  const seconds = Number(finished - started) / 1e9;
  const cpuSeconds = (cpu.user + cpu.system) / 1e6;
  await worker.close();
  await connection.quit();
  process.stdout.write(`${JSON.stringify({ jobs: taken, seconds, jobs_per_second: jobs / seconds, cpu_seconds: cpuSeconds })}\n`);
}

main().catch((error) => {
  process.stderr.write(`error: ${error.message}\n`);
  process.exit(1);
});
