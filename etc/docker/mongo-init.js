// MongoDB for docker-compose (EMQX 5 collections), run by the mongo image's
// docker-entrypoint-initdb.d as the root user it created from
// MONGO_INITDB_ROOT_*: the broker's read-only user and the demo users,
// passwords from the environment docker-compose.yml passes in.
const crypto = require('crypto');
function need(name) {
  const value = process.env[name];
  if (!value) throw new Error(name + ' is not set');
  return value;
}
db = db.getSiblingDB('mqtt');
// The broker's login: read-only on the mqtt database, defined in it (the
// broker's auth_source defaults to its database).
db.createUser({ user: 'portcullis', pwd: need('MONGO_PASSWORD'), roles: [{ role: 'read', db: 'mqtt' }] });
// Salted SHA-256, salt first, hex (the default password_hash); random salts.
function user(username, password, isSuperuser) {
  const salt = crypto.randomBytes(8).toString('hex');
  const hash = crypto.createHash('sha256').update(salt + password).digest('hex');
  return { username: username, password_hash: hash, salt: salt, is_superuser: isSuperuser };
}
db.mqtt_user.insertOne(user('demo', need('MQTT_DEMO_PASSWORD'), false));
db.mqtt_user.insertOne(user('admin', need('MQTT_ADMIN_PASSWORD'), true));
db.mqtt_acl.insertOne({ username: 'demo', permission: 'allow', action: 'all', topics: ['devices/${username}/#'] });
db.mqtt_acl.insertOne({ username: 'demo', permission: 'allow', action: 'subscribe', topics: ['public/#'] });
db.mqtt_user.createIndex({ username: 1 }, { unique: true });
db.mqtt_acl.createIndex({ username: 1 });
