//! The queue's wire format, both ways, with the Python `bullmq` 3.4.4 client: a job it adds is
//! processed by our worker; a job added as the API adds it is processed by a Python `Worker`.

use std::time::Duration;

use masstock_fake_gemini::{FakeGemini, Settings};
use masstock_queue::{WorkflowJob, JOB_NAME, QUEUE};
use masstock_schema::MIGRATOR;
use serde_json::{json, Value};

use masstock_tests::python;

use crate::support::{execution, finished, Namespace, Worker, WorkerSetup, GEMINI_KEY, REDIS_URL};

const ADD_JOB: &str = r#"
import asyncio, json, sys
from bullmq import Queue
async def main():
    queue = Queue(sys.argv[3], {"connection": sys.argv[1], "prefix": sys.argv[2]})
    data = json.loads(sys.argv[5])
    await queue.add(sys.argv[4], data, {"jobId": data["executionId"], "priority": 2, "attempts": 3,
                                        "backoff": {"type": "exponential", "delay": 5000}, "removeOnComplete": True})
    await queue.close()
asyncio.run(main())
"#;

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_job_added_by_python_bullmq_is_processed_by_our_worker(pool: sqlx::PgPool) {
    let namespace = Namespace::new(REDIS_URL);
    let gemini = FakeGemini::start(Settings::default().with_api_key(GEMINI_KEY)).unwrap();
    let uploads = tempfile::tempdir().unwrap();
    let worker = Worker::start(&WorkerSetup::new(&pool, &namespace, &gemini.url(), uploads.path()), "w1");

    let id = execution(&pool, &["from python"]).await;
    let data = json!({ "executionId": id, "prompts": ["from python"], "config": { "aspectRatio": "1:1" } }).to_string();
    let prefix = namespace.prefix.clone();
    tokio::task::spawn_blocking(move || python(ADD_JOB, &[REDIS_URL, &prefix, QUEUE, JOB_NAME, &data])).await.unwrap();

    let row = finished(&pool, id, Duration::from_secs(20), &[&worker]).await;
    assert_eq!((row.status.as_str(), row.results), ("completed", 1));
}

const PYTHON_WORKER: &str = r#"
import asyncio, json, sys
from bullmq import Worker
async def main():
    seen = []
    done = asyncio.Event()
    async def process(job, token):
        seen.append({"id": job.id, "name": job.name, "data": job.data, "priority": job.opts.get("priority"),
                     "attempts": job.opts.get("attempts"), "backoff": job.opts.get("backoff")})
        await job.updateProgress({"done": 1, "total": 1})
        done.set()
        return {"images": 1}
    worker = Worker(sys.argv[3], process, {"connection": sys.argv[1], "prefix": sys.argv[2]})
    await asyncio.wait_for(done.wait(), 20)
    await asyncio.sleep(0.5)
    await worker.close()
    print(json.dumps(seen))
asyncio.run(main())
"#;

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_job_added_like_the_api_does_is_processed_by_a_python_worker(pool: sqlx::PgPool) {
    let namespace = Namespace::new(REDIS_URL);
    let id = execution(&pool, &["for python"]).await;
    let job =
        WorkflowJob { execution_id: id, prompts: vec!["for python".into()], config: json!({ "aspectRatio": "1:1" }) };
    namespace.queue().await.add(&job, true, Duration::from_secs(5)).await.unwrap();

    let prefix = namespace.prefix.clone();
    let seen = tokio::task::spawn_blocking(move || python(PYTHON_WORKER, &[REDIS_URL, &prefix, QUEUE])).await.unwrap();
    let seen: Vec<Value> = serde_json::from_str(&seen).unwrap();
    assert_eq!(
        seen,
        [json!({
            "id": id.to_string(),
            "name": "execute-workflow",
            "data": { "executionId": id, "prompts": ["for python"], "config": { "aspectRatio": "1:1" } },
            "priority": 1,
            "attempts": 3,
            "backoff": { "type": "exponential", "delay": 5000 },
        })]
    );
    assert!(!namespace.job_in("prioritized", id) && !namespace.job_in("failed", id));
    assert_eq!(namespace.job_field(id, "data"), None, "completed and removed, as removeOnComplete says");
}
