# meeting-appliance: the data dir, the config readable by the service only, the `meeting`
# alias for the seed's commands, and systemd.
install -d -o meeting-appliance -g meeting-appliance -m 0750 /var/lib/meeting-appliance
chgrp meeting-appliance /etc/meeting-appliance
chmod 0750 /etc/meeting-appliance
ln -sf meeting-appliance /usr/bin/meeting
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
    /usr/lib/systemd/systemd-sysctl /usr/lib/sysctl.d/60-meeting-appliance.conf >/dev/null 2>&1 || :
    if [ "$1" -eq 1 ]; then
        # First install: enable as the distribution's presets say (Fedora: disabled).
        systemctl preset meeting-appliance.service >/dev/null 2>&1 || :
    fi
fi
exit 0
