//! Submissions survive a Redis restart (issue 16, "Must show" 4): a client submits executions
//! through the edge, one after the other, while the stack's Redis (AOF on) is restarted with
//! `docker restart`. Every submission must be answered 202, and every execution must complete
//! exactly once: each has a result per prompt, and the fake Gemini server saw each prompt
//! answered 200 once (its `/_fake/requests` records every call with its prompt).
//!
//! The request that lands on the API's stale connection right after the restart is what the
//! issue saw refused; the ones that land while Redis is down are accepted too, and queued by the
//! API's sweeper when Redis is back. The stack is healthy again afterwards.
//!
//! It first checks that deploy gave the API `TRUSTED_PROXIES` from the project network's own
//! gateway (issue 16, "Must show" 5).

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use masstock_tests::require_tool;
use serde_json::{json, Value};

use crate::stack::{add_user_as, inspect, log_in_as, wait_execution, LocalStack, PASSWORD};

/// Prompts per execution.
const PROMPTS: usize = 2;

/// What one submission got.
struct Submission {
    status: u16,
    id: Option<String>,
    prompts: Vec<String>,
    answer: String,
}

pub(super) fn check(stack: &LocalStack) {
    let project = &stack.project;
    trusted_proxies_name_the_network_gateway(project);
    let redis = project.container("redis");
    // Asked of redis itself, with the password from its own secret file.
    let aof = Command::new("docker")
        .args(["exec", &redis, "sh", "-c"])
        .arg("IFS= read -r REDISCLI_AUTH < \"$REDIS_PASSWORD_FILE\"; export REDISCLI_AUTH; redis-cli CONFIG GET appendonly")
        .output()
        .expect("docker exec redis-cli");
    let aof = String::from_utf8_lossy(&aof.stdout).into_owned();
    assert_eq!(aof.split_whitespace().collect::<Vec<_>>(), ["appendonly", "yes"], "the stack's redis keeps an AOF");

    let nonce = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let email = format!("submissions-{nonce}@example.com");
    add_user_as(project, &email, PASSWORD);
    let client = project.client(true);
    let token = log_in_as(&client, project, &email, PASSWORD);
    let workflows: Value =
        client.get(project.api_url("/api/v1/workflows")).bearer_auth(&token).send().unwrap().json().unwrap();
    let workflow = workflows["items"][0]["id"].as_str().expect("a workflow").to_owned();

    // The client submits without pause until told to stop, on its own thread.
    let stop = Arc::new(AtomicBool::new(false));
    let submitter = {
        let (client, token, stop, nonce) = (client.clone(), token.clone(), stop.clone(), nonce.clone());
        let url = project.api_url("/api/v1/executions");
        std::thread::spawn(move || {
            let mut submissions = Vec::new();
            for round in 0.. {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let prompts: Vec<String> =
                    (0..PROMPTS).map(|index| format!("a lighthouse, submission {nonce}-{round}-{index}")).collect();
                let body = json!({ "workflowId": workflow, "prompts": prompts });
                let submission = match client.post(&url).bearer_auth(&token).json(&body).send() {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        let answer = response.text().unwrap_or_default();
                        let id = serde_json::from_str::<Value>(&answer)
                            .ok()
                            .and_then(|answer| answer["id"].as_str().map(str::to_owned));
                        Submission { status, id, prompts, answer }
                    }
                    Err(error) => Submission { status: 0, id: None, prompts, answer: error.to_string() },
                };
                submissions.push(submission);
                std::thread::sleep(Duration::from_millis(200));
            }
            submissions
        })
    };

    std::thread::sleep(Duration::from_secs(3));
    let restarted = Command::new(require_tool("docker"))
        .args(["restart", "--time", "10", &redis])
        .output()
        .expect("run docker restart");
    assert!(restarted.status.success(), "docker restart: {}", String::from_utf8_lossy(&restarted.stderr));
    // Submissions go on while Redis loads its AOF and the API's connections are stale.
    std::thread::sleep(Duration::from_secs(6));
    stop.store(true, Ordering::SeqCst);
    let submissions = submitter.join().expect("the submitting thread");

    assert!(submissions.len() >= 10, "the client kept submitting: {} submissions", submissions.len());
    let refused: Vec<String> = submissions
        .iter()
        .filter(|submission| submission.status != 202 || submission.id.is_none())
        .map(|submission| format!("{} {}", submission.status, submission.answer))
        .collect();
    assert!(refused.is_empty(), "every submission is accepted across the restart; refused: {refused:#?}");

    // Every execution completes, with one result per prompt.
    let started = Instant::now();
    for submission in &submissions {
        let id = submission.id.as_deref().expect("checked above");
        let left = Duration::from_secs(240).saturating_sub(started.elapsed());
        let state = wait_execution(&client, project, &token, id, left, "finished", |state| {
            matches!(state["status"].as_str(), Some("completed" | "failed"))
        });
        assert_eq!(state["status"], "completed", "{state}");
        assert_eq!(state["results"].as_array().map(Vec::len), Some(PROMPTS), "one result per prompt: {state}");
    }

    // Exactly once: Gemini answered each prompt once, whatever the restart did to the jobs.
    let gemini = reqwest::blocking::get(format!("http://127.0.0.1:{}/_fake/requests", stack.gemini_port))
        .expect("the fake Gemini's requests")
        .json::<Vec<Value>>()
        .expect("JSON");
    for prompt in submissions.iter().flat_map(|submission| &submission.prompts) {
        let answered = gemini
            .iter()
            .filter(|request| request["status"] == 200)
            .filter(|request| request["prompt"].as_str().is_some_and(|text| text.contains(prompt.as_str())))
            .count();
        assert_eq!(answered, 1, "Gemini generated `{prompt}` once");
    }
    // Which path the restart sent submissions down, from the API's log (for the record: the
    // timing decides, so it is not asserted).
    let logs =
        Command::new(require_tool("docker")).args(["logs", &project.container("api")]).output().expect("docker logs");
    let logs = format!("{}{}", String::from_utf8_lossy(&logs.stdout), String::from_utf8_lossy(&logs.stderr));
    let lines_with = |text: &str| logs.lines().filter(|line| line.contains(text)).count();
    eprintln!(
        "submissions: {} accepted across a redis restart, {} prompts generated once each; \
         {} adds tried again on a new connection, {} left to the sweeper, {} sweeper passes that queued them",
        submissions.len(),
        submissions.len() * PROMPTS,
        lines_with("trying once more on a new connection"),
        lines_with("waits for the sweeper to add its job"),
        lines_with("accepted while redis was away are queued"),
    );
    project.wait_healthy(Duration::from_secs(120));
}

/// Deploy derived the API's `TRUSTED_PROXIES` from the gateway of the network it created (issue
/// 16, "Must show" 5): loopback and that one address, not a fixed private range.
fn trusted_proxies_name_the_network_gateway(project: &crate::stack::Project) {
    let network = inspect("network", &format!("{}_network", project.name)).expect("the project's network");
    let gateways: Vec<&str> = network["IPAM"]["Config"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|pool| pool["Gateway"].as_str())
        .collect();
    assert!(!gateways.is_empty(), "the network has a gateway: {network}");
    let api = inspect("container", &project.container("api")).expect("the api container");
    let trusted = api["Config"]["Env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .find_map(|variable| variable.strip_prefix("TRUSTED_PROXIES="))
        .expect("the api has TRUSTED_PROXIES")
        .to_owned();
    let expected: Vec<String> = ["127.0.0.0/8".to_owned(), "::1/128".to_owned()]
        .into_iter()
        .chain(gateways.iter().map(|gateway| format!("{gateway}/32")))
        .collect();
    assert_eq!(trusted, expected.join(","), "loopback and the network's gateway {gateways:?}");
}
