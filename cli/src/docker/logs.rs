//! Containers' output as `docker compose logs` shows it: one container's stream as it is, or
//! several interleaved line by line, each line behind its service's name.
//!
//! [`stream`] reads the Engine API's log streams and hands each piece to a sink with the stream it
//! was written to (stdout or stderr), so the CLI writes them to its own stdout and stderr and a
//! console can send them elsewhere. With one container the pieces are the engine's, byte for
//! byte. With several, every container's output is cut into lines (a line split across two
//! pieces is joined first) and each line goes out as `<service> | <line>`, the names padded to
//! the longest, in the order the lines arrive; a last line without its newline gets one when its
//! stream ends.

use std::collections::HashMap;
use std::io;

use bollard::container::LogOutput;
use bollard::query_parameters::LogsOptions;
use bollard::Docker;
use futures_util::stream::{self, StreamExt as _};

/// Why the output stopped before the containers' streams ended.
#[derive(Debug, thiserror::Error)]
pub enum LogsError {
    #[error("failed to read the logs of `{container}`")]
    Read {
        container: String,
        #[source]
        source: bollard::errors::Error,
    },
}

/// Which of the container's streams a piece of output was written to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Output {
    Stdout,
    Stderr,
}

/// A container to read, and the service name its lines carry when there are several.
#[derive(Debug, Clone)]
pub struct Source {
    pub service: String,
    pub container: String,
}

/// What a sink answers: keep going, or stop reading (a closed pipe, a console that went away).
pub type Flow = io::Result<()>;

/// Reads the logs of `sources` with `options` (follow, tail, since, timestamps) and gives each
/// piece to `sink` with its stream. Ends when every stream has ended, or quietly when the sink
/// returns an error.
pub async fn stream(
    docker: &Docker,
    sources: &[Source],
    options: &LogsOptions,
    mut sink: impl FnMut(Output, &[u8]) -> Flow,
) -> Result<(), LogsError> {
    let streams = sources
        .iter()
        .enumerate()
        .map(|(index, source)| docker.logs(&source.container, Some(options.clone())).map(move |item| (index, item)));
    let mut merged = stream::select_all(streams);
    let prefixes = prefixes(sources);
    let mut pending: HashMap<(usize, Output), Vec<u8>> = HashMap::new();
    while let Some((index, item)) = merged.next().await {
        let (output, message) = match item {
            Ok(LogOutput::StdErr { message }) => (Output::Stderr, message),
            // A container with a terminal has one stream, which is its stdout.
            Ok(LogOutput::StdOut { message } | LogOutput::Console { message }) => (Output::Stdout, message),
            Ok(LogOutput::StdIn { .. }) => continue,
            Err(source) => return Err(LogsError::Read { container: sources[index].container.clone(), source }),
        };
        let flow = if sources.len() == 1 {
            sink(output, &message)
        } else {
            let buffer = pending.entry((index, output)).or_default();
            buffer.extend_from_slice(&message);
            write_complete_lines(buffer, &prefixes[index], |line| sink(output, line))
        };
        if flow.is_err() {
            return Ok(());
        }
    }
    // Lines the containers left without a newline: close them, in the sources' order.
    let mut rest: Vec<_> = pending.into_iter().filter(|(_, buffer)| !buffer.is_empty()).collect();
    rest.sort_by_key(|((index, output), _)| (*index, *output == Output::Stderr));
    for ((index, output), mut buffer) in rest {
        buffer.push(b'\n');
        if write_complete_lines(&mut buffer, &prefixes[index], |line| sink(output, line)).is_err() {
            break;
        }
    }
    Ok(())
}

/// `<service> | ` for each source, the names padded to the longest, as compose aligns them.
fn prefixes(sources: &[Source]) -> Vec<Vec<u8>> {
    let width = sources.iter().map(|source| source.service.chars().count()).max().unwrap_or(0);
    sources.iter().map(|source| format!("{:<width$} | ", source.service).into_bytes()).collect()
}

/// Hands every complete line of `buffer` to `write` behind `prefix`, and keeps the rest.
fn write_complete_lines(buffer: &mut Vec<u8>, prefix: &[u8], mut write: impl FnMut(&[u8]) -> Flow) -> Flow {
    let Some(last_newline) = buffer.iter().rposition(|byte| *byte == b'\n') else {
        return Ok(());
    };
    let complete: Vec<u8> = buffer.drain(..=last_newline).collect();
    let mut out = Vec::with_capacity(complete.len() + prefix.len() * 4);
    for line in complete.split_inclusive(|byte| *byte == b'\n') {
        out.extend_from_slice(prefix);
        out.extend_from_slice(line);
    }
    write(&out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(service: &str) -> Source {
        Source { service: service.to_owned(), container: format!("p_{service}") }
    }

    #[test]
    fn names_are_padded_to_the_longest() {
        let prefixes = prefixes(&[source("api"), source("worker")]);
        assert_eq!(prefixes, [b"api    | ".to_vec(), b"worker | ".to_vec()]);
    }

    #[test]
    fn only_complete_lines_go_out_each_behind_the_prefix() {
        let mut buffer = b"one\ntwo\nthr".to_vec();
        let mut written = Vec::new();
        write_complete_lines(&mut buffer, b"api | ", |line| {
            written.extend_from_slice(line);
            Ok(())
        })
        .unwrap();
        assert_eq!(written, b"api | one\napi | two\n");
        assert_eq!(buffer, b"thr");

        buffer.extend_from_slice(b"ee\n");
        written.clear();
        write_complete_lines(&mut buffer, b"api | ", |line| {
            written.extend_from_slice(line);
            Ok(())
        })
        .unwrap();
        assert_eq!(written, b"api | three\n");
        assert!(buffer.is_empty());
    }
}
