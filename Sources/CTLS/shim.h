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
static inline void pyry_ssl_ctx_set_read_ahead(SSL_CTX *ctx) { SSL_CTX_set_read_ahead(ctx, 1); }
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

/* ACME (Sources/Relay/ACME): key, JWS, CSR and certificate helpers. Whole OpenSSL sequences
 * live here because they need stack macros (sk_X509_EXTENSION_*) or variadic calls Swift cannot make. */
#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <time.h>
static inline EVP_PKEY *pyry_ec_p256_generate(void) { return EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256"); }
static inline void pyry_openssl_free(void *p) { OPENSSL_free(p); }
static inline long pyry_bio_mem_data(BIO *b, char **p) { return BIO_get_mem_data(b, p); }
/* The uncompressed public point 0x04||X||Y of a P-256 key (RFC 7518 §6.2.1 x and y): 1 on success. */
static inline int pyry_ec_p256_public_xy(EVP_PKEY *key, unsigned char out[64]) {
    unsigned char buf[65]; size_t len = 0;
    if (EVP_PKEY_get_octet_string_param(key, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, buf, sizeof buf, &len) != 1) return 0;
    if (len != 65 || buf[0] != 4) return 0;
    memcpy(out, buf + 1, 64);
    return 1;
}
/* ES256 (RFC 7518 §3.4): ECDSA P-256 SHA-256, the signature as R||S, 32 bytes each. 1 on success. */
static inline int pyry_es256_sign(EVP_PKEY *key, const unsigned char *msg, size_t len, unsigned char out[64]) {
    int ok = 0; unsigned char der[80]; size_t dlen = sizeof der;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (!md) return 0;
    if (EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key) == 1 && EVP_DigestSign(md, der, &dlen, msg, len) == 1) {
        const unsigned char *p = der;
        ECDSA_SIG *sig = d2i_ECDSA_SIG(NULL, &p, (long)dlen);
        if (sig) {
            const BIGNUM *r = NULL, *s = NULL;
            ECDSA_SIG_get0(sig, &r, &s);
            ok = BN_bn2binpad(r, out, 32) == 32 && BN_bn2binpad(s, out + 32, 32) == 32;
            ECDSA_SIG_free(sig);
        }
    }
    EVP_MD_CTX_free(md);
    return ok;
}
/* A PKCS#10 request (RFC 2986) for one DNS name: CN and subjectAltName, signed with `key`.
 * Returns the DER length (the caller frees *der with pyry_openssl_free), or -1. */
static inline int pyry_csr_der(EVP_PKEY *key, const char *domain, unsigned char **der) {
    int len = -1; char san[300];
    if (snprintf(san, sizeof san, "DNS:%s", domain) >= (int)sizeof san) return -1;
    X509_REQ *req = X509_REQ_new();
    STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, NULL, NID_subject_alt_name, san);
    if (req && exts && ext && sk_X509_EXTENSION_push(exts, ext)) {
        ext = NULL;
        if (X509_REQ_set_version(req, X509_REQ_VERSION_1) == 1
            && X509_NAME_add_entry_by_txt(X509_REQ_get_subject_name(req), "CN", MBSTRING_ASC, (const unsigned char *)domain, -1, -1, 0) == 1
            && X509_REQ_add_extensions(req, exts) == 1 && X509_REQ_set_pubkey(req, key) == 1
            && X509_REQ_sign(req, key, EVP_sha256()) > 0) {
            *der = NULL;
            len = i2d_X509_REQ(req, der);
        }
    }
    X509_EXTENSION_free(ext);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    X509_REQ_free(req);
    return len;
}
/* notAfter as seconds since the epoch (UTC), or -1. */
static inline long long pyry_x509_not_after(X509 *x) {
    struct tm tm;
    if (ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm) != 1) return -1;
    return (long long)timegm(&tm);
}
/* The serial number in upper-case hex (NUL-terminated into out), 1 on success. */
static inline int pyry_x509_serial_hex(X509 *x, char *out, size_t cap) {
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    char *hex = bn ? BN_bn2hex(bn) : NULL;
    int ok = hex && strlen(hex) < cap;
    if (ok) strcpy(out, hex);
    OPENSSL_free(hex); BN_free(bn);
    return ok;
}
/* 1 when the certificate names `domain` (subjectAltName, RFC 6125 rules of X509_check_host). */
static inline int pyry_x509_matches_host(X509 *x, const char *domain) {
    return X509_check_host(x, domain, strlen(domain), X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS, NULL) == 1;
}

/* tls-alpn-01 (RFC 8737): while a challenge is pending, a ClientHello that offers ALPN
 * "acme-tls/1" for the challenged name gets the self-signed challenge certificate and the
 * "acme-tls/1" protocol; every other handshake is untouched. One slot: authorizations are
 * answered one at a time. The struct is owned by Swift (ACMEChallengeCertificate). */
typedef struct { X509 *cert; EVP_PKEY *key; char name[256]; } pyry_alpn_challenge;

static const unsigned char pyry_acme_tls_1[] = { 10, 'a', 'c', 'm', 'e', '-', 't', 'l', 's', '/', '1' };

/* 1 when the ClientHello's ALPN list (RFC 7301 §3.1) contains acme-tls/1. */
static inline int pyry_hello_offers_acme_tls(SSL *ssl) {
    const unsigned char *p; size_t len, list;
    if (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_application_layer_protocol_negotiation, &p, &len) != 1 || len < 2) return 0;
    list = ((size_t)p[0] << 8) | p[1];
    if (list + 2 != len) return 0;
    p += 2;
    while (list > 0) {
        size_t n = p[0];
        if (n == 0 || n + 1 > list) return 0;
        if (n == 10 && memcmp(p + 1, "acme-tls/1", 10) == 0) return 1;
        p += n + 1; list -= n + 1;
    }
    return 0;
}
/* 1 when the ClientHello's server_name (RFC 6066 §3) is `name`, ASCII case-insensitive. */
static inline int pyry_hello_sni_is(SSL *ssl, const char *name) {
    const unsigned char *p; size_t len, n;
    if (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_server_name, &p, &len) != 1 || len < 5) return 0;
    if ((((size_t)p[0] << 8) | p[1]) + 2 != len || p[2] != TLSEXT_NAMETYPE_host_name) return 0;
    n = ((size_t)p[3] << 8) | p[4];
    if (n + 5 > len || n != strlen(name)) return 0;
    return OPENSSL_strncasecmp((const char *)p + 5, name, n) == 0;
}
static inline int pyry_acme_client_hello_cb(SSL *ssl, int *al, void *arg) {
    pyry_alpn_challenge *c = (pyry_alpn_challenge *)arg;
    if (!c || !c->cert || !pyry_hello_offers_acme_tls(ssl) || !pyry_hello_sni_is(ssl, c->name)) return SSL_CLIENT_HELLO_SUCCESS;
    if (SSL_use_certificate(ssl, c->cert) != 1 || SSL_use_PrivateKey(ssl, c->key) != 1) {
        *al = SSL_AD_INTERNAL_ERROR;
        return SSL_CLIENT_HELLO_ERROR;
    }
    SSL_set_app_data(ssl, (void *)pyry_acme_tls_1);
    return SSL_CLIENT_HELLO_SUCCESS;
}
/* ALPN: "acme-tls/1" for the handshake the hello callback marked, else http/1.1 as before. */
static inline int pyry_alpn_select_acme(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                                        const unsigned char *in, unsigned int inlen, void *arg) {
    unsigned char *sel = NULL;
    if (SSL_get_app_data(ssl) != (void *)pyry_acme_tls_1) return pyry_alpn_select_http11(ssl, out, outlen, in, inlen, arg);
    if (SSL_select_next_proto(&sel, outlen, pyry_acme_tls_1, sizeof(pyry_acme_tls_1), in, inlen) != OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}
static inline void pyry_ssl_ctx_enable_acme_alpn(SSL_CTX *ctx, pyry_alpn_challenge *c) {
    SSL_CTX_set_client_hello_cb(ctx, pyry_acme_client_hello_cb, c);
    SSL_CTX_set_alpn_select_cb(ctx, pyry_alpn_select_acme, NULL);
}
/* 1 when the finished handshake negotiated acme-tls/1 (the connection then carries no HTTP). */
static inline int pyry_ssl_is_acme_tls(SSL *ssl) { return SSL_get_app_data(ssl) == (void *)pyry_acme_tls_1; }
/* The RFC 8737 §3 certificate: self-signed, subjectAltName dNSName `domain`, and the critical
 * acmeIdentifier extension (id-pe-acmeIdentifier, 1.3.6.1.5.5.7.1.31) holding the DER OCTET
 * STRING of SHA-256(key authorization). NULL on failure. */
static inline X509 *pyry_acme_tls_alpn_cert(EVP_PKEY *key, const char *domain, const unsigned char digest[32]) {
    char san[300]; unsigned char inner[34];
    X509 *x = X509_new();
    X509_EXTENSION *ext = NULL;
    ASN1_OBJECT *obj = OBJ_txt2obj("1.3.6.1.5.5.7.1.31", 1);
    ASN1_OCTET_STRING *os = ASN1_OCTET_STRING_new();
    int ok = x && obj && os && snprintf(san, sizeof san, "DNS:%s", domain) < (int)sizeof san;
    inner[0] = 0x04; inner[1] = 0x20; memcpy(inner + 2, digest, 32);
    ok = ok && X509_set_version(x, X509_VERSION_3) == 1
        && ASN1_INTEGER_set(X509_get_serialNumber(x), 1) == 1
        && X509_gmtime_adj(X509_getm_notBefore(x), -3600) && X509_gmtime_adj(X509_getm_notAfter(x), 7 * 24 * 3600)
        && X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC, (const unsigned char *)domain, -1, -1, 0) == 1
        && X509_set_issuer_name(x, X509_get_subject_name(x)) == 1 && X509_set_pubkey(x, key) == 1
        && (ext = X509V3_EXT_conf_nid(NULL, NULL, NID_subject_alt_name, san)) != NULL && X509_add_ext(x, ext, -1) == 1;
    X509_EXTENSION_free(ext); ext = NULL;
    ok = ok && ASN1_OCTET_STRING_set(os, inner, sizeof inner) == 1
        && (ext = X509_EXTENSION_create_by_OBJ(NULL, obj, 1, os)) != NULL && X509_add_ext(x, ext, -1) == 1
        && X509_sign(x, key, EVP_sha256()) > 0;
    X509_EXTENSION_free(ext); ASN1_OBJECT_free(obj); ASN1_OCTET_STRING_free(os);
    if (!ok) { X509_free(x); return NULL; }
    return x;
}

#endif
