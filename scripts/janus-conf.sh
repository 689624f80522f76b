#!/usr/bin/env bash
# Writes a Janus configuration for benchmarks and tests into DIR: Debian's /etc/janus with the
# videoroom plugin and the plain HTTP transport only, the API on IP:8088, media only on the
# interface IFACE (Janus cannot use `lo` for media: callers make a veth pair inside their own
# private network namespace and give its name), warnings only, and EVENT_LOOPS shared media
# loops when set (Janus' default is one thread per handle).
#
#   scripts/janus-conf.sh DIR IP IFACE [EVENT_LOOPS]    then: janus -C DIR/janus.jcfg -F DIR
set -euo pipefail
DIR=$1 IP=$2 IFACE=$3 LOOPS=${4:-}
[ -f /etc/janus/janus.jcfg ] || { echo "janus-conf: /etc/janus missing (apt install janus)" >&2; exit 1; }
mkdir -p "$DIR"
cp /etc/janus/janus.jcfg /etc/janus/janus.plugin.videoroom.jcfg /etc/janus/janus.transport.http.jcfg "$DIR/"
C=$DIR/janus.jcfg
sed -i \
  -e "s|configs_folder = \"/etc/janus\"|configs_folder = \"$DIR\"|" \
  -e 's|^\(\s*\)debug_level = 4|\1debug_level = 3|' \
  -e "s|#ice_enforce_list = \"eth0\"|ice_enforce_list = \"$IFACE\"|" \
  -e 's|^\(\s*\)#disable = "libjanus_voicemail.so,libjanus_recordplay.so"|\1disable = "libjanus_voicemail.so,libjanus_recordplay.so,libjanus_audiobridge.so,libjanus_streaming.so,libjanus_sip.so,libjanus_nosip.so,libjanus_textroom.so,libjanus_videocall.so,libjanus_echotest.so,libjanus_lua.so,libjanus_duktape.so"|' \
  -e 's|^\(\s*\)#disable = "libjanus_rabbitmq.so"|\1disable = "libjanus_websockets.so,libjanus_mqtt.so,libjanus_nanomsg.so,libjanus_rabbitmq.so,libjanus_pfunix.so"|' \
  "$C"
if [ -n "$LOOPS" ]; then sed -i "s|#event_loops = 8|event_loops = $LOOPS|" "$C"; fi
sed -i "s|#ip = \"192.168.0.1\"|ip = \"$IP\"|" "$DIR/janus.transport.http.jcfg"
for want in "configs_folder = \"$DIR\"" "ice_enforce_list = \"$IFACE\"" 'disable = "libjanus_websockets.so'; do
  grep -qF "$want" "$C" || { echo "janus-conf: could not set: $want (janus.jcfg changed?)" >&2; exit 1; }
done
grep -qF "ip = \"$IP\"" "$DIR/janus.transport.http.jcfg" || { echo "janus-conf: could not set the HTTP ip" >&2; exit 1; }
