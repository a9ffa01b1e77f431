//! Exporting from a running gateway. redb lets one process open the buffer, so while the
//! gateway runs, `gateway export` reads the log and deletes exported entries through the
//! gateway's control socket, `<data_dir>/control.sock`, and writes the files itself (as the
//! user who runs it, into any directory it can write, such as a USB disk the hardened service
//! could not write to). Devices keep publishing and the forwarder keeps running meanwhile.
//!
//! The socket is a Unix socket with mode 0660 inside the data directory: whoever may read the
//! buffer file may export, nobody on the network can. One request per connection, a line of
//! JSON:
//!
//! - `{"op":"stats"}` → `{"ok":true,"readings":N,"last_id":ID|null,"label":"…"}`
//! - `{"op":"read","after":ID|null,"max":N}` → `{"ok":true,"entries":K}` then K frames: the
//!   log id (u64, big endian), the length (u32, big endian) and the entry as stored
//!   ([`BatchRecord`] encoding)
//! - `{"op":"delete","dir":"/abs/export/dir","ids":[ID,…]}` → `{"ok":true,"readings":N}` once
//!   the deletion committed
//!
//! or `{"ok":false,"error":"…"}`. Deletes go through the gateway's buffer writer like the
//! forwarder's, so the export protocol's rule holds: an entry is deleted only after its
//! readings are in a durable manifest and their files are in place. The gateway does not take
//! the client's word for that: it reads the manifest of `dir` itself and deletes an id only if
//! a file of that manifest, present with its recorded SHA-256, came from that entry (the
//! file's log-id range holds it); otherwise the whole request is refused. So a member of the
//! data directory's group can delete only what an export has durably written, and the
//! gateway's service user must be able to read the export directory for `--mark-delivered`
//! through the socket (else: stop the gateway and export offline).

use super::error::ExportError;
use super::run::Deleter;
use super::source::LogSource;
use crate::buffer::{BatchRecord, Buffer, WriterHandle};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

/// The socket's file name, next to `buffer.redb`.
pub const SOCKET_NAME: &str = "control.sock";
/// Longest request line (a delete names at most a few hundred thousand ids).
const MAX_REQUEST: u64 = 16 << 20;
/// Most entries one read returns.
const MAX_READ: usize = 4096;
/// A connection that takes longer than this is dropped (deletes wait for one commit).
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(60);

/// The control socket of the gateway whose buffer is `buffer_file`.
pub fn socket_path(buffer_file: &Path) -> PathBuf {
    buffer_file.with_file_name(SOCKET_NAME)
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Request {
    Stats,
    Read { after: Option<u64>, max: usize },
    Delete { dir: PathBuf, ids: Vec<u64> },
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Reply {
    ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    readings: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    entries: Option<usize>,
}

impl Reply {
    fn error(message: impl Into<String>) -> Self {
        Self {
            error: Some(message.into()),
            ..Self::default()
        }
    }
}

// --- the gateway's side ---------------------------------------------------------------------

/// Binds the control socket (replacing a stale one: the caller holds the buffer, so no other
/// gateway uses this data directory) with mode 0660.
pub fn bind(buffer_file: &Path) -> std::io::Result<(tokio::net::UnixListener, PathBuf)> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let path = socket_path(buffer_file);
    if std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_socket()) {
        std::fs::remove_file(&path)?;
    }
    let listener = tokio::net::UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o660))?;
    Ok((listener, path))
}

/// Serves export requests until `shutdown` completes; then drops every connection (they hold
/// writer handles, and the writer stops only when all are gone) and removes the socket.
pub async fn serve(
    listener: tokio::net::UnixListener,
    path: PathBuf,
    buffer: Buffer,
    writer: WriterHandle,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let (buffer, writer) = (buffer.clone(), writer.clone());
                    connections.spawn(async move {
                        let served = tokio::time::timeout(
                            CONNECTION_TIMEOUT,
                            answer(stream, buffer, writer),
                        );
                        if let Ok(Err(e)) = served.await {
                            tracing::debug!(error = %e, "Control connection failed.");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "Control socket accept failed.");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    connections.shutdown().await;
    let _ = std::fs::remove_file(&path);
}

async fn answer(
    stream: tokio::net::UnixStream,
    buffer: Buffer,
    writer: WriterHandle,
) -> std::io::Result<()> {
    use tokio::io::AsyncReadExt;
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    tokio::io::BufReader::new(read.take(MAX_REQUEST))
        .read_line(&mut line)
        .await?;
    let request = match serde_json::from_str::<Request>(&line) {
        Ok(r) => r,
        Err(e) => {
            let reply = Reply::error(format!("bad request: {e}"));
            return write_reply(&mut write, &reply, &[]).await;
        }
    };
    let (reply, frames) = tokio::task::spawn_blocking(move || execute(request, &buffer, &writer))
        .await
        .unwrap_or_else(|e| (Reply::error(format!("request failed: {e}")), Vec::new()));
    write_reply(&mut write, &reply, &frames).await
}

async fn write_reply(
    write: &mut tokio::net::unix::OwnedWriteHalf,
    reply: &Reply,
    frames: &[u8],
) -> std::io::Result<()> {
    let mut head = serde_json::to_vec(reply).map_err(std::io::Error::other)?;
    head.push(b'\n');
    write.write_all(&head).await?;
    write.write_all(frames).await?;
    write.shutdown().await
}

fn execute(request: Request, buffer: &Buffer, writer: &WriterHandle) -> (Reply, Vec<u8>) {
    let failed = |e: ExportError| (Reply::error(e.to_string()), Vec::new());
    match request {
        Request::Stats => {
            let stats = buffer
                .buffered_readings()
                .and_then(|r| Ok((r, buffer.last_log_id()?)));
            match stats {
                Ok((readings, last_id)) => (
                    Reply {
                        ok: true,
                        readings: Some(readings),
                        last_id,
                        label: Some(format!("{} (running gateway)", buffer.label())),
                        ..Reply::default()
                    },
                    Vec::new(),
                ),
                Err(e) => failed(e),
            }
        }
        Request::Read { after, max } => {
            let entries = match LogSource::read_log(buffer, after, max.clamp(1, MAX_READ)) {
                Ok(e) => e,
                Err(e) => return failed(e),
            };
            let mut frames = Vec::new();
            let mut record = Vec::new();
            for (id, entry) in &entries {
                record.clear();
                entry.encode_into(&mut record);
                frames.extend_from_slice(&id.to_be_bytes());
                frames.extend_from_slice(&(record.len() as u32).to_be_bytes());
                frames.extend_from_slice(&record);
            }
            let reply = Reply {
                ok: true,
                entries: Some(entries.len()),
                ..Reply::default()
            };
            (reply, frames)
        }
        Request::Delete { dir, ids } => match exported_ids(&dir, &ids)
            .and_then(|()| writer.delete(ids).map_err(|e| format!("deleting: {e}")))
        {
            Ok(readings) => (
                Reply {
                    ok: true,
                    readings: Some(readings),
                    ..Reply::default()
                },
                Vec::new(),
            ),
            Err(e) => (Reply::error(e), Vec::new()),
        },
    }
}

/// Checks that every id in `ids` came into a file of the export table in `dir` that is present
/// with its recorded SHA-256. Hashes each file needed once.
fn exported_ids(dir: &Path, ids: &[u64]) -> Result<(), String> {
    if !dir.is_absolute() {
        return Err(format!(
            "export directory {} is not an absolute path",
            dir.display()
        ));
    }
    let manifest = super::manifest::Manifest::load(dir)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("no export manifest in {}", dir.display()))?;
    manifest.check_paths(dir).map_err(|e| e.to_string())?;
    let mut verified = std::collections::BTreeSet::new();
    for &id in ids {
        let covering = manifest
            .files
            .iter()
            .enumerate()
            .filter(|(_, f)| (f.first_log_id..=f.last_log_id).contains(&id))
            .map(|(i, _)| i)
            .collect::<Vec<_>>();
        let mut held = false;
        for i in covering {
            let f = &manifest.files[i];
            if verified.contains(&i)
                || super::durable::hash_file(&dir.join(&f.path))
                    .is_ok_and(|(bytes, sha)| bytes == f.bytes && sha == f.sha256)
            {
                verified.insert(i);
                held = true;
                break;
            }
        }
        if !held {
            return Err(format!(
                "log id {id} is in no file of the export in {} (present with its recorded SHA-256); nothing deleted",
                dir.display()
            ));
        }
    }
    Ok(())
}

// --- the export's side ----------------------------------------------------------------------

/// A running gateway's buffer, through its control socket.
#[derive(Debug, Clone)]
pub struct LiveGateway {
    socket: PathBuf,
    label: String,
    /// The export directory deletes refer to (absolute).
    export_dir: Option<PathBuf>,
}

impl LiveGateway {
    /// Connects to the gateway whose buffer is `buffer_file`; `None` when it has no control
    /// socket (or does not answer on it).
    pub fn connect(buffer_file: &Path) -> Option<Self> {
        let mut live = Self {
            socket: socket_path(buffer_file),
            label: buffer_file.display().to_string(),
            export_dir: None,
        };
        let (reply, _) = live.call(&Request::Stats).ok()?;
        if let Some(label) = reply.label {
            live.label = label;
        }
        Some(live)
    }

    /// Deletes will name `dir`, the export directory whose files the gateway checks.
    pub fn exporting_to(mut self, dir: &Path) -> std::io::Result<Self> {
        self.export_dir = Some(std::path::absolute(dir)?);
        Ok(self)
    }

    /// The socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    fn call(&self, request: &Request) -> Result<(Reply, Vec<u8>), ExportError> {
        let io = |e| ExportError::io("talk to the gateway at", &self.socket, e);
        let mut stream = std::os::unix::net::UnixStream::connect(&self.socket).map_err(io)?;
        stream
            .set_read_timeout(Some(CONNECTION_TIMEOUT))
            .map_err(io)?;
        let mut line = serde_json::to_vec(request).map_err(|e| io(std::io::Error::other(e)))?;
        line.push(b'\n');
        stream.write_all(&line).map_err(io)?;
        let mut reader = std::io::BufReader::new(stream);
        let mut head = String::new();
        reader.read_line(&mut head).map_err(io)?;
        let reply: Reply = serde_json::from_str(&head).map_err(|e| {
            io(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("bad reply {head:?}: {e}"),
            ))
        })?;
        if !reply.ok {
            return Err(ExportError::Gateway(
                reply.error.unwrap_or_else(|| "request refused".into()),
            ));
        }
        let mut rest = Vec::new();
        reader.read_to_end(&mut rest).map_err(io)?;
        Ok((reply, rest))
    }
}

impl LogSource for LiveGateway {
    fn label(&self) -> String {
        self.label.clone()
    }

    fn buffered_readings(&self) -> Result<u64, ExportError> {
        Ok(self.call(&Request::Stats)?.0.readings.unwrap_or(0))
    }

    fn last_log_id(&self) -> Result<Option<u64>, ExportError> {
        Ok(self.call(&Request::Stats)?.0.last_id)
    }

    fn read_log(
        &self,
        after: Option<u64>,
        max: usize,
    ) -> Result<Vec<(u64, BatchRecord)>, ExportError> {
        let (reply, frames) = self.call(&Request::Read { after, max })?;
        let bad = |what: &str| ExportError::Gateway(format!("malformed read reply: {what}"));
        let count = reply.entries.ok_or_else(|| bad("no entry count"))?;
        let mut out = Vec::with_capacity(count);
        let mut rest = frames.as_slice();
        for _ in 0..count {
            let (id, tail) = rest.split_first_chunk::<8>().ok_or_else(|| bad("id"))?;
            let (len, tail) = tail.split_first_chunk::<4>().ok_or_else(|| bad("length"))?;
            let len = u32::from_be_bytes(*len) as usize;
            let (bytes, tail) = tail.split_at_checked(len).ok_or_else(|| bad("entry"))?;
            let record = BatchRecord::decode(bytes)
                .map_err(|e| ExportError::Buffer(crate::buffer::ReadError::from(e)))?;
            out.push((u64::from_be_bytes(*id), record));
            rest = tail;
        }
        if !rest.is_empty() {
            return Err(bad("trailing bytes"));
        }
        Ok(out)
    }
}

impl Deleter for LiveGateway {
    fn delete(&self, ids: Vec<u64>) -> Result<u64, String> {
        let dir = self
            .export_dir
            .clone()
            .ok_or("no export directory given for deletes")?;
        let (reply, _) = self
            .call(&Request::Delete { dir, ids })
            .map_err(|e| e.to_string())?;
        Ok(reply.readings.unwrap_or(0))
    }
}
