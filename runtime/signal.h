/* signal.h: the process's one piece of global mutable state, the flag that
 * SIGTERM or SIGINT raised.
 *
 * Installed once by main(). Long-running loops that own the main thread
 * (a standalone broker, edge or actor) poll ain_signal_stop_requested();
 * the bundle blocks the signals in its worker threads and waits for them in
 * main, then stops each role in order.
 */
#ifndef AIN_RUNTIME_SIGNAL_H
#define AIN_RUNTIME_SIGNAL_H

#include <stdbool.h>

/* Installs handlers for SIGTERM and SIGINT that set the flag, and ignores
 * SIGPIPE (a closed socket is an error return, not a death). */
void ain_signal_install(void);

/* True once SIGTERM or SIGINT arrived. Async-signal-safe to call. */
bool ain_signal_stop_requested(void);

/* The signal number that arrived, or 0. */
int ain_signal_number(void);

/* Blocks SIGTERM and SIGINT in the calling thread (and the threads it
 * creates afterwards). Returns 0 or -1. */
int ain_signal_block(void);

/* Waits until SIGTERM/SIGINT (blocked beforehand) arrives or `timeout_ms`
 * passes; returns the signal, or 0 on timeout. */
int ain_signal_wait(int timeout_ms);

#endif
