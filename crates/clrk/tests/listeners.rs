//! Hostile clients against clrk's listeners, with real sandboxes: a sandbox flooding the
//! metadata service, slow and stalled clients on the ingress, uploads to agents that do not
//! exist, and too many connections from one address. None of them may take descriptors or
//! memory without a bound, or keep the control API, the ingress or another agent from
//! answering.

mod common;

use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

const MIB: u64 = 1024 * 1024;

fn rss_mib(pid: u32) -> u64 {
    rss_kib(pid) / 1024
}

fn ingress_addr(dev: &Dev) -> String {
    dev.ingress.trim_start_matches("http://").to_string()
}

/// Reads until the server closes the connection or `limit` passes; returns what came and
/// whether the server closed it.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (String, bool) {
    let mut got = Vec::new();
    let end = tokio::time::Instant::now() + limit;
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(end, stream.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return (text(&got), true),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => return (text(&got), false),
        }
    }
}

/// Opens up to 3,000 connections to the metadata service and holds them while the test
/// looks (the test ends it).
const FLOOD: &str = r#"
import os, resource, socket, sys, time
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
host = os.environ["CLRK_METADATA_URL"].split("/")[2]
held, failed = [], 0
start = time.time()
while len(held) + failed < 3000 and time.time() - start < 30:
    s = socket.socket()
    s.settimeout(2)
    try:
        s.connect((host, 80)); held.append(s)
    except OSError:
        failed += 1; s.close()
print(f"holding {len(held)} connections ({failed} failed)", file=sys.stderr, flush=True)
time.sleep(100)
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_sandbox_flooding_the_metadata_service_holds_no_descriptors_and_stops_nobody() {
    let dev = Dev::start();
    dev.apply(&metadata_py_agent("flood", FLOOD));
    let answer = "import os, urllib.request\nreq = urllib.request.Request(os.environ['CLRK_METADATA_URL'] + '/response', data=b'still here', method='POST')\nurllib.request.urlopen(req, timeout=10).read()\n";
    dev.apply(&metadata_py_agent("neighbour", answer));
    dev.apply(&sh_agent("echo", "cat >/dev/null; echo pong", ""));
    let r = dev
        .invoke(&[("X-Clrk-TaskAgent", "default/neighbour")], "")
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let pid = dev.pid();
    let baseline = open_fds(pid);

    let flood = {
        let ingress = dev.ingress.clone();
        tokio::spawn(async move {
            request(
                "POST",
                &format!("{ingress}/"),
                &[
                    ("X-Clrk-TaskAgent", "default/flood"),
                    ("X-Clrk-Execution-ID", "flood-1"),
                ],
                bytes::Bytes::new(),
            )
            .await
        })
    };
    let holding = eventually("the flooding agent to hold its connections", || async {
        let out = dev.clrk(&["agents", "logs", "flood"]);
        let logs = text(&out.stdout);
        logs.lines()
            .find(|l| l.contains("holding"))
            .map(str::to_string)
    })
    .await;
    let held: usize = holding
        .split_whitespace()
        .skip_while(|w| *w != "holding")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(held >= 1000, "the agent could not flood: {holding}");
    let during = open_fds(pid);
    eprintln!("clrk fds: {baseline} before, {during} while the agent says: {holding}");
    assert!(
        during < baseline + 100,
        "clrk holds {during} descriptors (was {baseline}) while a sandbox floods it: {holding}"
    );

    // Meanwhile the control API, the ingress and another agent's metadata all answer.
    let r = dev.api_get("/v1/agents").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = dev
        .invoke(&[("X-Clrk-TaskAgent", "default/echo")], "ping")
        .await;
    assert_eq!((r.status, r.text().as_str()), (200, "pong\n"));
    let r = dev
        .invoke(&[("X-Clrk-TaskAgent", "default/neighbour")], "")
        .await;
    assert_eq!((r.status, r.text().as_str()), (200, "still here"));
    assert!(
        dev.server_log()
            .contains("too many connections from this address"),
        "the refusals are not recorded:\n{}",
        dev.server_log()
    );

    flood.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_and_slow_clients_are_cut_off_while_a_long_silent_execution_is_not() {
    let dev = Dev::start();
    dev.apply(&sh_agent("slow", "cat >/dev/null; sleep 30; echo done", ""));
    let addr = ingress_addr(&dev);
    let started = Instant::now();

    // A long execution that writes nothing for 30 s outlives the header timeout.
    let long = {
        let ingress = dev.ingress.clone();
        tokio::spawn(async move {
            request(
                "POST",
                &format!("{ingress}/"),
                &[("X-Clrk-TaskAgent", "default/slow")],
                bytes::Bytes::from_static(b"x"),
            )
            .await
        })
    };
    // Connected and silent.
    let mut idle = TcpStream::connect(&addr).await.unwrap();
    // Headers one byte every 2 s.
    let slow_headers = tokio::spawn({
        let addr = addr.clone();
        async move {
            let mut s = TcpStream::connect(&addr).await.unwrap();
            for b in b"POST / HTTP/1.1\r\nX-Clrk-TaskAgent: default/slow\r\n" {
                if s.write_all(&[*b]).await.is_err() {
                    return true;
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            false
        }
    });
    // A body that stops half way.
    let mut stalled = TcpStream::connect(&addr).await.unwrap();
    stalled
        .write_all(b"POST / HTTP/1.1\r\nhost: x\r\nX-Clrk-TaskAgent: default/slow\r\ncontent-length: 100\r\n\r\n0123456789")
        .await
        .unwrap();
    // A kept-alive connection after one answer.
    let mut kept = TcpStream::connect(&addr).await.unwrap();
    kept.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();

    let (answer, closed) = read_until_closed(&mut idle, Duration::from_secs(60)).await;
    assert!(closed, "an idle connection was kept open: {answer}");
    let (answer, closed) = read_until_closed(&mut stalled, Duration::from_secs(60)).await;
    assert!(closed, "a stalled body was waited for: {answer}");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    let (answer, closed) = read_until_closed(&mut kept, Duration::from_secs(60)).await;
    assert!(
        closed,
        "an idle kept-alive connection stayed open: {answer}"
    );
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(
        slow_headers.await.unwrap(),
        "headers sent one byte every 2 s were read to the end"
    );
    assert!(started.elapsed() < Duration::from_secs(70));

    let r = long.await.unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "done\n"));
}

#[tokio::test(flavor = "multi_thread")]
async fn uploads_to_an_unknown_agent_are_refused_without_reading_their_bodies() {
    let dev = Dev::start();
    let pid = dev.pid();
    let addr = ingress_addr(&dev);
    let baseline = rss_mib(pid);
    let mut uploads = Vec::new();
    for _ in 0..30 {
        let addr = addr.clone();
        uploads.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(&addr).await.unwrap();
            s.write_all(
                format!(
                    "POST / HTTP/1.1\r\nhost: x\r\nX-Clrk-TaskAgent: default/nobody\r\ncontent-length: {}\r\n\r\n",
                    32 * MIB
                )
                .as_bytes(),
            )
            .await
            .unwrap();
            let (mut reader, mut writer) = s.into_split();
            // Sends the body as fast as the server takes it, without finishing it.
            let sender = tokio::spawn(async move {
                let chunk = vec![b'a'; MIB as usize];
                for _ in 0..24 {
                    if writer.write_all(&chunk).await.is_err() {
                        return;
                    }
                }
                tokio::time::sleep(Duration::from_secs(3600)).await;
            });
            let mut got = Vec::new();
            let mut buf = [0u8; 1024];
            let answer = tokio::time::timeout(Duration::from_secs(60), async {
                loop {
                    match reader.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                    if got.windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
            })
            .await;
            sender.abort();
            assert!(answer.is_ok(), "no answer before the body was sent");
            text(&got)
        }));
    }
    let mut peak = baseline;
    for upload in uploads {
        let answer = upload.await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
        peak = peak.max(rss_mib(pid));
    }
    eprintln!("clrk RSS: {baseline} MiB before, {peak} MiB at most during");
    assert!(
        peak < baseline + 64,
        "refusing 30 uploads took clrk from {baseline} to {peak} MiB"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn stalled_uploads_are_bounded_in_memory_and_it_returns_afterwards() {
    let dev = Dev::start();
    dev.apply(&sh_agent("sink", "cat >/dev/null; echo ok", ""));
    let r = dev
        .invoke(&[("X-Clrk-TaskAgent", "default/sink")], "warm-up")
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let pid = dev.pid();
    let addr = ingress_addr(&dev);
    let baseline = rss_mib(pid);

    // 30 uploads of 32 MiB that stop after 24 MiB, all at once.
    let mut uploads = Vec::new();
    for _ in 0..30 {
        let addr = addr.clone();
        uploads.push(tokio::spawn(async move {
            let s = TcpStream::connect(&addr).await.unwrap();
            let (mut reader, mut writer) = s.into_split();
            let sender = tokio::spawn(async move {
                let head = "POST / HTTP/1.1\r\nhost: x\r\nX-Clrk-TaskAgent: default/sink\r\ntransfer-encoding: chunked\r\n\r\n";
                writer.write_all(head.as_bytes()).await?;
                let chunk = vec![b'a'; MIB as usize];
                for _ in 0..24 {
                    writer
                        .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                        .await?;
                    writer.write_all(&chunk).await?;
                    writer.write_all(b"\r\n").await?;
                }
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Ok::<_, std::io::Error>(())
            });
            let mut got = Vec::new();
            let _ = tokio::time::timeout(
                Duration::from_secs(90),
                reader.read_to_end(&mut got),
            )
            .await;
            sender.abort();
            text(&got)
        }));
    }
    let peak = Peak::sample(Duration::from_millis(100), move || rss_mib(pid));
    let mut statuses = std::collections::BTreeMap::<String, usize>::new();
    for upload in uploads {
        let answer = upload.await.unwrap();
        let status = answer.get(9..12).unwrap_or("none").to_string();
        *statuses.entry(status).or_default() += 1;
    }
    let peak = peak.stop();
    // Some were held until they stalled (408), the rest refused at once (503).
    assert_eq!(
        statuses.keys().cloned().collect::<Vec<_>>(),
        ["408", "503"],
        "{statuses:?}"
    );
    let after = eventually("clrk's memory to come back", || async {
        let now = rss_mib(pid);
        (now < baseline + 48).then_some(now)
    })
    .await;
    eprintln!(
        "clrk RSS: {baseline} MiB before, {peak} MiB at most during, {after} MiB after ({statuses:?})"
    );
    assert!(
        peak < baseline + 400,
        "30 stalled uploads took clrk from {baseline} to {peak} MiB"
    );
    // And it still serves.
    let r = dev
        .invoke(&[("X-Clrk-TaskAgent", "default/sink")], "again")
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test(flavor = "multi_thread")]
async fn one_client_address_cannot_take_every_ingress_connection() {
    let dev = Dev::start_with(&["--max-connections-per-client", "8"]);
    dev.apply(&sh_agent("echo", "cat >/dev/null; echo hi", ""));
    let addr = ingress_addr(&dev);
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(TcpStream::connect(&addr).await.unwrap());
    }
    let mut ninth = TcpStream::connect(&addr).await.unwrap();
    let (answer, closed) = read_until_closed(&mut ninth, Duration::from_secs(30)).await;
    assert!(closed, "{answer}");
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.contains("too many connections from this address"),
        "{answer}"
    );
    // The control API is another listener: it answers.
    let r = dev.api_get("/v1/agents").await;
    assert_eq!(r.status, 200, "{}", r.text());
    // Once they are closed, the ingress serves this address again (as soon as clrk has seen
    // them close: until then a new connection may still be refused).
    drop(held);
    let answer = eventually("the ingress to serve again", || async {
        let mut s = TcpStream::connect(&addr).await.ok()?;
        s.write_all(b"POST / HTTP/1.1\r\nhost: x\r\nX-Clrk-TaskAgent: default/echo\r\nconnection: close\r\ncontent-length: 2\r\n\r\nhi")
            .await
            .ok()?;
        let (answer, _) = read_until_closed(&mut s, Duration::from_secs(60)).await;
        answer.starts_with("HTTP/1.1 200").then_some(answer)
    })
    .await;
    assert!(answer.contains("hi\n"), "{answer}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_chunked_body_is_a_bad_request() {
    let dev = Dev::start();
    dev.apply(&sh_agent("echo", "cat", ""));
    let mut s = TcpStream::connect(ingress_addr(&dev)).await.unwrap();
    s.write_all(b"POST / HTTP/1.1\r\nhost: x\r\nX-Clrk-TaskAgent: default/echo\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n")
        .await
        .unwrap();
    let (answer, _) = read_until_closed(&mut s, Duration::from_secs(60)).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("malformed"), "{answer}");
    assert!(dev.invocations("echo").await.is_empty());
}

/// Posts 20 answers of 30 MiB at once, then reports what each got.
const MANY_ANSWERS: &str = r#"
import os, sys, threading, urllib.request, urllib.error
url = os.environ["CLRK_METADATA_URL"] + "/response"
body = b"a" * (30 * 1024 * 1024)
statuses = []
def post():
    req = urllib.request.Request(url, data=body, method="POST")
    try:
        statuses.append(urllib.request.urlopen(req, timeout=60).status)
    except urllib.error.HTTPError as e:
        statuses.append(e.code)
    except OSError as e:
        statuses.append(str(e))
threads = [threading.Thread(target=post) for _ in range(20)]
for t in threads: t.start()
for t in threads: t.join()
print("statuses", sorted(map(str, statuses)), file=sys.stderr, flush=True)
"#;

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_posting_many_answers_at_once_makes_clrk_hold_one() {
    let dev = Dev::start();
    dev.apply(&metadata_py_agent("chatty", MANY_ANSWERS));
    let pid = dev.pid();
    let baseline = rss_mib(pid);
    let peak = Peak::sample(Duration::from_millis(50), move || rss_mib(pid));
    let r = dev
        .invoke(
            &[
                ("X-Clrk-TaskAgent", "default/chatty"),
                ("X-Clrk-Execution-ID", "chatty-1"),
            ],
            "",
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.body.len(), 30 * 1024 * 1024);
    let line = eventually("the agent to report its answers' statuses", || async {
        let out = dev.clrk(&["agents", "logs", "chatty"]);
        let logs = text(&out.stdout);
        logs.lines()
            .find(|l| l.contains("statuses"))
            .map(str::to_string)
    })
    .await;
    let logs = &line;
    // One answer taken; the others refused (409) before their bodies were read, which an
    // HTTP client still sending its body sees as a reset connection.
    assert_eq!(line.matches("'204'").count(), 1, "{logs}");
    assert_eq!(line.matches("'2").count(), 1, "{logs}");
    let peak = peak.stop();
    eprintln!(
        "clrk RSS: {baseline} MiB before, {peak} MiB at most while taking 20 answers of 30 MiB"
    );
    assert!(
        peak < baseline + 200,
        "20 concurrent answers took clrk from {baseline} to {peak} MiB"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_body_holds_no_place_of_its_agent() {
    let dev = Dev::start();
    dev.apply(&sh_agent(
        "single",
        "cat >/dev/null; echo done",
        "  maxConcurrent: 1",
    ));
    // A body that trickles in.
    let mut slow = TcpStream::connect(ingress_addr(&dev)).await.unwrap();
    slow.write_all(b"POST / HTTP/1.1\r\nhost: x\r\nX-Clrk-TaskAgent: default/single\r\ncontent-length: 100\r\n\r\n01234")
        .await
        .unwrap();
    // The agent's one place is free for a request that is all there.
    let r = dev
        .invoke(&[("X-Clrk-TaskAgent", "default/single")], "now")
        .await;
    assert_eq!((r.status, r.text().as_str()), (200, "done\n"));
    drop(slow);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_read_by_its_agent_no_longer_counts_against_the_budget() {
    let dev = Dev::start();
    // Reads its input at once, then works for a long time.
    dev.apply(&sh_agent(
        "reader",
        "cat >/dev/null; echo read >&2; sleep 60",
        "",
    ));
    dev.apply(&sh_agent("echo", "cat >/dev/null; echo ok", ""));
    let body = bytes::Bytes::from(vec![b'a'; 30 * 1024 * 1024]);
    // 270 MiB of bodies in all, more than the 256 MiB clrk holds at once: each is released
    // once its agent has read it.
    let mut long = Vec::new();
    for i in 0..9 {
        let (ingress, body) = (dev.ingress.clone(), body.clone());
        long.push(tokio::spawn(async move {
            request(
                "POST",
                &format!("{ingress}/"),
                &[
                    ("X-Clrk-TaskAgent", "default/reader"),
                    ("X-Clrk-Execution-ID", &format!("reader-{i}")),
                ],
                body,
            )
            .await
        }));
        eventually("the agent to read its input", || async {
            let out = dev.clrk(&["agents", "logs", "reader"]);
            let logs = text(&out.stdout);
            logs.lines()
                .any(|l| l.contains(&format!("reader-{i}")) && l.contains("read"))
                .then_some(())
        })
        .await;
    }
    let r = dev
        .invoke(&[("X-Clrk-TaskAgent", "default/echo")], body.clone())
        .await;
    assert_eq!((r.status, r.text().as_str()), (200, "ok\n"));
    for task in long {
        task.abort();
    }
}
