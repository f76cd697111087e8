//! External identity backends (LDAP, MySQL, PostgreSQL, Redis, MongoDB, HTTP),
//! one folder and cargo feature each. None are implemented yet.
