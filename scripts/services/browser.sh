# Headless Chromium and MQTT.js for the browser test (tests/tests/browser.rs).
# Nothing is started here: the test starts its own Chromium. This makes sure
# both are present and tells the test where they are:
#   PORTCULLIS_TEST_CHROMIUM  the browser (Debian's chromium, installed when
#                             missing)
#   PORTCULLIS_TEST_MQTTJS    mqtt.min.js, the browser bundle of MQTT.js (npm
#                             package `mqtt`), installed once into a cache
#                             directory that later runs reuse
#                             ($PORTCULLIS_TEST_CACHE, default ~/.cache/portcullis-test)
start_browser() {
  command -v chromium >/dev/null 2>&1 || need_packages chromium
  command -v npm >/dev/null 2>&1 || need_packages nodejs npm
  local dir="${PORTCULLIS_TEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/portcullis-test}/mqttjs-5"
  local bundle="$dir/node_modules/mqtt/dist/mqtt.min.js"
  if [ ! -f "$bundle" ]; then
    echo "==> services: npm install mqtt@5 into $dir" >&2
    mkdir -p "$dir"
    (cd "$dir" && npm install --no-audit --no-fund --silent --no-save mqtt@5 >&2)
  fi
  [ -f "$bundle" ] || { echo "services: $bundle missing after npm install" >&2; return 1; }
  export_var PORTCULLIS_TEST_CHROMIUM "$(command -v chromium)"
  export_var PORTCULLIS_TEST_MQTTJS "$bundle"
}
