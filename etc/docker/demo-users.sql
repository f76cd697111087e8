-- Demo users for docker-compose (EMQX 5 tables; PostgreSQL and MariaDB).
-- Passwords: demo / demo-pass, admin / admin-pass (a superuser). Salted
-- SHA-256, salt first, hex: the default `password_hash`. Change them before
-- exposing anything.
INSERT INTO mqtt_user (username, password_hash, salt, is_superuser) VALUES ('demo', '059fc6889204a66eb24c4a9579b0ab54b5f03faee6837fbc9532cfeb4ce0f7b5', 'salt-demo', false);
INSERT INTO mqtt_user (username, password_hash, salt, is_superuser) VALUES ('admin', 'b9a4350050781abbf08e271df3b522301f50e198f1c5ea8626e844ea5f7defc2', 'salt-admin', true);
INSERT INTO mqtt_acl (username, permission, action, topic) VALUES ('demo', 'allow', 'all', 'devices/${username}/#');
INSERT INTO mqtt_acl (username, permission, action, topic) VALUES ('demo', 'allow', 'subscribe', 'public/#');
INSERT INTO mqtt_acl (username, permission, action, topic) VALUES ('demo', 'deny', 'all', '#');
