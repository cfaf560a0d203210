//! `masstockctl ports`: every host port deploy.toml declares, who holds it now (a process, found
//! through `/proc`, or a container, through the engine), and whether that blocks the stack (the
//! inspection lives in `crate::ports`).

use std::process::ExitCode;

use crate::commands::GlobalArgs;
use crate::docker;
use crate::error::CommandError;
use crate::ports::{rows_for, running_publications, PortRow};
use crate::ui::Ui;

/// Show the host ports of the stack, who holds them, and the conflicts
///
/// One row per port deploy.toml declares: each enabled service's published `host` port (with its
/// container port) on `edge.upstream_host`, and the edge's `http_port` and `https_port`. For each:
/// whether something listens there (TCP), and who: a container that publishes it (whether Docker
/// forwards it with docker-proxy or iptables), else the process holding the listening socket (its
/// PID and command name, read from `/proc/net/tcp{,6}` and `/proc/<pid>/fd`; another user's
/// processes need root to be named).
///
/// The expected owner of a service's port is its container `<project>_<service>`; of an edge
/// port, nginx. A conflict is a port held by anything else: it keeps the container (or nginx) from
/// starting, and the row says what to stop or which key to change. A port nobody holds is no
/// conflict: `status` and `health` say whether the service runs. A port declared twice never gets
/// this far: deploy.toml is refused (exit 2), pointing at the second declaration.
///
/// Exit status: 0 without conflicts, 1 with. `--json` prints `{"ports": [{"port", "address",
/// "declared_by", "container_port", "bound", "owner": {"kind": "process|container|none", "pid",
/// "name", "container"}, "expected", "conflict"}]}`.
///
/// Example: `masstockctl ports --json | jq '.ports[] | select(.conflict)'`
#[derive(Debug, clap::Args)]
pub struct PortsArgs {}

pub fn cmd_ports(global: &GlobalArgs, ui: &Ui, _args: &PortsArgs) -> Result<ExitCode, CommandError> {
    let stack = global.load_stack_without_env_file()?;
    let publications = crate::runtime::block_on(async {
        let docker = docker::connect().await.map_err(|error| error.chain().join(": "))?;
        running_publications(&docker).await.map_err(|error| error.to_string())
    })?;
    let publications = match publications {
        Ok(publications) => publications,
        Err(reason) => {
            ui.info(format!("note: {reason}; ports are matched with processes only"));
            Vec::new()
        }
    };
    let rows = rows_for(&stack, &publications);
    let conflicts = rows.iter().filter(|row| row.conflict.is_some()).count();
    if ui.json {
        ui.json_document(&serde_json::json!({ "ports": rows }));
    } else {
        ui.data(&render(&rows));
        for row in &rows {
            if let Some(conflict) = &row.conflict {
                ui.failure(conflict);
            }
        }
        if conflicts == 0 {
            ui.info(format!("no conflict: {} ports declared", rows.len()));
        }
    }
    Ok(if conflicts == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// The table operators read.
fn render(rows: &[PortRow]) -> String {
    let headers = ["PORT", "ADDRESS", "DECLARED BY", "CONTAINER PORT", "BOUND BY", "EXPECTED", ""];
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            let holder = match (row.owner.kind, &row.owner.container, &row.owner.name, row.owner.pid) {
                ("container", Some(container), _, _) => format!("container {container}"),
                ("process", _, Some(name), Some(pid)) => format!("{name} (pid {pid})"),
                ("process", _, _, _) => "a process (not ours to name)".to_owned(),
                _ => "-".to_owned(),
            };
            vec![
                row.port.to_string(),
                row.address.to_string(),
                row.declared_by.clone(),
                row.container_port.map_or_else(|| "-".to_owned(), |port| port.to_string()),
                holder,
                row.expected.clone(),
                if row.conflict.is_some() { "CONFLICT".to_owned() } else { "ok".to_owned() },
            ]
        })
        .collect();
    crate::ui::table(&headers, &[], &cells)
}
