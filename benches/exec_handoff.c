/* What passing DELAYSHIM_TREE to exec'd programs costs in its rare cases
 * (BENCHMARKS.md, "Passing the tree to exec'd programs"):
 *   time [EXTRA]      median time until the parent runs on, of 400
 *                     posix_spawns and 400 vfork+execves of /bin/true with
 *                     the environment plus EXTRA (300) entries (N=count)
 *   altstack [EXTRA]  bytes of a 64 KB alternate stack that posix_spawns
 *                     from a signal handler touch (ONLY_SMALL=1: only the
 *                     one with a 2-entry environment)
 *   threads [EXTRA]   address space left by 20 short-lived threads that
 *                     vfork+execve once each, and by the main thread 3 times
 * Build with -Wl,-z,now (lazy binding's resolver takes more stack than
 * the calls measured):
 *   cc -O2 -Wl,-z,now -o /tmp/exec_handoff benches/exec_handoff.c -lpthread
 *   LD_PRELOAD=$PWD/target/release/libdelayshim.so /tmp/exec_handoff time */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
extern char **environ;
static char **large;
static char *argv_true[] = {"true", NULL};
static char *small_env[] = {"A=1", "LD_PRELOAD=", "B=2", NULL};

static void build(int extra) {
    int count = 0;
    while (environ[count]) count++;
    large = calloc(count + extra + 1, sizeof *large);
    for (int i = 0; i < count; i++) large[i] = strdup(environ[i]);
    for (int i = 0; i < extra; i++) {
        large[count + i] = malloc(32);
        snprintf(large[count + i], 32, "FILLER_%d=x", i);
    }
}
static void wait_ok(pid_t child) {
    int status;
    if (waitpid(child, &status, 0) != child || status != 0) { fprintf(stderr, "child failed\n"); exit(1); }
}
static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}
static int cmp(const void *a, const void *b) {
    double x = *(double *)a, y = *(double *)b;
    return x < y ? -1 : x > y;
}
static void timing(int vfork_it, int n) {
    double *t = calloc(n, sizeof *t);
    for (int i = 0; i < n; i++) {
        double start = now();
        pid_t child;
        if (vfork_it) {
            child = vfork();
            if (child == 0) { execve("/bin/true", argv_true, large); _exit(127); }
        } else if (posix_spawn(&child, "/bin/true", NULL, NULL, argv_true, large)) exit(1);
        t[i] = now() - start;
        wait_ok(child);
    }
    qsort(t, n, sizeof *t, cmp);
    printf("%s: median %.1f us until the parent runs on\n", vfork_it ? "vfork+execve" : "posix_spawn", t[n / 2] * 1e6);
}
static char stack_area[65536];
static void on_signal(int sig) {
    (void)sig;
    if (getenv("ONLY_SMALL")) {
        pid_t child;
        if (posix_spawn(&child, "/bin/true", NULL, NULL, argv_true, small_env)) _exit(1);
        wait_ok(child);
        return;
    }
    pid_t child;
    if (posix_spawn(&child, "/bin/true", NULL, NULL, argv_true, environ)) _exit(1);
    wait_ok(child);
    if (posix_spawn(&child, "/bin/true", NULL, NULL, argv_true, small_env)) _exit(1);
    wait_ok(child);
    if (posix_spawn(&child, "/bin/true", NULL, NULL, argv_true, large)) _exit(1);
    wait_ok(child);
}
static void altstack(void) {
    memset(stack_area, 0xa5, sizeof stack_area);
    stack_t stack = {.ss_sp = stack_area, .ss_size = sizeof stack_area};
    sigaltstack(&stack, NULL);
    struct sigaction action = {.sa_handler = on_signal, .sa_flags = SA_ONSTACK};
    sigaction(SIGUSR1, &action, NULL);
    raise(SIGUSR1);
    long untouched = 0;
    while (untouched < (long)sizeof stack_area && (unsigned char)stack_area[untouched] == 0xa5) untouched++;
    printf("handler's three posix_spawns (environ, 3 entries, large): %ld bytes of alternate stack\n",
           (long)sizeof stack_area - untouched);
}
/* Virtual size in KB and mappings. */
static int maps(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    int kb = 0;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "VmSize:", 7)) kb = atoi(line + 7);
    fclose(f);
    return kb;
}
static void *vfork_once(void *unused) {
    (void)unused;
    pid_t child = vfork();
    if (child == 0) { execve("/bin/true", argv_true, large); _exit(127); }
    wait_ok(child);
    return NULL;
}
static void threads(int n) {
    int before = maps();
    for (int i = 0; i < n; i++) {
        pthread_t t;
        pthread_create(&t, NULL, vfork_once, NULL);
        pthread_join(t, NULL);
    }
    int after = maps();
    for (int i = 0; i < 3; i++) vfork_once(NULL);
    printf("%d short-lived threads vforked once each: %+d KB of address space; main thread 3 times: %+d KB\n", n, after - before,
           maps() - after);
}
int main(int argc, char **argv) {
    int extra = argc > 2 ? atoi(argv[2]) : 300;
    build(extra);
    if (!strcmp(argv[1], "time")) { int n = getenv("N") ? atoi(getenv("N")) : 400; timing(0, n); timing(1, n); }
    if (!strcmp(argv[1], "altstack")) altstack();
    if (!strcmp(argv[1], "threads")) threads(20);
    return 0;
}
