//! What the backups must keep: executions run to completion with their result images (fetched
//! through the API, bytes kept), then executions submitted while the worker is stopped through the
//! engine, so their jobs wait in Redis at backup time. After a restore, [`Workload::verify`]
//! shows through the API that every execution and every image is back and that the waiting jobs
//! are processed.

use std::process::Command;
use std::time::{Duration, Instant};

use masstock_tests::require_tool;
use serde_json::{json, Value};

use super::Witness;
use crate::stack::{add_user_as, log_in_as, start_execution, wait_execution, LocalStack, Project, PASSWORD};

/// Executions run to completion before the backup, and left waiting.
const COMPLETED: usize = 3;
const WAITING: usize = 2;
/// Prompts per execution (one result image each).
const PROMPTS: usize = 2;

pub(super) struct Workload {
    email: String,
    /// Each completed execution's id and its images, by prompt index.
    completed: Vec<(String, Vec<Vec<u8>>)>,
    /// The executions whose jobs waited in Redis at backup time.
    waiting: Vec<String>,
}

impl Workload {
    pub(super) fn executions(&self) -> u64 {
        (self.completed.len() + self.waiting.len()) as u64
    }

    pub(super) fn images(&self) -> u64 {
        self.completed.iter().map(|(_, images)| images.len() as u64).sum()
    }

    pub(super) fn waiting(&self) -> u64 {
        self.waiting.len() as u64
    }

    /// Through the API: the user logs in, every execution is listed, each completed one has its
    /// images byte for byte, and each waiting one is processed to completion with its images.
    pub(super) fn verify(&self, project: &Project) {
        let client = project.client(true);
        let token = log_in_as(&client, project, &self.email, PASSWORD);
        let listed: Value = client
            .get(project.api_url("/api/v1/executions?limit=100"))
            .bearer_auth(&token)
            .send()
            .expect("list the executions")
            .json()
            .expect("JSON");
        let mut ids: Vec<&str> =
            listed["items"].as_array().expect("items").iter().filter_map(|item| item["id"].as_str()).collect();
        ids.sort_unstable();
        let mut expected: Vec<&str> =
            self.completed.iter().map(|(id, _)| id.as_str()).chain(self.waiting.iter().map(String::as_str)).collect();
        expected.sort_unstable();
        assert_eq!(ids, expected, "every execution is back: {listed}");
        for (id, images) in &self.completed {
            let state = crate::stack::execution(&client, project, &token, id);
            assert_eq!(state["status"], "completed", "{state}");
            for (index, image) in images.iter().enumerate() {
                assert!(
                    result_image(&client, project, &token, id, index) == *image,
                    "image {index} of {id} is back, byte for byte"
                );
            }
        }
        let started = Instant::now();
        for id in &self.waiting {
            let left = Duration::from_secs(240).saturating_sub(started.elapsed());
            let state = wait_execution(&client, project, &token, id, left, "finished after the restore", |state| {
                matches!(state["status"].as_str(), Some("completed" | "failed"))
            });
            assert_eq!(state["status"], "completed", "a job that waited at backup time is processed: {state}");
            for index in 0..PROMPTS {
                assert!(!result_image(&client, project, &token, id, index).is_empty(), "image {index} of {id}");
            }
        }
    }
}

pub(super) fn run(stack: &LocalStack, witness: &Witness) -> Workload {
    let project = &stack.project;
    let email = format!("backup-{}@example.com", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    add_user_as(project, &email, PASSWORD);
    let client = project.client(true);
    let token = log_in_as(&client, project, &email, PASSWORD);
    let prompts = |round: usize| -> Vec<String> {
        (0..PROMPTS).map(|index| format!("a lighthouse to back up, {round}-{index}")).collect()
    };

    let ids: Vec<String> =
        (0..COMPLETED).map(|round| start_execution(&client, project, &token, &prompts(round))).collect();
    let mut completed = Vec::new();
    for id in ids {
        let state = wait_execution(&client, project, &token, &id, Duration::from_secs(180), "finished", |state| {
            matches!(state["status"].as_str(), Some("completed" | "failed"))
        });
        assert_eq!(state["status"], "completed", "{state}");
        let images: Vec<Vec<u8>> =
            (0..PROMPTS).map(|index| result_image(&client, project, &token, &id, index)).collect();
        assert!(images.iter().all(|image| !image.is_empty()), "every result has an image");
        completed.push((id, images));
    }

    // The worker stopped through the engine: what is submitted now waits in Redis.
    let stopped = Command::new(require_tool("docker"))
        .args(["stop", "--time", "30", &project.container("worker")])
        .output()
        .expect("run docker stop");
    assert!(stopped.status.success(), "docker stop the worker: {}", String::from_utf8_lossy(&stopped.stderr));
    let waiting: Vec<String> = (COMPLETED..COMPLETED + WAITING)
        .map(|round| start_execution(&client, project, &token, &prompts(round)))
        .collect();
    let started = Instant::now();
    loop {
        let queued = waiting_jobs(witness, project);
        if queued >= WAITING as u64 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{WAITING} jobs wait in Redis; `queue ls` counts {queued}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    for id in &waiting {
        let state = crate::stack::execution(&client, project, &token, id);
        assert!(!matches!(state["status"].as_str(), Some("completed" | "failed")), "nothing runs it: {state}");
    }
    Workload { email, completed, waiting }
}

/// The jobs `queue ls` counts as waiting (plain, prioritized or delayed) in every queue.
pub(super) fn waiting_jobs(witness: &Witness, project: &Project) -> u64 {
    let listed = witness.ctl_ok(project, &["--json", "queue", "ls"]).json();
    listed["queues"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|queue| {
            ["wait", "prioritized", "delayed"].iter().filter_map(|state| queue["counts"][state].as_u64()).sum::<u64>()
        })
        .sum()
}

/// The bytes of result `index` of execution `id`, through the edge; fails unless it is a 200.
fn result_image(client: &reqwest::blocking::Client, project: &Project, token: &str, id: &str, index: usize) -> Vec<u8> {
    let response = client
        .get(project.api_url(&format!("/api/v1/executions/{id}/results/{index}")))
        .bearer_auth(token)
        .send()
        .expect("fetch a result image");
    assert_eq!(response.status(), 200, "result {index} of {id}: {:?}", response.text());
    response.bytes().expect("the image's bytes").to_vec()
}

/// Whether `email` can log in at all (before a restore, after the data was destroyed, it cannot).
pub(super) fn can_log_in(project: &Project, email: &str) -> bool {
    let response = project
        .client(false)
        .post(project.api_url("/api/v1/auth/login"))
        .json(&json!({ "email": email, "password": PASSWORD }))
        .send()
        .expect("log in through nginx");
    response.status() == 200
}

impl Workload {
    pub(super) fn email(&self) -> &str {
        &self.email
    }
}
