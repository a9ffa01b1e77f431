//! A small HTTP/1.1 server for the emulator: keep-alive, `Content-Length` bodies, one
//! request at a time per connection, answers in `application/x-amz-json-1.1`.

use super::api;
use super::state::{Outage, State};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Longest request head accepted.
const MAX_HEAD: usize = 64 << 10;
/// Largest body accepted (a 5 MiB PutRecords in base64 JSON is about 7 MiB).
const MAX_BODY: usize = 16 << 20;

/// Accepts connections until the task is dropped.
pub(crate) async fn serve(listener: TcpListener, state: Arc<Mutex<State>>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        tokio::spawn(async move {
            let _ = connection(stream, &state).await;
        });
    }
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

fn outage(state: &Mutex<State>) -> Option<Outage> {
    let mut s = lock(state);
    let o = s.settings.outage;
    if o.is_some() {
        s.stats.outage_calls += 1;
    }
    o
}

/// A parsed request head.
struct Head {
    target: String,
    content_length: usize,
    close: bool,
}

fn parse_head(head: &[u8]) -> Option<Head> {
    let text = std::str::from_utf8(head).ok()?;
    let mut lines = text.split("\r\n");
    let request_line = lines.next()?;
    if !request_line.starts_with("POST ") {
        return None;
    }
    let mut h = Head {
        target: String::new(),
        content_length: 0,
        close: false,
    };
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "x-amz-target" => h.target = value.to_owned(),
            "content-length" => h.content_length = value.parse().ok()?,
            "connection" => h.close = value.eq_ignore_ascii_case("close"),
            "transfer-encoding" => return None,
            _ => {}
        }
    }
    Some(h)
}

async fn connection(mut stream: TcpStream, state: &Mutex<State>) -> std::io::Result<()> {
    if outage(state) == Some(Outage::Refuse) {
        return Ok(());
    }
    let mut buf: Vec<u8> = Vec::with_capacity(64 << 10);
    let mut chunk = vec![0u8; 256 << 10];
    loop {
        // Head.
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if buf.len() > MAX_HEAD {
                return Ok(());
            }
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let Some(head) = parse_head(&buf[..head_end]) else {
            let _ = respond(&mut stream, 400, b"{}", true).await;
            return Ok(());
        };
        if head.content_length > MAX_BODY {
            let _ = respond(&mut stream, 413, b"{}", true).await;
            return Ok(());
        }
        while buf.len() < head_end + head.content_length {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let body_end = head_end + head.content_length;
        let latency = lock(state).settings.latency;
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        let (status, answer) = match outage(state) {
            Some(Outage::Refuse) => return Ok(()),
            Some(Outage::Hang) => {
                // Hold the connection until the client gives up.
                let mut sink = [0u8; 1024];
                while stream.read(&mut sink).await? > 0 {}
                return Ok(());
            }
            Some(Outage::ServerError) => (
                500,
                serde_json::json!({ "__type": "InternalFailure", "message": "injected outage" }),
            ),
            Some(Outage::BadCredentials) => (
                400,
                serde_json::json!({
                    "__type": "UnrecognizedClientException",
                    "message": "The security token included in the request is invalid.",
                }),
            ),
            None => {
                let mut s = lock(state);
                api::handle(&mut s, &head.target, &buf[head_end..body_end])
            }
        };
        let body = serde_json::to_vec(&answer).unwrap_or_default();
        respond(&mut stream, status, &body, head.close).await?;
        buf.drain(..body_end);
        if head.close {
            return Ok(());
        }
    }
}

async fn respond(
    stream: &mut TcpStream,
    status: u16,
    body: &[u8],
    close: bool,
) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        413 => "Payload Too Large",
        _ => "Internal Server Error",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: {}\r\nx-amzn-RequestId: emu\r\n{}\r\n",
        body.len(),
        if close { "Connection: close\r\n" } else { "" }
    );
    let mut out = Vec::with_capacity(head.len() + body.len());
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(body);
    stream.write_all(&out).await?;
    stream.flush().await
}
