//! The edge's quick lane: plain HTTP/1.1 hits answered before hyper sees them, with
//! the same fields the service gives; and every request the lane does not take served
//! by the service on the same connection, with every byte the lane had read.

use std::collections::BTreeMap;
use std::time::Duration;

use meridian_shared::server::ServeOptions;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::{pseudo_random_bytes, scrape, serve_edge_over};

/// One response read off a connection.
#[derive(Debug)]
struct Answer {
    status: u16,
    /// Field names (lowercase) and values, in order.
    fields: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The fields but those that change with the second they are sent in.
    fn lasting_fields(&self) -> BTreeMap<String, String> {
        self.fields
            .iter()
            .filter(|(name, _)| !["date", "age", "cache-status"].contains(&name.as_str()))
            .cloned()
            .collect()
    }
}

/// Reads `count` responses (each framed by `Content-Length`) from `connection`.
async fn read_answers(connection: &mut TcpStream, count: usize) -> Vec<Answer> {
    let mut read = Vec::new();
    let mut answers = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    while answers.len() < count {
        if let Some(end) = read.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8(read[..end].to_vec()).expect("a UTF-8 head");
            let mut lines = head.split("\r\n");
            let status_line = lines.next().expect("status line");
            let status = status_line
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("status line: {status_line}"));
            let fields: Vec<(String, String)> = lines
                .map(|line| {
                    let (name, value) = line.split_once(':').expect("a field");
                    (name.to_ascii_lowercase(), value.trim().to_string())
                })
                .collect();
            let length: usize = fields
                .iter()
                .find(|(n, _)| n == "content-length")
                .map_or(0, |(_, v)| v.parse().expect("length"));
            if read.len() >= end + 4 + length {
                let body = read[end + 4..end + 4 + length].to_vec();
                read.drain(..end + 4 + length);
                answers.push(Answer {
                    status,
                    fields,
                    body,
                });
                continue;
            }
        }
        let n = tokio::time::timeout(Duration::from_secs(5), connection.read(&mut chunk))
            .await
            .expect("an answer in time")
            .expect("read");
        assert!(n > 0, "closed after {} answers: {answers:?}", answers.len());
        read.extend_from_slice(&chunk[..n]);
    }
    assert!(read.is_empty(), "more than {count} answers came");
    answers
}

/// A plain edge holding `name` (already fetched once, so stored); its address.
async fn edge_holding(name: &str, body: &[u8]) -> std::net::SocketAddr {
    // Served until the test's runtime ends (dropping the token does not stop it).
    let (addr, _, _) = serve_edge_over(name, body.to_vec(), None, ServeOptions::default()).await;
    let filled = reqwest::get(format!("http://{addr}/{name}"))
        .await
        .expect("miss");
    assert_eq!(filled.headers()["x-cache"], "MISS");
    assert_eq!(filled.bytes().await.expect("body"), body);
    addr
}

async fn quick_answers(addr: std::net::SocketAddr) -> f64 {
    scrape(&format!("http://{addr}/_meridian/metrics")).await["meridian_edge_quick_answers_total"]
}

fn get(name: &str, extra: &str) -> String {
    format!("GET /{name} HTTP/1.1\r\nhost: localhost\r\nuser-agent: test\r\n{extra}\r\n")
}

#[tokio::test]
async fn plain_hits_are_answered_by_the_quick_lane_with_the_fields_the_service_gives() {
    let body = pseudo_random_bytes(1000, 3);
    let addr = edge_holding("small.bin", &body).await;
    assert_eq!(quick_answers(addr).await, 0.0);

    // Two requests in one write (pipelined), then one the lane leaves to the service
    // (a request directive the cache acts on), on a connection of its own.
    let mut quick = TcpStream::connect(addr).await.expect("connect");
    let twice = get("small.bin", "").repeat(2);
    quick.write_all(twice.as_bytes()).await.expect("write");
    let answers = read_answers(&mut quick, 2).await;
    let mut served = TcpStream::connect(addr).await.expect("connect");
    let by_service = get("small.bin", "cache-control: max-stale=0\r\n");
    served
        .write_all(by_service.as_bytes())
        .await
        .expect("write");
    let service = read_answers(&mut served, 1).await.remove(0);
    assert_eq!(
        quick_answers(addr).await,
        2.0,
        "only the plain hits took the lane"
    );

    assert_eq!(service.status, 200);
    for answer in &answers {
        assert_eq!(answer.status, 200);
        assert_eq!(answer.body, body);
        assert_eq!(answer.lasting_fields(), service.lasting_fields());
        assert_eq!(answer.field("x-cache"), Some("HIT"));
        assert_eq!(answer.field("content-length"), Some("1000"));
        let date = answer.field("date").expect("date");
        assert!(httpdate::parse_http_date(date).is_ok(), "{date}");
        let age: u64 = answer.field("age").expect("age").parse().expect("age");
        assert!(age <= 5, "{age}");
        let status = answer.field("cache-status").expect("cache-status");
        assert!(status.starts_with("meridian; hit; ttl="), "{status}");
    }
}

#[tokio::test]
async fn what_the_lane_leaves_is_served_by_the_service_with_every_byte_it_read() {
    let body = pseudo_random_bytes(2000, 4);
    let addr = edge_holding("mixed.bin", &body).await;

    // A plain hit (the lane), a range (handed to the service), then a plain hit the
    // service now answers: all in one write, so the lane has read all three.
    let mut connection = TcpStream::connect(addr).await.expect("connect");
    let three = [
        get("mixed.bin", ""),
        get("mixed.bin", "range: bytes=10-19\r\n"),
        get("mixed.bin", ""),
    ]
    .concat();
    connection.write_all(three.as_bytes()).await.expect("write");
    let answers = read_answers(&mut connection, 3).await;
    assert_eq!(
        answers.iter().map(|a| a.status).collect::<Vec<_>>(),
        [200, 206, 200]
    );
    assert_eq!(answers[1].body, body[10..20]);
    assert_eq!(answers[2].body, body);
    assert_eq!(quick_answers(addr).await, 1.0);

    // What the lane does not take whole goes to the service, which answers as it
    // always has.
    let refused = [
        // A malformed field, after a plain hit on the same connection.
        (
            format!(
                "{}GET /mixed.bin HTTP/1.1\r\nno colon\r\n\r\n",
                get("mixed.bin", "")
            ),
            vec![200, 400],
        ),
        // A body.
        (
            "POST /mixed.bin HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\n\r\nabc".to_string(),
            vec![405],
        ),
        // HTTP/1.0, a miss, the edge's own paths.
        ("GET /mixed.bin HTTP/1.0\r\n\r\n".to_string(), vec![200]),
        (get("missing.bin", ""), vec![404]),
        (
            "GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n".to_string(),
            vec![200],
        ),
    ];
    for (requests, statuses) in refused {
        let mut connection = TcpStream::connect(addr).await.expect("connect");
        connection
            .write_all(requests.as_bytes())
            .await
            .expect("write");
        let answers = read_answers(&mut connection, statuses.len()).await;
        let got: Vec<u16> = answers.iter().map(|a| a.status).collect();
        assert_eq!(got, statuses, "{requests:?}");
    }
    // A HEAD: its Content-Length describes the body it does not send.
    let mut connection = TcpStream::connect(addr).await.expect("connect");
    let head = "HEAD /mixed.bin HTTP/1.1\r\nhost: x\r\n\r\n";
    connection.write_all(head.as_bytes()).await.expect("write");
    let mut read = vec![0u8; 4096];
    let n = connection.read(&mut read).await.expect("read");
    let answer = String::from_utf8_lossy(&read[..n]).to_string();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("content-length: 2000"), "{answer}");
    assert!(answer.ends_with("\r\n\r\n"), "no body: {answer}");

    assert_eq!(
        quick_answers(addr).await,
        2.0,
        "one more: the hit before the malformed request"
    );
}

#[tokio::test]
async fn a_request_in_hand_when_shutdown_starts_is_answered_and_says_the_connection_closes() {
    let body = pseudo_random_bytes(500, 5);
    let (addr, stop, served) =
        serve_edge_over("last.bin", body.clone(), None, ServeOptions::default()).await;
    reqwest::get(format!("http://{addr}/last.bin"))
        .await
        .expect("miss")
        .bytes()
        .await
        .expect("body");
    let mut waiting = TcpStream::connect(addr).await.expect("connect");
    let mut connection = TcpStream::connect(addr).await.expect("connect");
    let request = get("last.bin", "");
    // A first request, answered by the lane: the connection stays with it.
    connection
        .write_all(request.as_bytes())
        .await
        .expect("write");
    assert_eq!(read_answers(&mut connection, 1).await[0].status, 200);
    assert_eq!(quick_answers(addr).await, 1.0);

    let (first, rest) = request.split_at(20);
    connection.write_all(first.as_bytes()).await.expect("write");
    // Let the lane read the first part before shutdown starts.
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.cancel();
    tokio::time::sleep(Duration::from_millis(200)).await;
    connection.write_all(rest.as_bytes()).await.expect("write");
    let answer = read_answers(&mut connection, 1).await.remove(0);
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, body);
    assert_eq!(answer.field("connection"), Some("close"));
    let mut after = [0u8; 16];
    assert_eq!(connection.read(&mut after).await.expect("closed"), 0);
    // A connection with no request in hand was closed at once.
    assert_eq!(waiting.read(&mut after).await.unwrap_or(0), 0);
    served.await.expect("join").expect("serve");
}
