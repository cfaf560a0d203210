// Adds the benchmark's jobs to <prefix>:workflow-queue, as MasStock's API adds them (masstock-queue' WorkflowQueue::add).
//
// Usage: node enqueue.js <redis-url> <prefix> <jobs> [<ids-file>]
//
// Each job is `execute-workflow` with data {"executionId", "prompts", "config"}, its execution id as
// job id, priority 2, 3 attempts, exponential backoff from 5 s, removed on completion, kept on
// failure. The ids are read from <ids-file> (one per line: executions that exist in PostgreSQL) or
// made up. Jobs are added with addBulk, 1,000 per round trip; prints how many were added.
'use strict';

const crypto = require('node:crypto');
const fs = require('node:fs');
const IORedis = require('ioredis');
const { Queue } = require('bullmq');

const BATCH = 1000;

async function main() {
  const [redisUrl, prefix, jobsText, idsFile] = process.argv.slice(2);
  const jobs = Number.parseInt(jobsText, 10);
  if (!redisUrl || !prefix || !(jobs > 0)) {
    throw new Error('usage: node enqueue.js <redis-url> <prefix> <jobs> [<ids-file>]');
  }
  const ids = idsFile
    ? fs.readFileSync(idsFile, 'utf8').split('\n').filter((line) => line.trim() !== '')
    : Array.from({ length: jobs }, () => crypto.randomUUID());
  if (ids.length !== jobs) {
    throw new Error(`${idsFile} holds ${ids.length} ids, not ${jobs}`);
  }

  const connection = new IORedis(redisUrl, { maxRetriesPerRequest: null });
  const queue = new Queue('workflow-queue', { connection, prefix });
  try {
    for (let start = 0; start < ids.length; start += BATCH) {
      await queue.addBulk(
        ids.slice(start, start + BATCH).map((executionId) => ({
          name: 'execute-workflow',
          data: { executionId, prompts: ['a lighthouse at dusk'], config: { aspectRatio: '1:1' } },
          opts: {
            jobId: executionId,
            priority: 2,
            attempts: 3,
            backoff: { type: 'exponential', delay: 5000 },
            removeOnComplete: true,
            removeOnFail: false,
          },
        })),
      );
    }
  } finally {
    await queue.close();
    await connection.quit();
  }
  process.stdout.write(`${ids.length}\n`);
}

main().catch((error) => {
  process.stderr.write(`error: ${error.message}\n`);
  process.exit(1);
});
