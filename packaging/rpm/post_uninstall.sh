# meeting-appliance: on upgrade restart the running service on the new binary; on removal
# drop the alias. The data dir and the user stay (RPM has no purge): see OPERATIONS.md.
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
fi
if [ "$1" -ge 1 ]; then
    if [ -d /run/systemd/system ]; then
        systemctl try-restart meeting-appliance.service >/dev/null 2>&1 || :
    fi
else
    rm -f /usr/bin/meeting
fi
exit 0
