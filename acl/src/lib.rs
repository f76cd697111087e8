//! Access control: the ACL rule model, `AclProvider`, `AclChain`, the
//! per-client decision cache, ACL files and per-device policy files.
//!
//! Empty until the auth/ACL pipeline lands; the core already asks every
//! publish and subscribe decision through `portcullis_core::gate::Gate`.
