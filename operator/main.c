/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ballast-operator: renders ConfigBundle resources into immutable,
 * content-addressed bundles and publishes them to ConfigMaps and an object
 * store. Its settings come only from flags, environment and a static file:
 * it never depends on anything it manages to start or recover.
 */

#include <getopt.h>
#include <signal.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-event.h>

#include "log.h"
#include "loop.h"
#include "macro.h"

static void help(void) {
        printf("Usage: ballast-operator [OPTIONS]\n"
               "\n"
               "Watches ConfigBundle resources and publishes rendered bundles to\n"
               "ConfigMaps and an object store.\n"
               "\n"
               "  -h --help              Show this help and exit\n"
               "     --version           Show the version and exit\n"
               "     --log-level=LEVEL   error, warning, info (default) or debug\n");
}

static int parse_argv(int argc, char *argv[]) {
        enum { ARG_VERSION = 0x100, ARG_LOG_LEVEL };
        static const struct option options[] = {
                {"help", no_argument, NULL, 'h'},
                {"version", no_argument, NULL, ARG_VERSION},
                {"log-level", required_argument, NULL, ARG_LOG_LEVEL},
                {},
        };
        int c, r;

        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        help();
                        return 0;
                case ARG_VERSION:
                        printf("ballast-operator %s\n", BALLAST_VERSION);
                        return 0;
                case ARG_LOG_LEVEL:
                        r = log_level_from_string(optarg);
                        if (r < 0) {
                                fprintf(stderr, "ballast-operator: invalid --log-level '%s'\n",
                                        optarg);
                                return -EINVAL;
                        }
                        log_setup("ballast-operator", r, LOG_TARGET_AUTO);
                        break;
                default:
                        return -EINVAL;
                }
        if (optind < argc) {
                fprintf(stderr, "ballast-operator: unexpected argument '%s'\n", argv[optind]);
                return -EINVAL;
        }
        return 1;
}

int main(int argc, char *argv[]) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        sigset_t mask;
        int r;

        log_setup("ballast-operator", LOG_INFO, LOG_TARGET_AUTO);
        r = parse_argv(argc, argv);
        if (r <= 0)
                return r < 0 ? 2 : 0;

        r = sd_event_default(&e);
        if (r < 0)
                return log_error_errno(r, "Failed to create event loop: %m"), 1;

        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigprocmask(SIG_BLOCK, &mask, NULL);
        (void) sd_event_add_signal(e, NULL, SIGTERM, NULL, NULL);
        (void) sd_event_add_signal(e, NULL, SIGINT, NULL, NULL);
        (void) sd_event_set_watchdog(e, true);

        log_info("ballast-operator %s starting", BALLAST_VERSION);
        (void) sd_notify(false, "READY=1");
        r = sd_event_loop(e);
        (void) sd_notify(false, "STOPPING=1");
        if (r < 0)
                return log_error_errno(r, "Event loop failed: %m"), 1;
        log_info("ballast-operator stopped");
        return 0;
}
