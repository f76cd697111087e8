// Demo users for docker-compose (EMQX 5 collections), run by the mongo
// image's docker-entrypoint-initdb.d. demo / demo-pass, admin / admin-pass.
db = db.getSiblingDB('mqtt');
db.mqtt_user.insertOne({ username: 'demo', password_hash: '059fc6889204a66eb24c4a9579b0ab54b5f03faee6837fbc9532cfeb4ce0f7b5', salt: 'salt-demo', is_superuser: false });
db.mqtt_user.insertOne({ username: 'admin', password_hash: 'b9a4350050781abbf08e271df3b522301f50e198f1c5ea8626e844ea5f7defc2', salt: 'salt-admin', is_superuser: true });
db.mqtt_acl.insertOne({ username: 'demo', permission: 'allow', action: 'all', topics: ['devices/${username}/#'] });
db.mqtt_acl.insertOne({ username: 'demo', permission: 'allow', action: 'subscribe', topics: ['public/#'] });
db.mqtt_user.createIndex({ username: 1 }, { unique: true });
db.mqtt_acl.createIndex({ username: 1 });
