//! `certificate`: admits a client on a verified TLS client certificate
//! alone (the listener verified it against its CA bundle). Clients without
//! one are not this provider's business. With `match_username`, the
//! CONNECT's username, when it sends one, must equal the certificate's CN.

use portcullis_core::gate::{ConnectInfo, DenyReason, GateFuture};
use portcullis_core::provider::ProviderError;

use crate::provider::{AuthAnswer, AuthDecision, AuthProvider, Inputs};

#[derive(Debug)]
pub struct Certificate {
    name: String,
    match_username: bool,
}

impl Certificate {
    pub fn new(name: String, match_username: bool) -> Certificate {
        Certificate { name, match_username }
    }

    pub fn decide(&self, info: &ConnectInfo) -> AuthAnswer {
        let Some(cert) = &info.cert else { return AuthAnswer::ignore() };
        if self.match_username {
            if let Some(user) = &info.username {
                if cert.common_name.as_deref() != Some(&**user) {
                    return AuthAnswer::new(
                        AuthDecision::Deny(DenyReason::NotAuthorized),
                        Some("username differs from certificate CN".to_string()),
                    );
                }
            }
        }
        AuthAnswer::new(AuthDecision::allow(), Some(format!("certificate {}", cert.subject)))
    }
}

impl AuthProvider for Certificate {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "certificate"
    }

    fn worth_caching(&self) -> bool {
        false
    }

    fn inputs(&self) -> Inputs {
        Inputs::CERT.union(Inputs::USERNAME)
    }

    fn authenticate<'a>(&'a self, info: &'a ConnectInfo) -> GateFuture<'a, Result<AuthAnswer, ProviderError>> {
        let answer = self.decide(info);
        Box::pin(async move { Ok(answer) })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use portcullis_core::gate::CertIdentity;

    use super::*;
    use crate::providers::test_support::connect;

    #[test]
    fn needs_a_certificate() {
        let p = Certificate::new("c".into(), true);
        let mut info = connect("dev", Some("dev42"), None, "10.0.0.1:1");
        assert_eq!(p.decide(&info).decision, AuthDecision::Ignore);
        info.cert = Some(Arc::new(CertIdentity {
            common_name: Some("dev42".into()),
            subject: "CN=dev42".into(),
            ..Default::default()
        }));
        assert_eq!(p.decide(&info).decision, AuthDecision::allow());
        info.username = Some(Arc::from("other"));
        assert!(matches!(p.decide(&info).decision, AuthDecision::Deny(_)));
        assert_eq!(Certificate::new("c".into(), false).decide(&info).decision, AuthDecision::allow());
    }
}
