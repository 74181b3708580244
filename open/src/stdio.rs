//! Standard streams on one event loop: our own stdin/stdout/stderr made safe to poll, the
//! pumps that copy the child's output to ours and to the link, and the router that feeds the
//! child's stdin from ours and from the center.
//!
//! Our own streams are shared with whoever started us (a shell, a pipeline), so their
//! `O_NONBLOCK` flag is not ours to set. [`OwnFd::open`] therefore takes, per kind of file:
//! - pipes, FIFOs and terminals: a *private* open file description of the same object,
//!   reopened through `/proc/self/fd/N` with `O_NONBLOCK` (the shared one is untouched);
//! - sockets: the shared description with `MSG_DONTWAIT` on each call (no flag is changed);
//! - regular files, `/dev/null` and other devices: plain calls, which do not block for long;
//! - anything that cannot be reopened: plain calls too (a write may then block the loop while
//!   the reader is stuck, which holds the child back exactly as a blocked pipe would). Our
//!   stdin is the exception: a plain read would block the loop, so it gets a thread of its own
//!   (the one thread the kernel forces on us; see the crate doc's thread map).
//!
//! Order: each chunk read from the child is written to our own stream first and only then
//! handed to the link, so the pass-through never waits for the center.
//!
//! EPIPE on our own stdout or stderr (`nrv-open yes | head -1`): the chunk read is still
//! reported, then the pump closes its read end of the child's pipe, so the child sees what
//! it would see without nrv-open: SIGPIPE (or EPIPE) on its next write.

use crate::link::{Gate, Input};
use crate::queue::Chunk;
use crate::sys::now_ms;
use nerve_proto::{Stream, MAX_OUTPUT_CHUNK, OUTPUT_HEADROOM};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use tokio::io::unix::AsyncFd;
use tokio::sync::{mpsc, oneshot, watch};
use zmtp::splice::{PipeBudget, PipedTail};

/// A reply to one of the center's (or the library user's) commands.
pub type Reply = oneshot::Sender<Result<String, String>>;

/// A raw fd we do not own (0, 1, 2): never closed by us.
#[derive(Debug, Clone, Copy)]
pub struct Shared(RawFd);

impl AsRawFd for Shared {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

/// One of our own standard streams, or a descriptor of ours, ready for the event loop.
pub enum OwnFd {
    /// Non-blocking, ours alone (reopened, or a pipe end we created).
    Private(AsyncFd<OwnedFd>),
    /// A shared socket, used with `MSG_DONTWAIT`.
    Socket(AsyncFd<Shared>),
    /// Plain blocking calls on a shared descriptor.
    Plain(RawFd),
}

/// What kind of file `fd` is, from `fstat`.
fn file_type(fd: RawFd) -> io::Result<libc::mode_t> {
    // SAFETY: libc::stat is plain integers (and padding), for which all zero bytes is a value.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat writes only to `st`, a live local of the type it expects; a bad `fd` is an
    // error return (EBADF), not undefined behaviour.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st.st_mode & libc::S_IFMT)
}

/// Opens `/proc/self/fd/N` anew, non-blocking: a private open file description of the same
/// pipe or terminal.
fn reopen(fd: RawFd, write: bool) -> io::Result<OwnedFd> {
    let path = format!("/proc/self/fd/{fd}\0");
    let mode = if write { libc::O_WRONLY } else { libc::O_RDONLY };
    // SAFETY: path is NUL-terminated; open returns a new descriptor or -1.
    let new = unsafe {
        libc::open(
            path.as_ptr().cast(),
            mode | libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY,
        )
    };
    if new < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `new` is a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// Sets `O_NONBLOCK` on a descriptor of our own.
pub fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor we own; no memory is touched.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

impl OwnFd {
    /// Our own stream `fd` (0, 1 or 2) as described in the module doc; `None` when the kind
    /// of file needs a thread (stdin that cannot be reopened) or `fd` is not open.
    pub fn open(fd: RawFd, write: bool) -> Option<OwnFd> {
        let kind = file_type(fd).ok()?;
        // SAFETY: isatty only asks the kernel about `fd` (an ioctl) and touches no memory of ours.
        let tty = unsafe { libc::isatty(fd) } == 1;
        if kind == libc::S_IFIFO || tty {
            return match reopen(fd, write).and_then(register) {
                Ok(f) => Some(OwnFd::Private(f)),
                Err(_) if write => Some(OwnFd::Plain(fd)),
                Err(_) => None,
            };
        }
        if kind == libc::S_IFSOCK {
            return register(Shared(fd)).ok().map(OwnFd::Socket);
        }
        Some(OwnFd::Plain(fd))
    }

    /// A descriptor of our own (a pipe end, a pty master), made non-blocking.
    ///
    /// # Errors
    /// `fcntl` or the registration with the loop failed.
    pub fn own(fd: OwnedFd) -> io::Result<OwnFd> {
        set_nonblocking(fd.as_raw_fd())?;
        Ok(OwnFd::Private(register(fd)?))
    }

    /// Reads up to `buf.len()` bytes; 0 at EOF (EIO, as a pty master gives once the terminal's
    /// last user closed it, counts as EOF).
    ///
    /// # Errors
    /// The read failed.
    pub async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: buf is a live, writable slice of buf.len() bytes.
        unsafe { self.read_raw(RawBuf(buf.as_mut_ptr(), buf.len())).await }
    }

    /// Reads into the spare capacity of `buf` (at most `buf.capacity() - buf.len()` bytes) and
    /// extends it by what was read, without zeroing the room first; 0 at EOF, as
    /// [`OwnFd::read`].
    ///
    /// # Errors
    /// The read failed.
    pub async fn read_spare(&self, buf: &mut Vec<u8>) -> io::Result<usize> {
        let spare = buf.spare_capacity_mut();
        let (ptr, len) = (spare.as_mut_ptr().cast::<u8>(), spare.len());
        // SAFETY: the spare capacity is writable memory of `len` bytes owned by `buf`, which
        // the `&mut` keeps from moving or being read meanwhile.
        let n = unsafe { self.read_raw(RawBuf(ptr, len)).await? };
        // SAFETY: the kernel wrote the first `n` (≤ len) bytes of the spare capacity.
        unsafe { buf.set_len(buf.len() + n) };
        Ok(n)
    }

    /// [`OwnFd::read_spare`], but first `tee(2)`s what it is about to read into a pipe from
    /// `pipes`, when one is to be had and this is a pipe of ours: the pipe then holds exactly
    /// the bytes read (by reference to the same pages, no copy), for the connection to splice
    /// ([`zmtp::splice`]). Without a pipe, or when the two disagree (never, while we are the
    /// only reader), the bytes read are returned alone: they are the truth.
    ///
    /// # Errors
    /// The tee or the read failed.
    pub async fn read_teed(&self, buf: &mut Vec<u8>, pipes: &PipeBudget) -> io::Result<(usize, Option<PipedTail>)> {
        let room = buf.capacity() - buf.len();
        let (OwnFd::Private(f), Some(pipe)) = (self, pipes.pipe(room)) else {
            return Ok((self.read_spare(buf).await?, None));
        };
        let teed = loop {
            let mut guard = f.readable().await?;
            let tee = |f: &AsyncFd<OwnedFd>| {
                // SAFETY: tee between two pipe descriptors; no memory of ours is touched.
                cvt(unsafe { libc::tee(f.as_raw_fd(), pipe.write_fd(), room, libc::SPLICE_F_NONBLOCK) })
            };
            match guard.try_io(tee) {
                Ok(r) => break r,
                Err(_) => continue,
            }
        };
        let teed = match teed {
            Ok(n) => n,
            // Not a pipe after all (EINVAL): read as before.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => return Ok((self.read_spare(buf).await?, None)),
            Err(e) => return Err(e),
        };
        if teed == 0 {
            return Ok((self.read_spare(buf).await?, None)); // EOF, as the read says
        }
        let start = buf.len();
        // SAFETY: the spare capacity holds `room` ≥ `teed` writable bytes owned by `buf`; the
        // pipe holds `teed` bytes, so a read of them does not block.
        let n = unsafe { self.read_raw(RawBuf(buf.as_mut_ptr().add(start), teed)).await? };
        // SAFETY: the kernel wrote the first `n` bytes of the spare capacity.
        unsafe { buf.set_len(start + n) };
        Ok((n, (n == teed).then(|| pipe.into_tail(n))))
    }

    /// [`OwnFd::read`] into raw memory.
    ///
    /// # Safety
    /// `ptr` must be valid for writes of `len` bytes until the future completes or is dropped.
    async unsafe fn read_raw(&self, raw: RawBuf) -> io::Result<usize> {
        let result = match self {
            OwnFd::Private(f) => loop {
                let mut guard = f.readable().await?;
                // SAFETY: the caller keeps ptr valid for len bytes.
                match guard.try_io(|f| cvt(unsafe { libc::read(f.as_raw_fd(), raw.ptr(), raw.len()) })) {
                    Ok(r) => break r,
                    Err(_) => continue,
                }
            },
            OwnFd::Socket(f) => loop {
                let mut guard = f.readable().await?;
                let recv = |f: &AsyncFd<Shared>| {
                    // SAFETY: recv writes at most raw.len() bytes at raw.ptr(), which the caller
                    // keeps valid for writes of that many bytes (this function's contract).
                    cvt(unsafe { libc::recv(f.as_raw_fd(), raw.ptr(), raw.len(), libc::MSG_DONTWAIT) })
                };
                match guard.try_io(recv) {
                    Ok(r) => break r,
                    Err(_) => continue,
                }
            },
            OwnFd::Plain(fd) => loop {
                // SAFETY: read writes at most raw.len() bytes at raw.ptr(), valid for writes of
                // that many bytes by this function's contract.
                match cvt(unsafe { libc::read(*fd, raw.ptr(), raw.len()) }) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    r => break r,
                }
            },
        };
        match result {
            Err(e) if e.raw_os_error() == Some(libc::EIO) => Ok(0),
            r => r,
        }
    }

    /// Asks the kernel to make this pipe hold `bytes` (`F_SETPIPE_SZ`, Linux); a refusal (over
    /// `/proc/sys/fs/pipe-max-size`, or not a pipe) leaves it as it was, which only costs more,
    /// smaller reads.
    pub fn grow_pipe(&self, bytes: usize) {
        #[cfg(target_os = "linux")]
        if let OwnFd::Private(f) = self {
            let bytes = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
            // SAFETY: fcntl on a descriptor we own; no memory is touched.
            unsafe {
                libc::fcntl(f.as_raw_fd(), libc::F_SETPIPE_SZ, bytes);
            }
        }
        #[cfg(not(target_os = "linux"))]
        let _ = bytes;
    }

    /// Waits until a read would not block (at once for a plain descriptor).
    ///
    /// # Errors
    /// The loop's registration failed.
    pub async fn readable(&self) -> io::Result<()> {
        match self {
            OwnFd::Private(f) => f.readable().await.map(drop),
            OwnFd::Socket(f) => f.readable().await.map(drop),
            OwnFd::Plain(_) => Ok(()),
        }
    }

    /// Writes all of `data`.
    ///
    /// # Errors
    /// The write failed (EPIPE: the reader is gone).
    pub async fn write_all(&self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let n = match self {
                OwnFd::Private(f) => {
                    let mut guard = f.writable().await?;
                    // SAFETY: data is a live slice of data.len() bytes.
                    match guard.try_io(|f| cvt(unsafe { libc::write(f.as_raw_fd(), data.as_ptr().cast(), data.len()) }))
                    {
                        Ok(r) => r?,
                        Err(_) => continue,
                    }
                }
                OwnFd::Socket(f) => {
                    let mut guard = f.writable().await?;
                    let flags = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
                    let send = |f: &AsyncFd<Shared>| {
                        // SAFETY: send reads at most data.len() bytes from data, a live slice.
                        cvt(unsafe { libc::send(f.as_raw_fd(), data.as_ptr().cast(), data.len(), flags) })
                    };
                    match guard.try_io(send) {
                        Ok(r) => r?,
                        Err(_) => continue,
                    }
                }
                // SAFETY: write reads at most data.len() bytes from data, a live slice.
                OwnFd::Plain(fd) => match cvt(unsafe { libc::write(*fd, data.as_ptr().cast(), data.len()) }) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    r => r?,
                },
            };
            data = &data[n..];
        }
        Ok(())
    }
}

/// Memory to read into: a pointer and a length, for [`OwnFd::read_raw`].
struct RawBuf(*mut u8, usize);

// SAFETY: a RawBuf only carries the address of memory its caller keeps valid and unaliased
// for the read (see `read_raw`); moving it to another thread moves nothing else.
unsafe impl Send for RawBuf {}

impl RawBuf {
    fn ptr(&self) -> *mut libc::c_void {
        self.0.cast()
    }

    fn len(&self) -> usize {
        self.1
    }
}

/// Registers `fd` with the loop.
fn register<T: AsRawFd>(fd: T) -> io::Result<AsyncFd<T>> {
    // SAFETY: every T here is either an OwnedFd that the AsyncFd owns from now on, or one of
    // our standard streams (0, 1, 2), which stay open for the life of the process; neither is
    // closed or replaced while registered.
    unsafe { Ok(AsyncFd::register(fd)?) }
}

fn cvt(n: isize) -> io::Result<usize> {
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// A Linux pipe's default capacity, bytes (16 pages of 4 KiB; pipe(7)). A read of this much
/// means the child keeps its pipe full, and the pump grows the pipe to a whole chunk
/// ([`OwnFd::grow_pipe`]): only busy writers get the larger pipe, so a thousand quiet children
/// do not count against the user's pipe buffer limit (`/proc/sys/fs/pipe-user-pages-soft`).
pub const DEFAULT_PIPE_BYTES: usize = 64 * 1024;

/// The least output worth splicing rather than copying, bytes: 16 KiB (a smaller chunk
/// costs more in pipe and splice calls than its copy; zmtp gathers such frames into one write).
pub const MIN_SPLICE_BYTES: usize = 16 * 1024;

/// The largest read from a child's pipe: [`MAX_OUTPUT_CHUNK`], or half the queue's bound when
/// that is smaller (so that two pumps can always hold a reservation each).
pub fn chunk_size(queue_bytes: usize) -> usize {
    MAX_OUTPUT_CHUNK.min((queue_bytes / 2).max(1))
}

/// Copies the child's output `src` (stream `stream`) to our own `out` and, when `to_center`
/// is given (the link's gate and inputs), to the link, until EOF; the task ends (dropping
/// `src`, the read end) then, or on EPIPE from `out`. Without `to_center` (a stream not sent,
/// `nrv-open -O` or `-E`) the output only passes through, never held back by the link.
pub async fn pump_output(
    src: OwnFd,
    stream: Stream,
    out: Option<OwnFd>,
    to_center: Option<(Gate, mpsc::UnboundedSender<Input>)>,
    chunk: usize,
) {
    let Some((gate, events)) = to_center else {
        return pass_through(src, out, chunk).await;
    };
    let mut gate = gate;
    // Each read goes into a buffer of its own, which becomes the event's bytes as it is (no
    // copy); none is allocated before the pipe has something to read, so a child that never
    // writes to it costs no buffer.
    let mut out = out;
    let mut grown = false;
    loop {
        // At most TRANSIT_CHUNKS chunks between the pumps and the link, whatever the mode.
        let Ok(transit) = Arc::clone(&gate.transit).acquire_owned().await else {
            break;
        };
        // Reserve room before reading while the link holds the child back; otherwise read at
        // once and take what room there is.
        let reserved = if *gate.hold.borrow() {
            tokio::select! {
                permit = gate.credits.acquire_many(chunk as u32) => permit.ok(),
                _ = gate.hold.wait_for(|h| !*h) => None,
            }
        } else {
            None
        };
        if src.readable().await.is_err() {
            break;
        }
        // Room for the frame's header in front, so the frame is built around the bytes read
        // (nerve_proto::output_frame) and never copied in this process.
        let mut buf = Vec::with_capacity(OUTPUT_HEADROOM + chunk);
        buf.resize(OUTPUT_HEADROOM, 0);
        // A child that keeps its pipe full, on an ipc link: its bytes are also teed into a
        // pipe the connection splices, so this process copies each byte once, not twice.
        let read = match gate.pipes.as_ref().filter(|_| grown) {
            Some(pipes) => src.read_teed(&mut buf, pipes).await,
            None => src.read_spare(&mut buf).await.map(|n| (n, None)),
        };
        let (n, tail) = match read {
            Ok((0, _)) | Err(_) => break,
            Ok((n, tail)) => (n, tail.filter(|_| n >= MIN_SPLICE_BYTES)),
        };
        if n >= DEFAULT_PIPE_BYTES && !grown {
            // The child fills its pipe: give it room for a whole chunk, so each read takes one.
            grown = true;
            src.grow_pipe(chunk);
        }
        if n < chunk / 4 {
            // A short read does not hold a whole chunk's memory while it waits for its ack.
            buf.shrink_to_fit();
        }
        let credit = match reserved {
            Some(permit) => {
                permit.forget();
                gate.credits.add_permits(chunk - n);
                n
            }
            None => match gate.credits.try_acquire_many(n as u32) {
                Ok(permit) => {
                    permit.forget();
                    n
                }
                Err(_) => 0,
            },
        };
        let mut broken = false;
        if let Some(o) = &out {
            if let Err(e) = o.write_all(&buf[OUTPUT_HEADROOM..]).await {
                broken = e.raw_os_error() == Some(libc::EPIPE);
                out = None;
            }
        }
        let chunk = Chunk { stream, buf, tail };
        let _ = events.send(Input::Output(now_ms(), chunk, credit, transit));
        if broken {
            break; // the child's next write gets SIGPIPE, as without nrv-open
        }
    }
}

/// Copies `src` to `out` alone until EOF, or until `out` breaks (EPIPE: the child's next
/// write gets SIGPIPE, as without nrv-open); without `out` the output is read and discarded.
async fn pass_through(src: OwnFd, mut out: Option<OwnFd>, chunk: usize) {
    let mut buf = Vec::new();
    loop {
        if buf.is_empty() {
            if src.readable().await.is_err() {
                return;
            }
            buf = vec![0u8; chunk];
        }
        let n = match src.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if let Some(o) = &out {
            if let Err(e) = o.write_all(&buf[..n]).await {
                if e.raw_os_error() == Some(libc::EPIPE) {
                    return;
                }
                out = None;
            }
        }
    }
}

/// Something to do with the child's stdin.
pub enum StdinOp {
    /// Write these bytes.
    Data(Vec<u8>, Reply),
    /// Close it (the child reads EOF).
    Close(Reply),
}

/// How many stdin commands (from the center or the handle) may wait for the child to read
/// before more are refused: 16, each at most one `send` ([`MAX_OUTPUT_CHUNK`] bytes).
pub const STDIN_BACKLOG: usize = 16;

/// The supervisor's side of the stdin router ([`route_stdin`]).
pub struct StdinRouter {
    /// The current child's stdin. Unbounded: one message per spawn and one per exit, sent no
    /// faster than children are forked (`--restart-delay`), and taken at once even while a
    /// write waits (the generation bump abandons it).
    children: mpsc::UnboundedSender<Option<(u32, OwnFd)>>,
    ops: mpsc::Sender<StdinOp>,
    generation: watch::Sender<u64>,
}

impl StdinRouter {
    /// Starts the router task: our own stdin (`own`, chunks; closed at EOF) and the commands
    /// given to [`StdinRouter::send`] go to the child set by [`StdinRouter::set_child`].
    pub fn start(own: Option<mpsc::Receiver<Vec<u8>>>) -> (StdinRouter, tokio::task::JoinHandle<()>) {
        // Unbounded: one message per child started or gone, taken at once (see `children`).
        let (children, children_rx) = mpsc::unbounded_channel();
        let (ops, ops_rx) = mpsc::channel(STDIN_BACKLOG);
        let (generation, generation_rx) = watch::channel(0u64);
        let task = tokio::spawn(route_stdin(children_rx, ops_rx, own, generation_rx));
        (
            StdinRouter {
                children,
                ops,
                generation,
            },
            task,
        )
    }

    /// Makes `child` (pid, writable end of its stdin) the current one, or none; a write the
    /// previous child did not read is given up.
    pub fn set_child(&self, child: Option<(u32, OwnFd)>) {
        self.generation.send_modify(|g| *g += 1);
        let _ = self.children.send(child);
    }

    /// Hands a command to the router, which answers it; refused at once when
    /// [`STDIN_BACKLOG`] commands already wait for the child to read.
    pub fn send(&self, op: StdinOp) {
        if let Err(e) = self.ops.try_send(op) {
            let (op, why) = match e {
                mpsc::error::TrySendError::Full(op) => (
                    op,
                    format!("{STDIN_BACKLOG} earlier writes wait for the child to read its stdin; try again later"),
                ),
                mpsc::error::TrySendError::Closed(op) => (op, "the watcher is ending".to_string()),
            };
            let (StdinOp::Data(_, reply) | StdinOp::Close(reply)) = op;
            let _ = reply.send(Err(why));
        }
    }
}

/// Routes stdin to whichever child is current: each child gets a fresh stdin pipe, and both
/// our own stdin (`own`) and the commands (`ops`) go to the child of the moment. Our own stdin
/// waits while no child runs (between an exit and the restart), so nothing read from it is
/// lost; the commands get an error instead. A write the child does not read is abandoned
/// when the child changes (`generation`). A change of child is always taken before a command
/// sent after it.
async fn route_stdin(
    mut children: mpsc::UnboundedReceiver<Option<(u32, OwnFd)>>,
    mut ops: mpsc::Receiver<StdinOp>,
    mut own: Option<mpsc::Receiver<Vec<u8>>>,
    mut generation: watch::Receiver<u64>,
) {
    let mut current: Option<(u32, OwnFd)> = None;
    let mut own_eof = false;
    loop {
        tokio::select! {
            biased;
            child = children.recv() => match child {
                None => return,
                Some(child) => {
                    current = child;
                    if own_eof {
                        current = None; // our EOF reaches every later child at once
                    }
                }
            },
            op = ops.recv() => match op {
                None => return,
                Some(StdinOp::Close(reply)) => {
                    let text = match current.take() {
                        Some((pid, _)) => Ok(format!("closed stdin of pid {pid}")),
                        None => Err("no child is running, or its stdin is closed already".to_string()),
                    };
                    let _ = reply.send(text);
                }
                Some(StdinOp::Data(data, reply)) => {
                    let text = match &current {
                        None => Err("no child is running to take stdin, or its stdin is closed".to_string()),
                        Some((pid, fd)) => {
                            let pid = *pid;
                            match write_or_abandon(fd, &data, &mut generation).await {
                                Ok(()) => Ok(format!(
                                    "wrote {} byte{} to stdin of pid {pid}",
                                    data.len(),
                                    if data.len() == 1 { "" } else { "s" }
                                )),
                                Err(e) => {
                                    current = None;
                                    Err(format!("cannot write to stdin of pid {pid}: {e}"))
                                }
                            }
                        }
                    };
                    let _ = reply.send(text);
                }
            },
            chunk = async { own.as_mut().expect("guarded").recv().await }, if own.is_some() && current.is_some() => match chunk {
                Some(data) => {
                    if let Some((_, fd)) = &current {
                        if write_or_abandon(fd, &data, &mut generation).await.is_err() {
                            current = None; // a child that closed its stdin early leaves the rest unread
                        }
                    }
                }
                None => {
                    own = None;
                    own_eof = true;
                    current = None;
                }
            },
        }
    }
}

async fn write_or_abandon(fd: &OwnFd, data: &[u8], generation: &mut watch::Receiver<u64>) -> io::Result<()> {
    generation.borrow_and_update();
    tokio::select! {
        r = fd.write_all(data) => r,
        _ = generation.changed() => Err(io::Error::other("the child changed before it read its stdin")),
    }
}

/// The first read buffer of our own stdin, bytes; it grows to [`MAX_OUTPUT_CHUNK`] once a
/// read fills it.
const STDIN_FIRST_BUFFER: usize = 4096;

/// Starts copying our own stdin, chunk by chunk, into a bounded channel (closed at EOF):
/// on the loop when stdin can be polled, else on a thread of its own that stays blocked in
/// `read` until EOF.
pub fn own_stdin() -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel::<Vec<u8>>(2);
    match OwnFd::open(0, false) {
        Some(fd) => {
            tokio::spawn(async move {
                // Small until a read fills it: stdin at EOF at once (/dev/null) or idle costs no
                // 64 KiB of zeroed heap.
                let mut buf = vec![0u8; STDIN_FIRST_BUFFER];
                while let Ok(n @ 1..) = fd.read(&mut buf).await {
                    if tx.send(buf[..n].to_vec()).await.is_err() {
                        return;
                    }
                    if n == buf.len() {
                        buf.resize(MAX_OUTPUT_CHUNK, 0);
                    }
                }
            });
        }
        None => {
            let _ = std::thread::Builder::new().name("nrv-stdin".into()).spawn(move || {
                let mut buf = vec![0u8; STDIN_FIRST_BUFFER];
                loop {
                    // SAFETY: buf is a live, writable slice; fd 0 is never closed by us.
                    let n = unsafe { libc::read(0, buf.as_mut_ptr().cast(), buf.len()) };
                    if n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                        continue;
                    }
                    if n <= 0 || tx.blocking_send(buf[..n as usize].to_vec()).is_err() {
                        return;
                    }
                    if n as usize == buf.len() {
                        buf.resize(MAX_OUTPUT_CHUNK, 0);
                    }
                }
            });
        }
    }
    rx
}
