/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * Helpers for integration and end-to-end tests: the environment written by
 * tests/cluster/cluster.sh (build/cluster/env), running commands, spawning
 * the daemons, and waiting for conditions without fixed sleeps.
 */

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "macro.h"

/* $NAME, or fails the test with a message telling how to get it. */
const char *support_env(const char *name);

/* A short id unique to this run, for names ("t1a2b3c"). */
const char *support_run_id(void);

/* Runs a shell command (printf-style); returns its exit status (or -1). The
 * command's output goes to the test's stderr unless @quiet. */
int support_sh(bool quiet, const char *fmt, ...) _printf_(2, 3);

/* Runs a shell command and returns its stdout (caller frees), or NULL if it
 * failed. Trailing newlines are stripped. */
char *support_sh_output(const char *fmt, ...) _printf_(1, 2);

/* Starts @argv[0] with @argv, stdout and stderr appended to @log_path.
 * Returns the pid, or fails the test. */
pid_t support_spawn(char *const argv[], const char *log_path);

/* Sends @sig and waits for the process to exit (SIGKILL after 10 s). Returns
 * the wait status. */
int support_stop(pid_t pid, int sig);

/* True if the process is still running (not a zombie). */
bool support_alive(pid_t pid);

/* Polls @cond every 100 ms until it is true or @timeout_ms passes. */
bool support_wait_for(bool (*cond)(void *userdata), void *userdata, unsigned timeout_ms);

/* Prints the last @lines lines of @path to stderr (for failure dumps). */
void support_dump_log(const char *path, unsigned lines);

/* The first of @n consecutive TCP ports on 127.0.0.1 that are free now, for
 * the daemons a test starts. They lie below the kernel's ephemeral range
 * (net.ipv4.ip_local_port_range), so no outgoing connection of this or any
 * other process can take one between this check and the daemon's bind; the
 * search starts at a point drawn from the pid, so concurrent test programs
 * rarely probe the same ports. Fails the test if none are free. */
unsigned support_free_ports(unsigned n);

/* Milliseconds of CLOCK_MONOTONIC. */
uint64_t support_now_ms(void);
