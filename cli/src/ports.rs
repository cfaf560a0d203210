//! The host ports a stack declares, and who holds each one now: a process, found through
//! `/proc/net/tcp{,6}` and `/proc/<pid>/fd`, or a container, through the engine. [`rows_for`]
//! judges them ([`assess`]): a port held by anything but its expected owner is a conflict, said
//! with the fix. `masstockctl ports` and `doctor` read the same rows.
//!
//! One of the reference's troubleshooting scenarios as a command that names the cause. It lists
//! what deploy.toml declares (`declared_ports`: each enabled service's published ports, then the
//! edge's two) and who holds each one now, from two sources that need no external tool: the
//! engine's running containers and their published ports (`list_containers`), and the kernel's
//! listening sockets (`/proc/net/tcp{,6}`, state `0A`, the address printed in host byte order),
//! each socket's inode traced to a process through the `socket:[inode]` links of `/proc/<pid>/fd`
//! (the lowest PID when several share it: nginx's master).
//!
//! - A container wins over a process, because Docker's docker-proxy holds the socket on its behalf,
//!   and with the userland proxy off only the engine knows.
//! - A socket blocks a declared port when it is on the same address or either side is a wildcard.
//! - `assess` is a pure function of those lists, so its rules are tested without a host to set up.
//! - A port nobody holds is not a conflict (`status` and `health` say whether the service runs); an
//!   edge port held by a process we may not name (another user's, without root) is given the
//!   benefit of the doubt.
//! - A port declared twice never reaches `assess`: deploy.toml's validation refuses it (exit 2, at
//!   the line).
//! - `doctor` judges ports with the same rows (`rows_for`) and the same `assess`.
//!
//! Tests (`tests/it/diagnose.rs`): the test process holds a declared port and `ports` must name its
//! PID and command name, and nginx is accepted on the edge's ports.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use bollard::models::ContainerSummary;
use bollard::query_parameters::ListContainersOptionsBuilder;
use bollard::Docker;
use serde::Serialize;

use crate::config::Stack;
use crate::docker::{self, labels, DockerError};

/// One declared port and what holds it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PortRow {
    pub port: u16,
    /// The address the port is declared on (`edge.upstream_host`).
    pub address: IpAddr,
    /// The deploy.toml key that declares it: `[services.api] ports`, `[edge] https_port`.
    pub declared_by: String,
    /// The container port a service's host port leads to; `null` for the edge's ports.
    pub container_port: Option<u16>,
    pub bound: bool,
    pub owner: Owner,
    /// Who should hold it: the service's container, or `nginx`.
    pub expected: String,
    /// What is wrong with it, said with the fix; `null` when nothing is.
    pub conflict: Option<String>,
}

/// Who holds a port.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, Default)]
pub struct Owner {
    /// `process`, `container` or `none`.
    pub kind: &'static str,
    pub pid: Option<u32>,
    /// The process's command name (`/proc/<pid>/comm`).
    pub name: Option<String>,
    pub container: Option<String>,
}

/// What wants a port: a service's container, or the edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claimant {
    Service { service: String, container: String, container_port: u16 },
    Edge { key: &'static str },
}

/// A port deploy.toml declares, and who declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Declared {
    pub port: u16,
    pub claimant: Claimant,
}

impl Declared {
    fn declared_by(&self) -> String {
        match &self.claimant {
            Claimant::Service { service, .. } => format!("[services.{service}] ports"),
            Claimant::Edge { key } => format!("[edge] {key}"),
        }
    }

    fn expected(&self) -> String {
        match &self.claimant {
            Claimant::Service { container, .. } => container.clone(),
            Claimant::Edge { .. } => "nginx".to_owned(),
        }
    }
}

/// A listening TCP socket of this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub address: IpAddr,
    pub port: u16,
    pub inode: u64,
}

/// A process, as `/proc` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    pub pid: u32,
    pub name: String,
}

/// A host port a running container publishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publication {
    pub container: String,
    /// `<project>/<service>` from the compose labels, when it has them.
    pub project_service: Option<(String, String)>,
    pub address: Option<IpAddr>,
    pub port: u16,
}

/// Each port deploy.toml declares, judged against this host's listening sockets (read from
/// `/proc`) and `publications`.
#[must_use]
pub fn rows_for(stack: &Stack, publications: &[Publication]) -> Vec<PortRow> {
    let listeners = listening_sockets(Path::new("/proc"));
    let wanted: Vec<u64> = listeners.iter().map(|listener| listener.inode).collect();
    let holders = socket_holders(Path::new("/proc"), &wanted);
    assess(stack, &declared_ports(stack), &listeners, &holders, publications)
}

/// Every host port deploy.toml declares: the enabled services' published ports in start order,
/// then the edge's.
#[must_use]
pub fn declared_ports(stack: &Stack) -> Vec<Declared> {
    let mut declared = Vec::new();
    for service in stack.start_order() {
        for port in &stack.config.services[service].ports {
            declared.push(Declared {
                port: port.host,
                claimant: Claimant::Service {
                    service: service.to_owned(),
                    container: stack.container_name(service),
                    container_port: port.container,
                },
            });
        }
    }
    let edge = &stack.config.edge;
    declared.push(Declared { port: edge.http_port, claimant: Claimant::Edge { key: "http_port" } });
    declared.push(Declared { port: edge.https_port, claimant: Claimant::Edge { key: "https_port" } });
    declared
}

/// Judges each declared port against what holds it.
#[must_use]
pub fn assess<S: std::hash::BuildHasher>(
    stack: &Stack,
    declared: &[Declared],
    listeners: &[Listener],
    holders: &HashMap<u64, Process, S>,
    publications: &[Publication],
) -> Vec<PortRow> {
    let address = stack.config.edge.upstream_host;
    let project = &stack.config.project.name;
    declared
        .iter()
        .map(|entry| {
            let publication = publications
                .iter()
                .find(|publication| publication.port == entry.port && blocks(publication.address, address));
            let listener = listeners
                .iter()
                .find(|listener| listener.port == entry.port && blocks(Some(listener.address), address));
            let owner = match (publication, listener) {
                (Some(publication), _) => {
                    Owner { kind: "container", pid: None, name: None, container: Some(publication.container.clone()) }
                }
                (None, Some(listener)) => {
                    let process = holders.get(&listener.inode);
                    Owner {
                        kind: "process",
                        pid: process.map(|process| process.pid),
                        name: process.map(|process| process.name.clone()),
                        container: None,
                    }
                }
                (None, None) => Owner { kind: "none", ..Owner::default() },
            };
            let bound = owner.kind != "none";
            let conflict = (bound && !is_expected(entry, &owner, publication, project)).then(|| taken(entry, &owner));
            PortRow {
                port: entry.port,
                address,
                declared_by: entry.declared_by(),
                container_port: match &entry.claimant {
                    Claimant::Service { container_port, .. } => Some(*container_port),
                    Claimant::Edge { .. } => None,
                },
                bound,
                owner,
                expected: entry.expected(),
                conflict,
            }
        })
        .collect()
}

/// Whether a socket on `held` keeps a listener from binding `wanted` on the same port: the same
/// address, or either side is the wildcard (`0.0.0.0`, `::`). `None` is the engine's "every
/// address".
fn blocks(held: Option<IpAddr>, wanted: IpAddr) -> bool {
    match held {
        None => true,
        Some(held) => held == wanted || held.is_unspecified() || wanted.is_unspecified(),
    }
}

fn is_expected(entry: &Declared, owner: &Owner, publication: Option<&Publication>, project: &str) -> bool {
    match &entry.claimant {
        Claimant::Service { service, container, .. } => {
            owner.container.as_deref() == Some(container.as_str())
                || publication
                    .and_then(|publication| publication.project_service.as_ref())
                    .is_some_and(|(owner_project, owner_service)| owner_project == project && owner_service == service)
        }
        // A process we may not name (another user's, without root) is given the benefit of the doubt.
        Claimant::Edge { .. } => owner.kind == "process" && owner.name.as_deref().is_none_or(|name| name == "nginx"),
    }
}

/// "port 3000 is taken by `python3` (pid 1234), so `masstock_api` cannot start: stop it or change
/// `[services.api] ports`".
fn taken(entry: &Declared, owner: &Owner) -> String {
    let holder = match (owner.kind, &owner.container, &owner.name, owner.pid) {
        ("container", Some(container), _, _) => format!("container `{container}`"),
        (_, _, Some(name), Some(pid)) => format!("`{name}` (pid {pid})"),
        _ => "a process masstockctl may not name (run it as root to see which)".to_owned(),
    };
    let blocked = match &entry.claimant {
        Claimant::Service { container, .. } => format!("{container} cannot start"),
        Claimant::Edge { .. } => "nginx cannot listen there".to_owned(),
    };
    let stop = if owner.kind == "container" { "stop that container" } else { "stop it" };
    format!("port {} is taken by {holder}, so {blocked}: {stop} or change `{}`", entry.port, entry.declared_by())
}

/// The listening TCP sockets in `<proc>/net/tcp` and `tcp6`. An unreadable file gives none.
#[must_use]
pub fn listening_sockets(proc: &Path) -> Vec<Listener> {
    let mut listeners = Vec::new();
    for (file, v6) in [("tcp", false), ("tcp6", true)] {
        let Ok(text) = fs_err::read_to_string(proc.join("net").join(file)) else { continue };
        listeners.extend(parse_proc_net_tcp(&text, v6));
    }
    listeners
}

/// The LISTEN rows (state `0A`) of a `/proc/net/tcp{,6}` table.
#[must_use]
pub fn parse_proc_net_tcp(text: &str, v6: bool) -> Vec<Listener> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            if fields.len() < 10 || fields[3] != "0A" {
                return None;
            }
            let (address, port) = fields[1].split_once(':')?;
            let port = u16::from_str_radix(port, 16).ok()?;
            // `::ffff:127.0.0.1` is the IPv4 address to whoever binds it.
            let address =
                if v6 { IpAddr::V6(parse_ipv6(address)?).to_canonical() } else { IpAddr::V4(parse_ipv4(address)?) };
            let inode = fields[9].parse().ok()?;
            Some(Listener { address, port, inode })
        })
        .collect()
}

/// The kernel prints an IPv4 address as one 32-bit word in host byte order.
fn parse_ipv4(hex: &str) -> Option<Ipv4Addr> {
    let word = u32::from_str_radix(hex, 16).ok()?;
    Some(Ipv4Addr::from(word.to_ne_bytes()))
}

/// …and an IPv6 address as four such words.
fn parse_ipv6(hex: &str) -> Option<Ipv6Addr> {
    if hex.len() != 32 {
        return None;
    }
    let mut bytes = [0_u8; 16];
    for (index, chunk) in bytes.chunks_mut(4).enumerate() {
        let word = u32::from_str_radix(&hex[index * 8..index * 8 + 8], 16).ok()?;
        chunk.copy_from_slice(&word.to_ne_bytes());
    }
    Some(Ipv6Addr::from(bytes))
}

/// For each socket inode in `wanted`, the process holding it (the lowest PID when several share
/// it, as nginx's master and workers do): `/proc/<pid>/fd/*` links read `socket:[<inode>]`.
/// Processes we may not look into are skipped.
#[must_use]
pub fn socket_holders(proc: &Path, wanted: &[u64]) -> HashMap<u64, Process> {
    let mut holders: HashMap<u64, Process> = HashMap::new();
    if wanted.is_empty() {
        return holders;
    }
    let Ok(entries) = fs_err::read_dir(proc) else { return holders };
    let mut pids: Vec<u32> =
        entries.filter_map(Result::ok).filter_map(|entry| entry.file_name().to_str()?.parse().ok()).collect();
    pids.sort_unstable();
    for pid in pids {
        let folder = proc.join(pid.to_string());
        let Ok(descriptors) = fs_err::read_dir(folder.join("fd")) else { continue };
        for descriptor in descriptors.filter_map(Result::ok) {
            let Ok(target) = fs_err::read_link(descriptor.path()) else { continue };
            let Some(inode) = target
                .to_str()
                .and_then(|target| target.strip_prefix("socket:["))
                .and_then(|rest| rest.strip_suffix(']'))
                .and_then(|inode| inode.parse::<u64>().ok())
            else {
                continue;
            };
            if wanted.contains(&inode) && !holders.contains_key(&inode) {
                let name = fs_err::read_to_string(folder.join("comm")).unwrap_or_default().trim().to_owned();
                holders.insert(inode, Process { pid, name });
            }
        }
    }
    holders
}

/// The host ports every running container publishes, or why the engine could not say.
pub async fn running_publications(docker: &Docker) -> Result<Vec<Publication>, DockerError> {
    let options = ListContainersOptionsBuilder::default().all(false).build();
    let containers = docker
        .list_containers(Some(options))
        .await
        .map_err(|error| docker::api_error("cannot list the containers", &error))?;
    Ok(containers.iter().flat_map(publications_of).collect())
}

fn publications_of(container: &ContainerSummary) -> Vec<Publication> {
    let name = docker::name_of(container);
    let labels = container.labels.as_ref();
    let project_service =
        labels.and_then(|labels| Some((labels.get(labels::PROJECT)?.clone(), labels.get(labels::SERVICE)?.clone())));
    container
        .ports
        .iter()
        .flatten()
        .filter(|port| port.typ.is_none_or(|typ| typ.to_string() == "tcp"))
        .filter_map(|port| {
            Some(Publication {
                container: name.clone(),
                project_service: project_service.clone(),
                address: port.ip.as_deref().and_then(|ip| ip.parse().ok()),
                port: port.public_port?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_net_tcp_rows_are_read_in_host_byte_order() {
        let v4 = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
                  0: 0100007F:0BB8 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4242 1 0 100 0 0 10 0\n\
                  1: 00000000:01BB 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 77 1 0 100 0 0 10 0\n\
                  2: 0100007F:0BB8 0100007F:D431 01 00000000:00000000 00:00000000 00000000  1000        0 0 1 0 100 0 0 10 0\n";
        let listeners = parse_proc_net_tcp(v4, false);
        assert_eq!(
            listeners,
            [
                Listener { address: "127.0.0.1".parse().unwrap(), port: 3000, inode: 4242 },
                Listener { address: "0.0.0.0".parse().unwrap(), port: 443, inode: 77 },
            ]
        );
        let v6 = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
                  0: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 99 1 0 100 0 0 10 0\n";
        assert_eq!(parse_proc_net_tcp(v6, true), [Listener { address: "::1".parse().unwrap(), port: 8080, inode: 99 }]);
    }

    #[test]
    fn a_wildcard_socket_blocks_every_address() {
        let loopback: IpAddr = "127.0.0.1".parse().unwrap();
        assert!(blocks(Some("0.0.0.0".parse().unwrap()), loopback));
        assert!(blocks(Some("::".parse().unwrap()), loopback));
        assert!(blocks(None, loopback));
        assert!(blocks(Some(loopback), loopback));
        assert!(!blocks(Some("192.0.2.7".parse().unwrap()), loopback));
        assert!(blocks(Some("192.0.2.7".parse().unwrap()), "0.0.0.0".parse().unwrap()));
    }

    #[test]
    fn this_process_is_found_holding_its_own_listener() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let sockets = listening_sockets(Path::new("/proc"));
        let socket = sockets.iter().find(|socket| socket.port == port).expect("our listener in /proc/net/tcp");
        let holders = socket_holders(Path::new("/proc"), &[socket.inode]);
        let me = &holders[&socket.inode];
        assert_eq!(me.pid, std::process::id());
        assert_eq!(me.name, fs_err::read_to_string("/proc/self/comm").unwrap().trim());
    }
}
