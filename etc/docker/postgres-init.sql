-- PostgreSQL for docker-compose, run by etc/docker/postgres-init.sh as the
-- database superuser after the schema (tests/fixtures/sql/postgres-emqx.sql).
-- psql variables: broker_user and broker_password (the broker's login),
-- demo_password and admin_password (the demo MQTT users).
--
-- The broker's role may log in and read the two tables it queries; nothing
-- else (no superuser, no writes, no other tables).
CREATE ROLE :"broker_user" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'broker_password';
GRANT CONNECT ON DATABASE :"DBNAME" TO :"broker_user";
GRANT USAGE ON SCHEMA public TO :"broker_user";
GRANT SELECT ON mqtt_user, mqtt_acl TO :"broker_user";

-- Demo users: salted SHA-256, salt first, hex (the default password_hash),
-- with a random salt each. admin is a superuser.
INSERT INTO mqtt_user (username, password_hash, salt, is_superuser)
SELECT u.name, encode(sha256(convert_to(u.salt || u.password, 'UTF8')), 'hex'), u.salt, u.superuser
FROM (VALUES
    ('demo', md5(random()::text), :'demo_password', false),
    ('admin', md5(random()::text), :'admin_password', true)
) AS u (name, salt, password, superuser);
INSERT INTO mqtt_acl (username, permission, action, topic) VALUES ('demo', 'allow', 'all', 'devices/${username}/#');
INSERT INTO mqtt_acl (username, permission, action, topic) VALUES ('demo', 'allow', 'subscribe', 'public/#');
INSERT INTO mqtt_acl (username, permission, action, topic) VALUES ('demo', 'deny', 'all', '#');
