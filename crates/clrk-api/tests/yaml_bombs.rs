//! YAML and JSON bombs against the manifest parser: alias expansion (billion laughs), huge
//! aliased scalars, deep nesting, document and key storms. Each must come back quickly as an
//! error naming the file, with the memory it took bounded by the parser's budget (serde-saphyr's
//! defaults: 250,000 nodes, 64 MiB of scalars, depth 64, 1,024 documents; serde_json's
//! recursion limit of 128), however much the text would expand to.
//!
//! The memory is measured with a counting allocator, so this file holds a single test: another
//! test running beside it would count into the same peak.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Most memory one parse may hold at once. The parser's budget stops at 64 MiB of scalars or
/// 250,000 nodes; this leaves room for the copies made on the way.
const MAX_PEAK: usize = 128 << 20;
/// Longest a bomb may take to be refused: generous for a debug build on a loaded machine;
/// what it guards against is expansion, which takes minutes or never ends.
const MAX_TIME: Duration = Duration::from_secs(30);

/// The system allocator, counting the bytes live now and the most since the last reset.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is passed straight to the system allocator; the counters only observe.
// (A test's counting allocator: measuring allocation is what this test is for.)
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(live, Ordering::Relaxed);
        // SAFETY: the caller's contract for `layout` is the system allocator's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: `ptr` came from `alloc` above with this `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Parses `text`, which must be refused; returns the peak memory and time it took.
fn refused(name: &str, text: &str) -> (usize, Duration) {
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let started = Instant::now();
    let outcome = clrk_api::parse_manifests("bomb.yaml", text);
    let elapsed = started.elapsed();
    let peak = PEAK.load(Ordering::Relaxed).saturating_sub(base);
    match outcome {
        Ok(docs) => panic!("{name}: accepted as {} documents", docs.len()),
        Err(error) => {
            let message = error.to_string();
            assert!(message.starts_with("bomb.yaml: "), "{name}: {message}");
            assert!(
                message.len() < 1024,
                "{name}: a {}-byte message",
                message.len()
            );
        }
    }
    assert!(peak <= MAX_PEAK, "{name}: peak {} MiB", peak >> 20);
    assert!(elapsed <= MAX_TIME, "{name}: took {elapsed:?}");
    (peak, elapsed)
}

/// `count` copies of `item` joined by `sep`.
fn repeat(item: &str, sep: &str, count: usize) -> String {
    vec![item; count].join(sep)
}

#[test]
fn yaml_bombs_fail_fast_with_bounded_memory() {
    let mut bombs: Vec<(&str, String)> = Vec::new();

    // Billion laughs: ten levels of nine aliases each would be 9^10 strings.
    let mut laughs = format!("a0: &a0 [{}]\n", repeat("\"lol\"", ",", 9));
    for i in 1..10 {
        let prev = format!("*a{}", i - 1);
        laughs += &format!("a{i}: &a{i} [{}]\n", repeat(&prev, ",", 9));
    }
    bombs.push(("billion laughs", laughs.clone()));
    bombs.push((
        "billion laughs in a manifest",
        format!(
            "apiVersion: clrk.apoxy.dev/v1alpha1\nkind: TaskAgent\nmetadata: {{name: a}}\n\
             spec:\n  scheduleInput:\n{}",
            laughs
                .lines()
                .map(|l| format!("    {l}\n"))
                .collect::<String>()
        ),
    ));
    // One 1 MiB scalar aliased 99 times, and ten of them ten times each.
    let mib = "x".repeat(1 << 20);
    bombs.push((
        "aliased large scalar",
        format!("a: &a \"{mib}\"\nb: [{}]\n", repeat("*a", ",", 99)),
    ));
    let mut many = String::new();
    for i in 0..10 {
        many += &format!("a{i}: &a{i} \"{mib}\"\n");
    }
    let aliases: Vec<String> = (0..100).map(|i| format!("*a{}", i % 10)).collect();
    many += &format!("b: [{}]\n", aliases.join(","));
    bombs.push(("ten aliased large scalars", many));
    // A 10,000-item list aliased 99 times.
    bombs.push((
        "aliased long list",
        format!(
            "a: &a [{}]\nb: [{}]\n",
            repeat("1", ",", 10_000),
            repeat("*a", ",", 99)
        ),
    ));
    // Merge keys pulling a large mapping into many others.
    let wide: String = (0..2_000).map(|i| format!("k{i}: {i}, ")).collect();
    let merges: String = (0..1_000)
        .map(|i| format!("m{i}: {{<<: *base}}\n"))
        .collect();
    bombs.push(("merge keys", format!("base: &base {{{wide}}}\n{merges}")));
    // Deep nesting, flow and block, YAML and JSON.
    bombs.push(("deep flow lists", format!("a: {}", "[".repeat(100_000))));
    bombs.push(("deep flow maps", format!("a: {}", "{a: ".repeat(100_000))));
    let block: String = (0..1_000)
        .map(|i| format!("{}a:\n", " ".repeat(i)))
        .collect();
    bombs.push(("deep block maps", block));
    let dashes: String = (0..1_000)
        .map(|i| format!("{}- \n", "  ".repeat(i)))
        .collect();
    bombs.push(("deep block lists", dashes));
    bombs.push(("deep JSON arrays", "[".repeat(100_000)));
    bombs.push(("deep JSON objects", "{\"a\":".repeat(100_000)));
    // Storms: documents, keys, anchors.
    bombs.push(("document separators", "---\n".repeat(1_000_000)));
    bombs.push(("small documents", "---\na: 1\n".repeat(100_000)));
    let keys: String = (0..300_000).map(|i| format!("k{i}: 1\n")).collect();
    bombs.push(("many keys", keys));
    let anchors: String = (0..60_000).map(|i| format!("- &a{i} 1\n")).collect();
    bombs.push(("many anchors", anchors));

    for (name, text) in &bombs {
        let (peak, elapsed) = refused(name, text);
        eprintln!(
            "{name}: {} KiB of text, refused in {elapsed:?}, peak {} MiB",
            text.len() >> 10,
            peak >> 20
        );
    }
}
