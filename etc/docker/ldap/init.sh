#!/bin/sh
# Loads the demo users into docker-compose's OpenLDAP, once: run in the
# osixia/openldap image (it has ldapadd and slappasswd) after the server is
# up, binding as cn=admin. Passwords ({SSHA}, salted) from
# MQTT_DEMO_PASSWORD and MQTT_ADMIN_PASSWORD; admin is a superuser through
# mqttSuperuser (etc/ldap/portcullis.schema). The broker binds as the
# read-only cn=portcullis,dc=example,dc=org the image creates
# (LDAP_READONLY_USER), which may search and read entries but not
# passwords; each user's password is checked by binding as that user.
set -eu
: "${MQTT_DEMO_PASSWORD:?}" "${MQTT_ADMIN_PASSWORD:?}" "${LDAP_ADMIN_PASSWORD:?}"
url="${LDAP_URL:-ldap://openldap:389}"
admin="cn=admin,dc=example,dc=org"
if ldapsearch -x -H "$url" -D "$admin" -w "$LDAP_ADMIN_PASSWORD" -b ou=people,dc=example,dc=org -s base >/dev/null 2>&1; then
  echo "ldap-init: demo users already loaded"
  exit 0
fi
demo="$(slappasswd -h '{SSHA}' -s "$MQTT_DEMO_PASSWORD")"
root="$(slappasswd -h '{SSHA}' -s "$MQTT_ADMIN_PASSWORD")"
ldapadd -x -H "$url" -D "$admin" -w "$LDAP_ADMIN_PASSWORD" <<LDIF
dn: ou=people,dc=example,dc=org
objectClass: organizationalUnit
ou: people

dn: uid=demo,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
objectClass: mqttUser
uid: demo
cn: Demo Device
sn: Demo
userPassword: $demo
mqttPubSubTopic: devices/\${username}/#
mqttSubscriptionTopic: public/#

dn: uid=admin,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
objectClass: mqttUser
uid: admin
cn: Admin
sn: Admin
userPassword: $root
mqttSuperuser: TRUE
LDIF
echo "ldap-init: demo users loaded"
