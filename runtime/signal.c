/* signal.c: the stop flag (see signal.h). */
#include "runtime/signal.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <time.h>

static volatile sig_atomic_t s_stop_signal = 0;

static void s_handler(int signo)
{
    s_stop_signal = signo;
}

void ain_signal_install(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = s_handler;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

bool ain_signal_stop_requested(void)
{
    return s_stop_signal != 0;
}

int ain_signal_number(void)
{
    return s_stop_signal;
}

static void s_set(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGINT);
}

int ain_signal_block(void)
{
    sigset_t set;
    s_set(&set);
    return pthread_sigmask(SIG_BLOCK, &set, NULL) == 0 ? 0 : -1;
}

int ain_signal_wait(int timeout_ms)
{
    sigset_t set;
    s_set(&set);
    struct timespec ts = {timeout_ms / 1000, (long)(timeout_ms % 1000) * 1000000L};
    int signo = sigtimedwait(&set, NULL, &ts);
    if (signo > 0) {
        s_stop_signal = signo;
        return signo;
    }
    return 0;
}
