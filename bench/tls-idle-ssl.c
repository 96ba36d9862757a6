/* What one idle server-side OpenSSL `SSL` costs by itself, with the relay's TLS settings
 * (Sources/Relay/Transport/TLSContext.swift): the yardstick for the relay's RSS per idle TLS
 * connection (docs/benchmarks.md, scripts/tls-idle-rss.sh).
 *
 *   cc -O2 -o tls-idle-ssl bench/tls-idle-ssl.c -lssl -lcrypto
 *   ./tls-idle-ssl CERT KEY N [release|keep] [TICKETS (default 1, as the relay)]
 *
 * A forked child plays N clients over loopback TCP, one at a time. The parent accepts each one, reads one small
 * request, writes a 129-byte answer (the size of the relay's 101) and reads again until
 * WANT_READ: the state of an idle relay connection. The first WARMUP connections page in code and
 * pools; RSS (VmRSS) and glibc's in-use heap (mallinfo2) are taken after them and after the N
 * others, both after malloc_trim (the relay trims once accepts are quiet). One line out:
 * the deltas divided by N. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <malloc.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

enum { WARMUP = 100 };
static const char request[] = "GET /v1/server HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\r\n";
static char answer[129];

static long rss_kb(void) {
    char line[256]; long kb = -1;
    FILE *f = fopen("/proc/self/status", "r");
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0) kb = strtol(line + 6, NULL, 10);
    if (f) fclose(f);
    return kb;
}

static void die(const char *what) {
    fprintf(stderr, "tls-idle-ssl: %s failed\n", what);
    ERR_print_errors_fp(stderr);
    exit(1);
}

static int alpn_http11(SSL *s, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
                       unsigned int inlen, void *arg) {
    static const unsigned char ours[] = { 8, 'h', 't', 't', 'p', '/', '1', '.', '1' };
    unsigned char *sel = NULL;
    (void)s; (void)arg;
    if (SSL_select_next_proto(&sel, outlen, ours, sizeof ours, in, inlen) != OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK;
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

/* The relay's server context (TLSContext.swift), field for field. */
static SSL_CTX *server_ctx(const char *cert, const char *key, int release, int tickets) {
    unsigned char keys[80];
    SSL_CTX *c = SSL_CTX_new(TLS_server_method());
    if (!c) die("SSL_CTX_new");
    SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
    SSL_CTX_set_options(c, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_mode(c, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER
                            | (release ? SSL_MODE_RELEASE_BUFFERS : 0));
    if (SSL_CTX_set_cipher_list(c, "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                                   "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                                   "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305") != 1
        || SSL_CTX_set_ciphersuites(c, "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256") != 1
        || SSL_CTX_set1_groups_list(c, "X25519:P-256") != 1)
        die("cipher settings");
    SSL_CTX_set_read_ahead(c, 1);
    SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_num_tickets(c, (size_t)tickets);
    SSL_CTX_set_alpn_select_cb(c, alpn_http11, NULL);
    if (RAND_bytes(keys, sizeof keys) != 1 || SSL_CTX_set_tlsext_ticket_keys(c, keys, sizeof keys) != 1) die("ticket keys");
    if (SSL_CTX_use_certificate_chain_file(c, cert) != 1 || SSL_CTX_use_PrivateKey_file(c, key, SSL_FILETYPE_PEM) != 1)
        die("certificate");
    return c;
}

/* Child: N + WARMUP blocking clients of `to`, held open until the parent closes `hold`. */
static void clients(const struct sockaddr_in *to, int n, int hold) {
    static const unsigned char alpn[] = { 8, 'h', 't', 't', 'p', '/', '1', '.', '1' };
    char buf[512];
    SSL_CTX *c = SSL_CTX_new(TLS_client_method());
    if (!c) die("client SSL_CTX_new");
    SSL_CTX_set_alpn_protos(c, alpn, sizeof alpn);
    for (int i = 0; i < n; i++) {
        SSL *s = SSL_new(c);
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0 || connect(fd, (const struct sockaddr *)to, sizeof *to) != 0) die("connect");
        SSL_set_fd(s, fd);
        SSL_set_tlsext_host_name(s, "localhost");
        if (SSL_connect(s) != 1 || SSL_write(s, request, sizeof request - 1) <= 0 || SSL_read(s, buf, sizeof buf) <= 0)
            die("client handshake");
    }
    (void)!read(hold, buf, 1);
    _exit(0);
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s CERT KEY N [release|keep] [TICKETS]\n", argv[0]);
        return 2;
    }
    int n = atoi(argv[3]), total = n + WARMUP;
    int release = argc < 5 || strcmp(argv[4], "keep") != 0;
    int tickets = argc > 5 ? atoi(argv[5]) : 1;  /* TLSContext.ticketsPerHandshake */
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    memset(answer, 'x', sizeof answer);
    mallopt(M_MMAP_THRESHOLD, 4 << 20);  /* as the relay (RelayApp): no fresh mappings per buffer */
    mallopt(M_TRIM_THRESHOLD, 64 << 20);

    int *srv = malloc(sizeof(int) * total), hold[2];
    SSL **ssl = calloc(total, sizeof(SSL *));
    struct sockaddr_in at = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t atlen = sizeof at;
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&at, sizeof at) != 0 || listen(lfd, 128) != 0
        || getsockname(lfd, (struct sockaddr *)&at, &atlen) != 0 || pipe(hold) != 0)
        die("listen");
    SSL_CTX *ctx = server_ctx(argv[1], argv[2], release, tickets);
    pid_t child = fork();
    if (child == 0) {
        close(hold[1]);
        close(lfd);
        clients(&at, total, hold[0]);
    }
    close(hold[0]);

    long rss0 = 0; size_t heap0 = 0;
    char buf[512];
    for (int i = 0; i < total; i++) {
        if (i == WARMUP) {
            malloc_trim(0);
            rss0 = rss_kb(); heap0 = mallinfo2().uordblks;
        }
        if ((srv[i] = accept(lfd, NULL, NULL)) < 0) die("accept (raise ulimit -n)");
        SSL *s = ssl[i] = SSL_new(ctx);
        if (!s || SSL_set_fd(s, srv[i]) != 1) die("SSL_new");
        if (SSL_accept(s) != 1 || SSL_read(s, buf, sizeof buf) <= 0 || SSL_write(s, answer, sizeof answer) <= 0)
            die("server handshake");
        fcntl(srv[i], F_SETFL, O_NONBLOCK);
        if (SSL_read(s, buf, sizeof buf) > 0 || SSL_get_error(s, -1) != SSL_ERROR_WANT_READ) die("idle read");
    }
    malloc_trim(0);
    long rss1 = rss_kb(); size_t heap1 = mallinfo2().uordblks;
    printf("openssl-idle-ssl n=%d release_buffers=%d tickets=%d rss_per_ssl=%.0f B heap_in_use_per_ssl=%.0f B\n",
           n, release, tickets, (double)(rss1 - rss0) * 1024 / n, (double)(heap1 - heap0) / n);
    close(hold[1]);
    waitpid(child, NULL, 0);
    for (int i = 0; i < total; i++) SSL_free(ssl[i]);
    SSL_CTX_free(ctx);
    return 0;
}
