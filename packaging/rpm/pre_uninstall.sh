# meeting-appliance: stop and disable on removal (not on upgrade, $1 = 1).
if [ "$1" -eq 0 ] && [ -d /run/systemd/system ]; then
    systemctl --no-reload disable --now meeting-appliance.service >/dev/null 2>&1 || :
fi
exit 0
