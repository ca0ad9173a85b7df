//! The metrics endpoint: a small HTTP/1.1 server on one thread, std only.
//!
//! Only `GET` and `HEAD` of `/metrics` are answered (any other path 404,
//! any other method on it 405). An HTTP/1.1 connection stays open for the
//! next request (Prometheus keeps its connections to a target between
//! scrapes: a new TCP connection per scrape costs this process more than
//! rendering the answer), for [`Limits::keep_alive`] at most while idle;
//! HTTP/1.0, `Connection: close`, a request with a body (never read) and
//! a malformed one are answered and closed.
//!
//! The thread sleeps in one `poll()` over a stop eventfd, the listening
//! socket and its connections, all non-blocking: idle, it wakes only when
//! a client connects or sends, or the capture stops it; a slow client
//! costs a slot, never the other clients' time. The bounds ([`Limits`]):
//! at most 16 connections (when all are taken, the oldest one that has
//! not sent its whole request in half a second, a kept one waiting for
//! its next request included, is closed to make room: a scraper sends its
//! request as soon as it connects, so idle connections cannot lock
//! scrapers out; when none is that old, new ones wait in the kernel's
//! accept queue), 8 KiB of request head (431 beyond), 5 s to send it, 10 s
//! to read the answer.
//!
//! The socket is bound by [`Server::bind`] before the capture starts, so
//! a port in use is a runtime error before any packet is taken
//! (`error binding 127.0.0.1:9101: Address in use`).

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd};
use std::sync::Arc;
use std::thread::{Scope, ScopedJoinHandle};
use std::time::{Duration, Instant};

use nix::sys::eventfd::{EfdFlags, EventFd};

use super::{Exporter, Format};
use crate::error::Why;

/// The address `--metrics=PORT` listens on.
pub const DEFAULT_ADDRESS: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// The path served.
pub const PATH: &str = "/metrics";

/// `--metrics=[ADDR:]PORT`: PORT alone is on 127.0.0.1; ADDR is an IPv4
/// address or an IPv6 address in brackets (`[::1]:9101`, `[::]:9101`).
/// PORT is 1 to 65535. None for anything else.
pub fn parse_address(s: &str) -> Option<SocketAddr> {
    let port = |p: &str| -> Option<u16> {
        if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        p.parse::<u16>().ok().filter(|&p| p != 0)
    };
    if let Some(p) = port(s) {
        return Some(SocketAddr::new(IpAddr::V4(DEFAULT_ADDRESS), p));
    }
    if let Some(rest) = s.strip_prefix('[') {
        let (addr, p) = rest.split_once("]:")?;
        let ip: std::net::Ipv6Addr = addr.parse().ok()?;
        return Some(SocketAddr::new(IpAddr::V6(ip), port(p)?));
    }
    let (addr, p) = s.rsplit_once(':')?;
    let ip: Ipv4Addr = addr.parse().ok()?;
    Some(SocketAddr::new(IpAddr::V4(ip), port(p)?))
}

/// The listening socket could not be had: `error binding ADDR: WHY`.
#[derive(Debug, thiserror::Error)]
#[error("error binding {addr}: {}", bind_why(why))]
pub struct BindError {
    pub addr: SocketAddr,
    pub why: Why,
}

/// Why a bind failed, in the C library's words but for a port in use,
/// which the message (and so the man page, and whoever greps a
/// service's log for it) words `Address in use` rather than strerror's
/// `Address already in use`.
fn bind_why(why: &Why) -> String {
    match why.0.raw_os_error() {
        Some(libc::EADDRINUSE) => "Address in use".to_string(),
        _ => why.to_string(),
    }
}

impl From<BindError> for crate::error::Error {
    fn from(e: BindError) -> crate::error::Error {
        crate::error::Error::Message(e.to_string())
    }
}

/// The server's bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once.
    pub max_connections: usize,
    /// Bytes of request line and headers (431 beyond).
    pub max_request: usize,
    /// From accepting a connection to the end of its request's headers.
    pub request_timeout: Duration,
    /// To write the response.
    pub response_timeout: Duration,
    /// After the response, how long what the client still sends is read
    /// and thrown away before closing: closing a socket with unread data
    /// resets the connection, and the reset can overtake the response.
    pub linger: Duration,
    /// How long a connection may wait for its request before it can be
    /// closed to make room for a new one when all slots are taken.
    pub idle_grace: Duration,
    /// How long a connection kept open after an answer may wait for its
    /// next request (once that has begun, it has `request_timeout`).
    pub keep_alive: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 16,
            max_request: 8 * 1024,
            request_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(10),
            linger: Duration::from_secs(1),
            idle_grace: Duration::from_millis(500),
            // Prometheus's own client keeps an idle connection 5 minutes;
            // scrape intervals are mostly 15 s to 1 minute.
            keep_alive: Duration::from_secs(120),
        }
    }
}

/// Bytes read and thrown away after a response, at most.
const LINGER_BYTES: usize = 4 << 20;

/// How long accepting pauses when the process is out of file descriptors
/// (the listening socket stays readable: polling it again at once would
/// spin).
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// A bound listening socket, not yet served.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    limits: Limits,
}

impl Server {
    /// Binds `addr` (with SO_REUSEADDR, as std does: a restarted service
    /// is not kept out by its predecessor's connections in TIME_WAIT).
    pub fn bind(addr: SocketAddr) -> Result<Server, BindError> {
        let err = |e| BindError { addr, why: Why(e) };
        let listener = TcpListener::bind(addr).map_err(err)?;
        listener.set_nonblocking(true).map_err(err)?;
        Ok(Server {
            listener,
            limits: Limits::default(),
        })
    }

    /// Other bounds than the defaults (tests).
    pub fn with_limits(mut self, limits: Limits) -> Server {
        self.limits = limits;
        self
    }

    /// The address bound (its port, when bound to port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves `exporter` on a new thread named `metrics` of scope `scope`
    /// until [`Running::stop`] (or dropping the [`Running`]).
    pub fn spawn_scoped<'scope, 'env>(
        self,
        scope: &'scope Scope<'scope, 'env>,
        exporter: Exporter<'scope>,
    ) -> io::Result<Running<'scope>> {
        let stop = Arc::new(EventFd::from_value_and_flags(
            0,
            EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK,
        )?);
        let thread_stop = Arc::clone(&stop);
        let handle = std::thread::Builder::new()
            .name("metrics".into())
            .spawn_scoped(scope, move || self.serve(&exporter, &thread_stop))?;
        Ok(Running {
            stop,
            handle: Some(handle),
        })
    }

    /// The server's loop: returns when `stop` becomes readable.
    fn serve(&self, exporter: &Exporter, stop: &EventFd) {
        let limits = &self.limits;
        let mut conns: Vec<Conn> = Vec::with_capacity(limits.max_connections);
        let mut paused_until: Option<Instant> = None;
        loop {
            let now = Instant::now();
            // Dropping a connection closes it.
            conns.retain(|c| c.deadline > now);
            if paused_until.is_some_and(|t| t <= now) {
                paused_until = None;
            }
            let full = conns.len() >= limits.max_connections;
            let evictable = |c: &Conn| c.phase == Phase::Reading;
            let room_at = conns
                .iter()
                .filter(|c| evictable(c))
                .map(|c| c.accepted + limits.idle_grace)
                .min();
            let listen = paused_until.is_none() && (!full || room_at.is_some_and(|t| t <= now));
            // The next moment something is due: a deadline, a slot that
            // can be freed, the end of a pause. None: sleep until woken.
            let mut wake = conns.iter().map(|c| c.deadline).min();
            let mut sooner = |t: Option<Instant>| {
                if let Some(t) = t {
                    wake = Some(wake.map_or(t, |w| w.min(t)));
                }
            };
            if full && !listen {
                // (Only a moment to come: one already past while accepting
                // is paused would make the timeout 0 until the pause ends.)
                sooner(room_at.filter(|&t| t > now));
            }
            sooner(paused_until);
            let timeout = wake.map_or(-1, |t| {
                // Rounded up: a wakeup a little early would find nothing
                // due and poll again with a zero timeout.
                let ms = t
                    .saturating_duration_since(now)
                    .as_nanos()
                    .div_ceil(1_000_000);
                ms.min(i32::MAX as u128) as i32
            });

            let mut fds = Vec::with_capacity(conns.len() + 2);
            fds.push(pollfd(stop.as_fd().as_raw_fd(), libc::POLLIN));
            if listen {
                fds.push(pollfd(self.listener.as_raw_fd(), libc::POLLIN));
            }
            let first_conn = fds.len();
            for c in &conns {
                fds.push(pollfd(c.stream.as_raw_fd(), c.phase.events()));
            }
            if let Err(e) = crate::sys::event::poll(&mut fds, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                // poll() fails only for bad arguments or no memory; serving
                // on would spin.
                return;
            }
            if fds[0].revents != 0 {
                return;
            }
            let now = Instant::now();
            for (c, fd) in conns.iter_mut().zip(&fds[first_conn..]) {
                if fd.revents != 0 {
                    c.advance(exporter, limits, now);
                }
            }
            conns.retain(|c| c.phase != Phase::Done);
            if listen && fds[1].revents != 0 {
                paused_until = self.accept(&mut conns, now);
            }
        }
    }

    /// Accepts what is waiting, as room allows; returns until when
    /// accepting pauses, if it must.
    fn accept(&self, conns: &mut Vec<Conn>, now: Instant) -> Option<Instant> {
        let limits = &self.limits;
        loop {
            let oldest_idle = conns
                .iter()
                .enumerate()
                .filter(|(_, c)| c.phase == Phase::Reading && c.accepted + limits.idle_grace <= now)
                .min_by_key(|(_, c)| c.accepted)
                .map(|(i, _)| i);
            if conns.len() >= limits.max_connections && oldest_idle.is_none() {
                return None;
            }
            match self.listener.accept() {
                Ok((stream, _)) => {
                    if conns.len() >= limits.max_connections {
                        if let Some(i) = oldest_idle {
                            conns.swap_remove(i);
                        }
                    }
                    // Accepted sockets do not inherit O_NONBLOCK on Linux.
                    if stream.set_nonblocking(true).is_ok() {
                        conns.push(Conn::new(stream, now, limits));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return match e.raw_os_error() {
                        // Out of descriptors or memory: the connection
                        // waits in the queue until there are some again.
                        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM) => {
                            Some(now + ACCEPT_PAUSE)
                        }
                        // ECONNABORTED and the like: that one is gone.
                        _ => None,
                    };
                }
            }
        }
    }
}

fn pollfd(fd: i32, events: libc::c_short) -> libc::pollfd {
    libc::pollfd {
        fd,
        events,
        revents: 0,
    }
}

/// The serving thread; stopped (and joined) by [`Running::stop`], stopped
/// (and joined at the end of its scope) when dropped.
#[derive(Debug)]
pub struct Running<'scope> {
    stop: Arc<EventFd>,
    handle: Option<ScopedJoinHandle<'scope, ()>>,
}

impl Running<'_> {
    /// Stops serving: open connections are closed, the listening socket
    /// too. Err if the thread panicked (a [`super::Source`] that did).
    pub fn stop(mut self) -> std::thread::Result<()> {
        let _ = self.stop.write(1);
        match self.handle.take() {
            Some(h) => h.join(),
            None => Ok(()),
        }
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        // The scope joins the thread; it must have been told to end.
        let _ = self.stop.write(1);
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Reading the request's head.
    Reading,
    /// Writing the response.
    Writing,
    /// Response written, write side shut: reading until the client
    /// closes.
    Draining,
    Done,
}

impl Phase {
    fn events(self) -> libc::c_short {
        match self {
            Phase::Writing => libc::POLLOUT,
            _ => libc::POLLIN,
        }
    }
}

struct Conn {
    stream: TcpStream,
    phase: Phase,
    accepted: Instant,
    /// When the current phase must be over.
    deadline: Instant,
    /// What the client has sent and this server not yet answered: the
    /// request's head so far (and, pipelined, what came after it).
    buf: Vec<u8>,
    /// The response being written.
    out: Vec<u8>,
    /// Bytes of the response written, then bytes drained.
    done: usize,
    /// Whether the connection stays open after the response.
    keep: bool,
}

impl Conn {
    fn new(stream: TcpStream, now: Instant, limits: &Limits) -> Conn {
        Conn {
            stream,
            phase: Phase::Reading,
            accepted: now,
            deadline: now + limits.request_timeout,
            buf: Vec::with_capacity(1024),
            out: Vec::new(),
            done: 0,
            keep: false,
        }
    }

    /// Does what the socket allows now.
    fn advance(&mut self, exporter: &Exporter, limits: &Limits, now: Instant) {
        loop {
            if self.phase == Phase::Reading {
                self.read_request(exporter, limits, now);
            }
            if self.phase == Phase::Writing {
                self.write_response(limits, now);
            }
            if self.phase == Phase::Draining {
                self.drain();
            }
            // A kept connection whose next request is already here
            // (pipelined) goes on to it: poll() would not say so.
            if self.phase != Phase::Reading || head_end(&self.buf, 0).is_none() {
                return;
            }
        }
    }

    fn read_request(&mut self, exporter: &Exporter, limits: &Limits, now: Instant) {
        // A request sent before the previous answer (pipelined) is already
        // here.
        if let Some(end) = head_end(&self.buf, 0) {
            return self.answer_head(end, exporter, limits, now);
        }
        let mut chunk = [0u8; 4096];
        loop {
            let room = limits.max_request - self.buf.len();
            if room == 0 {
                return self.respond(status(431), limits, now);
            }
            let want = room.min(chunk.len());
            match self.stream.read(&mut chunk[..want]) {
                // The client left before finishing its request.
                Ok(0) => return self.phase = Phase::Done,
                Ok(n) => {
                    if self.buf.is_empty() {
                        // A kept connection's next request has begun: it
                        // has the time any request has.
                        self.deadline = self.deadline.min(now + limits.request_timeout);
                    }
                    // Only the new bytes and the three before them can
                    // complete the blank line: a client sending a byte at
                    // a time costs a byte of searching each.
                    let from = self.buf.len().saturating_sub(3);
                    self.buf.extend_from_slice(&chunk[..n]);
                    if let Some(end) = head_end(&self.buf, from) {
                        return self.answer_head(end, exporter, limits, now);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.phase = Phase::Done,
            }
        }
    }

    /// Answers the head that ends at `end` of what was read.
    fn answer_head(&mut self, end: usize, exporter: &Exporter, limits: &Limits, now: Instant) {
        let (response, keep) = match parse_request(&self.buf[..end]) {
            Ok(req) => (answer(&req, exporter), !req.close),
            Err(code) => (status(code), false),
        };
        // What follows the head is the next request, if the connection
        // is kept; else it is drained with the rest.
        self.buf.drain(..end);
        self.keep = keep;
        self.respond(response, limits, now);
    }

    fn respond(&mut self, response: Vec<u8>, limits: &Limits, now: Instant) {
        self.out = response;
        self.done = 0;
        self.phase = Phase::Writing;
        self.deadline = now + limits.response_timeout;
    }

    fn write_response(&mut self, limits: &Limits, now: Instant) {
        while self.done < self.out.len() {
            match self.stream.write(&self.out[self.done..]) {
                Ok(0) => return self.phase = Phase::Done,
                Ok(n) => self.done += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.phase = Phase::Done,
            }
        }
        self.out = Vec::new();
        self.done = 0;
        if self.keep {
            // Kept: wait for the next request, as a new connection does
            // (and as evictable when all slots are taken).
            self.phase = Phase::Reading;
            self.accepted = now;
            self.deadline = now
                + if self.buf.is_empty() {
                    limits.keep_alive
                } else {
                    limits.request_timeout
                };
            return;
        }
        // All written: FIN after it, then wait (briefly) for the client
        // to close, reading whatever else it sends.
        self.buf = Vec::new();
        if self.stream.shutdown(Shutdown::Write).is_err() {
            return self.phase = Phase::Done;
        }
        self.phase = Phase::Draining;
        self.deadline = now + limits.linger;
    }

    fn drain(&mut self) {
        let mut chunk = [0u8; 4096];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return self.phase = Phase::Done,
                Ok(n) => {
                    self.done += n;
                    if self.done > LINGER_BYTES {
                        return self.phase = Phase::Done;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.phase = Phase::Done,
            }
        }
    }
}

/// Where the head (request line and headers) ends, just past its blank
/// line (CRLF CRLF, or LF LF from a lenient client), searching from
/// `from`.
fn head_end(buf: &[u8], from: usize) -> Option<usize> {
    (from..buf.len()).find_map(|i| {
        let rest = &buf[i..];
        if rest.starts_with(b"\r\n\r\n") {
            Some(i + 4)
        } else if rest.starts_with(b"\n\n") {
            Some(i + 2)
        } else if rest.starts_with(b"\n\r\n") {
            Some(i + 3)
        } else {
            None
        }
    })
}

/// A request this server understands the head of.
#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The Accept headers' values, joined with `,`.
    pub accept: Option<String>,
    /// Whether the connection closes after the answer: HTTP/1.0, a
    /// `Connection: close`, or a request with a body (this server reads
    /// none, so it cannot tell where the next request would begin).
    pub close: bool,
}

/// The request line and headers; Err with the status to answer (400 for
/// a malformed head, 505 for a version other than HTTP/1.x).
pub fn parse_request(head: &[u8]) -> Result<Request, u16> {
    let text = std::str::from_utf8(head).map_err(|_| 400u16)?;
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let line = lines.next().ok_or(400u16)?;
    let mut words = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        return Err(400);
    };
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    };
    if !token(method) || target.is_empty() || target.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(400);
    }
    let mut close = match version {
        "HTTP/1.1" => false,
        "HTTP/1.0" => true,
        v if v.starts_with("HTTP/") => return Err(505),
        _ => return Err(400),
    };
    // origin-form (/metrics?x) or absolute-form (http://host:port/metrics).
    let path = match target.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => {
            rest.find('/').map_or("/", |i| &rest[i..])
        }
        _ => target,
    };
    let path = path.split(['?', '#']).next().unwrap_or("");
    let mut accept: Option<String> = None;
    for line in lines.take_while(|l| !l.is_empty()) {
        // Folded header lines are obsolete (RFC 9112 5.2): refuse them.
        if line.starts_with([' ', '\t']) {
            return Err(400);
        }
        let (name, value) = line.split_once(':').ok_or(400u16)?;
        if !token(name) {
            return Err(400);
        }
        let has = |v: &str, word: &str| v.split(',').any(|w| w.trim().eq_ignore_ascii_case(word));
        if name.eq_ignore_ascii_case("connection") && has(value, "close")
            || name.eq_ignore_ascii_case("transfer-encoding")
            || name.eq_ignore_ascii_case("content-length") && value.trim() != "0"
        {
            close = true;
        }
        if name.eq_ignore_ascii_case("accept") {
            let value = value.trim();
            accept = Some(match accept {
                Some(a) => format!("{a},{value}"),
                None => value.to_string(),
            });
        }
    }
    Ok(Request {
        method: method.to_string(),
        path: path.to_string(),
        accept,
        close,
    })
}

/// The response to a well-formed request.
pub fn answer(req: &Request, exporter: &Exporter) -> Vec<u8> {
    // The answer to HEAD is GET's without the body (RFC 9110 9.3.2).
    let head = req.method == "HEAD";
    if req.path != PATH {
        return status_for(404, head, req.close);
    }
    if !head && req.method != "GET" {
        return status_for(405, false, req.close);
    }
    let format = Format::negotiate(req.accept.as_deref());
    let body = exporter.render(format);
    let mut out = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {}\r\nContent-Length: {}\r\n{}\r\n",
        format.content_type(),
        body.len(),
        connection(req.close),
    )
    .into_bytes();
    if !head {
        out.extend_from_slice(body.as_bytes());
    }
    out
}

/// The Connection header of a response: said only when the connection
/// closes (HTTP/1.1 connections persist unless one side says otherwise).
fn connection(close: bool) -> &'static str {
    if close {
        "Connection: close\r\n"
    } else {
        ""
    }
}

/// An error response with a one-line text body, to a request that could
/// not be read: the connection closes after it.
fn status(code: u16) -> Vec<u8> {
    status_for(code, false, true)
}

/// An error response, without its body for a HEAD request.
fn status_for(code: u16, head: bool, close: bool) -> Vec<u8> {
    let reason = match code {
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        505 => "HTTP Version Not Supported",
        _ => "Error",
    };
    let allow = if code == 405 {
        "Allow: GET, HEAD\r\n"
    } else {
        ""
    };
    let body = format!("{code} {}\n", reason.to_ascii_lowercase());
    format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n{allow}Content-Length: {}\r\n{}\r\n{}",
        body.len(),
        connection(close),
        if head { "" } else { &body }
    )
    .into_bytes()
}
