/* sdnotify.c: READY, STOPPING and WATCHDOG to the service manager (see sdnotify.h).
 *
 * The protocol is one datagram per message on a unix socket; libsystemd adds credentials and
 * file-descriptor passing we do not need, so a plain sendto is all of it.
 */
#include "runtime/sdnotify.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int ain_sd_notify(const char *state)
{
    const char *path = getenv("NOTIFY_SOCKET");
    if (!path || !path[0])
        return 0;
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    size_t len = strlen(path);
    if ((path[0] != '/' && path[0] != '@') || len >= sizeof addr.sun_path)
        return -1;
    memcpy(addr.sun_path, path, len);
    if (path[0] == '@')
        addr.sun_path[0] = '\0'; /* abstract namespace */
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    socklen_t alen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
    ssize_t sent = sendto(fd, state, strlen(state), MSG_NOSIGNAL | MSG_DONTWAIT,
                          (struct sockaddr *)&addr, alen);
    close(fd);
    return sent == (ssize_t)strlen(state) ? 1 : -1;
}

int64_t ain_sd_watchdog_ms(void)
{
    const char *usec = getenv("WATCHDOG_USEC"), *pid = getenv("WATCHDOG_PID");
    if (!usec || (pid && strtol(pid, NULL, 10) != (long)getpid()))
        return 0;
    char *end;
    errno = 0;
    long long v = strtoll(usec, &end, 10);
    if (errno || end == usec || *end || v <= 0)
        return 0;
    int64_t ms = (int64_t)(v / 2000); /* half the interval, in ms */
    return ms > 0 ? ms : 1;
}

/* ---------------------------------------------------------------- selftest */

int ain_sdnotify_test(bool verbose)
{
    int rc = 0;
    char path[64];
    snprintf(path, sizeof path, "/tmp/ain-sdnotify-%d.sock", (int)getpid());
    unlink(path);
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    memcpy(addr.sun_path, path, strlen(path) + 1);
    if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0)
        return -1;
    unsetenv("NOTIFY_SOCKET");
    rc |= ain_sd_notify("READY=1") != 0;
    setenv("NOTIFY_SOCKET", path, 1);
    rc |= ain_sd_notify("READY=1") != 1;
    char buf[32] = {0};
    rc |= recv(fd, buf, sizeof buf - 1, MSG_DONTWAIT) != 7 || strcmp(buf, "READY=1") != 0;
    setenv("NOTIFY_SOCKET", "relative/path", 1);
    rc |= ain_sd_notify("READY=1") != -1;
    unsetenv("NOTIFY_SOCKET");
    close(fd);
    unlink(path);

    unsetenv("WATCHDOG_PID");
    setenv("WATCHDOG_USEC", "10000000", 1);
    rc |= ain_sd_watchdog_ms() != 5000;
    setenv("WATCHDOG_PID", "1", 1); /* somebody else's */
    rc |= getpid() != 1 && ain_sd_watchdog_ms() != 0;
    unsetenv("WATCHDOG_PID");
    setenv("WATCHDOG_USEC", "soon", 1);
    rc |= ain_sd_watchdog_ms() != 0;
    unsetenv("WATCHDOG_USEC");
    rc |= ain_sd_watchdog_ms() != 0;
    if (verbose && !rc)
        printf("sdnotify: READY over a datagram, watchdog interval\n");
    return rc ? -1 : 0;
}
