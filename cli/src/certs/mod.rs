//! Certificates over ACME in certbot's layout: storage, renewal rules, the ACME client, the
//! verified install, and the issue/renew flow that ties them together.

pub mod acme;
pub mod due;
pub mod expiry;
pub mod install;
pub mod lifecycle;
pub mod store;
pub mod timer;
pub mod trust;
