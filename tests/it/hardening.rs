//! Issue 16 on one deployed stack: what an outside reviewer tries against the local stack, each
//! part in its own file below `hardening/`, in an order where nothing destructive comes before a
//! part that needs the stack intact.
//!
//! One stack for all of it keeps the suite's time down; `stack.rs` holds what deploying it takes.

mod lockdown;
mod secrets;
mod submissions;
mod tls;

use std::time::Duration;

use crate::stack::LocalStack;

#[test]
fn the_deployed_stack_is_hardened() {
    let (mut stack, run, _) = LocalStack::deploy();
    assert_eq!(run.code, 0, "the first deploy failed:\n{run}");
    stack.project.wait_healthy(Duration::from_secs(120));
    tls::check(&stack);
    lockdown::check(&stack);
    secrets::check(&stack);
    submissions::check(&stack);
    secrets::rotate(&mut stack);
    lockdown::oom(&stack);
}
