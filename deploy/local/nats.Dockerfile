# nats-server from Debian's package, for the local stack (deploy/smoke.sh):
# the binary and whatever libc it links against on an empty base, laid out
# like the official nats image (/nats-server, client port 4222, monitoring
# 8222, cluster routes 6222). The compose file gives its flags.
FROM scratch
COPY rootfs/ /
EXPOSE 4222 6222 8222
ENTRYPOINT ["/nats-server"]
