#ifndef PYRY_CEPOLL_SHIM_H
#define PYRY_CEPOLL_SHIM_H
/* No _GNU_SOURCE here: every clang module that includes glibc headers (this one, CTLS, Swift's
   Glibc and Dispatch) must see the same declarations, or a clean build fails with "fd_set has
   different definitions". The few GNU-only functions are declared by hand below. */
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/resource.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <signal.h>
#include <pthread.h>
#include <unistd.h>
#include <fcntl.h>
#include <errno.h>
#include <time.h>
#include <string.h>
#include <stdlib.h>
#include <stdio.h>
#include <dirent.h>
#include <poll.h>
#include <sys/random.h>
#include <malloc.h>

/* accept4 is declared only under _GNU_SOURCE (with a transparent union Swift cannot call). */
extern int accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags);
static inline int pyry_accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags) {
    return accept4(fd, addr, len, flags);
}

/* The process environment (declared by unistd.h only under _GNU_SOURCE). */
extern char **environ;
static inline char **pyry_environ(void) { return environ; }

/* fcntl(2) is variadic, which Swift cannot call. */
static inline int pyry_fcntl_int(int fd, int cmd, int arg) { return fcntl(fd, cmd, arg); }

static inline int pyry_errno(void) { return errno; }

/* Not every IP_ option is exported by older headers; the value is stable ABI (linux/in.h). */
#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif
static inline int pyry_ip_bind_address_no_port(void) { return IP_BIND_ADDRESS_NO_PORT; }

static inline int pyry_sigmask_block(const sigset_t *set) {
    return pthread_sigmask(SIG_BLOCK, set, NULL);
}

static inline void pyry_ignore_sigpipe(void) { signal(SIGPIPE, SIG_IGN); }

/* Plain prototypes for the sockaddr-taking calls, callable from Swift on any glibc. */
static inline int pyry_bind(int fd, const struct sockaddr *a, socklen_t l) { return bind(fd, a, l); }
static inline int pyry_connect(int fd, const struct sockaddr *a, socklen_t l) { return connect(fd, a, l); }
static inline int pyry_getsockname(int fd, struct sockaddr *a, socklen_t *l) { return getsockname(fd, a, l); }
static inline int pyry_getpeername(int fd, struct sockaddr *a, socklen_t *l) { return getpeername(fd, a, l); }
static inline ssize_t pyry_sendto(int fd, const void *b, size_t n, int flags, const struct sockaddr *a, socklen_t l) { return sendto(fd, b, n, flags, a, l); }
static inline ssize_t pyry_recvfrom(int fd, void *b, size_t n, int flags, struct sockaddr *a, socklen_t *l) { return recvfrom(fd, b, n, flags, a, l); }

/* open(2) is variadic, which Swift cannot call. */
static inline int pyry_open(const char *path, int flags, int mode) { return open(path, flags, mode); }

/* ---- Data-path scanning helpers (SSE2 where the compiler targets it). Swift's generic SIMD
   types compiled to scalar code on this toolchain; these are the 16-bytes-per-step versions. ---- */
#if defined(__SSE2__)
#include <emmintrin.h>
#endif
#include <stdint.h>

/* Length of the prefix of p[0..n) free of bytes that end or complicate a JSON string run:
   '"', '\\', control characters (< 0x20) and non-ASCII (>= 0x80). RFC 8259 §7. */
static inline size_t pyry_json_plain_span(const uint8_t *p, size_t n) {
    size_t i = 0;
#if defined(__SSE2__)
    const __m128i quote = _mm_set1_epi8('"');
    const __m128i backslash = _mm_set1_epi8('\\');
    const __m128i space = _mm_set1_epi8(0x20);
    while (n - i >= 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(p + i));
        /* Signed compare: bytes >= 0x80 are negative, so "v < 0x20" also catches non-ASCII. */
        __m128i special = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, backslash)),
                                       _mm_cmplt_epi8(v, space));
        int mask = _mm_movemask_epi8(special);
        if (mask != 0) return i + (size_t)__builtin_ctz((unsigned)mask);
        i += 16;
    }
#endif
    while (i < n) {
        uint8_t b = p[i];
        if (b == '"' || b == '\\' || b < 0x20 || b >= 0x80) return i;
        i++;
    }
    return n;
}

/* Length of the ASCII prefix (bytes < 0x80) of p[0..n): the UTF-8 validator's fast path. */
static inline size_t pyry_ascii_span(const uint8_t *p, size_t n) {
    size_t i = 0;
#if defined(__SSE2__)
    while (n - i >= 16) {
        int mask = _mm_movemask_epi8(_mm_loadu_si128((const __m128i *)(p + i)));
        if (mask != 0) return i + (size_t)__builtin_ctz((unsigned)mask);
        i += 16;
    }
#endif
    while (i < n && p[i] < 0x80) i++;
    return i;
}

#endif
