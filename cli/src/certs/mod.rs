//! Certificates over ACME: where they are stored (certbot's layout) and when they are renewed.

pub mod due;
pub mod store;
