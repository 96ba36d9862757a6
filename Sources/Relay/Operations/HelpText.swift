import RelayCodecs

/// The `--help` page around the flag list: how to invoke the relay, the environment variables
/// it reads, what it serves and its exit codes. Only what this build does; details live in
/// docs/operations.md (running it) and docs/protocol.md (the wire protocol).
package enum HelpText {
    package static func render(flags: String) -> String {
        usage + "\nFlags:\n" + flags + "\n" + environment + "\n" + endpoints + "\n" + exitCodes
    }

    package static let usage = """
        Usage:
          pyrycode-relay --domain NAME [flags]
                TLS on --https-listen (default :443) with a certificate obtained and renewed over ACME
                (Let's Encrypt; http-01 on --http-listen, default :80, or tls-alpn-01), kept in --cert-cache
          pyrycode-relay --tls-cert FILE --tls-key FILE [--domain NAME] [flags]
                TLS on --https-listen (default :443); SIGHUP reloads the certificate and key
          pyrycode-relay --insecure-listen ADDR [flags]
                plain HTTP/WebSocket, behind a TLS-terminating proxy or for development
        Flags take Go syntax: --flag=value, --flag value or -flag; a repeated flag keeps its last value.

        """

    package static let environment = """
        Environment:
          PYRYCODE_RELAY_PRODUCTION=1
                production mode: refuses --insecure-listen (a shard: except on a loopback or private
                address), running as root and any capability but CAP_NET_BIND_SERVICE
          PYRYCODE_RELAY_ASSERT_SINGLE_INSTANCE=true
                the deploy guarantees exactly one relay replica; required with
                PYRYCODE_RELAY_PRODUCTION=1, and on Fly.io or Kubernetes when the replicas cannot be counted
          PYRYCODE_RELAY_SINGLE_INSTANCE=1
                skips the single-instance self-check (NOT recommended for production)
          PYRYCODE_RELAY_FCM_CREDENTIALS=JSON
                Google service-account JSON key: enables push wake-ups through Firebase Cloud Messaging;
                checked at boot. Supply it from a 0600 file or systemd LoadCredential=, never on a command line
          PYRYCODE_RELAY_FCM_BASE_URL=URL
                https URL that replaces https://fcm.googleapis.com for FCM sends; for tests
          PYRYCODE_RELAY_SHARD=I/N
                sharded mode, as --shard: serve the server-ids with crc32(id) mod N = I behind a proxy
                that routes on X-Pyrycode-Server; the same-host lock becomes instance-I-of-N.lock
          PYRYCODE_RELAY_FLY_DNS_SERVER=HOST:PORT
                DNS server for the Fly.io replica count (default [fdaa::3]:53); for tests
          RUNTIME_DIRECTORY
                directory for instance.lock when --runtime-dir is not given (systemd RuntimeDirectory=)
          NOTIFY_SOCKET, WATCHDOG_USEC, WATCHDOG_PID
                systemd Type=notify: READY=1, STATUS=, STOPPING=1 and watchdog pings
          LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES
                systemd socket activation: the public listener is taken instead of bound
          FLY_APP_NAME, FLY_PRIVATE_IP
                on Fly.io: the replicas are counted through Fly's internal DNS
          KUBERNETES_SERVICE_HOST, HOSTNAME
                on Kubernetes: a StatefulSet ordinal above 0 means more than one replica

        """

    package static let endpoints = """
        Endpoints (docs/protocol.md):
          /v1/server    WebSocket upgrade for a pyry binary, paired by server-id
          /v1/client    WebSocket upgrade for a phone
          /healthz      JSON status, any method; neither rate limited nor capped; on --http-listen (ACME
                        mode) 503 with the reason until a certificate is served
          /.well-known/acme-challenge/TOKEN
                        ACME http-01 answers, on --http-listen only (everything else there is 404)
          /metrics      Prometheus text, served only on --metrics-listen

        """

    package static let exitCodes = """
        Exit status:
          0  clean shutdown (SIGTERM or SIGINT, connections drained)
          1  runtime failure: TLS files, a listener that cannot bind, a --cert-cache directory that
             cannot be made private, a forced stop (second signal)
          2  configuration refused at boot: flags, environment, single-instance check, production guards

        """
}
