#ifndef PYRY_CTLS_SHIM_H
#define PYRY_CTLS_SHIM_H
/* No feature macros: glibc types (fd_set) must be identical in every clang module (see CEpoll). */
#include <openssl/ssl.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <openssl/pem.h>
#include <zlib.h>

/* Function-like macros Swift cannot import. */
static inline int pyry_ssl_ctx_set_min_proto_version(SSL_CTX *ctx, int v) { return SSL_CTX_set_min_proto_version(ctx, v); }
static inline long pyry_ssl_ctx_set_mode(SSL_CTX *ctx, long mode) { return SSL_CTX_set_mode(ctx, mode); }
static inline uint64_t pyry_ssl_ctx_set_options(SSL_CTX *ctx, uint64_t op) { return SSL_CTX_set_options(ctx, op); }
static inline int pyry_ssl_ctx_set1_groups_list(SSL_CTX *ctx, const char *list) { return SSL_CTX_set1_groups_list(ctx, list); }
static inline uint64_t pyry_ssl_op_no_compression(void) { return SSL_OP_NO_COMPRESSION; }
static inline uint64_t pyry_ssl_op_no_renegotiation(void) { return SSL_OP_NO_RENEGOTIATION; }
static inline uint64_t pyry_ssl_op_cipher_server_preference(void) { return SSL_OP_CIPHER_SERVER_PREFERENCE; }
static inline long pyry_ssl_mode_release_buffers(void) { return SSL_MODE_RELEASE_BUFFERS; }
static inline long pyry_ssl_mode_partial_write(void) { return SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER; }
static inline int pyry_tls1_2_version(void) { return TLS1_2_VERSION; }
/* ALPN (RFC 7301) selected purely in C, so no Swift closure crosses into OpenSSL: answer
 * "http/1.1" when the client offers it; otherwise continue without ALPN (NOACK). */
static inline int pyry_alpn_select_http11(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                                          const unsigned char *in, unsigned int inlen, void *arg) {
    static const unsigned char ours[] = { 8, 'h', 't', 't', 'p', '/', '1', '.', '1' };
    unsigned char *sel = NULL;
    (void)ssl; (void)arg;
    if (SSL_select_next_proto(&sel, outlen, ours, sizeof(ours), in, inlen) != OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK;
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}
static inline void pyry_ssl_ctx_set_alpn_http11(SSL_CTX *ctx) { SSL_CTX_set_alpn_select_cb(ctx, pyry_alpn_select_http11, NULL); }
static inline long pyry_ssl_ctx_set_session_cache_off(SSL_CTX *ctx) { return SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF); }
static inline long pyry_ssl_ctx_set_ticket_keys(SSL_CTX *ctx, unsigned char *keys, long len) { return SSL_CTX_set_tlsext_ticket_keys(ctx, keys, len); }
/* Outbound client (HTTPSClient): SNI (RFC 6066 §3) is a macro over SSL_ctrl. */
static inline long pyry_ssl_set_sni(SSL *ssl, const char *name) { return SSL_set_tlsext_host_name(ssl, name); }
static inline long pyry_x509_v_ok(void) { return X509_V_OK; }
static inline int pyry_ssl_verify_peer(void) { return SSL_VERIFY_PEER; }
static inline unsigned int pyry_x509_check_flag_no_partial_wildcards(void) { return X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS; }
static inline int pyry_deflate_init2(z_stream *s, int level, int bits, int mem) {
    return deflateInit2(s, level, Z_DEFLATED, bits, mem, Z_DEFAULT_STRATEGY);
}
static inline int pyry_inflate_init2(z_stream *s, int bits) { return inflateInit2(s, bits); }

#endif
