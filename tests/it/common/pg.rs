//! The local PostgreSQL server (127.0.0.1:5432, trust auth, database
//! `test`): each test gets its own schema, with the demo tweets and emails
//! loaded into tables shaped as a DBA would make them.

use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{json, Value};
use tokio_postgres::{Client, NoTls};

/// The server tests use; `TRIBUTARY_TEST_POSTGRES` overrides it.
pub fn url() -> String {
    std::env::var("TRIBUTARY_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

pub struct Schema {
    pub name: String,
    pub client: Client,
}

const TWEETS: &str = r#"CREATE TABLE {s}.tweets (
    id text PRIMARY KEY, created_at timestamptz, text text, lang text, source text,
    "user" jsonb, mentions text[], hashtags text[], in_reply_to_screen_name text,
    retweet_count bigint, favorite_count bigint)"#;

const EMAILS: &str = r#"CREATE TABLE {s}.emails (
    id text PRIMARY KEY, date timestamptz, "from" text, "to" text[], cc text[],
    subject text, thread text, body text, size_bytes bigint, has_attachment boolean,
    attachments text[], organisation text)"#;

pub async fn connect() -> Client {
    let (client, connection) = tokio_postgres::connect(&url(), NoTls)
        .await
        .expect("the local PostgreSQL server at 127.0.0.1:5432 (database `test`)");
    tokio::spawn(connection);
    client
}

impl Schema {
    /// A fresh schema named after the test, with `tweets` and `emails`.
    pub async fn create(test: &str) -> Schema {
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "t_{test}_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let client = connect().await;
        // Tests running at once may race to create it; one of them wins.
        let _ = client
            .batch_execute("CREATE EXTENSION IF NOT EXISTS fuzzystrmatch SCHEMA public")
            .await;
        client
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS {name} CASCADE; CREATE SCHEMA {name}; {}; {}",
                TWEETS.replace("{s}", &name),
                EMAILS.replace("{s}", &name)
            ))
            .await
            .expect("create the test schema");
        let schema = Schema { name, client };
        schema
            .load(
                "tweets",
                include_str!("../../../datasources/demo/tweets.ndjson"),
            )
            .await;
        schema
            .load(
                "emails",
                include_str!("../../../datasources/demo/emails.ndjson"),
            )
            .await;
        schema
    }

    /// Inserts NDJSON records into a table, columns by name.
    pub async fn load(&self, table: &str, ndjson: &str) {
        let array = format!(
            "[{}]",
            ndjson
                .lines()
                .filter(|l| !l.trim().is_empty())
                .collect::<Vec<_>>()
                .join(",")
        );
        self.client
            .execute(
                &format!(
                    "INSERT INTO {s}.{table} SELECT * FROM jsonb_populate_recordset(NULL::{s}.{table}, $1::text::jsonb)",
                    s = self.name
                ),
                &[&array],
            )
            .await
            .expect("load the records");
    }

    pub async fn exec(&self, sql: &str) {
        self.client
            .batch_execute(&sql.replace("{s}", &self.name))
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// A table whose reads sleep for `{s}.control.sleep` seconds (once per
    /// statement): `{s}.slow_emails`, a view over the emails.
    pub async fn add_slow_view(&self) {
        self.exec(
            "CREATE TABLE {s}.control (sleep float8 NOT NULL); INSERT INTO {s}.control VALUES (0);
             CREATE FUNCTION {s}.nap() RETURNS boolean LANGUAGE sql VOLATILE
                 AS $$ SELECT pg_sleep((SELECT sleep FROM {s}.control)) IS NOT NULL $$;
             CREATE VIEW {s}.slow_emails AS SELECT e.* FROM {s}.emails e WHERE (SELECT {s}.nap());",
        )
        .await;
    }

    pub async fn set_sleep(&self, seconds: f64) {
        self.exec(&format!("UPDATE {{s}}.control SET sleep = {seconds}"))
            .await;
    }

    /// Waits until statements reading the slow view run (`true`) or none
    /// does (`false`), at most `within`.
    pub async fn until_slow_view_runs(&self, running: bool, within: std::time::Duration) {
        let view = format!("{}\".\"slow_emails", self.name);
        let started = std::time::Instant::now();
        while (self.running(&view).await > 0) != running {
            assert!(
                started.elapsed() < within,
                "statements on the slow view still {}",
                if running { "not running" } else { "running" }
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// How many statements are running a query that mentions `text`.
    pub async fn running(&self, text: &str) -> i64 {
        let row = self
            .client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND pid <> pg_backend_pid() AND query LIKE '%' || $1 || '%'",
                &[&text],
            )
            .await
            .expect("pg_stat_activity");
        row.get(0)
    }

    /// Ends every connection whose `application_name` is `name`.
    pub async fn terminate(&self, name: &str) -> i64 {
        let row = self
            .client
            .query_one(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1 AND pid <> pg_backend_pid()",
                &[&name],
            )
            .await
            .expect("pg_terminate_backend");
        row.get(0)
    }

    /// `{s}.table`
    pub fn table(&self, table: &str) -> String {
        format!("{}.{table}", self.name)
    }

    /// Datasource options for one of the schema's tables, full-text columns
    /// as the demo mappings have them.
    pub fn options(&self, table: &str) -> Value {
        let text_columns = match table {
            "tweets" => json!(["text", "user.name"]),
            _ => json!(["subject", "body"]),
        };
        json!({"url": url(), "table": self.table(table), "text_columns": text_columns})
    }

    pub async fn drop(self) {
        let _ = self
            .client
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name))
            .await;
    }
}

/// A TCP proxy on loopback in front of the PostgreSQL server, that can be
/// taken down (its listener and every connection through it closed) and
/// brought back on the same port: a server that goes away and comes back.
pub struct Proxy {
    pub port: u16,
    running: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Proxy {
    pub async fn start() -> std::sync::Arc<Proxy> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port");
        let port = listener.local_addr().expect("an address").port();
        let proxy = std::sync::Arc::new(Proxy {
            port,
            running: std::sync::Mutex::new(Vec::new()),
        });
        proxy.serve(listener);
        proxy
    }

    /// `postgres://…` through the proxy.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/test", self.port)
    }

    fn serve(self: &std::sync::Arc<Self>, listener: tokio::net::TcpListener) {
        let me = std::sync::Arc::clone(self);
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let forward = tokio::spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect("127.0.0.1:5432").await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                me.running.lock().expect("the task list").push(forward);
            }
        });
        self.running.lock().expect("the task list").push(accept);
    }

    /// Closes the listener and every connection through it.
    pub fn down(&self) {
        for task in self.running.lock().expect("the task list").drain(..) {
            task.abort();
        }
    }

    /// Listens again on the same port.
    pub async fn up(self: &std::sync::Arc<Self>) {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port))
            .await
            .expect("the same port again");
        self.serve(listener);
    }
}
