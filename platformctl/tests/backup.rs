//! Backups of the embedded store, from the command line: an online backup
//! of a serving platform, verified; every refusal (a running platform, a
//! damaged or truncated copy, a schema newer than this release, a time no
//! backup covers) leaves the data as it was; a restore of payments alone
//! shows up in the consistency report, and a restore of all four brings
//! back exactly the orders the backup held.

mod common;

use std::path::Path;
use std::process::Command;

use common::{addr, bearer, http, split, up};

// Every port of it outside the ephemeral range (32768-60999), where a client
// socket of another test could hold it.
const OFFSET: i32 = 13_025;

fn platformctl(data_dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_platformctl"))
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .expect("platformctl runs");
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), said)
}

/// Takes a SQLite backup and returns its id (`backup <id>: ...`).
fn backup(data_dir: &Path) -> String {
    let (ok, said) = platformctl(data_dir, &["backup"]);
    assert!(ok, "{said}");
    said.split_whitespace()
        .nth(1)
        .expect("backup id")
        .trim_end_matches(':')
        .to_owned()
}

async fn order(token: &str, n: usize) -> String {
    let body = format!(
        r#"{{"items":[{{"sku":"book-1","quantity":{n},"unitPriceMinor":1250}}],"currency":"EUR","paymentMethod":"pm_card_visa","requestId":"backup-{n}"}}"#
    );
    let reply = http(
        addr(OFFSET, 8080),
        "POST",
        "/v1/orders",
        &[("authorization", token)],
        &body,
    )
    .await;
    let (status, body) = split(&reply);
    assert_eq!(status, 200, "{reply}");
    let order: serde_json::Value = serde_json::from_str(body).expect("json");
    assert_eq!(order["status"], "ORDER_STATUS_PAID", "{body}");
    order["id"].as_str().expect("id").to_owned()
}

fn bytes(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_is_restored_and_every_bad_restore_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path();
    let running = up(data, OFFSET, &[]);
    let token = bearer(addr(OFFSET, 8080), "backup@example.com").await;
    let mut kept = Vec::new();
    for n in 1..=3 {
        kept.push(order(&token, n).await);
    }
    let id = backup(data);
    let (ok, said) = platformctl(data, &["backup", "verify"]);
    assert!(ok && said.contains(&format!("backup {id}: ok")), "{said}");
    let mut gone = Vec::new();
    for n in 4..=5 {
        gone.push(order(&token, n).await);
    }

    let live = data.join("orders").join("orders.db");
    let (ok, said) = platformctl(data, &["restore"]);
    assert!(
        !ok && said.contains("the platform is running") && said.contains("nothing was restored"),
        "{said}"
    );
    assert!(running.interrupt().success());
    let before = bytes(&live);

    // A damaged copy, then a truncated one: refused, the data untouched.
    let copy = data.join("backups").join(&id).join("payments.db");
    let good = bytes(&copy);
    let mut damaged = good.clone();
    damaged[good.len() / 2] ^= 0xff;
    std::fs::write(&copy, &damaged).expect("damage");
    let (ok, said) = platformctl(data, &["restore"]);
    assert!(
        !ok && said.contains("does not match its checksum"),
        "{said}"
    );
    std::fs::write(&copy, &good[..good.len() / 2]).expect("truncate");
    let (ok, said) = platformctl(data, &["backup", "verify", &id]);
    assert!(!ok && said.contains("truncated"), "{said}");
    let (ok, said) = platformctl(data, &["restore", &id]);
    assert!(
        !ok && said.contains("truncated") && said.contains("nothing was restored"),
        "{said}"
    );
    std::fs::write(&copy, &good).expect("repair");
    assert_eq!(bytes(&live), before, "a refused restore changed the data");

    // Times no backup covers.
    let (ok, said) = platformctl(data, &["restore", "--target-time", "2001-01-01 00:00:00"]);
    assert!(!ok && said.contains("before the oldest backup"), "{said}");
    let (ok, said) = platformctl(data, &["restore", "--target-time", "2999-01-01 00:00:00"]);
    assert!(!ok && said.contains("in the future"), "{said}");

    // A backup of a schema this release does not know yet.
    {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", live.display()))
            .await
            .expect("open");
        sqlx::query(
            "INSERT INTO schema_migrations (version, name, checksum, applied_at_ms, contract) VALUES (99, 'from_the_future', '', 0, 0)",
        )
        .execute(&mut conn)
        .await
        .expect("a newer migration");
    }
    let newer = backup(data);
    let before = bytes(&live);
    let (ok, said) = platformctl(data, &["restore"]);
    assert!(
        !ok && said.contains("migration 99") && said.contains("newer than this release knows"),
        "{said}"
    );
    assert_eq!(bytes(&live), before);
    std::fs::remove_dir_all(data.join("backups").join(newer)).expect("drop it");

    // Payments alone, from before the last two orders: their charges are
    // gone, and the report says what to do.
    let (ok, said) = platformctl(data, &["restore", &id, "--service", "payments"]);
    assert!(ok, "{said}");
    assert!(
        said.contains("needs an operator: 2 paid orders whose charge is not in payments"),
        "{said}"
    );
    for order in &gone {
        assert!(
            said.contains(order.as_str()),
            "{order} not in the report: {said}"
        );
    }

    // All four: the platform holds exactly the backup's orders again.
    let (ok, said) = platformctl(data, &["restore", &id]);
    assert!(ok && said.contains("needs an operator: nothing"), "{said}");
    assert!(
        data.join("replaced")
            .read_dir()
            .expect("moved aside")
            .count()
            >= 2
    );
    let _running = up(data, OFFSET, &[]);
    let token = bearer(addr(OFFSET, 8080), "after-restore@example.com").await;
    let _ = token;
    let old = {
        // The user of the backup logs in again (auth was restored too).
        let credentials = r#"{"email":"backup@example.com","password":"correct horse battery"}"#;
        let login = http(
            addr(OFFSET, 8080),
            "POST",
            "/v1/auth/login",
            &[],
            credentials,
        )
        .await;
        let value: serde_json::Value = serde_json::from_str(split(&login).1).expect("json");
        format!("Bearer {}", value["accessToken"].as_str().expect("token"))
    };
    for (ids, expected) in [(&kept, 200), (&gone, 404)] {
        for id in ids {
            let reply = http(
                addr(OFFSET, 8080),
                "GET",
                &format!("/v1/orders/{id}"),
                &[("authorization", &old)],
                "",
            )
            .await;
            assert_eq!(split(&reply).0, expected, "{id}: {reply}");
        }
    }
}

/// pgBackRest on a throwaway server: set up, a full backup, verified and
/// listed; a restore into the running server, of a schema newer than this
/// release, to a time before the oldest backup, or of one service, is
/// refused; a damaged file in the repository fails verify.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_backups_are_verified_and_bad_restores_refused() {
    if !testkit::tool("pgbackrest", "version", "the PostgreSQL backups") {
        return;
    }
    let cluster = load_lab::postgres::Cluster::create(55_691).expect("a PostgreSQL cluster");
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let repo = dir.path().join("repo");
    let repo_arg = repo.display().to_string();
    let ctl = |args: &[&str]| platformctl(&data, &[args, &["--repo", &repo_arg]].concat());
    let (ok, said) = ctl(&["backup", "setup", "--postgres", &cluster.url()]);
    assert!(ok && said.contains("pgBackRest is set up"), "{said}");
    let (ok, said) = ctl(&["backup", "--type", "full"]);
    assert!(ok && said.contains("(full)"), "{said}");
    let (ok, said) = ctl(&["backup", "list"]);
    assert!(ok && said.contains("restorable to any time from"), "{said}");
    let (ok, said) = ctl(&["backup", "verify"]);
    assert!(ok, "{said}");

    let (ok, said) = ctl(&["restore"]);
    assert!(
        !ok && said.contains("PostgreSQL is running") && said.contains("nothing was restored"),
        "{said}"
    );
    // Orders at a migration this release does not know, backed up.
    {
        use sqlx::Connection;
        let mut admin = sqlx::PgConnection::connect(&format!("{}/postgres", cluster.url()))
            .await
            .expect("connect");
        sqlx::query("CREATE DATABASE platform_orders")
            .execute(&mut admin)
            .await
            .expect("create");
        let mut orders = sqlx::PgConnection::connect(&format!("{}/platform_orders", cluster.url()))
            .await
            .expect("connect");
        for statement in [
            "CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY)",
            "INSERT INTO schema_migrations VALUES (1), (99)",
        ] {
            sqlx::query(statement)
                .execute(&mut orders)
                .await
                .expect(statement);
        }
    }
    let (ok, said) = ctl(&["backup"]);
    assert!(ok && said.contains("(incr)"), "{said}");
    let (ok, said) = ctl(&["backup", "list"]);
    assert!(ok && said.contains("orders 99"), "{said}");
    cluster.stop().expect("stop");
    let (ok, said) = ctl(&["restore"]);
    assert!(
        !ok && said.contains("orders at migration 99, newer than this release knows")
            && said.contains("nothing was restored"),
        "{said}"
    );
    let (ok, said) = ctl(&["restore", "--target-time", "2001-01-01 00:00:00"]);
    assert!(!ok && said.contains("before the oldest backup"), "{said}");
    let (ok, said) = ctl(&["restore", "--service", "orders"]);
    assert!(!ok && said.contains("whole server"), "{said}");
    let (ok, said) = ctl(&["restore", "no-such-backup"]);
    assert!(
        !ok && said.contains("no backup \"no-such-backup\""),
        "{said}"
    );

    // A damaged file of the backup: verify finds it.
    let backups = repo.join("pgbackrest").join("backup").join("platform");
    let label = std::fs::read_dir(&backups)
        .expect("backups")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.ends_with('F'))
        .expect("a full backup");
    let file = backups
        .join(&label)
        .join("pg_data")
        .join("global")
        .join("pg_control.lz4");
    let mut bytes = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&file, bytes).expect("damage");
    let (ok, said) = ctl(&["backup", "verify"]);
    assert!(
        !ok && said.contains("pg_control"),
        "a damaged backup passed verify: {said}"
    );
}

/// `up --backup-every`: backups taken while the platform serves, the
/// newest `--backup-keep` kept, each one whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_backs_up_on_a_schedule_and_keeps_the_newest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path();
    let running = common::up_with(
        data,
        13_125,
        &[],
        &["--backup-every", "1s", "--backup-keep", "2"],
    );
    let list = || platformctl(data, &["backup", "list"]);
    let since = std::time::Instant::now();
    // Three backups taken at least, two kept.
    while std::fs::read_dir(data.join("backups")).map_or(0, |d| d.count()) < 2
        || since.elapsed() < std::time::Duration::from_millis(3_500)
    {
        assert!(
            since.elapsed() < std::time::Duration::from_secs(60),
            "{}",
            list().1
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(running.interrupt().success());
    let (ok, said) = list();
    let ids: Vec<&str> = said
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(ok && ids.len() == 2, "{said}");
    let (ok, said) = platformctl(data, &["backup", "verify", ids[1]]);
    assert!(ok, "{said}");
}
