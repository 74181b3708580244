//! `nrv-center --metrics`: Prometheus's text format over HTTP, scraped with a plain TCP
//! client; the loopback rule; a stalled client does not hold the endpoint.

use integration_tests::{
    center_command, free_tcp_endpoint, run, run_ctl_ok, spawn_open, wait_until, Center, Input, TestDir, WAIT,
};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// A free loopback `ADDR:PORT`.
fn free_addr() -> String {
    free_tcp_endpoint().trim_start_matches("tcp://").to_string()
}

/// One `GET path` on `addr` (HTTP/1.1, `Connection: close`): the status line and the body.
fn get(addr: &str, path: &str) -> Result<(String, String), String> {
    let mut stream = TcpStream::connect(addr).map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(WAIT))
        .map_err(|e| format!("cannot set a read timeout: {e}"))?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("cannot send the request to {addr}: {e}"))?;
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .map_err(|e| format!("no whole answer from {addr} within {WAIT:?}: {e}"))?;
    let text = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no header end in the answer: {text:?}"))?;
    let status = head.lines().next().unwrap_or_default().to_string();
    Ok((status, body.to_string()))
}

/// `GET /metrics` on `addr`, which must answer 200.
fn scrape(addr: &str) -> Result<String, String> {
    let (status, body) = get(addr, "/metrics")?;
    if status != "HTTP/1.1 200 OK" {
        return Err(format!("status {status:?}, body {body:?}"));
    }
    Ok(body)
}

/// The value of the series of `metric` whose labels include `id="ID"`, as its text.
fn value_of(body: &str, metric: &str, id: &str) -> Option<String> {
    let label = format!("id=\"{id}\"");
    body.lines()
        .filter(|l| l.starts_with(&format!("{metric}{{")) && l.contains(&label))
        .find_map(|l| l.rsplit_once(' ').map(|(_, v)| v.to_string()))
}

/// The state whose `nerve_process_state` series is 1 for process `id`.
fn state_of(body: &str, id: &str) -> Option<String> {
    let label = format!("id=\"{id}\"");
    body.lines()
        .filter(|l| l.starts_with("nerve_process_state{") && l.contains(&label) && l.ends_with("} 1"))
        .find_map(|l| l.split_once("state=\"").and_then(|(_, rest)| rest.split_once('"')))
        .map(|(state, _)| state.to_string())
}

#[test]
fn metrics_show_two_processes_up_and_count_a_restart() {
    let dir = TestDir::new();
    let addr = free_addr();
    let center = Center::start_with_args(
        dir.path(),
        &dir.ipc("n.sock"),
        &dir.ipc("c.sock"),
        &dir.join("nerve.log"),
        &["--metrics", &addr],
    );
    let a = spawn_open(dir.path(), &center.endpoint, &["--", "sleep", "100"], Input::Null);
    let b = spawn_open(dir.path(), &center.endpoint, &["--", "sleep", "100"], Input::Null);
    let ids = [center.log.id_of_watcher(a.pid()), center.log.id_of_watcher(b.pid())];
    for id in &ids {
        center.log.wait_for(id, "start", WAIT);
    }
    let body = wait_until("nerve_process_up 1 and state RUNNING for both processes", WAIT, || {
        let body = scrape(&addr)?;
        let got: Vec<(Option<String>, Option<String>)> = ids
            .iter()
            .map(|id| (value_of(&body, "nerve_process_up", id), state_of(&body, id)))
            .collect();
        if got
            .iter()
            .all(|(up, state)| up.as_deref() == Some("1") && state.as_deref() == Some("RUNNING"))
        {
            Ok(body)
        } else {
            Err(format!("(up, state) {got:?} for {ids:?}; scrape:\n{body}"))
        }
    });
    for id in &ids {
        assert_eq!(
            value_of(&body, "nerve_process_restarts_total", id).as_deref(),
            Some("0"),
            "{body}"
        );
        let states = body
            .lines()
            .filter(|l| l.starts_with(&format!("nerve_process_state{{name=\"sleep\",id=\"{id}\",host=")))
            .count();
        assert_eq!(states, 8, "a series per state for {id}:\n{body}");
        assert!(
            value_of(&body, "nerve_process_start_time_seconds", id).is_some(),
            "a start time for {id}:\n{body}"
        );
    }
    assert!(body.contains("nerve_watchers{center=\"test\"} 2\n"), "{body}");
    assert!(
        body.contains("# TYPE nerve_process_restarts_total counter\n"),
        "counters are typed as such:\n{body}"
    );

    run_ctl_ok(dir.path(), &center.control, &["restart", &ids[0]]);
    wait_until("a restart counted for the first process only", WAIT, || {
        let body = scrape(&addr)?;
        let got: Vec<(Option<String>, Option<String>)> = ids
            .iter()
            .map(|id| {
                (
                    value_of(&body, "nerve_process_restarts_total", id),
                    value_of(&body, "nerve_process_up", id),
                )
            })
            .collect();
        let want = [(Some("1"), Some("1")), (Some("0"), Some("1"))];
        let same = got
            .iter()
            .zip(want)
            .all(|((r, u), (wr, wu))| r.as_deref() == wr && u.as_deref() == wu);
        if same {
            Ok(())
        } else {
            Err(format!("(restarts, up) {got:?} for {ids:?}; scrape:\n{body}"))
        }
    });

    let (status, body) = get(&addr, "/other").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status, "HTTP/1.1 404 Not Found", "{body}");
}

#[test]
fn metrics_on_an_address_other_than_loopback_needs_insecure() {
    let dir = TestDir::new();
    let port = free_addr()
        .rsplit_once(':')
        .map(|(_, p)| p.to_string())
        .unwrap_or_default();
    let any = format!("0.0.0.0:{port}");
    let base = ["-e", &dir.ipc("n.sock"), "-c", &dir.ipc("c.sock"), "-l", "nerve.log"];
    let refused = |extra: &[&str]| {
        let args: Vec<&str> = base.iter().copied().chain(extra.iter().copied()).collect();
        run(center_command(dir.path(), &args), Input::Null, WAIT, "nrv-center")
    };

    let out = refused(&["--metrics", &any]);
    assert_eq!(out.code(), Some(2), "{}", out.describe());
    let stderr = out.stderr.clone();
    assert!(
        stderr.contains(&format!("--metrics {any} is not a loopback address")) && stderr.contains("--insecure"),
        "{stderr}"
    );

    let out = refused(&["--metrics", "localhost"]);
    assert_eq!(out.code(), Some(2), "{}", out.describe());
    assert!(
        out.stderr.clone().contains("--metrics \"localhost\" is not ADDR:PORT"),
        "{}",
        out.describe()
    );

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind a port to take: {e}"));
    let taken = taken
        .local_addr()
        .unwrap_or_else(|e| panic!("its address: {e}"))
        .to_string();
    let out = refused(&["--metrics", &taken]);
    assert_eq!(out.code(), Some(2), "{}", out.describe());
    let stderr = out.stderr.clone();
    assert!(
        stderr.contains(&format!("--metrics {taken}: cannot listen there")) && stderr.contains("another port"),
        "{stderr}"
    );
}

#[test]
fn metrics_answer_a_scrape_while_another_client_stalls_mid_request() {
    let dir = TestDir::new();
    let addr = free_addr();
    let center = Center::start_with_args(
        dir.path(),
        &dir.ipc("n.sock"),
        &dir.ipc("c.sock"),
        &dir.join("nerve.log"),
        &["--metrics", &addr],
    );
    let mut stalled = TcpStream::connect(&addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    stalled
        .write_all(b"GET /metr")
        .unwrap_or_else(|e| panic!("send half a request: {e}"));
    let since = Instant::now();

    let body = scrape(&addr).unwrap_or_else(|e| panic!("a scrape beside the stalled client: {e}"));
    assert!(body.contains("nerve_watchers{center=\"test\"} 0\n"), "{body}");

    // The stalled client is closed once its header read timeout (5 s) passes.
    stalled
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap_or_else(|e| panic!("set a read timeout: {e}"));
    let mut rest = Vec::new();
    let read = stalled.read_to_end(&mut rest);
    let after = since.elapsed();
    assert!(
        read.is_ok() && after >= Duration::from_secs(4) && after < Duration::from_secs(14),
        "the stalled connection ended after {after:?} ({read:?}, {:?})",
        String::from_utf8_lossy(&rest)
    );
    drop(center);
}

#[test]
fn metrics_can_be_turned_on_in_the_config_file() {
    let dir = TestDir::new();
    let addr = free_addr();
    let config = dir.join("center.toml");
    std::fs::write(&config, format!("metrics = \"{addr}\"\n")).unwrap_or_else(|e| panic!("write {config:?}: {e}"));
    let config = config.to_string_lossy().into_owned();
    let _center = Center::start_with_args(
        dir.path(),
        &dir.ipc("n.sock"),
        &dir.ipc("c.sock"),
        &dir.join("nerve.log"),
        &["--config", &config],
    );
    let body = scrape(&addr).unwrap_or_else(|e| panic!("a scrape of the address in {config}: {e}"));
    assert!(body.contains("# TYPE nerve_watchers gauge\n"), "{body}");
}

#[test]
fn metrics_take_a_host_name_and_keep_the_loopback_rule() {
    let dir = TestDir::new();
    let port = free_addr()
        .rsplit_once(':')
        .map(|(_, p)| p.to_string())
        .unwrap_or_default();
    let named = format!("localhost:{port}");
    let _center = Center::start_with_args(
        dir.path(),
        &dir.ipc("n.sock"),
        &dir.ipc("c.sock"),
        &dir.join("nerve.log"),
        &["--metrics", &named],
    );
    // As a scraper reaches it: the name, resolved again (whichever of ::1 and 127.0.0.1 it
    // bound answers).
    let body = wait_until(&format!("a scrape of {named}"), WAIT, || scrape(&named));
    assert!(body.contains("# TYPE nerve_watchers gauge\n"), "{body}");

    let base = ["-e", &dir.ipc("n2.sock"), "-c", &dir.ipc("c2.sock"), "-l", "nerve2.log"];
    let refused = |extra: &[&str]| {
        let args: Vec<&str> = base.iter().copied().chain(extra.iter().copied()).collect();
        run(center_command(dir.path(), &args), Input::Null, WAIT, "nrv-center")
    };
    let out = refused(&["--metrics", "nowhere.invalid:9464"]);
    assert_eq!(out.code(), Some(2), "{}", out.describe());
    assert!(
        out.stderr
            .clone()
            .contains("--metrics nowhere.invalid:9464: cannot resolve the host name"),
        "{}",
        out.describe()
    );
}
