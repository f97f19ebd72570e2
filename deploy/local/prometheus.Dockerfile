# Prometheus from Debian's package, for the local stack (deploy/smoke.sh):
# the binary and the glibc it links against on an empty base, laid out like
# the prom/prometheus image the production compose file names (binary in
# /bin, data in /prometheus owned by nobody, run as nobody).
FROM scratch
COPY rootfs/ /
COPY --chown=65534:65534 data/ /prometheus/
USER 65534:65534
WORKDIR /prometheus
EXPOSE 9090
ENTRYPOINT ["/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
