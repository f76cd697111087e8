//! Addresses of the real backend servers that `scripts/services.sh`
//! starts for the tests (PostgreSQL, MariaDB, Redis, OpenLDAP, a MongoDB
//! wire server). A test that needs one calls [`get`]: when the variable is
//! missing the test fails, naming the command that starts the services,
//! unless `PORTCULLIS_SKIP_SERVICES=1` says to skip such tests (then it
//! prints that it skipped). There is no silent skip: CI never sets it.

/// The value of `var`, or `None` when the developer opted out of backend
/// tests with `PORTCULLIS_SKIP_SERVICES=1`. Panics when it is missing
/// otherwise.
pub fn get(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ if std::env::var("PORTCULLIS_SKIP_SERVICES").as_deref() == Ok("1") => {
            eprintln!("SKIPPED: {var} is not set and PORTCULLIS_SKIP_SERVICES=1");
            None
        }
        _ => panic!(
            "{var} is not set: this test needs a real backend server. Run the tests through \
             `bash scripts/test.sh` (or `scripts/services.sh -- cargo test ...`), or set \
             PORTCULLIS_SKIP_SERVICES=1 to skip backend tests deliberately"
        ),
    }
}

/// Like [`get`] for several variables at once.
pub fn get_all<const N: usize>(vars: [&str; N]) -> Option<[String; N]> {
    let mut out: [String; N] = std::array::from_fn(|_| String::new());
    for (i, v) in vars.iter().enumerate() {
        out[i] = get(v)?;
    }
    Some(out)
}
