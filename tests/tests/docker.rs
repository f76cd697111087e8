//! The Docker files, without a Docker engine: `docker-compose.yml`
//! publishes on loopback and holds no password (checked in its text, and
//! by `docker-compose config` where installed), the configs in
//! `etc/docker/` pass `--check-config` as the broker would load them, the
//! image's entrypoint and config admit a password user from any address
//! and nobody anonymously, and the init scripts give the broker read-only
//! users on the real PostgreSQL, MariaDB and Redis servers that
//! `scripts/services.sh` starts, through which the demo users log in.

use std::collections::BTreeSet;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use portcullis_core::codec::{ProtocolVersion, QoS};
use portcullis_tests::backend::{free_port, login, published, sub_code, try_login};
use portcullis_tests::{binary, run_bounded, services, Broker};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The passwords docker-compose.yml takes from the environment.
const COMPOSE_VARS: [&str; 12] = [
    "MQTT_DEMO_PASSWORD",
    "MQTT_ADMIN_PASSWORD",
    "PG_ADMIN_PASSWORD",
    "PG_PASSWORD",
    "MYSQL_PASSWORD",
    "REDIS_ADMIN_PASSWORD",
    "REDIS_PASSWORD",
    "LDAP_ADMIN_PASSWORD",
    "LDAP_PASSWORD",
    "MONGO_ADMIN_PASSWORD",
    "MONGO_PASSWORD",
    // The NATS servers of the `cluster` profile.
    "NATS_PASSWORD",
];

/// Runs `cmd` with `stdin`, bounded in time: (exit code, stdout + stderr).
fn run(cmd: &mut Command, stdin: &str) -> (Option<i32>, String) {
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
    child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("write stdin");
    let end = Instant::now() + Duration::from_secs(30);
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within 30 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().expect("output");
    (out.status.code(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// The value of a `KEY: value` line, if `line` is one.
fn yaml_pair(line: &str) -> Option<(&str, &str)> {
    let (key, value) = line.trim().split_once(": ")?;
    (!key.starts_with('-') && !key.starts_with('#')).then_some((key, value.trim()))
}

/// Every published port is bound to `${PORTCULLIS_BIND:-127.0.0.1}`; every
/// password (and REDISCLI_AUTH) is a required variable with no default; no
/// file of the setup carries a demo password; and `docker-compose config`,
/// where installed, refuses the file without the variables and binds
/// 127.0.0.1 with them.
#[test]
fn compose_publishes_on_loopback_and_holds_no_password() {
    let compose = read("docker-compose.yml");
    let ports: Vec<&str> =
        compose.lines().map(str::trim).filter(|l| l.starts_with("- \"") && l.contains(":188")).collect();
    assert!(!ports.is_empty(), "no published MQTT ports found");
    for p in &ports {
        assert!(p.starts_with("- \"${PORTCULLIS_BIND:-127.0.0.1}:"), "published on every interface by default: {p}");
    }
    let mut required = BTreeSet::new();
    for (key, value) in compose.lines().filter_map(yaml_pair) {
        let secret = (key.ends_with("PASSWORD") && !key.contains("RANDOM")) || key == "REDISCLI_AUTH";
        if !secret {
            continue;
        }
        let var = value.strip_prefix("${").and_then(|v| v.split_once(":?")).map(|(name, _)| name);
        let var = var.unwrap_or_else(|| panic!("{key}: {value} is not a required variable (${{NAME:?message}})"));
        required.insert(var.to_string());
    }
    assert_eq!(required, COMPOSE_VARS.iter().map(|v| v.to_string()).collect(), "passwords taken from the environment");
    // No default value for anything but the bind address.
    let defaults: Vec<&str> =
        compose.lines().filter(|l| l.contains(":-") && !l.contains("${PORTCULLIS_BIND:-")).collect();
    assert!(defaults.is_empty(), "docker-compose.yml: variables with defaults: {defaults:?}");
    for rel in ["docker-compose.yml", "Dockerfile"] {
        for old in ["demo-pass", "admin-pass", "portcullis-demo"] {
            assert!(!read(rel).contains(old), "{rel}: contains {old:?}");
        }
    }
    for entry in std::fs::read_dir(root().join("etc/docker")).expect("etc/docker") {
        let path = entry.expect("entry").path();
        if let Ok(text) = std::fs::read_to_string(&path) {
            for old in ["demo-pass", "admin-pass", "portcullis-demo"] {
                assert!(!text.contains(old), "{}: contains {old:?}", path.display());
            }
        }
    }

    let Ok(dc) = which("docker-compose") else {
        eprintln!("docker-compose is not installed: its own check is left to scripts/test.sh");
        return;
    };
    let compose_file = root().join("docker-compose.yml");
    let base = || {
        let mut c = Command::new(&dc);
        c.env_clear().env("PATH", std::env::var("PATH").unwrap_or_default()).arg("-f").arg(&compose_file).arg("config");
        c
    };
    let (code, text) = run(&mut base(), "");
    assert_ne!(code, Some(0), "docker-compose config accepted the file without passwords:\n{text}");
    assert!(text.contains("set ") && text.contains("_PASSWORD"), "{text}");
    let mut with_env = base();
    for v in COMPOSE_VARS {
        with_env.env(v, format!("x{v}"));
    }
    let (code, text) = run(&mut with_env, "");
    assert_eq!(code, Some(0), "{text}");
    let published: Vec<&str> = text.lines().map(str::trim).filter(|l| l.contains(":1883:")).collect();
    assert!(!published.is_empty() && published.iter().all(|l| l.contains("127.0.0.1:1883:1883")), "{published:?}");
}

fn which(name: &str) -> Result<PathBuf, ()> {
    std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
        .ok_or(())
}

/// The compose setup's broker config passes `--check-config` with the
/// variables compose gives the broker (every provider built, no
/// connection made), and reads no secret compose does not give it; the
/// image's config refuses to start without its password file, naming it.
#[test]
fn docker_configs_pass_check_config() {
    let path = root().join("etc/docker/portcullis.toml");
    let text = read("etc/docker/portcullis.toml");
    let compose = read("docker-compose.yml");
    let broker_env: BTreeSet<&str> = compose
        .split("\n  postgres:")
        .next()
        .expect("portcullis service")
        .lines()
        .filter_map(yaml_pair)
        .map(|(k, _)| k)
        .collect();
    let mut cmd = Command::new(binary());
    cmd.arg("--check-config").arg("--config").arg(&path);
    let mut read_vars = 0;
    for part in text.split("{ env = \"").skip(1) {
        let var = part.split('"').next().expect("variable");
        assert!(
            broker_env.contains(var),
            "etc/docker/portcullis.toml reads {var}, which compose does not give the broker"
        );
        cmd.env(var, "check-only");
        read_vars += 1;
    }
    assert!(read_vars >= 5, "expected the backends' passwords from the environment");
    let (code, out) = run(&mut cmd, "");
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("config OK"), "{out}");

    let image = root().join("etc/docker/image.toml");
    assert!(!Path::new("/var/lib/portcullis/passwd").exists(), "this test assumes no /var/lib/portcullis/passwd here");
    let out =
        run_bounded(&["--check-config".as_ref(), "--config".as_ref(), image.as_os_str()], Duration::from_secs(20))
            .expect("--check-config did not finish");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("auth.password_file.users") && stderr.contains("/var/lib/portcullis/passwd"), "{stderr}");
}

/// The image's entrypoint writes the user from PORTCULLIS_USERNAME /
/// PORTCULLIS_PASSWORD, and the image's config then admits that user from
/// an address that is not loopback (a published port's), refuses a wrong
/// password and anonymous clients; over MQTT too.
#[tokio::test]
async fn image_entrypoint_and_config_admit_a_password_user_from_anywhere() {
    let dir = tempfile::tempdir().expect("tempdir");
    let passwd = dir.path().join("passwd");
    let shipped = read("etc/docker/image.toml");
    for must in ["bind = \"0.0.0.0:1883\"", "path = \"/var/lib/portcullis/passwd\""] {
        assert!(shipped.contains(must), "etc/docker/image.toml no longer has {must}");
    }
    let cfg = shipped
        .replace("0.0.0.0:1883", "127.0.0.1:0")
        .replace("/var/lib/portcullis/passwd", passwd.to_str().expect("path"));
    let cfg_path = dir.path().join("image.toml");
    std::fs::write(&cfg_path, &cfg).expect("write config");
    let bin_dir = binary().parent().expect("bin dir").to_path_buf();
    let path_env = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let entrypoint = |user: Option<(&str, &str)>, args: &[&str], stdin: &str| {
        let mut c = Command::new("sh");
        c.arg(root().join("etc/docker/entrypoint.sh"))
            .arg("--config")
            .arg(&cfg_path)
            .args(args)
            .env("PATH", &path_env)
            .env("PORTCULLIS_PASSWD_PATH", &passwd);
        if let Some((u, p)) = user {
            c.env("PORTCULLIS_USERNAME", u).env("PORTCULLIS_PASSWORD", p);
        }
        run(&mut c, stdin)
    };
    let check = |who: &[&'static str]| {
        let mut args = vec!["auth", "check", "--client-id", "c1", "--peer", "172.17.0.1"];
        args.extend_from_slice(who);
        args
    };
    // Without a password file the image config does not start.
    let (code, out) = entrypoint(None, &check(&["--username", "alice"]), "s3cret\n");
    assert_ne!(code, Some(0), "{out}");
    // With the variables: alice from the Docker bridge's address.
    let (code, out) = entrypoint(Some(("alice", "s3cret")), &check(&["--username", "alice"]), "s3cret\n");
    assert_eq!(code, Some(0), "alice refused from 172.17.0.1: {out}");
    assert!(out.contains("decision: ALLOW"), "{out}");
    let (code, out) = entrypoint(None, &check(&["--username", "alice"]), "wrong\n");
    assert_eq!(code, Some(1), "wrong password: {out}");
    let (code, out) = entrypoint(None, &check(&[]), "\n");
    assert_eq!(code, Some(1), "anonymous from 172.17.0.1: {out}");
    let meta = std::fs::metadata(&passwd).expect("password file written");
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o077,
        0,
        "password file readable by others"
    );

    // Over MQTT: the password user gets in, anonymous does not (not even
    // from loopback: the image config has no loopback exception).
    let b = Broker::start_with_config(&cfg);
    let mut c = login(b.addr, ProtocolVersion::V311, "img-1", "alice", "s3cret").await;
    assert!(published(&mut c, "hello", QoS::AtLeastOnce, 1, false).await);
    let (_, code) = try_login(b.addr, ProtocolVersion::V311, "img-2", None, None).await;
    assert_eq!(code, Some(0x05), "anonymous admitted by the image config");
    let (_, code) = try_login(b.addr, ProtocolVersion::V311, "img-3", Some("alice"), Some("nope")).await;
    assert_eq!(code, Some(0x04));
}

/// A broker with one listener whose auth and ACL chains are `auth` and
/// `acl` (provider tables), and the demo users' expected rights checked
/// through it: demo logs in, may publish under devices/demo/ and nowhere
/// else, a wrong password is refused, admin is a superuser.
async fn demo_users_work(providers: &str, demo_password: &str, admin_password: &str) {
    let b = Broker::start(providers);
    check_demo(b.addr, demo_password, admin_password).await;
}

async fn check_demo(addr: SocketAddr, demo_password: &str, admin_password: &str) {
    let mut demo = login(addr, ProtocolVersion::V5, "demo-1", "demo", demo_password).await;
    assert!(published(&mut demo, "devices/demo/hello", QoS::AtLeastOnce, 1, false).await, "demo's own topic");
    assert!(!published(&mut demo, "devices/other/hello", QoS::AtLeastOnce, 2, false).await, "another device's topic");
    assert!(sub_code(&mut demo, 3, "public/news", QoS::AtMostOnce).await < 0x80, "public/# for reading");
    let (_, code) = try_login(addr, ProtocolVersion::V311, "demo-2", Some("demo"), Some("wrong")).await;
    assert_eq!(code, Some(0x04), "wrong password");
    let mut admin = login(addr, ProtocolVersion::V5, "admin-1", "admin", admin_password).await;
    assert!(published(&mut admin, "devices/other/hello", QoS::AtLeastOnce, 1, false).await, "admin is a superuser");
}

fn random_password() -> String {
    let mut bytes = [0u8; 12];
    let f = std::fs::File::open("/dev/urandom").and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes));
    f.expect("/dev/urandom");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// etc/docker/postgres-init.sql on the real PostgreSQL: a role that can
/// log in and read the two tables, nothing more, through which the broker
/// admits the demo users with the passwords given to the script.
#[tokio::test]
async fn postgres_init_gives_the_broker_a_read_only_role() {
    let Some([admin_url, host, port]) =
        services::get_all(["PORTCULLIS_TEST_PG_ADMIN_URL", "PORTCULLIS_TEST_PG_HOST", "PORTCULLIS_TEST_PG_PORT"])
    else {
        return;
    };
    let tag = std::process::id();
    let (db, role) = (format!("docker_demo_{tag}"), format!("docker_broker_{tag}"));
    let (broker_pw, demo_pw, admin_pw) = (random_password(), random_password(), random_password());
    let psql = |url: &str, args: &[&str]| {
        let mut c = Command::new("psql");
        c.arg("-X").arg("-q").arg("-v").arg("ON_ERROR_STOP=1").arg(url).args(args);
        run(&mut c, "")
    };
    let (code, out) = psql(
        &admin_url,
        &[
            "-c",
            &format!("DROP DATABASE IF EXISTS {db}"),
            "-c",
            &format!("DROP ROLE IF EXISTS {role}"),
            "-c",
            &format!("CREATE DATABASE {db}"),
        ],
    );
    assert_eq!(code, Some(0), "{out}");
    let db_url = admin_url.rsplit_once('/').map(|(base, _)| format!("{base}/{db}")).expect("admin url");
    let schema = root().join("tests/fixtures/sql/postgres-emqx.sql");
    let init = root().join("etc/docker/postgres-init.sql");
    let (code, out) = psql(
        &db_url,
        &[
            "-f",
            schema.to_str().expect("path"),
            "-v",
            &format!("broker_user={role}"),
            "-v",
            &format!("broker_password={broker_pw}"),
            "-v",
            &format!("demo_password={demo_pw}"),
            "-v",
            &format!("admin_password={admin_pw}"),
            "-f",
            init.to_str().expect("path"),
        ],
    );
    assert_eq!(code, Some(0), "{out}");

    let conn = format!(
        "host = \"{host}\"\nport = {port}\ndatabase = \"{db}\"\nusername = \"{role}\"\npassword = \"{broker_pw}\"\n"
    );
    let providers = format!(
        "[auth]\nchain = [\"pg\"]\n[acl]\nchain = [\"pg_acl\"]\n[auth.postgres.pg]\n{conn}\n[acl.postgres.pg_acl]\n{conn}"
    );
    demo_users_work(&providers, &demo_pw, &admin_pw).await;

    // The role reads, and only reads.
    let role_url = format!("postgres://{role}:{broker_pw}@{host}:{port}/{db}");
    let (code, out) = psql(&role_url, &["-c", "SELECT count(*) FROM mqtt_user"]);
    assert_eq!(code, Some(0), "{out}");
    for write in [
        "INSERT INTO mqtt_user (username, password_hash) VALUES ('x', 'y')",
        "UPDATE mqtt_user SET is_superuser = true",
        "DELETE FROM mqtt_acl",
        "CREATE TABLE t (i int)",
    ] {
        let (code, out) = psql(&role_url, &["-c", write]);
        assert_ne!(code, Some(0), "the broker's role may run {write:?}: {out}");
        assert!(out.contains("permission denied"), "{write}: {out}");
    }
    let _ = psql(
        &admin_url,
        &["-c", &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"), "-c", &format!("DROP ROLE IF EXISTS {role}")],
    );
}

/// etc/docker/mariadb-init.sh (sourced, with the image's docker_process_sql
/// standing in as the root client) on the real MariaDB: the user the image
/// creates with ALL on mqtt.* is cut down to SELECT on the two tables, and
/// the broker admits the demo users through it.
#[tokio::test]
async fn mariadb_init_cuts_the_broker_user_down_to_select() {
    let Some([admin_cnf, host, port, user_pw]) = services::get_all([
        "PORTCULLIS_TEST_MYSQL_ADMIN_CNF",
        "PORTCULLIS_TEST_MYSQL_HOST",
        "PORTCULLIS_TEST_MYSQL_PORT",
        "PORTCULLIS_TEST_MYSQL_PASSWORD",
    ]) else {
        return;
    };
    let (demo_pw, admin_pw) = (random_password(), format!("{}'\"\\;", random_password()));
    let admin =
        |sql: &str| run(Command::new("mariadb").arg(format!("--defaults-file={admin_cnf}")).arg("-e").arg(sql), "");
    // What the image does for MARIADB_DATABASE / MARIADB_USER (the test
    // server's `portcullis` user stands for it).
    let (code, out) =
        admin("DROP DATABASE IF EXISTS mqtt; CREATE DATABASE mqtt; GRANT ALL ON mqtt.* TO 'portcullis'@'%';");
    assert_eq!(code, Some(0), "{out}");
    let schema = std::fs::read_to_string(root().join("tests/fixtures/sql/mysql-emqx.sql")).expect("schema");
    let (code, out) = run(Command::new("mariadb").arg(format!("--defaults-file={admin_cnf}")).arg("mqtt"), &schema);
    assert_eq!(code, Some(0), "{out}");
    let script = format!(
        "docker_process_sql() {{ mariadb --defaults-file='{admin_cnf}' mqtt; }}\n. '{}'\n",
        root().join("etc/docker/mariadb-init.sh").display()
    );
    let (code, out) = run(
        Command::new("bash")
            .arg("-c")
            .arg(&script)
            .env("MQTT_DEMO_PASSWORD", &demo_pw)
            .env("MQTT_ADMIN_PASSWORD", &admin_pw)
            .env("PORTCULLIS_INIT_DIR", root().join("etc/docker")),
        "",
    );
    assert_eq!(code, Some(0), "{out}");

    let conn = format!(
        "host = \"{host}\"\nport = {port}\ndatabase = \"mqtt\"\nusername = \"portcullis\"\npassword = \"{user_pw}\"\n"
    );
    let providers = format!(
        "[auth]\nchain = [\"my\"]\n[acl]\nchain = [\"my_acl\"]\n[auth.mysql.my]\n{conn}\n[acl.mysql.my_acl]\n{conn}"
    );
    demo_users_work(&providers, &demo_pw, &admin_pw).await;

    let as_broker = |sql: &str| {
        run(
            Command::new("mariadb")
                .arg("--no-defaults")
                .arg(format!("--host={host}"))
                .arg(format!("--port={port}"))
                .arg("--user=portcullis")
                .arg(format!("--password={user_pw}"))
                .arg("--skip-ssl")
                .arg("mqtt")
                .arg("-e")
                .arg(sql),
            "",
        )
    };
    let (code, out) = as_broker("SELECT count(*) FROM mqtt_user");
    assert_eq!(code, Some(0), "{out}");
    for write in [
        "INSERT INTO mqtt_user (username, password_hash) VALUES ('x', 'y')",
        "UPDATE mqtt_user SET is_superuser = 1",
        "DELETE FROM mqtt_acl",
        "CREATE TABLE t (i int)",
        "DROP TABLE mqtt_acl",
    ] {
        let (code, out) = as_broker(write);
        assert_ne!(code, Some(0), "the broker's user may run {write:?}: {out}");
        assert!(out.contains("denied"), "{write}: {out}");
    }
    let _ = admin("REVOKE ALL PRIVILEGES ON mqtt.* FROM 'portcullis'@'%'; DROP DATABASE IF EXISTS mqtt;");
}

/// The Redis of docker-compose.yml: its `portcullis` ACL user (the rule is
/// read from docker-compose.yml) on a private redis-server, the demo users
/// loaded by etc/docker/redis-init.sh as the admin; the broker admits them
/// through the ACL user, which cannot write or read other keys.
#[tokio::test]
async fn redis_acl_user_of_compose_reads_only_the_mqtt_keys() {
    let Some([server, cli]) = services::get_all(["PORTCULLIS_TEST_REDIS_SERVER", "PORTCULLIS_TEST_REDIS_CLI"]) else {
        return;
    };
    let compose = read("docker-compose.yml");
    let rule = compose
        .lines()
        .find_map(|l| l.split_once("user portcullis on >%s ").map(|(_, r)| r))
        .and_then(|r| r.split_once("\\n").map(|(rule, _)| rule.trim()))
        .expect("the portcullis ACL user in docker-compose.yml");
    let dir = tempfile::tempdir().expect("tempdir");
    let (admin_pw, user_pw, demo_pw, root_pw) =
        (random_password(), random_password(), random_password(), random_password());
    let conf = dir.path().join("redis.conf");
    std::fs::write(&conf, format!("requirepass {admin_pw}\nuser portcullis on >{user_pw} {rule}\n")).expect("conf");
    let port = free_port();
    let mut redis = Command::new(&server)
        .arg(&conf)
        .args(["--bind", "127.0.0.1", "--port", &port.to_string(), "--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server");
    let stop = scopeguard(&mut redis);
    let end = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < end, "redis-server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (code, out) = run(
        Command::new("sh")
            .arg(root().join("etc/docker/redis-init.sh"))
            .env(
                "PATH",
                format!(
                    "{}:{}",
                    Path::new(&cli).parent().expect("dir").display(),
                    std::env::var("PATH").unwrap_or_default()
                ),
            )
            .env("REDIS_HOST", "127.0.0.1")
            .env("REDIS_PORT", port.to_string())
            .env("REDISCLI_AUTH", &admin_pw)
            .env("MQTT_DEMO_PASSWORD", &demo_pw)
            .env("MQTT_ADMIN_PASSWORD", &root_pw),
        "",
    );
    assert_eq!(code, Some(0), "redis-init.sh: {out}");

    let conn = format!("servers = \"127.0.0.1:{port}\"\nusername = \"portcullis\"\npassword = \"{user_pw}\"\n");
    let providers = format!(
        "[auth]\nchain = [\"rd\"]\n[acl]\nchain = [\"rd_acl\"]\n[auth.redis.rd]\n{conn}\n[acl.redis.rd_acl]\n{conn}"
    );
    demo_users_work(&providers, &demo_pw, &root_pw).await;

    let as_broker = |args: &[&str]| {
        let mut c = Command::new(&cli);
        c.args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "--user",
            "portcullis",
            "--pass",
            &user_pw,
            "--no-auth-warning",
        ])
        .args(args);
        run(&mut c, "")
    };
    let (_, out) = as_broker(&["HGET", "mqtt_user:demo", "salt"]);
    assert!(!out.contains("NOPERM") && out.trim().len() == 16, "reading mqtt_user: {out}");
    for cmd in [
        &["HSET", "mqtt_user:demo", "is_superuser", "true"][..],
        &["SET", "other", "1"],
        &["GET", "other"],
        &["FLUSHALL"],
        &["KEYS", "*"],
        &["CONFIG", "GET", "requirepass"],
    ] {
        let (_, out) = as_broker(cmd);
        assert!(out.contains("NOPERM"), "the broker's Redis user may run {cmd:?}: {out}");
    }
    drop(stop);
}

/// Kills the child when dropped.
struct KillOnDrop<'a>(&'a mut std::process::Child);

impl Drop for KillOnDrop<'_> {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn scopeguard(child: &mut std::process::Child) -> KillOnDrop<'_> {
    KillOnDrop(child)
}

/// etc/docker/builtin-init.sh (the compose broker's entrypoint): the first
/// start makes the built-in store with the demo users and rules, through
/// which they log in with the demo rights, then hands over to the image's
/// entrypoint; a later start sets the passwords from the environment again
/// and adds nothing twice. The compose broker config's built-in listener
/// reads that store.
#[tokio::test]
async fn builtin_init_makes_the_demo_store_once_and_resets_passwords() {
    let shipped = read("etc/docker/portcullis.toml");
    let store_path = "/var/lib/portcullis/data/portcullis.db";
    assert!(
        shipped.contains(&format!("path = \"{store_path}\"")),
        "etc/docker/portcullis.toml no longer reads {store_path}"
    );
    assert!(read("etc/docker/builtin-init.sh").contains(store_path), "the init script writes another store");
    assert!(read("docker-compose.yml").contains("/etc/portcullis/docker/builtin-init.sh"));
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("data/portcullis.db");
    let bin_dir = binary().parent().expect("bin dir").to_path_buf();
    let path_env = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let init = |demo: &str, admin: &str| {
        let mut c = Command::new("sh");
        c.arg(root().join("etc/docker/builtin-init.sh"))
            .arg("--version")
            .env_clear()
            .env("PATH", &path_env)
            .env("PORTCULLIS_BUILTIN_DB", &db)
            .env("MQTT_DEMO_PASSWORD", demo)
            .env("MQTT_ADMIN_PASSWORD", admin);
        run(&mut c, "")
    };
    let (demo_pw, admin_pw) = (random_password(), random_password());
    let (code, out) = init(&demo_pw, &admin_pw);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("created the user store") && out.contains("portcullis"), "ran the entrypoint: {out}");
    assert!(!out.contains(&demo_pw) && !out.contains(&admin_pw), "{out}");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&db).expect("store made").permissions());
    assert_eq!(mode & 0o777, 0o600);
    let providers = format!(
        "[auth]\nchain = [\"store\"]\n[acl]\nchain = [\"store_acl\"]\n\
         [auth.builtin.store]\npath = \"{p}\"\n[acl.builtin.store_acl]\npath = \"{p}\"\n",
        p = db.display()
    );
    demo_users_work(&providers, &demo_pw, &admin_pw).await;

    let new_demo_pw = random_password();
    let (code, out) = init(&new_demo_pw, &admin_pw);
    assert_eq!(code, Some(0), "{out}");
    assert!(!out.contains("created"), "{out}");
    let (code, rules) = run(Command::new(binary()).args(["acl", "list", "--db"]).arg(&db), "");
    assert_eq!(code, Some(0), "{rules}");
    assert!(rules.contains("2 in all"), "the rules were added twice: {rules}");
    let b = Broker::start(&providers);
    check_demo(b.addr, &new_demo_pw, &admin_pw).await;
    let (_, code) = try_login(b.addr, ProtocolVersion::V311, "old", Some("demo"), Some(&demo_pw)).await;
    assert_eq!(code, Some(0x04), "the old demo password");
    let (code, out) = init("", &admin_pw);
    assert_ne!(code, Some(0), "started without MQTT_DEMO_PASSWORD: {out}");
}
