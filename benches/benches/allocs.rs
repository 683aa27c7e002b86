//! Heap allocations per output packet on the steady-state render path, counted by a global
//! allocator around the system one. `cargo bench -p benches --bench allocs`; with
//! `ALLOC_TRACE=1` it also captures a backtrace for each counted allocation and prints the
//! sites in `playout` they come from.
//!
//! Two figures:
//! - over whole playlist loops: a,b,c,e looped at 6 Mb/s, warmed up for 10 s of output, then
//!   counted over 10 loops (item changes, PMT changes and all);
//! - within one item: a single long item (the first 64 MB of `target/bench/input-1g.ts`,
//!   made by `scripts/bench-peers`; skipped when absent), counted over 300 s of output after
//!   a 10 s warm-up, with no item change inside the window;
//! - the TR 101 290 monitor (run on every output and live input): over 60 s of the a,b,c,e
//!   render in 7-packet datagrams (no SI in it: not checked), counted after its first 10 s.

use std::alloc::{GlobalAlloc, Layout, System};
use std::backtrace::Backtrace;
use std::cell::Cell;
use std::collections::HashMap;
use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use benches::{playlist, render};
use bytes::{Bytes, BytesMut};
use playout::mux::MuxEvent;
use playout::offline::{MemorySource, Offline, BATCH};
use playout::splice::SpliceEvent;
use playout::ts::PACKET_SIZE;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);
static TRACE: AtomicBool = AtomicBool::new(false);
static TRACES: Mutex<Vec<(usize, Backtrace)>> = Mutex::new(Vec::new());

thread_local! {
    static IN_HOOK: Cell<bool> = const { Cell::new(false) };
}

/// Counts every allocation and reallocation, then defers to [`System`].
struct Counting;

impl Counting {
    fn count(size: usize) {
        if IN_HOOK.with(Cell::get) {
            return;
        }
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(size as u64, Ordering::Relaxed);
        if TRACE.load(Ordering::Relaxed) {
            // Capturing allocates: those inner allocations go straight to System.
            IN_HOOK.with(|h| h.set(true));
            let bt = Backtrace::force_capture();
            if let Ok(mut t) = TRACES.lock() {
                t.push((size, bt));
            }
            IN_HOOK.with(|h| h.set(false));
        }
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged; counting
// touches only atomics and a thread-local flag.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        Counting::count(layout.size());
        // SAFETY: the caller's contract for `alloc` is passed on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        Counting::count(layout.size());
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        Counting::count(new_size);
        // SAFETY: `ptr` was allocated by `System` (through this allocator) with `layout`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` (through this allocator) with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// What one counted window saw.
#[derive(Default)]
struct Window {
    packets: u64,
    es_packets: u64,
    allocs: u64,
    bytes: u64,
    items_started: u64,
    pmt_changes: u64,
}

/// Steps `run` until `packets` more are out, into a reused buffer, draining events as
/// `headend render` does; returns what the allocator and the events saw meanwhile.
fn steps(run: &mut Offline<MemorySource>, buf: &mut BytesMut, packets: u64) -> Window {
    let mut w = Window::default();
    let (a0, b0) = (
        ALLOCS.load(Ordering::Relaxed),
        BYTES.load(Ordering::Relaxed),
    );
    let es0 = run.mux().stats().es_packets;
    while w.packets < packets && !run.done() {
        buf.clear();
        w.packets += run.step(buf, BATCH) as u64;
        while let Some(ev) = run.mux().poll_event() {
            if let MuxEvent::Splice {
                event: SpliceEvent::ItemStarted { pmt_changed, .. },
                ..
            } = ev
            {
                w.items_started += 1;
                w.pmt_changes += u64::from(pmt_changed);
            }
        }
    }
    w.allocs = ALLOCS.load(Ordering::Relaxed) - a0;
    w.bytes = BYTES.load(Ordering::Relaxed) - b0;
    w.es_packets = run.mux().stats().es_packets - es0;
    w
}

fn report(label: &str, w: &Window) {
    let per_item = if w.items_started > 0 {
        format!("{:.1}", w.allocs as f64 / w.items_started as f64)
    } else {
        "n/a".to_owned()
    };
    println!(
        "{label}: {} allocations ({} bytes) over {} output packets = {:.5} allocations/packet; \
         {:.5} per payload (input) packet ({} of them); {per_item} per item started \
         ({} items started, {} PMT changes)",
        w.allocs,
        w.bytes,
        w.packets,
        w.allocs as f64 / w.packets.max(1) as f64,
        w.allocs as f64 / w.es_packets.max(1) as f64,
        w.es_packets,
        w.items_started,
        w.pmt_changes,
    );
}

/// Counts a window, with backtraces when `ALLOC_TRACE` is set.
fn measure(run: &mut Offline<MemorySource>, buf: &mut BytesMut, packets: u64) -> Window {
    let trace = std::env::var_os("ALLOC_TRACE").is_some();
    if let Ok(mut t) = TRACES.lock() {
        t.clear();
    }
    TRACE.store(trace, Ordering::Relaxed);
    let w = steps(run, buf, packets);
    TRACE.store(false, Ordering::Relaxed);
    if trace {
        print_sites();
    }
    w
}

/// Groups the captured backtraces by their innermost `playout` frames.
fn print_sites() {
    let traces = match TRACES.lock() {
        Ok(mut t) => std::mem::take(&mut *t),
        Err(_) => return,
    };
    let mut sites: HashMap<String, (u64, u64)> = HashMap::new();
    for (size, bt) in &traces {
        let text = bt.to_string();
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        let mut key = Vec::new();
        for (i, l) in lines.iter().enumerate() {
            let is_frame = l
                .split_once(": ")
                .is_some_and(|(n, _)| n.parse::<u32>().is_ok());
            if is_frame && l.contains("playout::") {
                let at = lines
                    .get(i + 1)
                    .filter(|a| a.starts_with("at "))
                    .unwrap_or(&"");
                let at = at.rsplit('/').next().unwrap_or("");
                key.push(format!("{} ({at})", l.split_once(": ").map_or(*l, |x| x.1)));
                if key.len() == 3 {
                    break;
                }
            }
        }
        if key.is_empty() {
            key.push("(outside playout)".to_owned());
        }
        let e = sites.entry(key.join("\n      <- ")).or_default();
        e.0 += 1;
        e.1 += *size as u64;
    }
    let mut sites: Vec<_> = sites.into_iter().collect();
    sites.sort_by_key(|s| std::cmp::Reverse(s.1 .0));
    println!("allocation sites ({} allocations traced):", traces.len());
    for (site, (n, bytes)) in sites.iter().take(25) {
        println!("  {n:>6} allocs {bytes:>9} bytes  {site}");
    }
}

fn packets(secs: u64, muxrate_bps: u64) -> u64 {
    Offline::<MemorySource>::packets_for(Duration::from_secs(secs), muxrate_bps)
}

fn whole_loops() {
    let names = ["a.ts", "b.ts", "c.ts", "e.ts"];
    let items = playlist(&names);
    let muxrate = 6_000_000;
    // Far longer than the windows, so the closing never starts inside them.
    let mut run = render(items, muxrate, Duration::from_secs(3600));
    let mut buf = BytesMut::with_capacity(BATCH * PACKET_SIZE);
    // Warm up: 10 s of output, then up to the first start of item 0 after that, so the
    // window covers whole loops.
    steps(&mut run, &mut buf, packets(10, muxrate));
    loop {
        let w = steps(&mut run, &mut buf, 1);
        if w.items_started > 0 && item_on_air(&mut run, names.len()) == Some(0) {
            break;
        }
    }
    // One loop is about 18 s; count over 10 loops.
    let loop_secs: f64 = 5.021 + 5.010 + 5.005 + 3.029;
    let w = measure(
        &mut run,
        &mut buf,
        packets((10.0 * loop_secs) as u64, muxrate),
    );
    report(
        "over whole loops (a,b,c,e at 6 Mb/s, ~10 loops after 10 s warm-up)",
        &w,
    );
}

/// Which item the splicer is on (by its stats: items started modulo the playlist).
fn item_on_air(run: &mut Offline<MemorySource>, items: usize) -> Option<usize> {
    let s = run.mux().program_mut(0).stats();
    Some(((s.items_started + s.items_failed).checked_sub(1)? % items as u64) as usize)
}

fn within_item() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/bench/input-1g.ts");
    let mut data = Vec::new();
    match std::fs::File::open(path) {
        Ok(f) => {
            if let Err(e) = f.take(64 << 20).read_to_end(&mut data) {
                println!("within one item: skipped, reading {path}: {e}");
                return;
            }
        }
        Err(_) => {
            println!("within one item: skipped, {path} is missing (run scripts/bench-peers)");
            return;
        }
    }
    data.truncate(data.len() / PACKET_SIZE * PACKET_SIZE);
    let muxrate = 6_000_000;
    let mut run = render(
        vec![Some(Bytes::from(data))],
        muxrate,
        Duration::from_secs(3600),
    );
    let mut buf = BytesMut::with_capacity(BATCH * PACKET_SIZE);
    steps(&mut run, &mut buf, packets(10, muxrate));
    let w = measure(&mut run, &mut buf, packets(300, muxrate));
    report(
        "within one item (64 MB of input-1g.ts at 6 Mb/s, 300 s after 10 s warm-up)",
        &w,
    );
}

fn monitored() {
    let muxrate = 6_000_000;
    let out = benches::rendered_abce(muxrate, Duration::from_secs(60));
    let mut m = playout::monitor::Monitor::new(playout::monitor::MonitorConfig {
        si: false,
        nit: false,
        pcr_accuracy: true,
    });
    let datagram = 7 * PACKET_SIZE;
    let ns = datagram as u64 * 8 * 1_000_000_000 / muxrate;
    let warm = packets(10, muxrate) as usize * PACKET_SIZE / datagram;
    let mut counted = (0, 0);
    for (k, d) in out.chunks_exact(datagram).enumerate() {
        if k == warm {
            counted.0 = ALLOCS.load(Ordering::Relaxed);
        }
        m.push(k as u64 * ns, d);
        counted.1 += usize::from(k >= warm) * 7;
    }
    let allocs = ALLOCS.load(Ordering::Relaxed) - counted.0;
    println!(
        "TR 101 290 monitor (a,b,c,e at 6 Mb/s, 50 s after 10 s warm-up): {allocs} allocations \
         over {} packets = {:.5} allocations/packet; errors counted: {:?}",
        counted.1,
        allocs as f64 / counted.1.max(1) as f64,
        m.counts()
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(r, n)| format!("{} {n}", r.name()))
            .collect::<Vec<_>>(),
    );
}

fn main() {
    // `cargo bench` passes `--bench`; there is nothing to filter.
    whole_loops();
    within_item();
    monitored();
}
