-- MariaDB for docker-compose, run by etc/docker/mariadb-init.sh as root in
-- the `mqtt` database after the schema (tests/fixtures/sql/mysql-emqx.sql).
-- Session variables: @demo_password and @admin_password (the demo MQTT
-- users).
--
-- The image created the broker's user `portcullis`@`%` (MARIADB_USER) with
-- ALL on mqtt.*: it keeps only SELECT on the two tables it queries.
REVOKE ALL PRIVILEGES ON mqtt.* FROM 'portcullis'@'%';
GRANT SELECT ON mqtt.mqtt_user TO 'portcullis'@'%';
GRANT SELECT ON mqtt.mqtt_acl TO 'portcullis'@'%';

-- Demo users: salted SHA-256, salt first, hex (the default password_hash),
-- with a random salt each. admin is a superuser.
SET @demo_salt = MD5(RAND()), @admin_salt = MD5(RAND());
INSERT INTO mqtt_user (username, password_hash, salt, is_superuser) VALUES
    ('demo', SHA2(CONCAT(@demo_salt, @demo_password), 256), @demo_salt, 0),
    ('admin', SHA2(CONCAT(@admin_salt, @admin_password), 256), @admin_salt, 1);
INSERT INTO mqtt_acl (username, permission, action, topic) VALUES ('demo', 'allow', 'all', 'devices/${username}/#');
INSERT INTO mqtt_acl (username, permission, action, topic) VALUES ('demo', 'allow', 'subscribe', 'public/#');
INSERT INTO mqtt_acl (username, permission, action, topic) VALUES ('demo', 'deny', 'all', '#');
