//! The `tributary` binary: flags, config file, environment, start-up errors.

use crate::common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use common::*;
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_tributary");

/// Kills the server when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the binary and returns it with the address it printed.
fn run(args: &[&str], envs: &[(&str, &str)]) -> (Running, String) {
    run_logging_to(args, envs, Stdio::null())
}

/// The address the server prints on its first line of standard output.
fn address_printed(stdout: std::process::ChildStdout) -> String {
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).expect("a line");
    line.trim()
        .rsplit("http://")
        .next()
        .expect("address")
        .to_owned()
}

fn run_logging_to(args: &[&str], envs: &[(&str, &str)], logs: Stdio) -> (Running, String) {
    let mut command = Command::new(BIN);
    command.args(args).stdout(Stdio::piped()).stderr(logs);
    for (k, v) in envs {
        command.env(k, v);
    }
    let mut child = command.spawn().expect("binary starts");
    let stdout = child.stdout.take().expect("stdout");
    let addr = address_printed(stdout);
    (Running(child), addr)
}

#[tokio::test]
async fn without_a_config_it_serves_the_demo_datasets() {
    // The variables clients and plugins read, exported in the same shell,
    // are not taken for settings.
    let (_server, addr) = run(
        &["--listen", "127.0.0.1:0"],
        &[
            ("TRIBUTARY_TOKEN", "a-client-token"),
            ("TRIBUTARY_URL", "ws://127.0.0.1:8080/ws/services"),
            ("TRIBUTARY_LOG", "DEBUG"),
        ],
    );
    let mut client = Client::connect_url(&format!("ws://{addr}/ws")).await;
    let initial = client.recv().await;
    let ids: Vec<&str> = initial["state"]["datasources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["emails", "tweets"]);
    let answer = client
        .items(&["tweets", "emails"], "*", 0, 1, "#de79f2")
        .await;
    for message in &answer {
        assert_eq!(items_of(message)["total"], 3000);
    }
    let (status, body) = http_get(addr.parse().unwrap(), "/healthz").await;
    assert_eq!(status, 200);
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["status"], "ok");
}

#[tokio::test]
async fn a_config_file_and_the_environment_set_the_datasources() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("people.ndjson");
    std::fs::write(
        &data,
        "{\"id\":\"a\",\"who\":\"Ann\"}\n{\"id\":\"b\",\"who\":\"Bob\"}\n",
    )
    .unwrap();
    let config = dir.path().join("tributary.toml");
    std::fs::write(
        &config,
        format!("listen = \"127.0.0.1:1\"\n[datasources.folks]\ntype = \"fixtures\"\npath = {:?}\nname = \"Folks\"\n", data),
    )
    .unwrap();
    // The flag wins over the file; the environment adds a second datasource.
    let (_server, addr) = run(
        &[
            "--config",
            config.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ],
        &[
            ("TRIBUTARY_DATASOURCES__MAIL__TYPE", "fixtures"),
            ("TRIBUTARY_DATASOURCES__MAIL__EMBEDDED", "emails"),
        ],
    );
    let mut client = Client::connect_url(&format!("ws://{addr}/ws")).await;
    let initial = client.recv().await;
    assert_eq!(
        initial["state"]["datasources"],
        json!([{"id":"folks","name":"Folks","type":"fixtures"},{"id":"mail","name":"mail","type":"fixtures"}])
    );
    let answer = client.items(&["folks"], "who:ann", 0, 10, "#fff").await;
    assert_eq!(ids(&answer[0]), ["a"]);
}

fn startup_error(config: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, config).unwrap();
    let output = Command::new(BIN)
        .args([
            "--config",
            file.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ])
        .output()
        .expect("binary runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

#[test]
fn bad_configs_stop_start_up_with_a_message_naming_datasource_and_key() {
    let stderr = startup_error("[datasources.x]\ntype = \"nosuch\"\n");
    assert!(
        stderr.contains("datasource `x`") && stderr.contains("`type`") && stderr.contains("nosuch"),
        "{stderr}"
    );

    let stderr =
        startup_error("[datasources.x]\ntype = \"fixtures\"\npath = \"/does/not/exist.ndjson\"\n");
    assert!(
        stderr.contains("datasource `x`") && stderr.contains("`path`"),
        "{stderr}"
    );

    let stderr = startup_error(
        "[datasources.x]\ntype = \"fixtures\"\nembedded = \"tweets\"\nid_feld = \"id\"\n",
    );
    assert!(
        stderr.contains("datasource `x`") && stderr.contains("id_feld"),
        "{stderr}"
    );

    let stderr = startup_error("[datasources.x]\ntype = \"fixtures\"\nembedded = 7\n");
    assert!(
        stderr.contains("datasource `x`") && stderr.contains("`embedded`"),
        "{stderr}"
    );

    let stderr = startup_error("[datasources.x]\npath = \"a\"\n");
    assert!(stderr.contains("type"), "{stderr}");

    let stderr = startup_error("[limits]\nmax_requests = \"lots\"\n");
    assert!(stderr.contains("max_requests"), "{stderr}");

    let stderr = startup_error("[broker]\ntype = \"kafka\"\n");
    assert!(
        stderr.contains("kafka") && stderr.contains("memory"),
        "{stderr}"
    );
    let stderr = startup_error("[broker]\ntype = \"redis\"\nurl = \"not a url\"\n");
    assert!(stderr.contains("`broker.url`"), "{stderr}");
    let stderr = startup_error("[broker]\nhistory_ttl = \"forever\"\n");
    assert!(stderr.contains("history_ttl"), "{stderr}");
    let stderr = startup_error("[services.crm]\ntoken = \"short\"\n");
    assert!(stderr.contains("services.crm.token"), "{stderr}");
}

#[test]
fn bad_mappings_and_live_settings_stop_start_up_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let records = dir.path().join("r.ndjson");
    std::fs::write(&records, "{\"id\":1,\"name\":\"Ann\",\"extra\":true}\n").unwrap();
    let mapping = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let config = |mapping: &str, extra: &str| {
        format!(
            "[datasources.x]\ntype = \"fixtures\"\npath = \"{}\"\nmapping = \"{mapping}\"\n{extra}",
            records.display()
        )
    };
    for (mapping_path, extra, expected) in [
        ("/does/not/exist.json".to_owned(), "", "`mapping`"),
        (mapping("bad.json", "{not json"), "", "invalid JSON"),
        (
            mapping(
                "strict.json",
                r#"{"mappings":{"dynamic":"strict","properties":{"id":{"type":"long"},"name":{"type":"text"}}}}"#,
            ),
            "",
            "`extra` is not in the mapping",
        ),
        (
            mapping(
                "analyzer.json",
                r#"{"properties":{"name":{"type":"text","analyzer":"english"}}}"#,
            ),
            "",
            "analyzer `english`",
        ),
        (
            mapping("ok.json", r#"{"properties":{"name":{"type":"text"}}}"#),
            "fields = { name = \"geo_shape\" }\n",
            "unknown type `geo_shape`",
        ),
    ] {
        let stderr = startup_error(&config(&mapping_path, extra));
        assert!(
            stderr.contains("datasource `x`") && stderr.contains(expected),
            "{expected}: {stderr}"
        );
    }
    let stderr = startup_error("[live]\nhealth_interval = \"soon\"\n");
    assert!(stderr.contains("health_interval"), "{stderr}");
}

#[tokio::test]
async fn tokens_never_reach_the_logs() {
    const TOKEN: &str = "very-secret-token-4711";
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tributary.toml");
    std::fs::write(
        &config,
        format!("[auth.tokens.analyst]\ntoken = \"{TOKEN}\"\n[datasources.mail]\ntype = \"fixtures\"\nembedded = \"emails\"\n"),
    )
    .unwrap();
    let log_path = dir.path().join("log.txt");
    let log = std::fs::File::create(&log_path).unwrap();
    let (server, addr) = run_logging_to(
        &[
            "--config",
            config.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ],
        &[("RUST_LOG", "trace")],
        Stdio::from(log),
    );
    let url = format!("ws://{addr}/ws");
    let mut by_query = connect_with(&format!("{url}?token={TOKEN}"), &[])
        .await
        .expect("accepted");
    by_query.recv().await;
    by_query.items(&["mail"], "*", 0, 1, "#fff").await;
    let mut by_header = connect_with(&url, &[("authorization", &format!("Bearer {TOKEN}"))])
        .await
        .expect("accepted");
    by_header.recv().await;
    assert_eq!(
        connect_with(&format!("{url}?token={TOKEN}x"), &[])
            .await
            .err(),
        Some(403)
    );
    drop((by_query, by_header));
    drop(server);
    let logs = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        logs.contains("analyst"),
        "the token's name identifies the connection:\n{logs}"
    );
    assert!(
        !logs.contains("very-secret"),
        "a token leaked into the logs:\n{logs}"
    );
}

/// A raw `GET` with extra header lines: the status and the headers
/// (lower-cased names), the body's length.
fn get_raw(addr: &str, path: &str, extra: &str) -> (u16, Vec<(String, String)>, usize) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}Connection: close\r\n\r\n"
    )
    .expect("request");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).expect("answer");
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a head");
    let head = String::from_utf8_lossy(&answer[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, answer.len() - split - 4)
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Started from another folder, the binary serves its built-in web UI,
/// compressed, revalidated by ETag, the vendored libraries cached for good,
/// with a favicon; logs to a pipe carry no colors.
#[tokio::test]
async fn the_web_ui_is_served_from_any_folder() {
    let elsewhere = std::env::temp_dir();
    let mut command = Command::new(BIN);
    command
        .args(["--listen", "127.0.0.1:0"])
        .current_dir(&elsewhere)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("binary starts");
    let stdout = child.stdout.take().expect("stdout");
    let stderr = child.stderr.take().expect("stderr");
    let _server = Running(child);
    let addr = address_printed(stdout);

    let (status, headers, _) = get_raw(&addr, "/", "Accept-Encoding: gzip\r\n");
    assert_eq!(status, 200, "{headers:?}");
    assert_eq!(
        header(&headers, "content-encoding"),
        Some("gzip"),
        "{headers:?}"
    );
    assert!(
        header(&headers, "content-type")
            .unwrap_or("")
            .starts_with("text/html"),
        "{headers:?}"
    );
    assert_eq!(
        header(&headers, "cache-control"),
        Some("no-cache"),
        "{headers:?}"
    );
    let etag = header(&headers, "etag").expect("an ETag").to_owned();
    let (status, _, length) = get_raw(&addr, "/", &format!("If-None-Match: {etag}\r\n"));
    assert_eq!((status, length), (304, 0), "unchanged: not sent again");

    let (status, headers, _) = get_raw(&addr, "/vendor/sigma.min.js", "");
    assert_eq!(status, 200);
    assert_eq!(
        header(&headers, "cache-control"),
        Some("public, max-age=31536000, immutable"),
        "{headers:?}"
    );
    let (status, headers, _) = get_raw(&addr, "/favicon.svg", "");
    assert_eq!(status, 200);
    assert_eq!(
        header(&headers, "content-type"),
        Some("image/svg+xml"),
        "{headers:?}"
    );
    let (status, _, _) = get_raw(&addr, "/no/such/file.js", "");
    assert_eq!(status, 404);

    drop(_server);
    let mut logs = String::new();
    std::io::Read::read_to_string(&mut BufReader::new(stderr), &mut logs).expect("logs");
    assert!(logs.contains("listening"), "{logs}");
    assert!(!logs.contains('\u{1b}'), "no colors in a pipe: {logs}");
}

/// A taken address is said at once, with what to do; relative paths in a
/// config file are relative to the file's folder, wherever the server starts.
#[tokio::test]
async fn a_taken_address_and_relative_paths_in_a_config() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let address = taken.local_addr().expect("address").to_string();
    let output = Command::new(BIN)
        .args(["--listen", &address])
        .output()
        .expect("binary runs");
    assert!(!output.status.success());
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(
        said.contains("in use") && said.contains("--listen"),
        "{said}"
    );

    let folder = std::env::temp_dir().join(format!("tributary-relative-{}", std::process::id()));
    std::fs::create_dir_all(&folder).expect("a folder");
    std::fs::write(
        folder.join("birds.ndjson"),
        "{\"id\":\"b1\",\"name\":\"heron\"}\n",
    )
    .expect("data");
    std::fs::write(
        folder.join("node.toml"),
        "[datasources.birds]\ntype = \"fixtures\"\npath = \"birds.ndjson\"\n",
    )
    .expect("config");
    let config = folder.join("node.toml");
    let mut command = Command::new(BIN);
    command
        .args(["--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .current_dir(std::env::temp_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = command.spawn().expect("binary starts");
    let stdout = child.stdout.take().expect("stdout");
    let _server = Running(child);
    let addr = address_printed(stdout);
    let mut client = Client::connect_url(&format!("ws://{addr}/ws")).await;
    let _greeting = client.recv().await;
    let answer = client.items(&["birds"], "heron", 0, 5, "#000").await;
    assert_eq!(items_of(&answer[0])["total"], 1, "{answer:?}");
    let _ = std::fs::remove_dir_all(&folder);
}

#[tokio::test]
async fn logs_can_be_json_lines_for_a_log_collector() {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("log.ndjson");
    let log = std::fs::File::create(&log_path).unwrap();
    let (server, addr) = run_logging_to(
        &["--listen", "127.0.0.1:0", "--log-format", "json"],
        &[],
        Stdio::from(log),
    );
    let (status, _) = http_get(addr.parse().unwrap(), "/readyz").await;
    assert_eq!(status, 200);
    drop(server);
    let logs = std::fs::read_to_string(&log_path).unwrap();
    let lines: Vec<&str> = logs.lines().collect();
    assert!(!lines.is_empty(), "the server logs its start");
    for line in lines {
        let entry: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(
            entry["level"].is_string()
                && entry["fields"].is_object()
                && entry["timestamp"].is_string(),
            "{line}"
        );
    }
}
