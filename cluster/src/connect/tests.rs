use std::io::Write;
use std::path::Path;

use portcullis_backends::common::tls::read_key;
use portcullis_backends::common::BuildErrorKind;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

use super::*;

fn config(toml_text: &str) -> ClusterConfig {
    toml::from_str(toml_text).unwrap()
}

fn plan(toml_text: &str) -> Result<ConnectPlan, BuildError> {
    ConnectPlan::new(&config(toml_text), "node-1@127.0.0.1")
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::File::create(&p).unwrap().write_all(text.as_bytes()).unwrap();
    p.display().to_string()
}

#[test]
fn defaults_name_the_connection_and_turn_echo_off() {
    let p = plan("").unwrap();
    assert_eq!(p.name(), "node-1@127.0.0.1");
    assert_eq!(p.auth_method(), AuthMethod::None);
    assert_eq!(p.servers().len(), 1);
    assert_eq!(p.servers()[0].host(), "127.0.0.1");
    assert_eq!(p.servers()[0].port(), 4222);
    let o = format!("{:?}", p.options().unwrap());
    assert!(o.contains(r#""name": Some("node-1@127.0.0.1")"#), "{o}");
    assert!(o.contains(r#""no_echo": true"#), "{o}");
    assert!(o.contains(r#""connection_timeout": 5s"#), "{o}");
    assert!(o.contains(r#""tls_required": false"#), "{o}");
}

#[test]
fn timeouts_and_servers_are_carried_over() {
    let p = plan(
        r#"nats = ["nats://a:1", "b:2"]
        connect_timeout = "1500ms""#,
    )
    .unwrap();
    assert_eq!(p.servers().iter().map(|s| (s.host(), s.port())).collect::<Vec<_>>(), [("a", 1), ("b", 2)]);
    let o = format!("{:?}", p.options().unwrap());
    assert!(o.contains(r#""connection_timeout": 1.5s"#), "{o}");
}

#[test]
fn secrets_are_resolved_and_never_shown() {
    let dir = tempfile::tempdir().unwrap();
    let pw = write(dir.path(), "pw", "hunter2-pass\n");
    let p = plan(&format!("username = \"u\"\npassword = {{ file = {pw:?} }}")).unwrap();
    assert_eq!(p.auth_method(), AuthMethod::UserPassword);
    match &p.auth {
        Auth::UserPassword { user, password } => assert_eq!((user.as_str(), password.as_str()), ("u", "hunter2-pass")),
        _ => panic!("user/password expected"),
    }
    assert!(!format!("{p:?}").contains("hunter2"), "{p:?}");
    assert!(!format!("{:?}", p.options().unwrap()).contains("hunter2"));

    let p = plan("token = \"hunter2-token\"").unwrap();
    assert_eq!(p.auth_method(), AuthMethod::Token);
    assert!(!format!("{p:?}").contains("hunter2"));
    p.options().unwrap();

    let e = plan("token = { env = \"PORTCULLIS_SURELY_UNSET_NATS_TOKEN\" }").unwrap_err();
    assert!(e.is("token", BuildErrorKind::Secret), "{e}");
}

#[test]
fn nkey_seeds_are_checked_when_planned() {
    let user = nkeys::KeyPair::new_user();
    let seed = user.seed().unwrap();
    let p = plan(&format!("nkey_seed = {seed:?}")).unwrap();
    assert_eq!(p.auth_method(), AuthMethod::NkeySeed);
    assert!(!format!("{p:?}").contains(&seed));
    p.options().unwrap();

    let account = nkeys::KeyPair::new_account().seed().unwrap();
    for bad in [account.as_str(), "SUNOTASEED", "hunter2"] {
        let e = plan(&format!("nkey_seed = {bad:?}")).unwrap_err();
        assert!(e.is("nkey_seed", BuildErrorKind::Invalid), "{e}");
        assert!(!e.to_string().contains(bad), "the seed is not repeated: {e}");
    }
}

#[test]
fn credentials_files_are_parsed_when_planned() {
    let dir = tempfile::tempdir().unwrap();
    let seed = nkeys::KeyPair::new_user().seed().unwrap();
    let creds = format!(
        "-----BEGIN NATS USER JWT-----\neyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.e30.sig\n------END NATS USER \
         JWT------\n\n-----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n"
    );
    let path = write(dir.path(), "user.creds", &creds);
    let p = plan(&format!("credentials_file = {path:?}")).unwrap();
    assert_eq!(p.auth_method(), AuthMethod::CredentialsFile);
    assert!(!format!("{p:?}").contains(&seed));
    p.options().unwrap();

    let junk = write(dir.path(), "junk.creds", "not a creds file");
    let e = plan(&format!("credentials_file = {junk:?}")).unwrap_err();
    assert!(e.is("credentials_file", BuildErrorKind::File), "{e}");
    assert!(e.to_string().contains("junk.creds"), "{e}");
}

/// A CA, and a server certificate for `nats.example` only, as files.
struct Pki {
    _dir: tempfile::TempDir,
    ca_file: String,
    server: Arc<rustls::ServerConfig>,
}

fn pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let mut ca = CertificateParams::default();
    ca.distinguished_name.push(DnType::CommonName, "cluster test CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let issuer = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["nats.example".to_string()]).unwrap().signed_by(&key, &issuer).unwrap();
    let ca_file = write(dir.path(), "ca.pem", &issuer.pem());
    let cert_file = write(dir.path(), "server.pem", &leaf.pem());
    let key_file = write(dir.path(), "server.key", &key.serialize_pem());
    let server = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            read_certs(Path::new(&cert_file), "cert").unwrap(),
            read_key(Path::new(&key_file), "key").unwrap(),
        )
        .unwrap();
    Pki { _dir: dir, ca_file, server: Arc::new(server) }
}

/// An in-memory TLS handshake of `client`, connecting to `host`.
fn handshake(
    client: rustls::ClientConfig,
    host: &str,
    server: &Arc<rustls::ServerConfig>,
) -> Result<(), rustls::Error> {
    let mut c = rustls::ClientConnection::new(Arc::new(client), ServerName::try_from(host.to_string()).unwrap())?;
    let mut s = rustls::ServerConnection::new(server.clone())?;
    for _ in 0..16 {
        let mut buf = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut buf).unwrap();
        }
        let mut rd = buf.as_slice();
        while !rd.is_empty() {
            s.read_tls(&mut rd).unwrap();
            s.process_new_packets()?;
        }
        let mut buf = Vec::new();
        while s.wants_write() {
            s.write_tls(&mut buf).unwrap();
        }
        let mut rd = buf.as_slice();
        while !rd.is_empty() {
            c.read_tls(&mut rd).unwrap();
            c.process_new_packets()?;
        }
        if !c.is_handshaking() && !s.is_handshaking() {
            return Ok(());
        }
    }
    panic!("the handshake did not finish");
}

#[test]
fn tls_verifies_against_the_ca_and_the_configured_name() {
    let pki = pki();
    let ca = &pki.ca_file;
    // Connecting to 127.0.0.1 with a certificate for nats.example: refused
    // unless server_name says nats.example.
    let plain =
        plan(&format!("nats = [\"tls://127.0.0.1:4222\"]\ntls = {{ enable = true, ca_file = {ca:?} }}")).unwrap();
    assert!(format!("{:?}", plain.options().unwrap()).contains(r#""tls_required": true"#));
    let e = handshake(plain.tls_client_config().unwrap(), "127.0.0.1", &pki.server).unwrap_err();
    assert!(e.to_string().contains("certificate not valid for name"), "{e}");
    handshake(plain.tls_client_config().unwrap(), "nats.example", &pki.server).unwrap();

    let named = plan(&format!("tls = {{ enable = true, ca_file = {ca:?}, server_name = \"nats.example\" }}")).unwrap();
    handshake(named.tls_client_config().unwrap(), "127.0.0.1", &pki.server).unwrap();
    let other = plan(&format!("tls = {{ enable = true, ca_file = {ca:?}, server_name = \"other.example\" }}")).unwrap();
    assert!(handshake(other.tls_client_config().unwrap(), "127.0.0.1", &pki.server).is_err());

    // Without tls.enable nothing is trusted (no fallback to the system's store).
    let off = plan("").unwrap();
    let e = handshake(off.tls_client_config().unwrap(), "nats.example", &pki.server).unwrap_err();
    assert!(e.to_string().contains("UnknownIssuer"), "{e}");
}

#[test]
fn connecting_to_nothing_fails_with_a_reason() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let p = plan(&format!("nats = [\"nats://127.0.0.1:{port}\"]\nconnect_timeout = \"2s\"")).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let r = rt.block_on(async { tokio::time::timeout(Duration::from_secs(20), p.connect()).await });
    let e = r.expect("connect gave up within 20 s").unwrap_err();
    assert!(matches!(e, ConnectError::Nats(_)), "{e}");
    assert!(e.to_string().starts_with("cannot connect to NATS"), "{e}");
}
