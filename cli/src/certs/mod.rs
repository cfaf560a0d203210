//! Certificates over ACME in certbot's layout: storage, renewal rules, the ACME client, the
//! verified install, and the issue/renew flow that ties them together.
//!
//! One SAN certificate by default, stored under certbot's lineage name. That name is
//! `acme.cert_name`, or the shortest domain (`masstock.fr`), as the reference's
//! `/etc/letsencrypt/live/masstock.fr/` shows. `certificates = "per-domain"` gives one lineage per
//! domain. `store` (the files) and `due` (the decision) are what `certs status` reads; `acme` is
//! the client (`AcmeClient`, its hyper transport, the HTTP-01 self-check, `retrying!`); `install`
//! the verified install; `trust` the roots trusted and the chain verdict doctor gives; `lifecycle`
//! the issue/renew flow.

pub mod acme;
pub mod due;
pub mod expiry;
pub mod install;
pub mod lifecycle;
pub mod store;
pub mod timer;
pub mod trust;
