//! The `postgres` component: the managed database of `DATABASE_URL` dumped with `pg_dump
//! --format=custom`, put back and drilled with `pg_restore`, its figures (`rows.<table>`) counted
//! with `sqlx` (see `crate::backup` for the four functions' contract).
//!
//! # The database
//!
//! The API's `DATABASE_URL` (`[services.api.env]`, else the worker's), its `${…}` completed from
//! the env file by the one resolver, as `health`'s `postgres` check gets it. A
//! `host.docker.internal` host means the Docker host, this machine: it is reached on 127.0.0.1.
//!
//! **The URL never reaches argv, a message or a log.** `sqlx` gets it in memory; `pg_dump` and
//! `pg_restore` get it taken apart into `libpq`'s environment (`PGHOST`, `PGPORT`, `PGUSER`,
//! `PGDATABASE`, and `PGSSLMODE`, `PGSSLROOTCERT`, `PGOPTIONS`… from the URL's query), with every
//! `PG*` variable of our own environment removed first, so the database is `DATABASE_URL` and
//! nothing else. The password goes in a `PGPASSFILE`: a temporary file, mode 0600 (`libpq` refuses a
//! looser one), removed when the tool ends; not `PGPASSWORD`, which PostgreSQL's manual advises
//! against because some systems show a process's environment. The tools run with
//! `--no-password`, so a wrong password fails instead of prompting. Their stderr, quoted in errors,
//! is scrubbed of the password and of every value of the env file (`health::scrub`); servers are
//! named `host:port/database`.
//!
//! # The client
//!
//! `pg_dump` refuses a server newer than itself, and a newer `pg_dump` writes archives an older
//! `pg_restore` cannot read, so the tools' major version is the server's: `SHOW
//! server_version_num`, then `/usr/lib/postgresql/<major>/bin/pg_dump` (Debian's layout, which
//! holds every installed `postgresql-client-<major>` side by side), else a `pg_dump` on `PATH` whose
//! `--version` says that major; `pg_restore` is the one beside it. None: [`Error::NoClient`], whose
//! hint is `apt install postgresql-client-<major>` (PGDG's repository for versions Debian lacks).
//! [`client`] says which one a backup would use; `capture` reports it as a step too.
//!
//! # Capture
//!
//! One snapshot for the dump and the figures: a connection opens `BEGIN ISOLATION LEVEL
//! REPEATABLE READ, READ ONLY` and exports its snapshot (`pg_export_snapshot()`); `pg_dump` runs
//! with `--snapshot=<id>`, so it sees exactly what that transaction sees, while the same
//! transaction counts the rows of every table of the `public` schema (`rows.<table>`; partitions
//! count in their parent; in a savepoint, so that a failed count leaves the snapshot importable and
//! `pg_dump` says what is wrong). The transaction stays open until `pg_dump` ends. `pg_dump`'s stdout is
//! copied into the sink as it comes (no temporary file, never whole in memory). When `pg_dump` fails
//! (permissions, a wrong password, the server gone), the error quotes its words; when the sink
//! breaks (restic stopped), `pg_dump` is stopped too. The sink is flushed, not shut down: closing
//! restic's stdin is its owner's business.
//!
//! # Put back
//!
//! The caller has stopped the api and the worker. `pg_restore --clean --if-exists --no-owner
//! --single-transaction --exit-on-error` reads the dump on stdin: every object of the dump is
//! dropped and recreated in one transaction, so a failure (or a broken stream: `pg_restore` is
//! killed before it commits) changes nothing. Objects that are not in the dump (a table created
//! since) stay. A database that does not exist (dropped) is created first, from `template0`, by a
//! connection to the server's `postgres` maintenance database; it is owned by `DATABASE_URL`'s
//! role, as every restored object is (`--no-owner`).
//!
//! # Measure and drill
//!
//! `measure` counts the live database in one read-only repeatable-read transaction, with the same
//! function `capture` uses. `drill` creates a scratch database on the same server,
//! `<database>_drill_<random>` (the random part of the drill's prefix, cut to PostgreSQL's 63
//! bytes), from `template0`, recorded in the [`Scratch`] before it exists (its drop URL is
//! `DATABASE_URL`'s own database, which is never the scratch one), restores into it with
//! `--no-owner --no-acl --exit-on-error`, and counts it. Nothing is dropped here:
//! `Scratch::remove_all` does, whatever happened.

use std::ffi::OsStr;
use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::str::FromStr as _;
use std::time::Duration;

use sqlx::Connection as _;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::process::{Child, ChildStderr, Command};

use super::{Figures, Scratch, Target};
use crate::config::Stack;
use crate::health::{self, UnresolvedSecret};
use crate::report::Reporter;

/// The host that means "the Docker host" inside a container (`extra_hosts: host-gateway`).
const DOCKER_HOST_ALIAS: &str = "host.docker.internal";

/// Where Debian installs each `postgresql-client-<major>`: `<root>/<major>/bin/pg_dump`.
const DEBIAN_CLIENTS: &str = "/usr/lib/postgresql";

/// The database every PostgreSQL server has, to create another from.
const MAINTENANCE_DATABASE: &str = "postgres";

/// How long a connection may take, ours and the tools' (`PGCONNECT_TIMEOUT`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How much of a tool's stderr an error quotes.
const QUOTE_CHARS: usize = 2000;

/// The bytes `pg_restore` is fed at a time.
const CHUNK_BYTES: usize = 64 * 1024;

/// The URL query parameters `libpq`'s tools get as environment variables.
const LIBPQ_PARAMETERS: [(&str, &str); 11] = [
    ("sslmode", "PGSSLMODE"),
    ("sslrootcert", "PGSSLROOTCERT"),
    ("sslcert", "PGSSLCERT"),
    ("sslkey", "PGSSLKEY"),
    ("sslcrl", "PGSSLCRL"),
    ("options", "PGOPTIONS"),
    ("application_name", "PGAPPNAME"),
    ("connect_timeout", "PGCONNECT_TIMEOUT"),
    ("target_session_attrs", "PGTARGETSESSIONATTRS"),
    ("channel_binding", "PGCHANNELBINDING"),
    ("gssencmode", "PGGSSENCMODE"),
];

/// Why the database could not be dumped, restored or counted. No variant holds the URL or the
/// password; a tool's words are scrubbed of every secret.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("neither service `api` nor service `worker` has a `DATABASE_URL` in deploy.toml")]
    NoDatabaseUrl,
    #[error(transparent)]
    Unresolved(#[from] UnresolvedSecret),
    #[error("`DATABASE_URL` is not a PostgreSQL URL: {0}")]
    NotAUrl(String),
    #[error("cannot connect to `{server}`: {reason}")]
    Connect { server: String, reason: String },
    #[error("{what} on `{server}` failed: {reason}")]
    Query { server: String, what: String, reason: String },
    #[error("no `pg_dump` of PostgreSQL {major} (the server's major version) on this machine{}", found_clause(.found))]
    NoClient {
        major: String,
        /// What was found instead: ``"`/usr/bin/pg_dump` is 15.18"``.
        found: Vec<String>,
    },
    #[error("cannot {what}: {reason}")]
    Tool { what: String, reason: String },
    #[error("pg_dump of `{server}` failed ({status}): {stderr}")]
    Dump { server: String, status: String, stderr: String },
    #[error("pg_restore into `{server}` failed ({status}): {stderr}")]
    Restore {
        server: String,
        status: String,
        stderr: String,
        /// It ran in one transaction, rolled back: the database is as it was.
        unchanged: bool,
    },
    #[error("the dump stream broke: {0}")]
    Stream(String),
}

fn found_clause(found: &[String]) -> String {
    if found.is_empty() {
        String::new()
    } else {
        format!(" (found: {})", found.join(", "))
    }
}

impl Error {
    #[must_use]
    pub fn hints(&self) -> Vec<String> {
        match self {
            Self::NoDatabaseUrl => {
                vec!["declare it under `[services.api.env]`: `DATABASE_URL = \"${DATABASE_URL}\"`".to_owned()]
            }
            Self::Unresolved(_) => {
                vec!["write `DATABASE_URL` in the env file (`masstockctl secrets generate` adds it, empty, for you to fill in)"
                    .to_owned()]
            }
            Self::NotAUrl(_) => vec!["`DATABASE_URL` reads `postgres://user:password@host:5432/database`".to_owned()],
            Self::Connect { .. } => {
                vec!["check that the database runs and that `DATABASE_URL` in the env file is right".to_owned()]
            }
            Self::Query { reason, .. } | Self::Dump { stderr: reason, .. } => {
                let mut hints = Vec::new();
                if reason.contains("permission denied to create database") {
                    hints.push(
                        "the role of `DATABASE_URL` needs `CREATEDB`: a drill creates a scratch database, a restore \
                         recreates a dropped one"
                            .to_owned(),
                    );
                } else if reason.contains("permission denied") {
                    hints.push(
                        "the role of `DATABASE_URL` must be able to read every table: grant it `SELECT`, or back up with \
                         the owner's role"
                            .to_owned(),
                    );
                }
                if reason.contains("password authentication failed") {
                    hints.push("the password of `DATABASE_URL` in the env file is not the database's".to_owned());
                }
                hints
            }
            Self::NoClient { major, .. } => vec![format!(
                "install the client of that version: `apt install postgresql-client-{major}` (for a version Debian \
                 does not ship, add PGDG's repository first: https://apt.postgresql.org)"
            )],
            Self::Tool { .. } => vec![],
            Self::Restore { unchanged, .. } => {
                if *unchanged {
                    vec!["nothing was changed: the restore ran in one transaction, rolled back".to_owned()]
                } else {
                    vec![]
                }
            }
            Self::Stream(_) => vec!["the backup's other end (restic) stopped: its own error says why".to_owned()],
        }
    }
}

/// The `pg_dump` and `pg_restore` a backup uses: the server's major version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    /// The server's major version, as Debian names its folders: `15`, `9.6`.
    pub major: String,
    /// What `pg_dump --version` says: `15.18`.
    pub version: String,
    pub pg_dump: PathBuf,
    pub pg_restore: PathBuf,
}

impl fmt::Display for Client {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "pg_dump {} (`{}`)", self.version, self.pg_dump.display())
    }
}

/// The client a backup of the stack's database would use (asks the server its version).
pub async fn client(target: &Target<'_>) -> Result<Client, Error> {
    let database = Database::of(target.stack)?;
    let mut connection = database.connect(&database.name).await?;
    let client = database.client(&mut connection, &database.name).await;
    let _ = connection.close().await;
    client
}

/// Dumps the database into `sink` and returns the figures of that dump (see the module's docs).
pub async fn capture(target: &Target<'_>, sink: &mut (dyn AsyncWrite + Unpin + Send)) -> Result<Figures, Error> {
    let database = Database::of(target.stack)?;
    capture_database(&database, target.reporter, sink).await
}

/// Replaces the database's objects with those of the dump in `source`, creating the database when
/// it does not exist (see the module's docs).
pub async fn put_back(target: &Target<'_>, source: &mut (dyn AsyncRead + Unpin + Send)) -> Result<(), Error> {
    let database = Database::of(target.stack)?;
    put_back_database(&database, target.reporter, source).await
}

/// The figures of the live database.
pub async fn measure(target: &Target<'_>) -> Result<Figures, Error> {
    let database = Database::of(target.stack)?;
    measure_database(&database, &database.name).await
}

/// Restores the dump in `source` into a scratch database it records in `scratch`, and returns its
/// figures.
pub async fn drill(
    target: &Target<'_>,
    scratch: &mut Scratch,
    source: &mut (dyn AsyncRead + Unpin + Send),
) -> Result<Figures, Error> {
    let database = Database::of(target.stack)?;
    drill_database(&database, scratch, target.reporter, source).await
}

async fn capture_database(
    database: &Database,
    reporter: &dyn Reporter,
    sink: &mut (dyn AsyncWrite + Unpin + Send),
) -> Result<Figures, Error> {
    let name = &database.name;
    let server = database.server(name);
    let mut connection = database.connect(name).await?;
    let client = database.client(&mut connection, name).await?;
    reporter.step(&format!("postgres: dumping `{server}` with {client}"));
    let begin = "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY";
    sqlx::raw_sql(begin).execute(&mut connection).await.map_err(|error| database.query_error(name, begin, &error))?;
    let snapshot: String = sqlx::query_scalar("SELECT pg_export_snapshot()")
        .fetch_one(&mut connection)
        .await
        .map_err(|error| database.query_error(name, "pg_export_snapshot()", &error))?;
    // The counts run in a savepoint: one that fails (a table we may not read) aborts only the
    // savepoint, so the snapshot stays importable and pg_dump says what is wrong in its own words.
    sqlx::raw_sql("SAVEPOINT counting")
        .execute(&mut connection)
        .await
        .map_err(|error| database.query_error(name, "SAVEPOINT", &error))?;

    let password_file = database.password_file()?;
    let mut command = database.command(&client.pg_dump, name, password_file.as_ref());
    command.arg("--format=custom").arg(format!("--snapshot={snapshot}")).stdin(Stdio::null()).stdout(Stdio::piped());
    let mut child = command.spawn().map_err(|error| Error::Tool {
        what: format!("run `{}`", client.pg_dump.display()),
        reason: error.to_string(),
    })?;
    let stdout = child.stdout.take().expect("pg_dump's stdout is piped");
    let stderr = spawn_reader(child.stderr.take().expect("pg_dump's stderr is piped"));

    // The dump streams while the same snapshot is counted; the stdout handle is moved in so that a
    // broken sink closes the pipe and `pg_dump` stops instead of blocking.
    let copy = async move {
        let mut stdout = stdout;
        tokio::io::copy(&mut stdout, sink).await?;
        sink.flush().await
    };
    let counting = async {
        let figures = count_rows(database, &mut connection, name).await;
        if figures.is_err() {
            let _ = sqlx::raw_sql("ROLLBACK TO SAVEPOINT counting").execute(&mut connection).await;
        }
        figures
    };
    let (copied, figures) = tokio::join!(copy, counting);
    if copied.is_err() {
        let _ = child.start_kill();
    }
    let status = child.wait().await;
    let stderr = stderr.await.unwrap_or_default();
    // The snapshot's transaction ends only now that `pg_dump` has.
    let _ = sqlx::raw_sql("ROLLBACK").execute(&mut connection).await;
    let _ = connection.close().await;

    if let Err(error) = copied {
        return Err(Error::Stream(database.scrub(&error.to_string())));
    }
    let status =
        status.map_err(|error| Error::Tool { what: "wait for pg_dump".to_owned(), reason: error.to_string() })?;
    if !status.success() {
        return Err(Error::Dump { server, status: describe(status), stderr: database.quote(&stderr) });
    }
    figures
}

async fn put_back_database(
    database: &Database,
    reporter: &dyn Reporter,
    source: &mut (dyn AsyncRead + Unpin + Send),
) -> Result<(), Error> {
    let name = &database.name;
    let (mut connection, connected_to) = if let Some(connection) = database.connect_or_missing(name).await? {
        (connection, name.as_str())
    } else {
        let mut maintenance = database.connect(MAINTENANCE_DATABASE).await?;
        create_database(database, &mut maintenance, MAINTENANCE_DATABASE, name).await?;
        reporter.step(&format!("postgres: database `{name}` did not exist: created it"));
        (maintenance, MAINTENANCE_DATABASE)
    };
    let client = database.client(&mut connection, connected_to).await;
    let _ = connection.close().await;
    let client = client?;
    reporter.step(&format!("postgres: restoring `{}` with {client}", database.server(name)));
    let options = ["--clean", "--if-exists", "--no-owner", "--single-transaction"];
    restore(database, &client, name, &options, source).await
}

async fn drill_database(
    database: &Database,
    scratch: &mut Scratch,
    reporter: &dyn Reporter,
    source: &mut (dyn AsyncRead + Unpin + Send),
) -> Result<Figures, Error> {
    let live = &database.name;
    let mut connection = database.connect(live).await?;
    let client = match database.client(&mut connection, live).await {
        Ok(client) => client,
        Err(error) => {
            let _ = connection.close().await;
            return Err(error);
        }
    };
    let name = scratch_database_name(live, &scratch.prefix);
    scratch.add_database(database.url_for(live), name.clone());
    let created = create_database(database, &mut connection, live, &name).await;
    let _ = connection.close().await;
    created?;
    reporter.step(&format!("postgres: restoring into scratch database `{name}` with {client}"));
    restore(database, &client, &name, &["--no-owner", "--no-acl"], source).await?;
    measure_database(database, &name).await
}

/// The figures of database `name`, read in one read-only repeatable-read transaction.
async fn measure_database(database: &Database, name: &str) -> Result<Figures, Error> {
    let mut connection = database.connect(name).await?;
    let begin = "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY";
    let figures = match sqlx::raw_sql(begin).execute(&mut connection).await {
        Ok(_) => count_rows(database, &mut connection, name).await,
        Err(error) => Err(database.query_error(name, begin, &error)),
    };
    let _ = sqlx::raw_sql("ROLLBACK").execute(&mut connection).await;
    let _ = connection.close().await;
    figures
}

/// `rows.<table>` for every table of the `public` schema (a partitioned table counts its
/// partitions' rows; the partitions themselves are not listed).
async fn count_rows(database: &Database, connection: &mut sqlx::PgConnection, name: &str) -> Result<Figures, Error> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition ORDER BY 1",
    )
    .fetch_all(&mut *connection)
    .await
    .map_err(|error| database.query_error(name, "listing the tables of schema `public`", &error))?;
    let mut figures = Figures::new();
    for table in tables {
        let statement = format!("SELECT count(*) FROM public.{}", quote_identifier(&table));
        let rows: i64 = sqlx::query_scalar(&statement)
            .fetch_one(&mut *connection)
            .await
            .map_err(|error| database.query_error(name, &format!("counting the rows of `{table}`"), &error))?;
        figures.insert(format!("rows.{table}"), u64::try_from(rows).unwrap_or(0));
    }
    Ok(figures)
}

/// `CREATE DATABASE "<name>" TEMPLATE template0` through `connection` (to database `on`).
async fn create_database(
    database: &Database,
    connection: &mut sqlx::PgConnection,
    on: &str,
    name: &str,
) -> Result<(), Error> {
    let statement = format!("CREATE DATABASE {} TEMPLATE template0", quote_identifier(name));
    sqlx::raw_sql(&statement)
        .execute(connection)
        .await
        .map(drop)
        .map_err(|error| database.query_error(on, &format!("creating database `{name}`"), &error))
}

/// `pg_restore` of `source` into database `name`, with `options` and `--exit-on-error`.
async fn restore(
    database: &Database,
    client: &Client,
    name: &str,
    options: &[&str],
    source: &mut (dyn AsyncRead + Unpin + Send),
) -> Result<(), Error> {
    let unchanged = options.contains(&"--single-transaction");
    let password_file = database.password_file()?;
    let mut command = database.command(&client.pg_restore, name, password_file.as_ref());
    // An empty `--dbname` is `libpq`'s "not given": the database comes from `PGDATABASE`.
    command.args(options).arg("--exit-on-error").arg("--dbname=").stdin(Stdio::piped()).stdout(Stdio::null());
    let mut child = command.spawn().map_err(|error| Error::Tool {
        what: format!("run `{}`", client.pg_restore.display()),
        reason: error.to_string(),
    })?;
    let stdin = child.stdin.take().expect("pg_restore's stdin is piped");
    let stderr = spawn_reader(child.stderr.take().expect("pg_restore's stderr is piped"));
    let fed = feed(source, stdin, &mut child).await;
    let status = child.wait().await;
    let stderr = stderr.await.unwrap_or_default();
    if let Feed::SourceFailed(reason) = fed {
        return Err(Error::Stream(database.scrub(&reason)));
    }
    let status =
        status.map_err(|error| Error::Tool { what: "wait for pg_restore".to_owned(), reason: error.to_string() })?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::Restore {
            server: database.server(name),
            status: describe(status),
            stderr: database.quote(&stderr),
            unchanged,
        })
    }
}

/// How feeding a tool's stdin ended.
enum Feed {
    /// The source ended and stdin was closed.
    Done,
    /// The tool stopped reading (it failed: its status and stderr say why).
    ToolStopped,
    /// The source failed: the tool was killed before stdin closed, so it never saw a whole
    /// archive and never committed.
    SourceFailed(String),
}

async fn feed(
    source: &mut (dyn AsyncRead + Unpin + Send),
    mut stdin: tokio::process::ChildStdin,
    child: &mut Child,
) -> Feed {
    let mut buffer = vec![0_u8; CHUNK_BYTES];
    loop {
        let read = match source.read(&mut buffer).await {
            Ok(0) => break,
            Ok(read) => read,
            Err(error) => {
                let _ = child.start_kill();
                drop(stdin);
                return Feed::SourceFailed(error.to_string());
            }
        };
        if stdin.write_all(&buffer[..read]).await.is_err() {
            return Feed::ToolStopped;
        }
    }
    if stdin.shutdown().await.is_err() {
        return Feed::ToolStopped;
    }
    Feed::Done
}

/// Reads a tool's stderr to its end on a task of its own, so the tool never blocks on it.
fn spawn_reader(mut stderr: ChildStderr) -> tokio::task::JoinHandle<String> {
    tokio::spawn(async move {
        let mut bytes = Vec::new();
        let _ = stderr.read_to_end(&mut bytes).await;
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// `exit status 1`, `killed by signal 9`.
fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt as _;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        (None, None) => status.to_string(),
    }
}

/// `"name"`, with its double quotes doubled.
fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `<database>_drill_<random>`, `<random>` the last part of the drill's prefix, within
/// PostgreSQL's 63 bytes.
fn scratch_database_name(database: &str, prefix: &str) -> String {
    let random = prefix.rsplit('-').next().unwrap_or(prefix);
    let suffix = format!("_drill_{random}");
    let mut keep = 63_usize.saturating_sub(suffix.len()).min(database.len());
    while !database.is_char_boundary(keep) {
        keep -= 1;
    }
    format!("{}{suffix}", &database[..keep])
}

/// The client of PostgreSQL `major`: `<debian_root>/<major>/bin/pg_dump`, else the first
/// `pg_dump` in `path` (a `PATH` value) whose `--version` says that major; `pg_restore` beside it.
pub async fn find_client(major: &str, debian_root: &Path, path: Option<&OsStr>) -> Result<Client, Error> {
    let mut candidates = vec![debian_root.join(major).join("bin/pg_dump")];
    if let Some(path) = path {
        candidates.extend(std::env::split_paths(path).map(|folder| folder.join("pg_dump")));
    }
    let mut found = Vec::new();
    for pg_dump in candidates {
        if !pg_dump.is_file() || found.iter().any(|(seen, _): &(PathBuf, String)| *seen == pg_dump) {
            continue;
        }
        let Some(version) = tool_version(&pg_dump).await else {
            found.push((pg_dump, "of an unknown version".to_owned()));
            continue;
        };
        let pg_restore = pg_dump.with_file_name("pg_restore");
        if major_of(&version) == major && pg_restore.is_file() {
            return Ok(Client { major: major.to_owned(), version, pg_dump, pg_restore });
        }
        found.push((pg_dump, version));
    }
    Err(Error::NoClient {
        major: major.to_owned(),
        found: found.into_iter().map(|(path, version)| format!("`{}` is {version}", path.display())).collect(),
    })
}

/// The version `<tool> --version` says: `15.18` of `pg_dump (PostgreSQL) 15.18 (Debian …)`.
async fn tool_version(tool: &Path) -> Option<String> {
    let output = Command::new(tool).arg("--version").stdin(Stdio::null()).output().await.ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let after = text.split("(PostgreSQL)").nth(1)?.trim_start();
    let version: String = after.chars().take_while(|char| char.is_ascii_digit() || *char == '.').collect();
    (!version.is_empty()).then_some(version)
}

/// The major of a version as Debian names its folders: `15` of `15.18`, `9.6` of `9.6.24`.
fn major_of(version: &str) -> String {
    let mut parts = version.split('.');
    let first = parts.next().unwrap_or_default();
    match first.parse::<u32>() {
        Ok(number) if number < 10 => format!("{first}.{}", parts.next().unwrap_or("0")),
        _ => first.to_owned(),
    }
}

/// The major of `server_version_num`: `15` of `150018`, `9.6` of `90624`.
fn major_of_number(number: u32) -> String {
    if number >= 100_000 {
        (number / 10_000).to_string()
    } else {
        format!("{}.{}", number / 10_000, number / 100 % 100)
    }
}

/// `DATABASE_URL`, taken apart once.
struct Database {
    /// The URL, its Docker-host alias replaced by 127.0.0.1.
    url: url::Url,
    host: String,
    port: u16,
    user: Option<String>,
    password: Option<String>,
    /// The database it names.
    name: String,
    /// `libpq`'s environment from the URL's query (`PGSSLMODE`, …).
    parameters: Vec<(&'static str, String)>,
    /// What no message may show: the password, the URL, and every value of the env file.
    secrets: Vec<String>,
}

impl Database {
    /// The API's (else the worker's) `DATABASE_URL`, resolved.
    fn of(stack: &Stack) -> Result<Self, Error> {
        let (service, declared) = ["api", "worker"]
            .into_iter()
            .find_map(|service| Some((service, stack.environment_of(service).get("DATABASE_URL")?.clone())))
            .ok_or(Error::NoDatabaseUrl)?;
        let url = health::resolve_secrets(stack, &declared, &format!("`DATABASE_URL` of service `{service}`"))?;
        Self::parse(&url, health::secret_values(stack))
    }

    fn parse(text: &str, mut secrets: Vec<String>) -> Result<Self, Error> {
        let mut url = url::Url::parse(text).map_err(|error| Error::NotAUrl(error.to_string()))?;
        if !matches!(url.scheme(), "postgres" | "postgresql") {
            return Err(Error::NotAUrl(format!("the scheme is `{}`, not `postgres`", url.scheme())));
        }
        let query: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        let from_query = |key: &str| query.iter().find(|(name, _)| name == key).map(|(_, value)| value.clone());
        let mut host =
            url.host_str().map(str::to_owned).or_else(|| from_query("host")).unwrap_or_else(|| "localhost".to_owned());
        if host == DOCKER_HOST_ALIAS {
            "127.0.0.1".clone_into(&mut host);
            url.set_host(Some(&host)).map_err(|error| Error::NotAUrl(error.to_string()))?;
        }
        let port = match (url.port(), from_query("port")) {
            (Some(port), _) => port,
            (None, Some(port)) => {
                port.parse().map_err(|_| Error::NotAUrl(format!("the port `{port}` is not a number")))?
            }
            (None, None) => 5432,
        };
        let user = Some(percent_decode(url.username())).filter(|user| !user.is_empty()).or_else(|| from_query("user"));
        let password = url.password().map(percent_decode).or_else(|| from_query("password"));
        let name = Some(percent_decode(url.path().trim_start_matches('/')))
            .filter(|name| !name.is_empty())
            .or_else(|| from_query("dbname"))
            .or_else(|| user.clone())
            .ok_or_else(|| Error::NotAUrl("it names no database and no user".to_owned()))?;
        let parameters =
            LIBPQ_PARAMETERS.iter().filter_map(|(key, variable)| Some((*variable, from_query(key)?))).collect();
        secrets.extend(password.iter().cloned());
        secrets.push(text.to_owned());
        Ok(Self { url, host, port, user, password, name, parameters, secrets })
    }

    /// `host:port/database`, how messages name a database.
    fn server(&self, database: &str) -> String {
        format!("{}:{}/{database}", self.host, self.port)
    }

    /// The URL of `database` on the same server, with the same credentials.
    fn url_for(&self, database: &str) -> String {
        let mut url = self.url.clone();
        url.set_path(&format!("/{}", health::percent_encode(database)));
        if url.query_pairs().any(|(key, _)| key == "dbname") {
            let kept: Vec<(String, String)> =
                url.query_pairs().into_owned().filter(|(key, _)| key != "dbname").collect();
            url.query_pairs_mut().clear().extend_pairs(kept);
        }
        url.into()
    }

    async fn connect(&self, database: &str) -> Result<sqlx::PgConnection, Error> {
        self.connect_or_missing(database).await?.ok_or_else(|| Error::Connect {
            server: self.server(database),
            reason: format!("database `{database}` does not exist"),
        })
    }

    /// A connection to `database`, or `None` when the server says it does not exist.
    async fn connect_or_missing(&self, database: &str) -> Result<Option<sqlx::PgConnection>, Error> {
        let server = self.server(database);
        let options = sqlx::postgres::PgConnectOptions::from_str(&self.url_for(database))
            .map_err(|error| Error::NotAUrl(self.scrub(&error.to_string())))?;
        let connecting = sqlx::PgConnection::connect_with(&options);
        match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
            Err(_) => {
                Err(Error::Connect { server, reason: format!("no answer within {}s", CONNECT_TIMEOUT.as_secs()) })
            }
            Ok(Ok(connection)) => Ok(Some(connection)),
            Ok(Err(sqlx::Error::Database(error))) if error.code().as_deref() == Some("3D000") => Ok(None),
            Ok(Err(error)) => Err(Error::Connect { server, reason: self.scrub(&error.to_string()) }),
        }
    }

    /// The client whose major is the server's, asked through `connection` (to `database`).
    async fn client(&self, connection: &mut sqlx::PgConnection, database: &str) -> Result<Client, Error> {
        let number: String = sqlx::query_scalar("SHOW server_version_num")
            .fetch_one(connection)
            .await
            .map_err(|error| self.query_error(database, "SHOW server_version_num", &error))?;
        let number: u32 = number.trim().parse().map_err(|_| Error::Query {
            server: self.server(database),
            what: "SHOW server_version_num".to_owned(),
            reason: format!("`{number}` is not a version number"),
        })?;
        let path = std::env::var_os("PATH");
        find_client(&major_of_number(number), Path::new(DEBIAN_CLIENTS), path.as_deref()).await
    }

    fn query_error(&self, database: &str, what: &str, error: &sqlx::Error) -> Error {
        Error::Query { server: self.server(database), what: what.to_owned(), reason: self.scrub(&error.to_string()) }
    }

    /// A 0600 `PGPASSFILE` holding the password, removed when dropped; `None` without one.
    fn password_file(&self) -> Result<Option<tempfile::NamedTempFile>, Error> {
        let Some(password) = &self.password else { return Ok(None) };
        let failed =
            |error: std::io::Error| Error::Tool { what: "write a password file".to_owned(), reason: error.to_string() };
        // tempfile creates it 0600, which `libpq` requires of a password file.
        let mut file = tempfile::Builder::new().prefix("masstockctl-pgpass-").tempfile().map_err(failed)?;
        let escaped = password.replace('\\', "\\\\").replace(':', "\\:");
        writeln!(file.as_file_mut(), "*:*:*:*:{escaped}").and_then(|()| file.as_file_mut().flush()).map_err(failed)?;
        Ok(Some(file))
    }

    /// `program` aimed at `database` through `libpq`'s environment only.
    fn command(&self, program: &Path, database: &str, password_file: Option<&tempfile::NamedTempFile>) -> Command {
        let mut command = Command::new(program);
        for (variable, _) in std::env::vars_os() {
            if variable.to_string_lossy().starts_with("PG") {
                command.env_remove(variable);
            }
        }
        command.env("PGHOST", &self.host).env("PGPORT", self.port.to_string()).env("PGDATABASE", database);
        if let Some(user) = &self.user {
            command.env("PGUSER", user);
        }
        if let Some(file) = password_file {
            command.env("PGPASSFILE", file.path());
        }
        if !self.parameters.iter().any(|(variable, _)| *variable == "PGCONNECT_TIMEOUT") {
            command.env("PGCONNECT_TIMEOUT", CONNECT_TIMEOUT.as_secs().to_string());
        }
        for (variable, value) in &self.parameters {
            command.env(variable, value);
        }
        command.arg("--no-password").stderr(Stdio::piped()).kill_on_drop(true);
        command
    }

    fn scrub(&self, text: &str) -> String {
        health::scrub(text, &self.secrets)
    }

    /// A tool's stderr for a message: scrubbed, trimmed, at most [`QUOTE_CHARS`].
    fn quote(&self, stderr: &str) -> String {
        let text = self.scrub(stderr.trim());
        let text = text.lines().map(str::trim).filter(|line| !line.is_empty()).collect::<Vec<_>>().join("; ");
        if text.is_empty() {
            return "it said nothing".to_owned();
        }
        match text.char_indices().nth(QUOTE_CHARS) {
            Some((cut, _)) => format!("{}…", &text[..cut]),
            None => text,
        }
    }
}

/// `%XX` sequences decoded (a URL's user, password and path).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let hex = bytes
            .get(index + 1..index + 3)
            .and_then(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok());
        match (bytes[index], hex) {
            (b'%', Some(byte)) => {
                decoded.push(byte);
                index += 3;
            }
            (byte, _) => {
                decoded.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;
    use crate::report::Silent;
    use crate::secrets::EnvFile;

    /// The role `script/bootstrap` creates that may log in but read none of masstock's tables.
    const NOREAD_USER: &str = "masstock_noread";
    const NOREAD_PASSWORD: &str = "noread-pw-7c1e";

    fn admin_url() -> String {
        std::env::var("DATABASE_URL")
            .unwrap_or_else(|_| "postgres://masstock:masstock@127.0.0.1:5432/masstock_test".to_owned())
    }

    fn url_of(database: &str) -> String {
        let mut url = url::Url::parse(&admin_url()).unwrap();
        url.set_path(&format!("/{database}"));
        url.into()
    }

    fn url_as(user: &str, password: &str, database: &str) -> String {
        let mut url = url::Url::parse(&url_of(database)).unwrap();
        url.set_username(user).unwrap();
        url.set_password(Some(password)).unwrap();
        url.into()
    }

    async fn connect(url: &str) -> sqlx::PgConnection {
        let options = sqlx::postgres::PgConnectOptions::from_str(url).unwrap();
        sqlx::PgConnection::connect_with(&options)
            .await
            .unwrap_or_else(|error| panic!("PostgreSQL is not reachable ({error}): run `script/bootstrap`"))
    }

    async fn execute(url: &str, statements: &str) {
        let mut connection = connect(url).await;
        sqlx::raw_sql(statements).execute(&mut connection).await.unwrap();
        connection.close().await.unwrap();
    }

    async fn exists(name: &str) -> bool {
        let mut connection = connect(&admin_url()).await;
        let found: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
            .bind(name)
            .fetch_optional(&mut connection)
            .await
            .unwrap();
        connection.close().await.unwrap();
        found.is_some()
    }

    /// A database of this test's own, dropped when it goes out of scope, even after a failure.
    struct TestDatabase {
        name: String,
        url: String,
    }

    impl TestDatabase {
        /// A new database with `users`, `executions` (one per user) and `execution_results`.
        async fn seeded(purpose: &str) -> Self {
            let name = format!("pgbackup_{purpose}_{}", super::super::random_hex());
            execute(&admin_url(), &format!("CREATE DATABASE {}", quote_identifier(&name))).await;
            let database = Self { url: url_of(&name), name };
            execute(
                &database.url,
                "CREATE TABLE users (id serial PRIMARY KEY, email text NOT NULL);
                 CREATE TABLE executions (id serial PRIMARY KEY, user_id int NOT NULL REFERENCES users(id), payload text);
                 CREATE TABLE execution_results (id serial PRIMARY KEY, execution_id int REFERENCES executions(id), body text);
                 INSERT INTO users (email) SELECT 'user' || n || '@example.com' FROM generate_series(1, 200) n;
                 INSERT INTO executions (user_id, payload) SELECT n, repeat('p', 200) FROM generate_series(1, 200) n;
                 INSERT INTO execution_results (execution_id, body) SELECT 1 + n % 200, md5(n::text) FROM generate_series(1, 30000) n;",
            )
            .await;
            database
        }
    }

    impl Drop for TestDatabase {
        fn drop(&mut self) {
            let name = self.name.clone();
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                runtime.block_on(super::super::drop_database(&admin_url(), &name))
            })
            .join()
            .expect("the drop thread ends")
            .expect("the test database is dropped");
        }
    }

    /// The shipped deploy.toml with an env file whose `DATABASE_URL` is `url`.
    fn stack(url: &str) -> Stack {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy.toml");
        let mut stack = Stack::load(&path, "production").expect("the shipped deploy.toml is valid");
        let env_file = EnvFile::parse(Path::new("/nowhere/.env"), &format!("DATABASE_URL={url}\n")).unwrap();
        stack.secrets.env_file = Some(env_file);
        stack
    }

    fn docker() -> bollard::Docker {
        bollard::Docker::connect_with_local_defaults().expect("a Docker client")
    }

    fn target<'a>(stack: &'a Stack, docker: &'a bollard::Docker) -> Target<'a> {
        Target { stack, docker, reporter: &Silent }
    }

    #[tokio::test]
    async fn capture_dumps_and_counts_one_snapshot_while_rows_are_inserted() {
        let database = TestDatabase::seeded("capture").await;
        let (stack, docker) = (stack(&database.url), docker());
        let target = target(&stack, &docker);
        // Another connection adds a user and their execution in one transaction, over and over: any
        // consistent view has as many executions as users.
        let stop = AtomicBool::new(false);
        let inserting = async {
            let mut connection = connect(&database.url).await;
            let mut pairs = 0_u64;
            while !stop.load(Ordering::Relaxed) {
                sqlx::raw_sql(
                    "BEGIN; WITH added AS (INSERT INTO users (email) VALUES ('late@example.com') RETURNING id)
                     INSERT INTO executions (user_id) SELECT id FROM added; COMMIT;",
                )
                .execute(&mut connection)
                .await
                .unwrap();
                pairs += 1;
            }
            connection.close().await.unwrap();
            pairs
        };
        let mut dump = Vec::new();
        let capturing = async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let figures = capture(&target, &mut dump).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
            stop.store(true, Ordering::Relaxed);
            figures
        };
        let (pairs, figures) = tokio::join!(inserting, capturing);
        let figures = figures.expect("the capture succeeds");

        assert_eq!(
            figures.keys().collect::<Vec<_>>(),
            ["rows.execution_results", "rows.executions", "rows.users"],
            "every table of `public`"
        );
        assert_eq!(figures["rows.users"], figures["rows.executions"], "one snapshot: {figures:?}");
        assert!(figures["rows.users"] > 200, "rows inserted before the capture are in it: {figures:?}");
        assert_eq!(figures["rows.execution_results"], 30_000);
        assert!(dump.starts_with(b"PGDMP"), "a custom-format archive");
        let live = measure(&target).await.unwrap();
        assert_eq!(live["rows.users"], 200 + pairs, "measure counts the live database");
        assert!(live["rows.users"] > figures["rows.users"], "rows were inserted after the snapshot: {live:?}");

        // What the dump holds is what the figures say: restored into a scratch database, it counts
        // the same.
        let mut scratch = Scratch::new(&stack);
        let drilled = drill(&target, &mut scratch, &mut dump.as_slice()).await;
        let recorded = scratch.databases.clone();
        let problems = scratch.remove_all(&docker).await;
        assert_eq!(drilled.expect("the drill succeeds"), figures);
        assert_eq!(recorded.len(), 1, "{recorded:?}");
        let (drop_url, scratch_name) = &recorded[0];
        assert!(scratch_name.starts_with(&format!("{}_drill_", database.name)), "{scratch_name}");
        assert_eq!(*drop_url, database.url, "dropped from the live database's connection");
        assert!(problems.is_empty(), "{problems:?}");
        assert!(!exists(scratch_name).await, "remove_all drops the scratch database");
    }

    #[tokio::test]
    async fn put_back_undoes_changes_in_one_transaction_and_recreates_a_dropped_database() {
        let database = TestDatabase::seeded("putback").await;
        let (stack, docker) = (stack(&database.url), docker());
        let target = target(&stack, &docker);
        let mut dump = Vec::new();
        let figures = capture(&target, &mut dump).await.unwrap();
        execute(
            &database.url,
            "INSERT INTO users (email) VALUES ('new@example.com');
             DELETE FROM execution_results WHERE id % 2 = 0;
             UPDATE users SET email = 'changed' WHERE id = 1;",
        )
        .await;
        let changed = measure(&target).await.unwrap();
        assert_ne!(changed, figures);

        // A broken archive fails and changes nothing.
        let error = put_back(&target, &mut &dump[..dump.len() / 2]).await.expect_err("half a dump is refused");
        assert!(matches!(error, Error::Restore { unchanged: true, .. }), "{error:?}");
        assert!(error.hints().iter().any(|hint| hint.contains("nothing was changed")), "{:?}", error.hints());
        assert_eq!(measure(&target).await.unwrap(), changed, "the failed restore was rolled back");

        // So does a stream that breaks (restic dies mid-dump): pg_restore is killed before it commits.
        let mut breaking = (&dump[..dump.len() / 2]).chain(BreakingSource);
        let error = put_back(&target, &mut breaking).await.expect_err("a broken stream is refused");
        assert!(matches!(error, Error::Stream(_)), "{error:?}");
        assert_eq!(measure(&target).await.unwrap(), changed, "the interrupted restore was rolled back");

        execute(&database.url, "DROP TABLE execution_results").await;
        put_back(&target, &mut dump.as_slice()).await.expect("the restore succeeds");
        assert_eq!(measure(&target).await.unwrap(), figures, "the changes are gone");
        let mut connection = connect(&database.url).await;
        let email: String =
            sqlx::query_scalar("SELECT email FROM users WHERE id = 1").fetch_one(&mut connection).await.unwrap();
        connection.close().await.unwrap();
        assert_eq!(email, "user1@example.com");

        super::super::drop_database(&admin_url(), &database.name).await.unwrap();
        assert!(!exists(&database.name).await);
        put_back(&target, &mut dump.as_slice()).await.expect("a dropped database is created and restored");
        assert_eq!(measure(&target).await.unwrap(), figures, "everything is back");
    }

    #[tokio::test]
    async fn the_services_schema_comes_back_whole_from_a_dropped_database_and_in_a_drill() {
        let name = format!("pgbackup_schema_{}", super::super::random_hex());
        execute(&admin_url(), &format!("CREATE DATABASE {}", quote_identifier(&name))).await;
        let database = TestDatabase { url: url_of(&name), name };
        let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("../services/schema/migrations");
        let mut migrations: Vec<PathBuf> =
            fs_err::read_dir(&folder).unwrap().map(|entry| entry.unwrap().path()).collect();
        migrations.sort();
        for migration in &migrations {
            execute(&database.url, &fs_err::read_to_string(migration).unwrap()).await;
        }
        execute(
            &database.url,
            "INSERT INTO users (email, password_hash) VALUES ('ada@example.com', '$argon2id$v=19$x');
             INSERT INTO executions (user_id, workflow_id, prompts, progress_total)
               SELECT id, '0b6f2c1e-6a43-4c1f-9a57-2d1e5f0c7a10', '[\"a cat\", \"a dog\"]', 2 FROM users;
             INSERT INTO execution_results (execution_id, prompt_index, content_type, storage_location, size_bytes)
               SELECT id, 0, 'image/png', 'results/a.png', 1234 FROM executions;
             INSERT INTO execution_prompt_failures (execution_id, prompt_index, error, permanent)
               SELECT id, 1, 'refused', true FROM executions;",
        )
        .await;
        let (stack, docker) = (stack(&database.url), docker());
        let target = target(&stack, &docker);
        let mut dump = Vec::new();
        let figures = capture(&target, &mut dump).await.unwrap();
        for table in ["users", "executions", "execution_results", "execution_prompt_failures", "workflows"] {
            assert_eq!(figures[&format!("rows.{table}")], 1, "{figures:?}");
        }

        let mut scratch = Scratch::new(&stack);
        let drilled = drill(&target, &mut scratch, &mut dump.as_slice()).await;
        let problems = scratch.remove_all(&docker).await;
        assert_eq!(drilled.unwrap(), figures);
        assert!(problems.is_empty(), "{problems:?}");

        super::super::drop_database(&admin_url(), &database.name).await.unwrap();
        put_back(&target, &mut dump.as_slice()).await.expect("the schema and its rows come back");
        assert_eq!(measure(&target).await.unwrap(), figures);
        let mut connection = connect(&database.url).await;
        let (email, results): (String, i64) = sqlx::query_as(
            "SELECT u.email, count(r.id) FROM users u JOIN executions e ON e.user_id = u.id \
             JOIN execution_results r ON r.execution_id = e.id GROUP BY u.email",
        )
        .fetch_one(&mut connection)
        .await
        .unwrap();
        // The defaults and constraints came back with the tables.
        sqlx::raw_sql("INSERT INTO users (email, password_hash) VALUES ('bob@example.com', '$argon2id$v=19$y')")
            .execute(&mut connection)
            .await
            .unwrap();
        let duplicate =
            sqlx::raw_sql("INSERT INTO users (email, password_hash) VALUES ('ADA@example.com', '$argon2id$z')")
                .execute(&mut connection)
                .await;
        connection.close().await.unwrap();
        assert_eq!((email.as_str(), results), ("ada@example.com", 1));
        assert!(duplicate.is_err(), "the unique index on lower(email) is back");
    }

    #[tokio::test]
    async fn a_refused_dump_quotes_pg_dump_and_never_the_password() {
        let database = TestDatabase::seeded("refused").await;
        let docker = docker();
        let noread = stack(&url_as(NOREAD_USER, NOREAD_PASSWORD, &database.name));
        let mut dump = Vec::new();
        let error = match capture(&target(&noread, &docker), &mut dump).await {
            Err(Error::Connect { reason, .. }) if reason.contains("password authentication failed") => {
                panic!("role `{NOREAD_USER}` cannot log in: run `script/bootstrap`")
            }
            other => other.expect_err("a role that may not read the tables cannot dump them"),
        };
        let message = error.to_string();
        assert!(matches!(error, Error::Dump { .. }), "pg_dump's refusal, not our count's: {error:?}");
        assert!(message.contains("pg_dump: error:") && message.contains("permission denied"), "{message}");
        assert!(message.contains(&format!("127.0.0.1:5432/{}", database.name)), "{message}");
        assert!(!message.contains(NOREAD_PASSWORD), "{message}");
        assert!(error.hints().iter().any(|hint| hint.contains("grant it `SELECT`")), "{:?}", error.hints());

        // Nor may it create the drill's scratch database.
        let mut scratch = Scratch::new(&noread);
        let error = drill(&target(&noread, &docker), &mut scratch, &mut &b""[..]).await.expect_err("no CREATEDB");
        let problems = scratch.remove_all(&docker).await;
        assert!(error.to_string().contains("permission denied to create database"), "{error}");
        assert!(error.hints().iter().any(|hint| hint.contains("needs `CREATEDB`")), "{:?}", error.hints());
        assert!(problems.is_empty(), "a database never created is not a problem: {problems:?}");

        let wrong = "wrong-pw-%2F-3b9d";
        let stack = stack(&url_as("masstock", wrong, &database.name));
        let error = capture(&target(&stack, &docker), &mut dump).await.expect_err("a wrong password is refused");
        let message = format!("{error} {:?}", error.hints());
        assert!(message.contains("password authentication failed"), "{message}");
        assert!(!message.contains("wrong-pw"), "{message}");
    }

    /// A source that fails, as `restic dump` does when the repository goes away.
    struct BreakingSource;

    impl AsyncRead for BreakingSource {
        fn poll_read(
            self: std::pin::Pin<&mut Self>,
            _context: &mut std::task::Context<'_>,
            _buffer: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Err(std::io::Error::other("the repository went away")))
        }
    }

    /// A sink that takes `room` bytes, then breaks as a dead restic's stdin does.
    struct BreakingSink {
        room: usize,
    }

    impl AsyncWrite for BreakingSink {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            _context: &mut std::task::Context<'_>,
            buffer: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            if self.room == 0 {
                return std::task::Poll::Ready(Err(std::io::ErrorKind::BrokenPipe.into()));
            }
            let taken = buffer.len().min(self.room);
            self.room -= taken;
            std::task::Poll::Ready(Ok(taken))
        }

        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _context: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }

        fn poll_shutdown(
            self: std::pin::Pin<&mut Self>,
            _context: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn a_broken_sink_or_a_server_gone_is_an_error_not_a_hang() {
        let database = TestDatabase::seeded("broken").await;
        let (live, docker) = (stack(&database.url), docker());
        let mut sink = BreakingSink { room: 4096 };
        let live = target(&live, &docker);
        let capturing = capture(&live, &mut sink);
        let error = tokio::time::timeout(Duration::from_secs(30), capturing)
            .await
            .expect("pg_dump is stopped, not left blocking")
            .expect_err("a broken sink fails the capture");
        assert!(matches!(error, Error::Stream(_)), "{error:?}");
        assert!(error.hints().iter().any(|hint| hint.contains("restic")), "{:?}", error.hints());

        let port = masstock_tests::free_port();
        let gone = stack(&format!("postgres://masstock:gone-pw-41d0@127.0.0.1:{port}/masstock"));
        let error = capture(&target(&gone, &docker), &mut Vec::new()).await.expect_err("nothing listens there");
        let message = format!("{error} {:?}", error.hints());
        assert!(message.starts_with(&format!("cannot connect to `127.0.0.1:{port}/masstock`")), "{message}");
        assert!(message.contains("check that the database runs"), "{message}");
        assert!(!message.contains("gone-pw"), "{message}");
    }

    #[tokio::test]
    async fn the_client_is_the_one_of_the_servers_major() {
        let database = TestDatabase::seeded("client").await;
        let (stack, docker) = (stack(&database.url), docker());
        let client = client(&target(&stack, &docker)).await.unwrap();
        let mut connection = connect(&database.url).await;
        let number: String = sqlx::query_scalar("SHOW server_version_num").fetch_one(&mut connection).await.unwrap();
        connection.close().await.unwrap();
        let major = major_of_number(number.parse().unwrap());
        assert_eq!(client.major, major);
        assert_eq!(client.pg_dump, Path::new(DEBIAN_CLIENTS).join(&major).join("bin/pg_dump"), "Debian's layout first");
        assert_eq!(client.pg_restore, client.pg_dump.with_file_name("pg_restore"));
        assert_eq!(major_of(&client.version), major);
        assert!(client.to_string().starts_with(&format!("pg_dump {major}.")), "{client}");
    }

    #[tokio::test]
    async fn without_debians_layout_a_pg_dump_on_path_of_that_major_is_used() {
        let pg_dump = which("pg_dump");
        let version = tool_version(&pg_dump).await.expect("pg_dump says its version");
        let empty = tempfile::tempdir().unwrap();
        let folder = pg_dump.parent().unwrap().as_os_str();
        let client = find_client(&major_of(&version), empty.path(), Some(folder)).await.unwrap();
        assert_eq!((client.pg_dump, client.version), (pg_dump, version));
    }

    #[tokio::test]
    async fn a_major_that_is_not_installed_says_which_package_to_install() {
        let path = std::env::var_os("PATH");
        let error = find_client("99", Path::new(DEBIAN_CLIENTS), path.as_deref()).await.expect_err("no PostgreSQL 99");
        let message = error.to_string();
        assert!(message.starts_with("no `pg_dump` of PostgreSQL 99"), "{message}");
        assert!(message.contains(&format!("`{}` is ", which("pg_dump").display())), "says what it found: {message}");
        assert!(error.hints()[0].contains("`apt install postgresql-client-99`"), "{:?}", error.hints());
    }

    /// `tool`'s path on `PATH`; fails with the way to install it.
    fn which(tool: &str) -> PathBuf {
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .map(|folder| folder.join(tool))
            .find(|path| path.is_file())
            .unwrap_or_else(|| panic!("`{tool}` is not installed: run `script/bootstrap`"))
    }

    #[test]
    fn the_url_reaches_the_tools_only_through_their_environment() {
        let url = "postgres://app%40x:p%3Ass%2Fw0rd@host.docker.internal:6543/main?sslmode=require&options=-c%20x%3D1";
        let database = Database::parse(url, Vec::new()).unwrap();
        assert_eq!(
            (database.host.as_str(), database.port, database.user.as_deref(), database.password.as_deref()),
            ("127.0.0.1", 6543, Some("app@x"), Some("p:ss/w0rd"))
        );
        assert_eq!(database.name, "main");
        assert_eq!(
            database.url_for("other"),
            "postgres://app%40x:p%3Ass%2Fw0rd@127.0.0.1:6543/other?sslmode=require&options=-c%20x%3D1"
        );
        let file = database.password_file().unwrap().unwrap();
        assert_eq!(fs_err::read_to_string(file.path()).unwrap(), "*:*:*:*:p\\:ss/w0rd\n");
        {
            use std::os::unix::fs::PermissionsExt as _;
            assert_eq!(fs_err::metadata(file.path()).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let command = database.command(Path::new("/bin/true"), "main", Some(&file));
        let command = command.as_std();
        let arguments: Vec<_> = command.get_args().collect();
        assert_eq!(arguments, ["--no-password"]);
        let environment: BTreeMap<_, _> =
            command.get_envs().filter_map(|(key, value)| Some((key.to_str()?, value?.to_str()?))).collect();
        assert_eq!(environment["PGHOST"], "127.0.0.1");
        assert_eq!(environment["PGPORT"], "6543");
        assert_eq!(environment["PGUSER"], "app@x");
        assert_eq!(environment["PGDATABASE"], "main");
        assert_eq!(environment["PGSSLMODE"], "require");
        assert_eq!(environment["PGOPTIONS"], "-c x=1");
        assert_eq!(environment["PGPASSFILE"], file.path().to_str().unwrap());
        assert!(!environment.contains_key("PGPASSWORD"));
        assert!(!environment.values().any(|value| value.contains("w0rd")), "{environment:?}");
        assert_eq!(database.quote("FATAL: p:ss/w0rd and p%3Ass%2Fw0rd\n"), "FATAL: *** and ***");
    }

    #[test]
    fn names_and_versions() {
        assert_eq!(major_of_number(150_018), "15");
        assert_eq!(major_of_number(170_002), "17");
        assert_eq!(major_of_number(90_624), "9.6");
        assert_eq!(major_of("15.18"), "15");
        assert_eq!(major_of("9.6.24"), "9.6");
        assert_eq!(scratch_database_name("masstock", "masstock-drill-0a1b2c3d4e"), "masstock_drill_0a1b2c3d4e");
        let long = scratch_database_name(&"é".repeat(40), "p-drill-0a1b2c3d4e");
        assert!(long.len() <= 63 && long.ends_with("_drill_0a1b2c3d4e"), "{long}");
        assert!(Database::parse("redis://x@y/0", Vec::new()).is_err());
    }
}
