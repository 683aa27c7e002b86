//! Where the store's files come from: a private tmpfs with huge pages when one can be
//! mounted, else memory files (`memfd_create(2)`).
//!
//! `sendfile(2)` from a memory file takes its pages one at a time: each page is looked up on
//! its own, 256 lookups for a client's second of output at 8 Mbit/s with 4 KiB pages (16.9 %
//! of the server's CPU under 500 clients, BENCHMARKS.md §5.1.3). Memory files get 4 KiB pages
//! whenever `/sys/kernel/mm/transparent_hugepage/shmem_enabled` is `never` (the default). A
//! tmpfs mounted with `huge=always` gets 2 MiB pages unless that knob is `deny`, and `sendfile`
//! from it costs a sixth less CPU per Gbit/s (BENCHMARKS.md §5.1.3), as nginx's files in the
//! page cache get large folios.
//!
//! No operator has to mount it: a short-lived child process enters a mount namespace of its
//! own (in a user namespace of its own too when not root, or when root may not), mounts the
//! tmpfs there, passes the mount's root directory back over a socket and exits. The mount is
//! seen by no other process and lives as long as that descriptor; files are made in it with
//! `O_TMPFILE` (nameless, freed with their last reference, as memory files are). Where
//! namespaces are not allowed (a container's seccomp filter, `RestrictNamespaces=`, a system
//! that forbids unprivileged user namespaces), or the kernel gives the mount no huge pages,
//! the store uses memory files as before; which one is logged once. So it does once the
//! tmpfs is full (its size is half the memory, as any tmpfs's).
//!
//! After `fork` in a process with threads the child may make system calls only (no
//! allocation, no lock), and some of nix's wrappers allocate (`sendmsg`'s control buffer),
//! so the child's work is `libc` calls (`unsafe`, allowed in this module only); the parent's
//! side uses nix.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::signal::{kill, Signal};
use nix::sys::stat::Mode;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, getegid, geteuid, ForkResult, Pid};

/// The page size the private tmpfs must report to be worth using (x86-64's PMD size).
const HUGE_PAGE: i64 = 2 << 20;

/// The private tmpfs's root directory, once looked for; `None`: memory files.
static DIR: OnceLock<Option<OwnedFd>> = OnceLock::new();

/// A write to the private tmpfs found it full: memory files from then on.
static FULL: AtomicBool = AtomicBool::new(false);

/// A write to a file from [`create`] failed with `ENOSPC`: files are memory files from now
/// on (a file is made with no space, which is only wanted when written).
pub(crate) fn full() {
    if DIR.get().is_some_and(Option::is_some) && !FULL.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            "http feed: the private tmpfs is full; the store is in memory files from now on"
        );
    }
}

/// Mounts the private tmpfs now if it was not yet tried (the daemon calls this at start,
/// before its threads, so the child is forked from a small process); whether there is one.
pub(crate) fn prepare() -> bool {
    DIR.get_or_init(look_for_huge_pages).is_some()
}

/// A new, empty file for the store, readable and writable, closed on exec: on the private
/// tmpfs if `huge` and there is one.
///
/// Only files that clients will read should ask for huge pages: the first write to a huge
/// page zeroes the rest of it (2 MiB), so each byte written costs one more zeroed, which
/// nothing pays back when no client sends it (a tenth of a channel's muxing).
pub(crate) fn create(huge: bool) -> io::Result<File> {
    if let Some(dir) = (huge && !FULL.load(Ordering::Relaxed))
        .then(|| DIR.get_or_init(look_for_huge_pages).as_ref())
        .flatten()
    {
        match tmpfile_in(dir) {
            Ok(file) => return Ok(file),
            // Out of inodes, say: a memory file.
            Err(e) => tracing::debug!(error = %e, "http feed: a memory file instead"),
        }
    }
    let fd =
        nix::sys::memfd::memfd_create(c"headend-feed", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)?;
    Ok(File::from(fd))
}

fn look_for_huge_pages() -> Option<OwnedFd> {
    match mount_private().and_then(|dir| {
        let blksize = tmpfile_in(&dir).and_then(|f| {
            use std::os::unix::fs::MetadataExt;
            Ok(f.metadata()?.blksize())
        })?;
        if (blksize as i64) < HUGE_PAGE {
            return Err(io::Error::other(format!(
                "the kernel gives it {blksize}-byte pages (shmem_enabled = deny?)"
            )));
        }
        Ok(dir)
    }) {
        Ok(dir) => {
            tracing::info!("http feed: the store is on a private tmpfs with 2 MiB pages");
            Some(dir)
        }
        Err(e) => {
            tracing::info!(
                error = %e,
                "http feed: no private tmpfs with huge pages; the store is in memory files"
            );
            None
        }
    }
}

/// A nameless file in the directory `dir`.
fn tmpfile_in(dir: &OwnedFd) -> io::Result<File> {
    let fd = nix::fcntl::openat(
        dir,
        ".",
        OFlag::O_TMPFILE | OFlag::O_RDWR | OFlag::O_CLOEXEC,
        Mode::S_IRUSR | Mode::S_IWUSR,
    )?;
    Ok(File::from(fd))
}

/// Why the child stopped: its exit code.
fn step(code: i32) -> &'static str {
    match code {
        STEP_UNSHARE => "unshare (namespaces not allowed here)",
        STEP_MAP => "writing its user namespace's id maps",
        STEP_PRIVATE => "making its mounts private",
        STEP_MOUNT => "mounting tmpfs with huge=always on /tmp",
        STEP_OPEN => "opening the mount",
        STEP_SEND => "passing the mount back",
        _ => "an unknown step",
    }
}

const STEP_UNSHARE: i32 = 10;
const STEP_MAP: i32 = 11;
const STEP_PRIVATE: i32 = 12;
const STEP_MOUNT: i32 = 13;
const STEP_OPEN: i32 = 14;
const STEP_SEND: i32 = 15;

/// Mounts the tmpfs in a child's mount namespace: its root directory.
fn mount_private() -> io::Result<OwnedFd> {
    let (ours, theirs) = UnixStream::pair()?;
    let (uid, gid) = (geteuid().as_raw(), getegid().as_raw());
    // Everything the child writes is made here: after `fork` in a process with threads the
    // child may only make system calls (no allocation, no lock).
    let uid_map = format!("{uid} {uid} 1\n");
    let gid_map = format!("{gid} {gid} 1\n");
    let maps = Maps {
        uid: uid_map.as_bytes(),
        gid: gid_map.as_bytes(),
        root: uid == 0,
    };
    // SAFETY: the child runs `child` (system calls only, on memory made before the fork) and
    // `_exit`s; it never returns into the parent's code.
    match unsafe { fork() }? {
        ForkResult::Child => {
            let code = child(&maps, theirs.as_raw_fd());
            // SAFETY: ends the child without running the parent's destructors or handlers.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child: pid } => {
            drop(theirs);
            let got = ours
                .set_read_timeout(Some(Duration::from_secs(5)))
                .and_then(|()| receive_fd(&ours));
            if got.is_err() {
                // Our own child, not yet waited for.
                let _ = kill(pid, Signal::SIGKILL);
            }
            let code = reap(pid);
            match (got, code) {
                (Ok(fd), _) => Ok(fd),
                (Err(e), Some(code)) if code != 0 => Err(io::Error::other(format!(
                    "the child stopped at {}: {e}",
                    step(code)
                ))),
                (Err(e), _) => Err(e),
            }
        }
    }
}

/// Waits up to 2 s for the child `pid` to end: its exit code (`None`: killed by a signal, or
/// not ended). A child stuck where a signal cannot reach it (a hung mount under /tmp) is left
/// behind rather than holding the start.
fn reap(pid: Pid) -> Option<i32> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => return Some(code),
            Ok(WaitStatus::Signaled(..)) => return None,
            Ok(WaitStatus::StillAlive) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(Errno::EINTR) => {}
            _ => {
                tracing::warn!(
                    pid = pid.as_raw(),
                    "http feed: the child that mounts the tmpfs did not end"
                );
                return None;
            }
        }
    }
}

/// What the child needs, made before the fork.
struct Maps<'a> {
    uid: &'a [u8],
    gid: &'a [u8],
    root: bool,
}

/// The child's work after `fork`: system calls only. Its exit status.
fn child(maps: &Maps, socket: libc::c_int) -> i32 {
    // SAFETY (the whole function): system calls on C string literals, on memory made before
    // the fork and on the stack; each result is checked.
    unsafe {
        // Root with CAP_SYS_ADMIN needs only a mount namespace; anyone else (or root in a
        // container that withholds it) a user namespace too, with its own ids mapped to
        // themselves so that the files the parent makes in the mount have owners.
        let alone = maps.root && libc::unshare(libc::CLONE_NEWNS) == 0;
        if !alone {
            if libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNS) != 0 {
                return STEP_UNSHARE;
            }
            if !write_file(c"/proc/self/setgroups", b"deny")
                || !write_file(c"/proc/self/uid_map", maps.uid)
                || !write_file(c"/proc/self/gid_map", maps.gid)
            {
                return STEP_MAP;
            }
        }
        // Nothing mounted here may reach the parent's namespace.
        if libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ) != 0
        {
            return STEP_PRIVATE;
        }
        if libc::mount(
            c"headend-feed".as_ptr(),
            c"/tmp".as_ptr(),
            c"tmpfs".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            c"huge=always,mode=0700".as_ptr().cast(),
        ) != 0
        {
            return STEP_MOUNT;
        }
        let dir = libc::open(
            c"/tmp".as_ptr(),
            libc::O_DIRECTORY | libc::O_RDONLY | libc::O_CLOEXEC,
        );
        if dir < 0 {
            return STEP_OPEN;
        }
        if !send_fd(socket, dir) {
            return STEP_SEND;
        }
        0
    }
}

/// Writes `data` to the file at `path` in one call (the child: system calls only).
///
/// # Safety
/// System calls only; `path` and `data` must be valid.
unsafe fn write_file(path: &std::ffi::CStr, data: &[u8]) -> bool {
    // SAFETY: as the function's.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return false;
        }
        let n = libc::write(fd, data.as_ptr().cast(), data.len());
        libc::close(fd);
        n == data.len() as isize
    }
}

/// Room for one descriptor's control message, aligned for `cmsghdr`.
#[repr(C, align(8))]
struct FdMessage([u8; 64]);

/// Sends `fd` over `socket` with one byte of data (the child: system calls only).
///
/// # Safety
/// System calls only; both must be open descriptors.
unsafe fn send_fd(socket: libc::c_int, fd: libc::c_int) -> bool {
    // SAFETY: as the function's; the buffers live on this stack frame through the call, and
    // the control buffer is large and aligned enough for one descriptor.
    unsafe {
        let mut byte = [0u8; 1];
        let mut iov = libc::iovec {
            iov_base: byte.as_mut_ptr().cast(),
            iov_len: 1,
        };
        let mut control = FdMessage([0; 64]);
        let space = libc::CMSG_SPACE(std::mem::size_of::<libc::c_int>() as u32) as usize;
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.0.as_mut_ptr().cast();
        msg.msg_controllen = space;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        if cmsg.is_null() {
            return false;
        }
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<libc::c_int>() as u32) as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>(), fd);
        libc::sendmsg(socket, &msg, 0) == 1
    }
}

/// The descriptor the child sent over `socket`.
fn receive_fd(socket: &UnixStream) -> io::Result<OwnedFd> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut byte = [0u8; 1];
    let mut iov = [io::IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!(libc::c_int);
    // A signal (the runtime's, when this runs late) ends the wait early: within the socket's
    // read timeout, it is waited for again.
    let deadline = Instant::now() + Duration::from_secs(5);
    let msg = loop {
        match recvmsg::<()>(
            socket.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Err(Errno::EINTR) if Instant::now() < deadline => continue,
            r => break r.map_err(io::Error::from)?,
        }
    };
    for cmsg in msg.cmsgs().map_err(io::Error::from)? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            if let Some(&fd) = fds.first() {
                // SAFETY: received just now with SCM_RIGHTS: a new descriptor of ours.
                return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    Err(io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "the child sent no descriptor",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek, Write};

    /// A store file holds what is written to it, whichever kind it is; on the CI machines
    /// (root, namespaces allowed) it is on the private tmpfs, with 2 MiB pages.
    #[test]
    fn store_files_work_and_have_huge_pages_where_allowed() {
        let huge = prepare();
        let mut file = create(true).expect("a store file");
        file.write_all(&[0x47; 188 * 7]).unwrap();
        file.rewind().unwrap();
        let mut back = Vec::new();
        file.read_to_end(&mut back).unwrap();
        assert_eq!(back, vec![0x47; 188 * 7]);
        if std::env::var_os("CI").is_some_and(|v| v == "true") {
            assert!(huge, "CI runs as root: the private tmpfs must mount");
        }
        if huge {
            use std::os::unix::fs::MetadataExt;
            assert_eq!(file.metadata().unwrap().blksize() as i64, HUGE_PAGE);
            // Memory files have small pages unless the machine says otherwise.
            let knob = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/shmem_enabled")
                .unwrap_or_default();
            if knob.contains("[never]") || knob.contains("[deny]") {
                let small = create(false).unwrap();
                assert!((small.metadata().unwrap().blksize() as i64) < HUGE_PAGE);
                // Once the tmpfs was found full, memory files only.
                full();
                let after = create(true).unwrap();
                assert!((after.metadata().unwrap().blksize() as i64) < HUGE_PAGE);
            }
            // Nothing of it shows in this process's mount namespace.
            let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
            assert!(!mounts.contains("headend-feed"), "{mounts}");
        }
    }
}
