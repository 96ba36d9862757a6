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

#endif
