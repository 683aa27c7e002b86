//! Playlist files: answers a station's file reads ([`IoRequest`]s) with blocking reads.
//! `headend render` does them inline; the real-time engine on its I/O threads.

use std::fs::File;
use std::io::Seek;
use std::os::fd::AsRawFd;
use std::path::Path;

use bytes::Bytes;
use playout::splice::{IoRequest, Splicer};
use playout::time::Ticks27M;
use playout::ts::PACKET_SIZE;

/// Bytes per read: 2048 packets (385 KB; fewer page faults per byte than smaller reads). A multiple of 188 keeps packets zero-copy.
pub(crate) const CHUNK: usize = 2048 * PACKET_SIZE;

/// The file open for one program of a station.
#[derive(Default)]
pub(crate) struct FileSource {
    open: Option<(usize, File)>,
    bytes_read: u64,
}

impl FileSource {
    /// Bytes read so far.
    pub(crate) fn bytes_read(&self) -> u64 {
        self.bytes_read
    }
}

/// The result of one [`IoRequest`], to hand to the splicer that asked (possibly on another
/// thread than the one that did the I/O).
#[derive(Debug)]
pub(crate) enum IoDone {
    Opened { item: usize },
    OpenFailed { item: usize, reason: String },
    Data { item: usize, data: Bytes },
    Eof { item: usize, error: Option<String> },
}

impl IoDone {
    /// Hands the result to `splicer`.
    pub(crate) fn apply(self, splicer: &mut Splicer, now: Ticks27M) {
        match self {
            IoDone::Opened { item } => splicer.handle_opened(item),
            IoDone::OpenFailed { item, reason } => splicer.handle_open_failed(now, item, &reason),
            IoDone::Data { item, data } => splicer.handle_data(now, item, data),
            IoDone::Eof { item, error } => splicer.handle_eof(now, item, error.as_deref()),
        }
    }
}

impl FileSource {
    /// Does the blocking I/O `req` asks for; `path` is the item's file (for an open).
    pub(crate) fn perform(&mut self, req: IoRequest, path: Option<&Path>) -> IoDone {
        match req {
            IoRequest::Open { item, from_byte } => {
                self.open = None;
                match open_item(item, path).and_then(|mut f| {
                    if from_byte > 0 {
                        f.seek(std::io::SeekFrom::Start(from_byte - from_byte % 188))
                            .map_err(|e| e.to_string())?;
                    }
                    Ok(f)
                }) {
                    Ok(f) => {
                        self.open = Some((item, f));
                        IoDone::Opened { item }
                    }
                    Err(reason) => IoDone::OpenFailed { item, reason },
                }
            }
            IoRequest::Read { item } => {
                let Some((_, file)) = self.open.as_mut().filter(|(i, _)| *i == item) else {
                    return IoDone::Eof {
                        item,
                        error: Some("file is not open".to_owned()),
                    };
                };
                match read_chunk(file) {
                    Ok(data) if data.is_empty() => {
                        self.open = None;
                        IoDone::Eof { item, error: None }
                    }
                    Ok(data) => {
                        self.bytes_read += data.len() as u64;
                        IoDone::Data { item, data }
                    }
                    Err(e) => {
                        self.open = None;
                        IoDone::Eof {
                            item,
                            error: Some(e.to_string()),
                        }
                    }
                }
            }
        }
    }
}

fn open_item(item: usize, path: Option<&Path>) -> Result<File, String> {
    let path = path.ok_or_else(|| format!("no playlist item {item}"))?;
    open_media(path)
}

/// Opens a media file for reading. Anything but a regular file is refused, named, before
/// it is opened: a FIFO with no writer would hold the open for ever. (A regular file whose
/// open blocks, on a hung disk, is the I/O pool's to give up: `engine::IoPool`.)
pub(crate) fn open_media(path: &Path) -> Result<File, String> {
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if let Some(what) = crate::config::not_regular(&meta) {
        return Err(format!("not a regular file: {what}"));
    }
    let f = File::open(path).map_err(|e| e.to_string())?;
    // Replaced between the two looks: the open file is what counts.
    let meta = f.metadata().map_err(|e| e.to_string())?;
    match crate::config::not_regular(&meta) {
        Some(what) => Err(format!("not a regular file: {what}")),
        None => Ok(f),
    }
}

/// Reads up to [`CHUNK`] bytes (fewer only at the end of the file), in one read(2) when the
/// file has them: `read_to_end` would start at 8 KB and double, six system calls a chunk,
/// which cost a render more than the copy on a virtual machine (BENCHMARKS.md §11).
#[allow(unsafe_code)]
fn read_chunk(file: &mut File) -> std::io::Result<Bytes> {
    let mut buf: Vec<u8> = Vec::with_capacity(CHUNK);
    while buf.len() < CHUNK {
        let want = CHUNK - buf.len();
        let spare = &mut buf.spare_capacity_mut()[..want];
        // SAFETY: the pointer and length describe the vector's spare capacity, alive and
        // not otherwise borrowed for the call; read(2) writes at most that many bytes.
        let n = unsafe { libc::read(file.as_raw_fd(), spare.as_mut_ptr().cast(), spare.len()) };
        match n {
            0 => break,
            // SAFETY: read(2) initialised the first `n` bytes of the spare capacity.
            n if n > 0 => unsafe { buf.set_len(buf.len() + n as usize) },
            _ => {
                let e = std::io::Error::last_os_error();
                if e.kind() != std::io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
    Ok(Bytes::from(buf))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn a_chunk_is_whole_up_to_the_end_of_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.ts");
        let data: Vec<u8> = (0..CHUNK * 2 + 1000).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let mut f = File::open(&path).unwrap();
        let mut got = Vec::new();
        let mut sizes = Vec::new();
        loop {
            let c = read_chunk(&mut f).unwrap();
            if c.is_empty() {
                break;
            }
            sizes.push(c.len());
            got.extend_from_slice(&c);
        }
        assert_eq!(sizes, [CHUNK, CHUNK, 1000]);
        assert_eq!(got, data);
    }

    #[test]
    fn a_chunk_gathers_short_reads_from_a_pipe() {
        // A FIFO hands out what was written so far: read(2) returns short counts, and the
        // chunk keeps reading until it is whole or the writer is gone.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&path)
            .status()
            .unwrap();
        assert!(made.success());
        let writer_path = path.clone();
        let writer = std::thread::spawn(move || {
            let mut w = std::fs::OpenOptions::new()
                .write(true)
                .open(writer_path)
                .unwrap();
            for k in 0..10u8 {
                w.write_all(&[k; 1000]).unwrap();
                w.flush().unwrap();
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
        });
        let mut f = File::open(&path).unwrap();
        let c = read_chunk(&mut f).unwrap();
        writer.join().unwrap();
        assert_eq!(c.len(), 10_000);
        assert!(c
            .chunks(1000)
            .enumerate()
            .all(|(k, b)| b.iter().all(|x| *x == k as u8)));
        assert!(read_chunk(&mut f).unwrap().is_empty());
    }

    #[test]
    fn a_read_error_is_an_error() {
        // A directory opens but cannot be read (EISDIR).
        let dir = tempfile::tempdir().unwrap();
        let mut f = File::open(dir.path()).unwrap();
        assert!(read_chunk(&mut f).is_err());
    }

    /// A FIFO (with no writer) or a directory in a playlist is refused at once, named: the
    /// open does not wait for a writer.
    #[test]
    fn only_regular_files_are_opened() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let e = open_media(&fifo).unwrap_err();
        assert_eq!(e, "not a regular file: a FIFO");
        let e = open_media(dir.path()).unwrap_err();
        assert_eq!(e, "not a regular file: a directory");
        let file = dir.path().join("a.ts");
        std::fs::write(&file, [0x47; 188]).unwrap();
        let mut f = open_media(&file).unwrap();
        assert_eq!(read_chunk(&mut f).unwrap().len(), 188);
        assert!(open_media(&dir.path().join("absent.ts")).is_err());
    }
}
