//! What the fake records of each request, and the busiest window.

use std::time::{Duration, SystemTime};

use crate::support::{generate, generate_url, post, request_body, start, MODEL};

#[test]
fn every_request_is_recorded_with_its_outcome() {
    let gemini = start();
    let before = SystemTime::now();
    generate(&gemini, "a cat");
    post(&generate_url(&gemini), Some("wrong"), &request_body("a dog"));
    generate(&gemini, "a bird [fail:503]");
    let requests = gemini.requests();
    assert_eq!(requests.len(), 3);
    assert_eq!(gemini.request_count(), 3);
    assert_eq!(requests.iter().map(|request| request.id).collect::<Vec<_>>(), [0, 1, 2]);
    assert!(requests.iter().all(|request| request.model == MODEL && request.arrived_at_system >= before));
    assert!(requests.windows(2).all(|pair| pair[0].arrived_at <= pair[1].arrived_at));

    assert_eq!(requests[0].prompt.as_deref(), Some("a cat"));
    assert!(requests[0].key_accepted && requests[0].reached_generation);
    assert_eq!(requests[0].status, Some(200));

    assert_eq!(requests[1].prompt.as_deref(), Some("a dog"));
    assert!(!requests[1].key_accepted && !requests[1].reached_generation);
    assert_eq!(requests[1].status, Some(400));

    assert!(requests[2].reached_generation);
    assert_eq!(requests[2].status, Some(503));

    gemini.reset_requests();
    assert_eq!(gemini.request_count(), 0);
    generate(&gemini, "after the reset");
    assert_eq!(gemini.requests()[0].id, 3, "ids keep counting across resets");
}

#[test]
fn the_busiest_window_counts_every_arrival() {
    let gemini = start();
    assert_eq!(gemini.max_requests_in_window(Duration::from_secs(60)), 0);
    for index in 0..3 {
        generate(&gemini, &format!("first {index}"));
    }
    std::thread::sleep(Duration::from_millis(1500));
    generate(&gemini, "second 0");
    post(&generate_url(&gemini), Some("wrong"), &request_body("second 1"));

    assert_eq!(gemini.max_requests_in_window(Duration::from_secs(60)), 5);
    // The two groups are 1.5 s apart, so no 1 s window holds requests of both.
    assert_eq!(gemini.max_requests_in_window(Duration::from_secs(1)), 3);
    assert_eq!(gemini.max_requests_in_window(Duration::ZERO), 0);
    assert_eq!(gemini.stats().max_in_60s, 5);
}
