# meeting-appliance: the service user (system account, no login, home = the data dir).
getent group meeting-appliance >/dev/null || groupadd -r meeting-appliance
getent passwd meeting-appliance >/dev/null || \
    useradd -r -g meeting-appliance -d /var/lib/meeting-appliance -s /sbin/nologin \
        -c "meeting-appliance video meetings" meeting-appliance
exit 0
